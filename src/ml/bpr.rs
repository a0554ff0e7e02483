//! Bayesian personalised ranking (Rendle et al. 2009) with stochastic gradient descent: each
//! step samples a user's positive item and an item the user has not interacted with, and
//! pushes their scores apart. Items carry a bias as an extra factor whose user weight is 1.

use crate::ml::als::Factors;
use crate::ml::interactions::Csr;
use crate::ml::kernels::dot;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::ops::ControlFlow;

/// BPR hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct BprParams {
    /// Latent factors (one more is added for the item bias).
    pub factors: usize,
    /// Passes; each samples as many triples as there are positive pairs.
    pub iterations: usize,
    /// SGD step size.
    pub learning_rate: f32,
    /// L2 regularisation.
    pub regularization: f32,
    /// Seed of the initial factors and the sampling.
    pub seed: u64,
}

/// Trains on the positive pairs of `ratings`; `on_iteration(pass, loss)` gets the mean BPR
/// loss −ln σ(x_uij) of each pass (`Break` ends training early). The factors have `params.factors + 1` columns.
pub fn train(
    ratings: &Csr,
    items: usize,
    params: &BprParams,
    mut on_iteration: impl FnMut(usize, f64) -> ControlFlow<()>,
) -> Factors {
    let k = params.factors + 1;
    let mut rng = StdRng::seed_from_u64(params.seed);
    let scale = 1.0 / (params.factors as f32).sqrt();
    let mut users: Vec<f32> = (0..ratings.rows() * k)
        .map(|i| {
            if i % k == k - 1 {
                1.0
            } else {
                (rng.random::<f32>() - 0.5) * scale
            }
        })
        .collect();
    let mut item_factors: Vec<f32> = (0..items * k)
        .map(|i| {
            if i % k == k - 1 {
                0.0
            } else {
                (rng.random::<f32>() - 0.5) * scale
            }
        })
        .collect();
    let positives: Vec<(u32, u32)> = (0..ratings.rows())
        .flat_map(|u| {
            let (cols, weights) = ratings.row(u);
            cols.iter()
                .zip(weights)
                .filter(|(_, w)| **w > 0.0)
                .map(move |(&i, _)| (u as u32, i))
                .collect::<Vec<_>>()
        })
        .collect();
    if positives.is_empty() || items < 2 {
        return Factors {
            users,
            items: item_factors,
        };
    }
    let (lr, reg) = (params.learning_rate, params.regularization);
    let mut diff = vec![0f32; k];
    for pass in 1..=params.iterations {
        let mut loss = 0f64;
        for _ in 0..positives.len() {
            let (u, i) = positives[rng.random_range(0..positives.len())];
            let seen = ratings.row(u as usize).0;
            let Some(j) = (0..10)
                .map(|_| rng.random_range(0..items as u32))
                .find(|j| seen.binary_search(j).is_err())
            else {
                continue;
            };
            let (u, i, j) = (u as usize * k, i as usize * k, j as usize * k);
            for d in 0..k {
                diff[d] = item_factors[i + d] - item_factors[j + d];
            }
            let x = dot(&users[u..u + k], &diff);
            let z = 1.0 / (1.0 + x.exp());
            loss += f64::from((1.0 + (-x).exp()).ln());
            for d in 0..k {
                let xu = users[u + d];
                if d < k - 1 {
                    users[u + d] += lr * (z * diff[d] - reg * xu);
                }
                item_factors[i + d] += lr * (z * xu - reg * item_factors[i + d]);
                item_factors[j + d] += lr * (-z * xu - reg * item_factors[j + d]);
            }
        }
        if on_iteration(pass, loss / positives.len() as f64).is_break() {
            break;
        }
    }
    Factors {
        users,
        items: item_factors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::fixture::{assert_missing_items_rank_first, two_groups};

    #[test]
    fn ranks_the_items_of_the_users_group_first() {
        let params = BprParams {
            factors: 4,
            iterations: 200,
            learning_rate: 0.05,
            regularization: 0.001,
            seed: 3,
        };
        let mut losses = Vec::new();
        let factors = train(&two_groups(), 10, &params, |_, loss| {
            losses.push(loss);
            ControlFlow::Continue(())
        });
        assert!(losses[199] < losses[0], "{:?}", (losses[0], losses[199]));
        assert_missing_items_rank_first(&factors, 5);
    }
}
