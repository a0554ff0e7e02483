//! Why an item scores what it does for a user: each of the user's items with its share of the
//! score. For ALS, the shares of the user's exact least-squares vector (as implicit's
//! `explain`, see [`FoldIn::explain`]); for item-item models (EASE, item k-NN), the weight
//! from each liked item to the item; for popularity, the item's own popularity.

use crate::ml::fold_in::FoldIn;
use crate::ml::model::{Scorer, TrainedModel};
use std::collections::BTreeMap;

/// A user's items (item index, share of the score), in the order of `weights`; for
/// popularity, or a user without items, the item itself with its popularity. `None` for a
/// factor model without a least-squares step (`fold`).
pub fn explain(
    model: &TrainedModel,
    weights: &BTreeMap<usize, f32>,
    item: usize,
    fold: Option<&FoldIn>,
    more_items: &[f32],
) -> Option<Vec<(usize, f32)>> {
    let popular = || vec![(item, model.popularity.get(item).copied().unwrap_or(0.0))];
    if weights.is_empty() {
        return Some(popular());
    }
    match &model.scorer {
        Scorer::Factors { .. } => {
            let target = model.item_row(item, more_items)?;
            let rows: Vec<(usize, &[f32], f32)> = (weights.iter())
                .filter_map(|(&i, &w)| Some((i, model.item_row(i, more_items)?, w)))
                .collect();
            let interactions: Vec<(&[f32], f32)> = rows.iter().map(|&(_, y, w)| (y, w)).collect();
            let shares = fold?.explain(&interactions, target);
            Some(rows.iter().map(|&(i, _, _)| i).zip(shares).collect())
        }
        Scorer::ItemItem(matrix) => {
            let n = model.item_ids.len();
            let liked = weights.iter().filter(|(i, w)| **w > 0.0 && **i < n);
            let weight = |from: usize| matrix.get(from * n + item).copied().unwrap_or(0.0);
            Some(liked.map(|(&i, _)| (i, weight(i))).collect())
        }
        Scorer::Popularity(_) => Some(popular()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::interactions::Csr;

    #[test]
    fn item_item_shares_are_the_weights_from_the_liked_items() {
        // 3 items; item 2 is reached from item 0 with 0.5 and from item 1 with 0.25
        let matrix = vec![0.0, 0.1, 0.5, 0.1, 0.0, 0.25, 0.5, 0.25, 0.0];
        let ids = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
        let seen = Csr::from_triples(1, [(0u32, 0u32, 1.0f32)].into_iter());
        let model = TrainedModel::new(
            ids(1),
            ids(3),
            seen,
            vec![3.0, 2.0, 1.0],
            Scorer::ItemItem(matrix),
        );
        let weights = BTreeMap::from([(0, 1.0), (1, 2.0)]);
        assert_eq!(
            explain(&model, &weights, 2, None, &[]),
            Some(vec![(0, 0.5), (1, 0.25)])
        );
        // a user without items is explained by popularity
        assert_eq!(
            explain(&model, &BTreeMap::new(), 1, None, &[]),
            Some(vec![(1, 2.0)])
        );
    }
}
