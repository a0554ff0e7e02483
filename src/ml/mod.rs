//! In-engine training: interaction matrices, the algorithms, and ranking metrics. Nothing here
//! knows SQL or storage; `sql::models` feeds it rows and `catalog::models` keeps its results.

pub mod als;
pub mod bpr;
pub mod diversity;
pub mod explain;
pub mod fold_in;
pub mod interactions;
pub mod item_item;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod options;
pub mod popularity;
pub mod train;

pub use interactions::{Interactions, Split};
pub use metrics::Metrics;
pub use model::{Scorer, TrainedModel};
pub use options::{Algorithm, TrainOptions};
pub use train::{Progress, TrainOutcome, model_bytes, train};

/// Data and a check shared by the algorithms' tests.
#[cfg(test)]
pub(crate) mod fixture {
    use crate::ml::als::Factors;
    use crate::ml::interactions::Csr;
    use crate::ml::kernels::dot;

    /// Users 0-9 like items 0-4 and users 10-19 like items 5-9; user u misses item
    /// `group + u % 5` of their group.
    pub fn two_groups() -> Csr {
        let mut triples = Vec::new();
        for u in 0..20u32 {
            for i in group(u)..group(u) + 5 {
                if i != group(u) + u % 5 {
                    triples.push((u, i, 1.0));
                }
            }
        }
        Csr::from_triples(20, triples.into_iter())
    }

    fn group(user: u32) -> u32 {
        if user < 10 { 0 } else { 5 }
    }

    /// Asserts that every user's missing item scores above every item of the other group.
    pub fn assert_missing_items_rank_first(factors: &Factors, width: usize) {
        for u in 0..20u32 {
            let at = u as usize * width;
            let xu = &factors.users[at..at + width];
            let score = |i: u32| {
                dot(
                    xu,
                    &factors.items[i as usize * width..(i as usize + 1) * width],
                )
            };
            let missing = group(u) + u % 5;
            let other = 5 - group(u);
            for o in other..other + 5 {
                assert!(
                    score(missing) > score(o),
                    "user {u}: {} vs {}",
                    score(missing),
                    score(o)
                );
            }
        }
    }
}
