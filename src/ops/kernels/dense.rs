//! Dense k×k convolutions as implicit matrix products: the patches of a block of output pixels
//! are gathered into a per-thread scratch matrix and multiplied there, so no patch matrix of
//! the whole batch (k² times the input: 231 MB for one ResNet `layer1` convolution at batch 32)
//! is ever allocated, faulted in, or kept for backward. Forward and the input gradient run
//! blocks in parallel, each product single-threaded; the weight gradient sums a shape-fixed
//! number of partial products in a fixed order, so results do not depend on the thread count.

use rayon::prelude::*;

use super::common::{ConvGeometry, Epilogue, output_buffer, sum_partials};
use super::elementwise::add_into;
use super::gemm::{View, matmul, with_scratch};
use super::norm::bias_act_rows;
use super::{winograd, winograd_weights};

/// How the work is cut into blocks (a parameter so that tests can cut small shapes many ways).
#[derive(Debug, Clone, Copy)]
struct Blocking {
    /// Floats of gathered patches per block in forward and the input gradient.
    block_floats: usize,
    /// Floats of gathered patches per product in the weight gradient: more, because each
    /// product reads and writes the whole `[k²·C_in, C_out]` partial gradient.
    weight_block_floats: usize,
    /// At least this many output pixels go into one partial weight gradient.
    min_rows_per_partial: usize,
}

/// 2 MiB blocks (one core's L2), 8 MiB for the weight gradient.
const BLOCKING: Blocking = Blocking {
    block_floats: 1 << 19,
    weight_block_floats: 1 << 21,
    min_rows_per_partial: 512,
};
/// At most this many partial weight gradients are summed.
const MAX_PARTIALS: usize = 16;

/// Output pixels per block so that a block's patches take about `budget` floats.
fn block_rows(patch: usize, budget: usize) -> usize {
    (budget / patch.max(1)).clamp(1, 4096)
}

/// The first input column of output column `ox`'s window when the whole window lies inside
/// the image: its `k` taps are then `k·C` contiguous floats of an input row, moved at once.
fn inner_window(g: &ConvGeometry, ox: usize) -> Option<usize> {
    (ox * g.stride)
        .checked_sub(g.pad_left)
        .filter(|&ix| ix + g.kernel <= g.in_w)
}

/// Gathers the patches of output pixels `row0..row0 + rows` (counted over the whole batch)
/// into `out` (`rows × k²·C`, ordered `(ky, kx, c)`); padding reads as zero.
fn gather(input: &[f32], g: &ConvGeometry, row0: usize, rows: usize, out: &mut [f32]) {
    let c = g.channels;
    let (k, row_taps) = (g.kernel, g.kernel * c);
    let per_image = g.out_h * g.out_w;
    let image_len = g.in_h * g.in_w * c;
    for (r, dst) in (row0..row0 + rows).zip(out.chunks_exact_mut(k * row_taps)) {
        let (n, pixel) = (r / per_image, r % per_image);
        let (oy, ox) = (pixel / g.out_w, pixel % g.out_w);
        let image = &input[n * image_len..(n + 1) * image_len];
        let inner = inner_window(g, ox);
        for (ky, dst_row) in dst.chunks_exact_mut(row_taps).enumerate() {
            let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else {
                dst_row.fill(0.0);
                continue;
            };
            let line = &image[iy * g.in_w * c..][..g.in_w * c];
            if let Some(ix) = inner {
                dst_row.copy_from_slice(&line[ix * c..][..row_taps]);
                continue;
            }
            for (kx, tap) in dst_row.chunks_exact_mut(c).enumerate() {
                match g.source(ox, kx, g.pad_left, g.in_w) {
                    Some(ix) => tap.copy_from_slice(&line[ix * c..][..c]),
                    None => tap.fill(0.0),
                }
            }
        }
    }
}

