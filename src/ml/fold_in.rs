//! Fold-in: the vector of a user (or item) that a model was not trained with, or whose
//! interactions changed since, computed from their current interactions against the other
//! side's fixed factors — the exact least-squares step of implicit-feedback ALS (as implicit's
//! `recalculate_user`): x = (YᵀY + λI + Σ (c−1)·y yᵀ)⁻¹ Σ c·p·y over the interacted rows y,
//! with confidence c = 1 + alpha·|w| and preference p = 1 for a positive weight, else 0.

use crate::ml::als;
use faer::linalg::matmul::matmul;
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatRef, Par, Side};

/// The fixed side of a fold-in: its Gram matrix YᵀY (computed once) and the step's
/// hyper-parameters.
#[derive(Debug, Clone)]
pub struct FoldIn {
    factors: usize,
    /// YᵀY + λI, row-major k × k.
    base: Vec<f32>,
    alpha: f32,
}

impl FoldIn {
    /// The fold-in against `fixed` (rows × `factors`, row-major) with regularisation λ and
    /// confidence scale `alpha`.
    pub fn new(fixed: &[f32], factors: usize, regularization: f32, alpha: f32) -> FoldIn {
        let mut base = als::gram(fixed, factors);
        for d in 0..factors {
            base[d * factors + d] += regularization;
        }
        FoldIn {
            factors,
            base,
            alpha,
        }
    }

