//! Vector kernels for training and scoring, compiled for the best SIMD instruction set the CPU
//! offers at run time (AVX2 + FMA on x86-64, NEON on aarch64, scalar otherwise) through `pulp`,
//! the SIMD layer faer is built on. The crate itself is compiled for baseline x86-64, which has
//! neither AVX2 nor FMA, so plain loops would use four-lane SSE2 without fused multiply-add.
//!
//! The `*_with` functions take the instruction set as a parameter and are meant to be inlined
//! into a larger kernel that is dispatched once (see `ml::als`); the plain functions dispatch
//! per call.

use pulp::{Arch, Simd, WithSimd};

/// Runs `op` with the best SIMD instruction set of this CPU.
pub fn dispatch<Op: WithSimd>(op: Op) -> Op::Output {
    Arch::new().dispatch(op)
}

/// The dot product of two equally long vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    struct Dot<'a>(&'a [f32], &'a [f32]);
    impl WithSimd for Dot<'_> {
        type Output = f32;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> f32 {
            dot_with(simd, self.0, self.1)
        }
    }
    dispatch(Dot(a, b))
}

/// The squared Euclidean distance between two equally long vectors.
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    struct L2<'a>(&'a [f32], &'a [f32]);
    impl WithSimd for L2<'_> {
        type Output = f32;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> f32 {
            l2_squared_with(simd, self.0, self.1)
        }
    }
    dispatch(L2(a, b))
}

/// `out[i] = x · rows[i]` for every row of the row-major `rows` (rows of `x.len()` values).
pub fn dot_rows(x: &[f32], rows: &[f32], out: &mut Vec<f32>) {
    struct DotRows<'a>(&'a [f32], &'a [f32], &'a mut Vec<f32>);
    impl WithSimd for DotRows<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            let DotRows(x, rows, out) = self;
            out.clear();
            if x.is_empty() {
                return;
            }
            out.reserve(rows.len() / x.len().max(1));
            // A loop, not an iterator adapter: the closure would not be inlined into this
            // function, and the SIMD intrinsics would become out-of-line calls.
            for row in rows.chunks_exact(x.len()) {
                out.push(dot_with(simd, x, row));
            }
        }
    }
    dispatch(DotRows(x, rows, out))
}

/// The dot product of two equally long vectors, with instruction set `simd`. Two running sums
/// hide the latency of the fused multiply-add.
#[inline(always)]
pub fn dot_with<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let (a_head, a_tail) = S::as_simd_f32s(a);
    let (b_head, b_tail) = S::as_simd_f32s(b);
    let (mut even, mut odd) = (simd.splat_f32s(0.0), simd.splat_f32s(0.0));
    let (a_pairs, b_pairs) = (a_head.chunks_exact(2), b_head.chunks_exact(2));
    for (x, y) in a_pairs.remainder().iter().zip(b_pairs.remainder()) {
        even = simd.mul_add_e_f32s(*x, *y, even);
    }
    for (x, y) in a_pairs.zip(b_pairs) {
        even = simd.mul_add_e_f32s(x[0], y[0], even);
        odd = simd.mul_add_e_f32s(x[1], y[1], odd);
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    simd.reduce_sum_f32s(simd.add_f32s(even, odd)) + tail
}

/// The squared Euclidean distance between two equally long vectors, with instruction set
/// `simd`. Two running sums hide the latency of the fused multiply-add.
#[inline(always)]
pub fn l2_squared_with<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let (a_head, a_tail) = S::as_simd_f32s(a);
    let (b_head, b_tail) = S::as_simd_f32s(b);
    let b_head = &b_head[..a_head.len()];
    let b_tail = &b_tail[..a_tail.len()];
    let (mut even, mut odd) = (simd.splat_f32s(0.0), simd.splat_f32s(0.0));
    let pairs = a_head.len() / 2;
    for i in 0..pairs {
        let d = simd.sub_f32s(a_head[2 * i], b_head[2 * i]);
        even = simd.mul_add_e_f32s(d, d, even);
        let d = simd.sub_f32s(a_head[2 * i + 1], b_head[2 * i + 1]);
        odd = simd.mul_add_e_f32s(d, d, odd);
    }
    if a_head.len() % 2 == 1 {
        let d = simd.sub_f32s(a_head[2 * pairs], b_head[2 * pairs]);
        even = simd.mul_add_e_f32s(d, d, even);
    }
    let mut tail = 0.0;
    for i in 0..a_tail.len() {
        let d = a_tail[i] - b_tail[i];
        tail += d * d;
    }
    simd.reduce_sum_f32s(simd.add_f32s(even, odd)) + tail
}