/// Adjoint of [`gather`] for pixels of one image: adds patch gradients `cols` of that image's
/// output pixels `pixel0..` into `image` (its input gradient).
fn scatter(cols: &[f32], g: &ConvGeometry, pixel0: usize, image: &mut [f32]) {
    let c = g.channels;
    let row_taps = g.kernel * c;
    for (pixel, src) in (pixel0..).zip(cols.chunks_exact(g.kernel * row_taps)) {
        let (oy, ox) = (pixel / g.out_w, pixel % g.out_w);
        let inner = inner_window(g, ox);
        for (ky, src_row) in src.chunks_exact(row_taps).enumerate() {
            let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else {
                continue;
            };
            let line = &mut image[iy * g.in_w * c..][..g.in_w * c];
            if let Some(ix) = inner {
                add_into(&mut line[ix * c..][..row_taps], src_row);
                continue;
            }
            for (kx, tap) in src_row.chunks_exact(c).enumerate() {
                if let Some(ix) = g.source(ox, kx, g.pad_left, g.in_w) {
                    add_into(&mut line[ix * c..][..c], tap);
                }
            }
        }
    }
}

/// The convolution: `input` NHWC, `weights` `[k²·C_in, C_out]` ordered `(ky, kx, c)`; returns
/// `[N·out_h·out_w, C_out]`.
pub fn dense_conv(input: &[f32], weights: &[f32], g: &ConvGeometry, c_out: usize) -> Vec<f32> {
    conv(input, weights, g, c_out, None)
}

/// [`dense_conv`], then `act(y + bias [+ residual])` on each block while it is still in cache
/// (inference: a folded BatchNorm's shift, a residual block's sum, ReLU), instead of another
/// pass over the whole output.
pub fn dense_conv_epilogue(
    input: &[f32],
    weights: &[f32],
    g: &ConvGeometry,
    epilogue: Epilogue<'_>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let c_out = epilogue.bias.len();
    conv(input, weights, g, c_out, Some((epilogue, residual)))
}