    /// The vector for interactions with the given fixed-side rows and summed weights; zero
    /// when there are none (as ALS's own step gives a row without interactions).
    pub fn solve<'a>(&self, interactions: impl IntoIterator<Item = (&'a [f32], f32)>) -> Vec<f32> {
        let k = self.factors;
        let rows: Vec<(&[f32], f32)> = interactions.into_iter().collect();
        let mut b = Mat::<f64>::zeros(k, 1);
        for &(y, weight) in &rows {
            let (c, p) = als::confidence(weight, self.alpha);
            for (r, &yr) in y.iter().enumerate().take(k) {
                b[(r, 0)] += f64::from(c) * f64::from(p) * f64::from(yr);
            }
        }
        match self.solved(&rows, &b) {
            Some(x) => (0..k).map(|r| x[(r, 0)] as f32).collect(),
            None => vec![0.0; k],
        }
    }

    /// Why `target` (a fixed-side row) scores what it does against the vector [`FoldIn::solve`]
    /// gives for `interactions`: each interaction's share of the score, in order — as
    /// implicit's `explain`. With x = A⁻¹ Σ c·p·y, the score yₜᵀx is Σ c·p·(yₜᵀA⁻¹y): the
    /// shares sum to the score exactly. Empty without interactions.
    pub fn explain(&self, interactions: &[(&[f32], f32)], target: &[f32]) -> Vec<f32> {
        let k = self.factors;
        let t = Mat::<f64>::from_fn(k, 1, |r, _| target.get(r).map_or(0.0, |&v| f64::from(v)));
        let Some(z) = self.solved(interactions, &t) else {
            return vec![0.0; interactions.len()];
        };
        (interactions.iter())
            .map(|&(y, weight)| {
                let (c, p) = als::confidence(weight, self.alpha);
                let along: f64 = (y.iter().take(k).enumerate())
                    .map(|(r, &v)| z[(r, 0)] * f64::from(v))
                    .sum();
                (f64::from(c) * f64::from(p) * along) as f32
            })
            .collect()
    }

    /// A⁻¹·rhs for A = YᵀY + λI + Σ (c−1)·y yᵀ over `interactions`; `None` without
    /// interactions, or when A is singular (no regularisation).
    fn solved(&self, interactions: &[(&[f32], f32)], rhs: &Mat<f64>) -> Option<Mat<f64>> {
        let k = self.factors;
        // The rows scaled by √(c−1), so that A = YᵀY + λI + SᵀS is one matrix product.
        let mut scaled = Vec::new();
        for &(y, weight) in interactions {
            let (c, _) = als::confidence(weight, self.alpha);
            let root = (f64::from(c) - 1.0).max(0.0).sqrt();
            scaled.extend(y.iter().take(k).map(|&yr| root * f64::from(yr)));
        }
        let rows = scaled.len() / k.max(1);
        if rows == 0 {
            return None;
        }
        let s = MatRef::from_row_major_slice(&scaled, rows, k);
        let mut a = Mat::<f64>::from_fn(k, k, |r, c| f64::from(self.base[r * k + c]));
        matmul(a.as_mut(), Accum::Add, s.transpose(), s, 1.0, Par::Seq);
        // A is symmetric positive definite for λ > 0; without regularisation it may be
        // singular, and then no vector is better than none.
        a.llt(Side::Lower).ok().map(|llt| llt.solve(rhs))
    }

    /// The ALS objective of `x` for those interactions, up to a constant: xᵀAx − 2bᵀx
    /// (tests use it to check that the solution is the minimum).
    #[cfg(test)]
    fn objective(&self, x: &[f32], interactions: &[(&[f32], f32)]) -> f64 {
        use crate::ml::kernels::dot;
        let k = self.factors;
        let mut value = 0f64;
        for r in 0..k {
            for c in 0..k {
                value += f64::from(x[r] * self.base[r * k + c] * x[c]);
            }
        }
        for (y, weight) in interactions {
            let (c, p) = als::confidence(*weight, self.alpha);
            let score = f64::from(dot(x, y));
            value += f64::from(c - 1.0) * score * score - 2.0 * f64::from(c * p) * score;
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::als::{AlsParams, train};
    use crate::ml::fixture::two_groups;
    use std::ops::ControlFlow;

    fn items() -> Vec<f32> {
        (0..30)
            .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.4)
            .collect()
    }

    /// The solution is the minimum of the objective: every small step away from it is worse.
    #[test]
    fn the_folded_in_vector_minimises_the_als_objective() {
        let y = items(); // 10 items × 3 factors
        let fold = FoldIn::new(&y, 3, 0.1, 5.0);
        let row = |i: usize| &y[i * 3..i * 3 + 3];
        let interactions = [(row(1), 2.0), (row(4), 1.0), (row(7), -1.0)];
        let x = fold.solve(interactions);
        let best = fold.objective(&x, &interactions);
        for d in 0..3 {
            for step in [-1e-2f32, 1e-2] {
                let mut moved = x.clone();
                moved[d] += step;
                assert!(fold.objective(&moved, &interactions) > best, "{d} {step}");
            }
        }
        assert_eq!(fold.solve([]), vec![0.0; 3]);
    }

    /// Each interaction's share of a score sums to the score of the folded-in vector; the
    /// negative one (preference 0) has no share.
    #[test]
    fn explained_shares_sum_to_the_score() {
        let y = items();
        let fold = FoldIn::new(&y, 3, 0.1, 5.0);
        let row = |i: usize| &y[i * 3..i * 3 + 3];
        let interactions = [(row(1), 2.0), (row(4), 1.0), (row(7), -1.0)];
        let x = fold.solve(interactions);
        for target in 0..10 {
            let shares = fold.explain(&interactions, row(target));
            let score = crate::ml::kernels::dot(&x, row(target));
            let sum: f32 = shares.iter().sum();
            assert!(
                (sum - score).abs() < 1e-5,
                "item {target}: {sum} vs {score}"
            );
            assert_eq!(shares[2], 0.0);
        }
        assert!(fold.explain(&[], row(0)).is_empty());
    }

    /// Folding a trained user back in against the final item factors gives (nearly) the
    /// vector training gave it: training's last user step is the same least-squares step,
    /// solved by conjugate gradient.
    #[test]
    fn folding_in_a_trained_user_reproduces_the_training_user_step() {
        let params = AlsParams {
            factors: 4,
            iterations: 30,
            regularization: 0.1,
            alpha: 4.0,
            cg_steps: 4,
            seed: 3,
        };
        let ratings = two_groups();
        let factors = train(&ratings, 10, &params, |_, _| ControlFlow::Continue(()));
        let fold = FoldIn::new(&factors.items, 4, params.regularization, params.alpha);
        for u in 0..20 {
            let (items, weights) = ratings.row(u);
            let x = fold.solve(
                items
                    .iter()
                    .zip(weights)
                    .map(|(&i, &w)| (&factors.items[i as usize * 4..i as usize * 4 + 4], w)),
            );
            let trained = &factors.users[u * 4..u * 4 + 4];
            let gap: f32 = x.iter().zip(trained).map(|(a, b)| (a - b).abs()).sum();
            let size: f32 = trained.iter().map(|v| v.abs()).sum();
            assert!(gap < 0.02 * size, "user {u}: {x:?} vs {trained:?}");
        }
    }

    /// The same for an item against the final user factors: training's last step is the item
    /// step, so a new item's vector is what training would have given it.
    #[test]
    fn folding_in_a_trained_item_reproduces_the_training_item_step() {
        let params = AlsParams {
            factors: 4,
            iterations: 30,
            regularization: 0.1,
            alpha: 4.0,
            cg_steps: 4,
            seed: 3,
        };
        let ratings = two_groups();
        let factors = train(&ratings, 10, &params, |_, _| ControlFlow::Continue(()));
        let fold = FoldIn::new(&factors.users, 4, params.regularization, params.alpha);
        let by_item = ratings.transpose(10);
        for i in 0..10 {
            let (users, weights) = by_item.row(i);
            let y = fold.solve(
                users
                    .iter()
                    .zip(weights)
                    .map(|(&u, &w)| (&factors.users[u as usize * 4..u as usize * 4 + 4], w)),
            );
            let trained = &factors.items[i * 4..i * 4 + 4];
            let gap: f32 = y.iter().zip(trained).map(|(a, b)| (a - b).abs()).sum();
            let size: f32 = trained.iter().map(|v| v.abs()).sum();
            assert!(gap < 0.02 * size, "item {i}: {y:?} vs {trained:?}");
        }
    }
}
