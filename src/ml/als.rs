//! Implicit-feedback ALS (Hu, Koren, Volinsky 2008) with the conjugate-gradient solver of
//! Takács et al. 2011: each half-iteration fixes one side and takes a few CG steps per vector,
//! starting from its previous value. Confidence is `1 + alpha·|weight|`; the preference is 1
//! for a positive weight and 0 for a negative one (negative feedback).
//!
//! The Gram matrix YᵀY is a faer product; the per-vector work is short dot/axpy loops
//! (`ml::kernels`, dispatched once per vector to the CPU's SIMD instruction set), run in
//! parallel over vectors with rayon. The training loss is a by-product of the item half-step
//! (from CG's residual), not a separate pass.

use crate::ml::interactions::Csr;
use crate::ml::kernels::{self, axpy_with, dot_with, symmetric_mat_vec_with};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use pulp::{Simd, WithSimd};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::ops::ControlFlow;

/// ALS hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct AlsParams {
    /// Factors per vector.
    pub factors: usize,
    /// Passes over users and items.
    pub iterations: usize,
    /// L2 regularisation.
    pub regularization: f32,
    /// Confidence scale.
    pub alpha: f32,
    /// CG steps per vector and pass.
    pub cg_steps: usize,
    /// Seed of the initial factors.
    pub seed: u64,
}

/// Learned factors, row-major.
#[derive(Debug, Clone)]
pub struct Factors {
    /// Users × factors.
    pub users: Vec<f32>,
    /// Items × factors.
    pub items: Vec<f32>,
}

/// Trains on `ratings` (users × items, summed weights); `on_iteration(iteration, loss)` runs
/// after every pass, and training ends early when it answers `Break`. Call inside the rayon pool that should do the work.
pub fn train(
    ratings: &Csr,
    items: usize,
    params: &AlsParams,
    mut on_iteration: impl FnMut(usize, f64) -> ControlFlow<()>,
) -> Factors {
    let k = params.factors;
    let mut rng = StdRng::seed_from_u64(params.seed);
    let mut init =
        |n: usize| -> Vec<f32> { (0..n * k).map(|_| rng.random::<f32>() * 0.01).collect() };
    let mut factors = Factors {
        users: init(ratings.rows()),
        items: init(items),
    };
    let by_item = ratings.transpose(items);
    let cells = (ratings.rows() * items).max(1) as f64;
    for iteration in 1..=params.iterations {
        solve_side(ratings, &mut factors.users, &factors.items, params, false);
        let item_terms = solve_side(&by_item, &mut factors.items, &factors.users, params, true);
        let user_norms = f64::from(kernels::dot(&factors.users, &factors.users));
        let loss = (item_terms + f64::from(params.regularization) * user_norms) / cells;
        if on_iteration(iteration, loss).is_break() {
            break;
        }
    }
    factors
}

/// Confidence and preference of a summed weight.
pub(crate) fn confidence(weight: f32, alpha: f32) -> (f32, f32) {
    (
        1.0 + alpha * weight.abs(),
        if weight > 0.0 { 1.0 } else { 0.0 },
    )
}

/// YᵀY for `y` (n × k, row-major), as a k × k row-major matrix.
pub(crate) fn gram(y: &[f32], k: usize) -> Vec<f32> {
    let n = y.len() / k;
    let y = MatRef::from_row_major_slice(y, n, k);
    let mut g = Mat::<f32>::zeros(k, k);
    matmul(
        g.as_mut(),
        Accum::Replace,
        y.transpose(),
        y,
        1.0,
        Par::rayon(0),
    );
    (0..k * k).map(|i| g[(i / k, i % k)]).collect()
}

/// Updates every row of `x` against the fixed `y`, with `ratings` rows matching `x` rows. With
/// `objective`, returns the rows' part of the training loss at the new `x` (everything but
/// `y`'s regularisation), else 0.
fn solve_side(ratings: &Csr, x: &mut [f32], y: &[f32], params: &AlsParams, objective: bool) -> f64 {
    let k = params.factors;
    let mut yty = gram(y, k);
    for d in 0..k {
        yty[d * k + d] += params.regularization;
    }
    x.par_chunks_mut(k)
        .enumerate()
        .map_init(
            || vec![0f32; 4 * k],
            |scratch, (row, xu)| {
                let (items, weights) = ratings.row(row);
                if items.is_empty() {
                    xu.fill(0.0);
                    return 0.0;
                }
                kernels::dispatch(ConjugateGradient {
                    x: xu,
                    scratch,
                    yty: &yty,
                    y,
                    items,
                    weights,
                    params,
                    objective,
                })
            },
        )
        .sum()
}

/// A few CG steps on A x = b, with A = YᵀC_uY + λI and b = YᵀC_u p_u, starting from `x`.
struct ConjugateGradient<'a> {
    x: &'a mut [f32],
    /// Four vectors of x's length: r, p, Ap and b.
    scratch: &'a mut [f32],
    yty: &'a [f32],
    y: &'a [f32],
    items: &'a [u32],
    weights: &'a [f32],
    params: &'a AlsParams,
    /// Whether to return this row's loss term.
    objective: bool,
}

