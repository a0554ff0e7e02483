//! Popularity: every item scored by how many users interacted with it positively.

use crate::ml::interactions::Csr;

/// Per item, the number of users with a positive summed weight for it.
pub fn item_popularity(train: &Csr, items: usize) -> Vec<f32> {
    let mut counts = vec![0f32; items];
    for (&item, &weight) in train.columns.iter().zip(&train.values) {
        if weight > 0.0 {
            counts[item as usize] += 1.0;
        }
    }
    counts
}