/// 3×3 stride-1 convolutions with enough channels go by Winograd's F(2×2, 3×3), the others
/// by blocked implicit products.
fn conv(
    input: &[f32],
    weights: &[f32],
    g: &ConvGeometry,
    c_out: usize,
    epilogue: Option<(Epilogue<'_>, Option<&[f32]>)>,
) -> Vec<f32> {
    if winograd::applies(g, c_out) {
        return winograd::conv(input, weights, g, c_out, epilogue, winograd::BLOCK_FLOATS);
    }
    conv_blocked(input, weights, g, c_out, epilogue, BLOCKING)
}

fn conv_blocked(
    input: &[f32],
    weights: &[f32],
    g: &ConvGeometry,
    c_out: usize,
    epilogue: Option<(Epilogue<'_>, Option<&[f32]>)>,
    blocking: Blocking,
) -> Vec<f32> {
    let patch = g.kernel * g.kernel * g.channels;
    let rows_total = g.batch * g.out_h * g.out_w;
    let rows = block_rows(patch, blocking.block_floats);
    if c_out == 0 {
        return Vec::new();
    }
    let w = View {
        data: weights,
        row_stride: c_out,
        col_stride: 1,
    };
    // Each block's matrix product overwrites its rows (`accumulate` false).
    output_buffer(rows_total * c_out, |out| {
        out.par_chunks_mut(rows * c_out)
            .enumerate()
            .for_each(|(b, dst)| {
                let block = dst.len() / c_out;
                with_scratch(block * patch, |cols| {
                    gather(input, g, b * rows, block, cols);
                    let lhs = View {
                        data: cols,
                        row_stride: patch,
                        col_stride: 1,
                    };
                    matmul(block, c_out, patch, dst, false, lhs, w);
                });
                if let Some((Epilogue { bias, act }, residual)) = epilogue {
                    let residual = residual.map(|r| &r[b * rows * c_out..][..dst.len()]);
                    bias_act_rows(dst, bias, residual, act);
                }
            });
    })
}

/// Gradient of [`dense_conv`] with respect to its input, from the output gradient `grad`
/// (`[N·out_h·out_w, C_out]`). Images run in parallel; within one, blocks in order.
pub fn dense_conv_input_grad(
    grad: &[f32],
    weights: &[f32],
    g: &ConvGeometry,
    c_out: usize,
) -> Vec<f32> {
    if let Some(dx) = winograd::input_grad(grad, weights, g, c_out) {
        return dx;
    }
    input_grad_blocked(grad, weights, g, c_out, BLOCKING)
}

fn input_grad_blocked(
    grad: &[f32],
    weights: &[f32],
    g: &ConvGeometry,
    c_out: usize,
    blocking: Blocking,
) -> Vec<f32> {
    let patch = g.kernel * g.kernel * g.channels;
    let per_image = g.out_h * g.out_w;
    let image_len = g.in_h * g.in_w * g.channels;
    let mut grad_in = vec![0f32; g.in_len()];
    if image_len == 0 || per_image == 0 {
        return grad_in;
    }
    let rows = block_rows(patch, blocking.block_floats);
    // Element (co, kk) of the transposed weights.
    let w_t = View {
        data: weights,
        row_stride: 1,
        col_stride: c_out,
    };
    grad_in
        .par_chunks_mut(image_len)
        .enumerate()
        .for_each(|(n, image)| {
            for pixel0 in (0..per_image).step_by(rows) {
                let block = rows.min(per_image - pixel0);
                let lhs = View {
                    data: &grad[(n * per_image + pixel0) * c_out..][..block * c_out],
                    row_stride: c_out,
                    col_stride: 1,
                };
                with_scratch(block * patch, |cols| {
                    matmul(block, patch, c_out, cols, false, lhs, w_t);
                    scatter(cols, g, pixel0, image);
                });
            }
        });
    grad_in
}

/// Gradient of [`dense_conv`] with respect to its weights, `[k²·C_in, C_out]`.
pub fn dense_conv_weight_grad(
    input: &[f32],
    grad: &[f32],
    g: &ConvGeometry,
    c_out: usize,
) -> Vec<f32> {
    if winograd::applies(g, c_out) {
        return winograd_weights::weight_grad(input, grad, g, c_out, winograd::BLOCK_FLOATS);
    }
    weight_grad_blocked(input, grad, g, c_out, BLOCKING)
}

/// [`dense_conv_weight_grad`] by gathered patches, whatever the geometry.
#[cfg(test)]
pub(super) fn direct_weight_grad(
    input: &[f32],
    grad: &[f32],
    g: &ConvGeometry,
    c_out: usize,
) -> Vec<f32> {
    weight_grad_blocked(input, grad, g, c_out, BLOCKING)
}

fn weight_grad_blocked(
    input: &[f32],
    grad: &[f32],
    g: &ConvGeometry,
    c_out: usize,
    blocking: Blocking,
) -> Vec<f32> {
    let patch = g.kernel * g.kernel * g.channels;
    let rows_total = g.batch * g.out_h * g.out_w;
    let len = patch * c_out;
    let partials_count = rows_total
        .div_ceil(blocking.min_rows_per_partial)
        .clamp(1, MAX_PARTIALS);
    let per_partial = rows_total.div_ceil(partials_count).max(1);
    let rows = block_rows(patch, blocking.weight_block_floats);
    let partials: Vec<Vec<f32>> = (0..partials_count)
        .into_par_iter()
        .map(|p| {
            let mut partial = vec![0f32; len];
            let end = ((p + 1) * per_partial).min(rows_total);
            for row0 in (p * per_partial..end).step_by(rows) {
                let block = rows.min(end - row0);
                let rhs = View {
                    data: &grad[row0 * c_out..][..block * c_out],
                    row_stride: c_out,
                    col_stride: 1,
                };
                with_scratch(block * patch, |cols| {
                    gather(input, g, row0, block, cols);
                    // Element (kk, r) of the block's transposed patches.
                    let lhs = View {
                        data: cols,
                        row_stride: 1,
                        col_stride: patch,
                    };
                    matmul(patch, c_out, block, &mut partial, true, lhs, rhs);
                });
            }
            partial
        })
        .collect();
    sum_partials(partials, len)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::ops::kernels) fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919) % 23) as f32 / 11.0 - 1.0)
            .collect()
    }

    /// Direct convolution, one output value at a time.
    pub(in crate::ops::kernels) fn naive(
        input: &[f32],
        weights: &[f32],
        g: &ConvGeometry,
        c_out: usize,
    ) -> Vec<f32> {
        let c = g.channels;
        let mut out = Vec::new();
        for n in 0..g.batch {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    for co in 0..c_out {
                        let mut sum = 0.0;
                        for ky in 0..g.kernel {
                            for kx in 0..g.kernel {
                                let (Some(iy), Some(ix)) = (
                                    g.source(oy, ky, g.pad_top, g.in_h),
                                    g.source(ox, kx, g.pad_left, g.in_w),
                                ) else {
                                    continue;
                                };
                                for ci in 0..c {
                                    let x = input[((n * g.in_h + iy) * g.in_w + ix) * c + ci];
                                    let w = weights[((ky * g.kernel + kx) * c + ci) * c_out + co];
                                    sum += x * w;
                                }
                            }
                        }
                        out.push(sum);
                    }
                }
            }
        }
        out
    }

    pub(in crate::ops::kernels) fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum()
    }

    /// Shapes spanning several blocks and several partial weight gradients.
    fn geometries() -> Vec<(ConvGeometry, usize)> {
        vec![
            (ConvGeometry::same(2, 5, 4, 3, 3, 2), 4),
            (
                ConvGeometry::new(3, 23, 19, 5, 3, 1, super::super::Padding::Symmetric(1)),
                6,
            ),
            (
                ConvGeometry::new(2, 30, 30, 3, 7, 2, super::super::Padding::Symmetric(3)),
                8,
            ),
            (
                ConvGeometry::new(2, 9, 9, 4, 1, 2, super::super::Padding::Symmetric(0)),
                3,
            ),
        ]
    }

    /// The default blocking, and blocks of a few rows that split every shape many ways.
    const BLOCKINGS: [Blocking; 2] = [
        BLOCKING,
        Blocking {
            block_floats: 100,
            weight_block_floats: 300,
            min_rows_per_partial: 7,
        },
    ];

    #[test]
    fn the_blocked_convolution_equals_the_direct_sum() {
        for ((g, c_out), blocking) in geometries()
            .into_iter()
            .flat_map(|c| BLOCKINGS.map(|b| (c, b)))
        {
            let x = values(g.in_len(), 1);
            let w = values(g.kernel * g.kernel * g.channels * c_out, 2);
            let fast = conv_blocked(&x, &w, &g, c_out, None, blocking);
            let slow = naive(&x, &w, &g, c_out);
            assert_eq!(fast.len(), slow.len());
            let diff = fast
                .iter()
                .zip(&slow)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff < 1e-4, "{g:?} {blocking:?}: {diff}");
        }
    }

    #[test]
    fn the_gradients_are_the_adjoints_of_the_convolution() {
        // <conv(x, w), y> == <x, grad_input(y, w)> == <w, grad_weight(x, y)>.
        for ((g, c_out), b) in geometries()
            .into_iter()
            .flat_map(|c| BLOCKINGS.map(|b| (c, b)))
        {
            let x = values(g.in_len(), 3);
            let w = values(g.kernel * g.kernel * g.channels * c_out, 4);
            let y = values(g.batch * g.out_h * g.out_w * c_out, 5);
            let forward = dot(&conv_blocked(&x, &w, &g, c_out, None, b), &y);
            let by_input = dot(&x, &input_grad_blocked(&y, &w, &g, c_out, b));
            let by_weight = dot(&w, &weight_grad_blocked(&x, &y, &g, c_out, b));
            let tolerance = 1e-4 * forward.abs().max(1.0);
            assert!(
                (forward - by_input).abs() < tolerance,
                "{g:?}: {forward} vs {by_input}"
            );
            assert!(
                (forward - by_weight).abs() < tolerance,
                "{g:?}: {forward} vs {by_weight}"
            );
        }
    }

    #[test]
    fn the_epilogue_adds_bias_and_residual_then_activates_every_block() {
        for ((g, c_out), b) in geometries()
            .into_iter()
            .flat_map(|c| BLOCKINGS.map(|b| (c, b)))
        {
            let x = values(g.in_len(), 6);
            let w = values(g.kernel * g.kernel * g.channels * c_out, 7);
            let bias = values(c_out, 8);
            let residual = values(g.batch * g.out_h * g.out_w * c_out, 9);
            let epilogue = Epilogue {
                bias: &bias,
                act: super::super::Act::Relu,
            };
            let fused = conv_blocked(&x, &w, &g, c_out, Some((epilogue, Some(&residual))), b);
            let plain = conv_blocked(&x, &w, &g, c_out, None, b);
            for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
                let expected = (p + bias[i % c_out] + residual[i]).max(0.0);
                assert!(
                    (f - expected).abs() < 1e-5,
                    "{g:?} {b:?} at {i}: {f} vs {expected}"
                );
            }
        }
    }
}
