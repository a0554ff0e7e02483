//! Item-to-item models, both scoring a user as the sum of the rows of the items they liked:
//! EASE (Steck 2019: a closed-form linear model with a zero diagonal) and item k-NN (cosine
//! similarity with shrinkage, keeping each item's nearest neighbours). Both start from the
//! item co-occurrence matrix XᵀX of the binary positive interactions; the matrices are dense,
//! items² floats, which `train` checks against the memory limit first.

use crate::error::{Error, Result};
use crate::ml::interactions::Csr;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};

/// XᵀX over the positive interactions of `train` (users × items): co-occurrence counts.
pub fn cooccurrence(train: &Csr, items: usize) -> Mat<f32> {
    let mut g = Mat::<f32>::zeros(items, items);
    for user in 0..train.rows() {
        let (columns, weights) = train.row(user);
        let liked: Vec<usize> = columns
            .iter()
            .zip(weights)
            .filter(|(_, w)| **w > 0.0)
            .map(|(c, _)| *c as usize)
            .collect();
        for &i in &liked {
            for &j in &liked {
                g[(i, j)] += 1.0;
            }
        }
    }
    g
}

/// EASE weights B = I − P·diag(1/diag(P)) with P = (G + λI)⁻¹, row-major items × items.
pub fn ease(mut g: Mat<f32>, lambda: f32) -> Result<Vec<f32>> {
    let n = g.nrows();
    for d in 0..n {
        g[(d, d)] += lambda;
    }
    let p = g
        .llt(Side::Lower)
        .map_err(|e| {
            Error::InvalidParameter(format!(
                "EASE: the Gram matrix is not positive definite ({e:?}); raise lambda"
            ))
        })?
        .inverse();
    let mut weights = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            if i != j {
                weights[i * n + j] = -p[(i, j)] / p[(j, j)];
            }
        }
    }
    Ok(weights)
}

/// Item k-NN weights: cosine similarity `g_ij / (‖x_i‖‖x_j‖ + shrink)`, for each item j only
/// its `neighbors` most similar items i kept; row-major items × items.
pub fn knn(g: &Mat<f32>, neighbors: usize, shrink: f32) -> Vec<f32> {
    let n = g.nrows();
    let norms: Vec<f32> = (0..n).map(|i| g[(i, i)].sqrt()).collect();
    let mut weights = vec![0f32; n * n];
    let mut column: Vec<(usize, f32)> = Vec::with_capacity(n);
    for j in 0..n {
        column.clear();
        column.extend(
            (0..n)
                .filter(|&i| i != j)
                .map(|i| (i, g[(i, j)] / (norms[i] * norms[j] + shrink + 1e-6))),
        );
        let keep = neighbors.min(column.len());
        if keep < column.len() && keep > 0 {
            column.select_nth_unstable_by(keep - 1, |a, b| b.1.total_cmp(&a.1));
        }
        for &(i, similarity) in column.iter().take(keep) {
            if similarity > 0.0 {
                weights[i * n + j] = similarity;
            }
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_item_weights_link_items_liked_together() {
        // items 0 and 1 are always liked together; item 2 alone
        let train = Csr::from_triples(
            3,
            [
                (0, 0, 1.0),
                (0, 1, 1.0),
                (1, 0, 1.0),
                (1, 1, 1.0),
                (2, 2, 1.0),
                (2, 1, -1.0),
            ]
            .into_iter(),
        );
        let g = cooccurrence(&train, 3);
        assert_eq!((g[(0, 1)], g[(1, 1)], g[(1, 2)]), (2.0, 2.0, 0.0));
        let b = ease(g.clone(), 1.0).unwrap();
        assert_eq!(b[0], 0.0, "zero diagonal");
        assert!(b[1] > 0.5 && b[2].abs() < 1e-6, "{b:?}");
        let w = knn(&g, 1, 0.0);
        assert!((w[1] - 1.0).abs() < 1e-3 && w[2] == 0.0, "{w:?}");
    }
}