/// `y += a · x`, with instruction set `simd`.
#[inline(always)]
pub fn axpy_with<S: Simd>(simd: S, a: f32, x: &[f32], y: &mut [f32]) {
    let (x_head, x_tail) = S::as_simd_f32s(x);
    let (y_head, y_tail) = S::as_mut_simd_f32s(y);
    let scale = simd.splat_f32s(a);
    for (yv, xv) in y_head.iter_mut().zip(x_head) {
        *yv = simd.mul_add_e_f32s(scale, *xv, *yv);
    }
    for (yv, xv) in y_tail.iter_mut().zip(x_tail) {
        *yv += a * xv;
    }
}

/// `out = m · v` for a symmetric row-major `m` of side `v.len()`, with instruction set `simd`.
/// Accumulates rows scaled by `v`'s entries in four registers at a time: no horizontal sums,
/// four independent chains of fused multiply-adds.
#[inline(always)]
pub fn symmetric_mat_vec_with<S: Simd>(simd: S, m: &[f32], v: &[f32], out: &mut [f32]) {
    let k = v.len();
    let (out_head, out_tail) = S::as_mut_simd_f32s(out);
    let (groups, rest) = out_head.as_chunks_mut::<4>();
    for (g, group) in groups.iter_mut().enumerate() {
        let mut sums = [simd.splat_f32s(0.0); 4];
        for (row, &scale) in m.chunks_exact(k).zip(v) {
            let (row_head, _) = S::as_simd_f32s(row);
            let scale = simd.splat_f32s(scale);
            for (sum, x) in sums.iter_mut().zip(&row_head[4 * g..4 * g + 4]) {
                *sum = simd.mul_add_e_f32s(scale, *x, *sum);
            }
        }
        *group = sums;
    }
    let done = 4 * groups.len();
    for (r, o) in rest.iter_mut().enumerate() {
        let mut sum = simd.splat_f32s(0.0);
        for (row, &scale) in m.chunks_exact(k).zip(v) {
            let (row_head, _) = S::as_simd_f32s(row);
            sum = simd.mul_add_e_f32s(simd.splat_f32s(scale), row_head[done + r], sum);
        }
        *o = sum;
    }
    let first = k - out_tail.len();
    for (c, o) in out_tail.iter_mut().enumerate() {
        *o = m
            .chunks_exact(k)
            .zip(v)
            .map(|(row, scale)| row[first + c] * scale)
            .sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn kernels_match_plain_loops_at_every_length() {
        for len in [0, 1, 3, 7, 8, 9, 16, 17, 31, 64, 65, 100] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            assert!(
                (dot(&a, &b) - naive_dot(&a, &b)).abs() < 1e-4,
                "dot at {len}"
            );

            struct Axpy<'a>(&'a [f32], &'a mut [f32]);
            impl WithSimd for Axpy<'_> {
                type Output = ();
                fn with_simd<S: Simd>(self, simd: S) {
                    axpy_with(simd, 0.5, self.0, self.1)
                }
            }
            let mut y = b.clone();
            dispatch(Axpy(&a, &mut y));
            for i in 0..len {
                assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6, "axpy at {len}");
            }
        }
        for side in [1, 5, 8, 13, 40, 64, 70] {
            let m: Vec<f32> = (0..side * side)
                .map(|c| ((c / side) * (c % side)) as f32 * 0.01 + 1.0)
                .collect();
            let v: Vec<f32> = (0..side).map(|i| (i as f32 * 0.3).sin()).collect();
            struct MatVec<'a>(&'a [f32], &'a [f32], &'a mut [f32]);
            impl WithSimd for MatVec<'_> {
                type Output = ();
                fn with_simd<S: Simd>(self, simd: S) {
                    symmetric_mat_vec_with(simd, self.0, self.1, self.2)
                }
            }
            let mut out = vec![0f32; side];
            dispatch(MatVec(&m, &v, &mut out));
            for (row, o) in m.chunks_exact(side).zip(&out) {
                assert!((o - naive_dot(row, &v)).abs() < 1e-3, "mat_vec at {side}");
            }
        }
        let rows: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut out = Vec::new();
        dot_rows(&[1.0, 0.0, 2.0], &rows, &mut out);
        assert_eq!(out, vec![4.0, 13.0, 22.0, 31.0]);
    }
}
