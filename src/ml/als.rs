//! Implicit-feedback ALS (Hu, Koren, Volinsky 2008) with the conjugate-gradient solver of
//! Takács et al. 2011: each half-iteration fixes one side and takes a few CG steps per vector,
//! starting from its previous value. Confidence is `1 + alpha·|weight|`; the preference is 1
//! for a positive weight and 0 for a negative one (negative feedback).
//!
//! The Gram matrix YᵀY is a faer product; the per-vector work is short dot/axpy loops on
//! slices, run in parallel over vectors with rayon.

use crate::ml::interactions::Csr;
use crate::ml::model::dot;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

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
/// after every pass. Call inside the rayon pool that should do the work.
pub fn train(
    ratings: &Csr,
    items: usize,
    params: &AlsParams,
    mut on_iteration: impl FnMut(usize, f64),
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
    for iteration in 1..=params.iterations {
        solve_side(ratings, &mut factors.users, &factors.items, params);
        solve_side(&by_item, &mut factors.items, &factors.users, params);
        on_iteration(iteration, loss(ratings, &factors, params));
    }
    factors
}

/// Confidence and preference of a summed weight.
fn confidence(weight: f32, alpha: f32) -> (f32, f32) {
    (
        1.0 + alpha * weight.abs(),
        if weight > 0.0 { 1.0 } else { 0.0 },
    )
}

/// YᵀY for `y` (n × k, row-major), as a k × k row-major matrix.
fn gram(y: &[f32], k: usize) -> Vec<f32> {
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

/// Updates every row of `x` against the fixed `y`, with `ratings` rows matching `x` rows.
fn solve_side(ratings: &Csr, x: &mut [f32], y: &[f32], params: &AlsParams) {
    let k = params.factors;
    let mut yty = gram(y, k);
    for d in 0..k {
        yty[d * k + d] += params.regularization;
    }
    x.par_chunks_mut(k).enumerate().for_each_init(
        || vec![0f32; 3 * k],
        |scratch, (row, xu)| {
            let (items, weights) = ratings.row(row);
            if items.is_empty() {
                xu.fill(0.0);
                return;
            }
            let (r, rest) = scratch.split_at_mut(k);
            let (p, ap) = rest.split_at_mut(k);
            conjugate_gradient(xu, r, p, ap, &yty, y, items, weights, params);
        },
    );
}

/// A few CG steps on (YᵀC_uY + λI) x = YᵀC_u p_u, starting from `x`.
#[allow(clippy::too_many_arguments)] // the scratch vectors are passed in to avoid allocating per user
fn conjugate_gradient(
    x: &mut [f32],
    r: &mut [f32],
    p: &mut [f32],
    ap: &mut [f32],
    yty: &[f32],
    y: &[f32],
    items: &[u32],
    weights: &[f32],
    params: &AlsParams,
) {
    let k = x.len();
    let item = |i: u32| &y[i as usize * k..(i as usize + 1) * k];
    // r = YᵀC p − (YᵀCY + λI) x
    symmetric_product(yty, x, r);
    r.iter_mut().for_each(|v| *v = -*v);
    for (&i, &w) in items.iter().zip(weights) {
        let (c, pref) = confidence(w, params.alpha);
        let yi = item(i);
        let scale = c * pref - (c - 1.0) * dot(yi, x);
        axpy(scale, yi, r);
    }
    p.copy_from_slice(r);
    let mut rs_old = dot(r, r);
    for _ in 0..params.cg_steps {
        if rs_old < 1e-20 {
            break;
        }
        symmetric_product(yty, p, ap);
        for (&i, &w) in items.iter().zip(weights) {
            let (c, _) = confidence(w, params.alpha);
            let yi = item(i);
            axpy((c - 1.0) * dot(yi, p), yi, ap);
        }
        let alpha = rs_old / dot(p, ap);
        axpy(alpha, p, x);
        axpy(-alpha, ap, r);
        let rs_new = dot(r, r);
        let beta = rs_new / rs_old;
        p.iter_mut()
            .zip(r.iter())
            .for_each(|(pv, rv)| *pv = rv + beta * *pv);
        rs_old = rs_new;
    }
}

/// out = a · v for a k × k row-major `a`.
fn symmetric_product(a: &[f32], v: &[f32], out: &mut [f32]) {
    let k = v.len();
    for (row, o) in out.iter_mut().enumerate() {
        *o = dot(&a[row * k..(row + 1) * k], v);
    }
}

/// y += a · x.
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(yv, xv)| *yv += a * xv);
}

/// The weighted squared error plus regularisation, per matrix cell.
fn loss(ratings: &Csr, factors: &Factors, params: &AlsParams) -> f64 {
    let k = params.factors;
    let items = factors.items.len() / k;
    let yty = gram(&factors.items, k);
    let total: f64 = factors
        .users
        .par_chunks(k)
        .enumerate()
        .map_init(
            || vec![0f32; k],
            |tmp, (u, xu)| {
                symmetric_product(&yty, xu, tmp);
                let mut user = f64::from(dot(xu, tmp));
                let (cols, weights) = ratings.row(u);
                for (&i, &w) in cols.iter().zip(weights) {
                    let (c, pref) = confidence(w, params.alpha);
                    let score = dot(xu, &factors.items[i as usize * k..(i as usize + 1) * k]);
                    user +=
                        f64::from((c - 1.0) * score * score - 2.0 * c * pref * score + c * pref);
                }
                user
            },
        )
        .sum();
    let norms =
        f64::from(dot(&factors.users, &factors.users) + dot(&factors.items, &factors.items));
    let cells = (ratings.rows() * items).max(1) as f64;
    (total + f64::from(params.regularization) * norms) / cells
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
        let factors = train(&two_groups(), 10, &params, |_, loss| losses.push(loss));
        assert_eq!(losses.len(), 10);
        assert!(losses[9] < losses[0], "{losses:?}");
        assert_missing_items_rank_first(&factors, 2);
    }
}