impl WithSimd for ConjugateGradient<'_> {
    type Output = f64;

    /// Returns, with `objective`, f(x) = xᵀAx − 2bᵀx + Σ c·p, this row's part of the loss,
    /// computed from CG's residual r = b − Ax as −xᵀr − bᵀx + Σ c·p. Else 0.
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let Self {
            x,
            scratch,
            yty,
            y,
            items,
            weights,
            params,
            objective,
        } = self;
        let k = x.len();
        let item = |i: u32| &y[i as usize * k..(i as usize + 1) * k];
        let (r, rest) = scratch.split_at_mut(k);
        let (p, rest) = rest.split_at_mut(k);
        let (ap, b) = rest.split_at_mut(k);
        // r = b − Ax = Σ c·p·y_i − (λI + YᵀY) x − Σ (c − 1)(y_i·x) y_i
        symmetric_mat_vec_with(simd, yty, x, r);
        r.iter_mut().for_each(|v| *v = -*v);
        b.fill(0.0);
        let mut constant = 0f64;
        for (&i, &w) in items.iter().zip(weights) {
            let (c, pref) = confidence(w, params.alpha);
            let yi = item(i);
            let scale = c * pref - (c - 1.0) * dot_with(simd, yi, x);
            axpy_with(simd, scale, yi, r);
            if objective && pref > 0.0 {
                axpy_with(simd, c * pref, yi, b);
                constant += f64::from(c * pref);
            }
        }
        p.copy_from_slice(r);
        let mut rs_old = dot_with(simd, r, r);
        for _ in 0..params.cg_steps {
            if rs_old < 1e-20 {
                break;
            }
            symmetric_mat_vec_with(simd, yty, p, ap);
            for (&i, &w) in items.iter().zip(weights) {
                let (c, _) = confidence(w, params.alpha);
                let yi = item(i);
                axpy_with(simd, (c - 1.0) * dot_with(simd, yi, p), yi, ap);
            }
            let alpha = rs_old / dot_with(simd, p, ap);
            axpy_with(simd, alpha, p, x);
            axpy_with(simd, -alpha, ap, r);
            let rs_new = dot_with(simd, r, r);
            let beta = rs_new / rs_old;
            p.iter_mut()
                .zip(r.iter())
                .for_each(|(pv, rv)| *pv = rv + beta * *pv);
            rs_old = rs_new;
        }
        if !objective {
            return 0.0;
        }
        constant - f64::from(dot_with(simd, x, r)) - f64::from(dot_with(simd, b, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::fixture::{assert_missing_items_rank_first, two_groups};

    #[test]
    fn learns_two_groups_and_the_loss_falls() {
        let params = AlsParams {
            factors: 2,
            iterations: 10,
            regularization: 0.01,
            alpha: 10.0,
            cg_steps: 3,
            seed: 7,
        };
        let mut losses = Vec::new();
        let factors = train(&two_groups(), 10, &params, |_, loss| {
            losses.push(loss);
            ControlFlow::Continue(())
        });
        assert_eq!(losses.len(), 10);
        assert!(losses[9] < losses[0], "{losses:?}");
        assert_missing_items_rank_first(&factors, 2);
    }

    #[test]
    fn break_ends_training_after_that_iteration() {
        let params = AlsParams {
            factors: 4,
            iterations: 10,
            regularization: 0.01,
            alpha: 10.0,
            cg_steps: 3,
            seed: 7,
        };
        let mut seen = Vec::new();
        train(&two_groups(), 10, &params, |iteration, _| {
            seen.push(iteration);
            if iteration == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(seen, [1, 2, 3]);
    }

    /// The loss taken from CG's residual equals Σ over all cells of c·(p − x·y)² plus λ times
    /// the squared norms, computed directly.
    #[test]
    fn reported_loss_is_the_objective() {
        let params = AlsParams {
            factors: 3,
            iterations: 4,
            regularization: 0.5,
            alpha: 2.0,
            cg_steps: 3,
            seed: 11,
        };
        let ratings = two_groups();
        let mut reported = 0.0;
        let factors = train(&ratings, 10, &params, |_, loss| {
            reported = loss;
            ControlFlow::Continue(())
        });
        let k = params.factors;
        let mut total = 0f64;
        for u in 0..20 {
            let (items, weights) = ratings.row(u);
            for i in 0..10 {
                let (c, p) = match items.iter().position(|&j| j as usize == i) {
                    Some(at) => confidence(weights[at], params.alpha),
                    None => (1.0, 0.0),
                };
                let score = kernels::dot(
                    &factors.users[u * k..(u + 1) * k],
                    &factors.items[i * k..(i + 1) * k],
                );
                total += f64::from(c * (p - score) * (p - score));
            }
        }
        let norms = kernels::dot(&factors.users, &factors.users)
            + kernels::dot(&factors.items, &factors.items);
        let direct = (total + f64::from(params.regularization * norms)) / 200.0;
        assert!(
            (reported - direct).abs() < 1e-4 * direct,
            "{reported} vs {direct}"
        );
    }
}
