//! 1×1 convolutions: matrix products on the NHWC tensor itself (`[N·H·W, C]`), written into
//! buffers that are not zeroed first ([`output_buffer`]).

use rayon::prelude::*;

use super::common::{Epilogue, output_buffer};
use super::gemm::{View, matmul, matmul_parallel};
use super::norm::bias_act_rows;

/// Output floats per block of [`pointwise_epilogue`]: the block stays in L2 for the epilogue.
const EPILOGUE_BLOCK_FLOATS: usize = 1 << 18;

/// `[rows, C_in]` rows with `[C_out, C_in]` filters: `[rows, C_out]`.
pub fn pointwise(x: &[f32], w: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let rows = x.len().checked_div(c_in).unwrap_or(0);
    output_buffer(rows * c_out, |out| {
        let lhs = View {
            data: x,
            row_stride: c_in,
            col_stride: 1,
        };
        // Element (ci, co) of the transposed filters.
        let rhs = View {
            data: w,
            row_stride: 1,
            col_stride: c_in,
        };
        matmul_parallel(rows, c_out, c_in, out, lhs, rhs);
    })
}

/// [`pointwise`], then `act(y + bias [+ residual])` on each block of rows while it is still in
/// cache (inference: a folded BatchNorm's shift, Lite0's skip, ReLU6), instead of another pass
/// over the whole output. Block boundaries depend only on the shapes.
pub fn pointwise_epilogue(
    x: &[f32],
    w: &[f32],
    c_in: usize,
    epilogue: Epilogue<'_>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let c_out = epilogue.bias.len();
    let rows = x.len().checked_div(c_in).unwrap_or(0);
    if c_out == 0 || rows == 0 {
        return Vec::new();
    }
    // At most the cache's worth, and at least 16 blocks where there are rows enough, so that
    // the threads share small layers too.
    let block = rows
        .div_ceil(16)
        .clamp(16, (EPILOGUE_BLOCK_FLOATS / c_out).max(16));
    output_buffer(rows * c_out, |out| {
        out.par_chunks_mut(block * c_out)
            .enumerate()
            .for_each(|(b, dst)| {
                let (r0, n) = (b * block, dst.len() / c_out);
                let residual = residual.map(|r| &r[r0 * c_out..][..dst.len()]);
                let src = &x[r0 * c_in..][..n * c_in];
                pointwise_rows(dst, src, w, c_in, epilogue, residual);
            });
    })
}

/// On this thread: `dst = act(src · wᵀ + bias [+ residual])` for the `[rows, C_in]` rows of
/// `src`, with `w` `[C_out, C_in]` and `dst` `[rows, C_out]`.
pub(super) fn pointwise_rows(
    dst: &mut [f32],
    src: &[f32],
    w: &[f32],
    c_in: usize,
    epilogue: Epilogue<'_>,
    residual: Option<&[f32]>,
) {
    let c_out = epilogue.bias.len();
    // Element (ci, co) of the transposed weights.
    let rhs = View {
        data: w,
        row_stride: 1,
        col_stride: c_in,
    };
    let lhs = View {
        data: src,
        row_stride: c_in,
        col_stride: 1,
    };
    matmul(src.len() / c_in, c_out, c_in, dst, false, lhs, rhs);
    bias_act_rows(dst, epilogue.bias, residual, epilogue.act);
}

/// Gradient of [`pointwise`] with respect to its input, from the output gradient `grad`
/// (`[rows, C_out]`): `grad · w`.
pub fn pointwise_input_grad(grad: &[f32], w: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let rows = grad.len().checked_div(c_out).unwrap_or(0);
    output_buffer(rows * c_in, |out| {
        let lhs = View {
            data: grad,
            row_stride: c_out,
            col_stride: 1,
        };
        let rhs = View {
            data: w,
            row_stride: c_in,
            col_stride: 1,
        };
        matmul_parallel(rows, c_in, c_out, out, lhs, rhs);
    })
}

/// Gradient of [`pointwise`] with respect to its `[C_out, C_in]` filters: `gradᵀ · x`.
pub fn pointwise_weight_grad(x: &[f32], grad: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let rows = x.len().checked_div(c_in).unwrap_or(0);
    output_buffer(c_out * c_in, |out| {
        // Element (co, r) of the transposed output gradient.
        let lhs = View {
            data: grad,
            row_stride: 1,
            col_stride: c_out,
        };
        let rhs = View {
            data: x,
            row_stride: c_in,
            col_stride: 1,
        };
        matmul_parallel(c_out, c_in, rows, out, lhs, rhs);
    })
}

#[cfg(test)]
mod tests {
    use super::super::Act;
    use super::super::dense::tests::{dot, values};
    use super::*;

    /// The three products against plain loops, with sizes off every SIMD width, and the
    /// adjoint identity `<pointwise(x), g> = <x, input_grad(g)> = <w, weight_grad(x, g)>`.
    #[test]
    fn pointwise_products_match_loops_and_are_adjoint() {
        for (rows, c_in, c_out) in [(37, 19, 21), (5, 1, 3), (130, 64, 8), (0, 4, 4)] {
            let x = values(rows * c_in, 1);
            let w = values(c_out * c_in, 2);
            let g = values(rows * c_out, 3);
            let y = pointwise(&x, &w, c_in, c_out);
            assert_eq!(y.len(), rows * c_out);
            for r in 0..rows {
                for co in 0..c_out {
                    let expect: f32 = (0..c_in)
                        .map(|ci| x[r * c_in + ci] * w[co * c_in + ci])
                        .sum();
                    assert!((y[r * c_out + co] - expect).abs() < 1e-4, "({r}, {co})");
                }
            }
            let gx = pointwise_input_grad(&g, &w, c_in, c_out);
            let gw = pointwise_weight_grad(&x, &g, c_in, c_out);
            assert_eq!((gx.len(), gw.len()), (rows * c_in, c_out * c_in));
            let forward = dot(&y, &g);
            let tolerance = 1e-3 * (1.0 + forward.abs());
            assert!((dot(&x, &gx) - forward).abs() < tolerance);
            assert!((dot(&w, &gw) - forward).abs() < tolerance);
        }
    }

    /// The epilogue variant is the product, then bias, residual and activation, over shapes
    /// of one block and of many.
    #[test]
    fn pointwise_epilogue_matches_product_then_bias_act() {
        for (rows, c_in, c_out) in [(37, 19, 21), (1000, 8, 5), (3, 2, 1)] {
            let x = values(rows * c_in, 4);
            let w = values(c_out * c_in, 5);
            let bias = values(c_out, 6);
            let residual = values(rows * c_out, 7);
            let y = pointwise(&x, &w, c_in, c_out);
            for act in [Act::None, Act::Relu6] {
                let epilogue = Epilogue { bias: &bias, act };
                let fused = pointwise_epilogue(&x, &w, c_in, epilogue, Some(&residual));
                for (i, (&f, &v)) in fused.iter().zip(&y).enumerate() {
                    let expect = act.on(v + bias[i % c_out] + residual[i]);
                    assert!((f - expect).abs() < 1e-5, "{act:?} at {i}: {f} vs {expect}");
                }
                assert_eq!(fused.len(), y.len());
            }
        }
    }
}
