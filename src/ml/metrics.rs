//! Ranking metrics at k over a holdout: precision, recall, NDCG (binary gain), MAP and
//! catalogue coverage, averaged over the users that have held-out items.

use crate::ml::interactions::Csr;
use crate::ml::model::TrainedModel;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Holdout metrics of one model version.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The cut-off.
    pub k: usize,
    /// Users evaluated (those with held-out items).
    pub users: usize,
    /// Mean hits / k.
    pub precision: f64,
    /// Mean hits / held-out items of the user.
    pub recall: f64,
    /// Mean NDCG with binary gain.
    pub ndcg: f64,
    /// Mean average precision at k.
    pub map: f64,
    /// Distinct items recommended / all items.
    pub coverage: f64,
}

/// Evaluates `model` (trained without the holdout) against `holdout`, users × items.
pub fn evaluate(model: &TrainedModel, holdout: &Csr, k: usize) -> Metrics {
    let mut sums = [0f64; 4];
    let mut users = 0;
    let mut recommended = HashSet::new();
    for user in 0..holdout.rows() {
        let relevant: HashSet<u32> = holdout.row(user).0.iter().copied().collect();
        if relevant.is_empty() {
            continue;
        }
        users += 1;
        let ranking = model.recommend(Some(user), k);
        let (mut hits, mut dcg, mut precision_sum) = (0usize, 0f64, 0f64);
        for (rank, (item, _)) in ranking.iter().enumerate() {
            recommended.insert(*item);
            if relevant.contains(&(*item as u32)) {
                hits += 1;
                dcg += 1.0 / ((rank + 2) as f64).log2();
                precision_sum += hits as f64 / (rank + 1) as f64;
            }
        }
        let ideal: f64 = (0..relevant.len().min(k))
            .map(|rank| 1.0 / ((rank + 2) as f64).log2())
            .sum();
        sums[0] += hits as f64 / k as f64;
        sums[1] += hits as f64 / relevant.len() as f64;
        sums[2] += dcg / ideal;
        sums[3] += precision_sum / relevant.len().min(k) as f64;
    }
    let mean = |sum: f64| if users == 0 { 0.0 } else { sum / users as f64 };
    Metrics {
        k,
        users,
        precision: mean(sums[0]),
        recall: mean(sums[1]),
        ndcg: mean(sums[2]),
        map: mean(sums[3]),
        coverage: if model.item_ids.is_empty() {
            0.0
        } else {
            recommended.len() as f64 / model.item_ids.len() as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::model::Scorer;

    #[test]
    fn metrics_of_a_known_ranking() {
        // one user, items ranked c > b > a > d; held out: c and d
        let model = TrainedModel::new(
            vec!["u".into()],
            ["a", "b", "c", "d"].map(String::from).to_vec(),
            Csr::from_triples(1, std::iter::empty()),
            vec![0.0; 4],
            Scorer::Popularity(vec![2.0, 3.0, 4.0, 1.0]),
        );
        let holdout = Csr::from_triples(1, [(0, 2, 1.0), (0, 3, 1.0)].into_iter());
        let m = evaluate(&model, &holdout, 2);
        assert_eq!(m.users, 1);
        assert_eq!(m.precision, 0.5);
        assert_eq!(m.recall, 0.5);
        let ideal = 1.0 + 1.0 / 3f64.log2();
        assert!((m.ndcg - 1.0 / ideal).abs() < 1e-12);
        assert_eq!(m.map, 0.5);
        assert_eq!(m.coverage, 0.5);
    }
}
