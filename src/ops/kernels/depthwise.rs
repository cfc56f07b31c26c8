//! Depthwise convolution: forward (with an optional epilogue) and both gradients.

use rayon::prelude::*;

use super::{Act, ConvGeometry, Epilogue, output_buffer, sum_partials};

/// Output rows per chunk in the depthwise weight-gradient reduction.
const DW_GRAD_CHUNK_ROWS: usize = 4;

/// Reorders depthwise weights from torch's `[C, 1, k, k]` to `[k, k, C]`.
pub fn depthwise_weights_to_kkc(weights: &[f32], channels: usize, kernel: usize) -> Vec<f32> {
    let mut out = vec![0f32; kernel * kernel * channels];
    for c in 0..channels {
        for t in 0..kernel * kernel {
            out[t * channels + c] = weights[c * kernel * kernel + t];
        }
    }
    out
}

/// Reorders `[k, k, C]` weight gradients back to torch's `[C, 1, k, k]`.
pub fn depthwise_weights_from_kkc(kkc: &[f32], channels: usize, kernel: usize) -> Vec<f32> {
    let mut out = vec![0f32; kernel * kernel * channels];
    for c in 0..channels {
        for t in 0..kernel * kernel {
            out[c * kernel * kernel + t] = kkc[t * channels + c];
        }
    }
    out
}

simd_dispatch! {
    /// One output row of a depthwise convolution (`out_row` is `out_w * C`).
    fn depthwise_forward_row(
        out_row: &mut [f32],
        image: &[f32],
        weights_kkc: &[f32],
        g: &ConvGeometry,
        oy: usize,
        epilogue: Option<Epilogue<'_>>,
    ) {
        let c = g.channels;
        out_row.fill(0.0);
        for ky in 0..g.kernel {
            let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else { continue };
            let in_row = &image[iy * g.in_w * c..(iy + 1) * g.in_w * c];
            for (ox, acc) in out_row.chunks_exact_mut(c).enumerate() {
                for kx in 0..g.kernel {
                    let Some(ix) = g.source(ox, kx, g.pad_left, g.in_w) else { continue };
                    let w = &weights_kkc[(ky * g.kernel + kx) * c..][..c];
                    let x = &in_row[ix * c..][..c];
                    for ((a, &w), &x) in acc.iter_mut().zip(w).zip(x) {
                        *a += w * x;
                    }
                }
            }
        }
        if let Some(Epilogue { bias, act }) = epilogue {
            per_act!(act, |ACT| {
                for acc in out_row.chunks_exact_mut(c) {
                    for (a, &b) in acc.iter_mut().zip(bias) {
                        *a = ACT.on(*a + b);
                    }
                }
            })
        }
    }
}

/// Depthwise convolution forward, NHWC, weights `[k, k, C]`.
pub fn depthwise_forward(
    input: &[f32],
    weights_kkc: &[f32],
    g: &ConvGeometry,
    epilogue: Option<Epilogue<'_>>,
) -> Vec<f32> {
    let row_len = g.out_w * g.channels;
    let image_len = g.in_h * g.in_w * g.channels;
    if row_len == 0 {
        return vec![0f32; g.out_len()];
    }
    output_buffer(g.out_len(), |out| {
        out.par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(row, out_row)| {
                let (n, oy) = (row / g.out_h, row % g.out_h);
                let image = &input[n * image_len..(n + 1) * image_len];
                depthwise_forward_row(out_row, image, weights_kkc, g, oy, epilogue);
            });
    })
}

simd_dispatch! {
    /// One input row of the depthwise input gradient (gathered from the output rows that read it).
    fn depthwise_grad_input_row(
        grad_row: &mut [f32],
        grad_out_image: &[f32],
        weights_kkc: &[f32],
        g: &ConvGeometry,
        iy: usize,
    ) {
        let c = g.channels;
        grad_row.fill(0.0);
        for ky in 0..g.kernel {
            let Some(shifted) = (iy + g.pad_top).checked_sub(ky) else { continue };
            if shifted % g.stride != 0 {
                continue;
            }
            let oy = shifted / g.stride;
            if oy >= g.out_h {
                continue;
            }
            let gout_row = &grad_out_image[oy * g.out_w * c..(oy + 1) * g.out_w * c];
            for (ox, gout) in gout_row.chunks_exact(c).enumerate() {
                for kx in 0..g.kernel {
                    let Some(ix) = g.source(ox, kx, g.pad_left, g.in_w) else { continue };
                    let w = &weights_kkc[(ky * g.kernel + kx) * c..][..c];
                    let dst = &mut grad_row[ix * c..][..c];
                    for ((d, &w), &go) in dst.iter_mut().zip(w).zip(gout) {
                        *d += w * go;
                    }
                }
            }
        }
    }
}

/// Gradient of a depthwise convolution with respect to its input.
pub fn depthwise_grad_input(grad_out: &[f32], weights_kkc: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let row_len = g.in_w * g.channels;
    let out_image_len = g.out_h * g.out_w * g.channels;
    if row_len == 0 {
        return vec![0f32; g.in_len()];
    }
    output_buffer(g.in_len(), |grad_in| {
        grad_in
            .par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(row, grad_row)| {
                let (n, iy) = (row / g.in_h, row % g.in_h);
                let gout = &grad_out[n * out_image_len..(n + 1) * out_image_len];
                depthwise_grad_input_row(grad_row, gout, weights_kkc, g, iy);
            });
    })
}

simd_dispatch! {
    /// Adds one output row's contribution to the `[k, k, C]` weight gradient.
    fn depthwise_grad_weight_row(
        acc_kkc: &mut [f32],
        grad_out_row: &[f32],
        image: &[f32],
        g: &ConvGeometry,
        oy: usize,
    ) {
        let c = g.channels;
        for ky in 0..g.kernel {
            let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else { continue };
            let in_row = &image[iy * g.in_w * c..(iy + 1) * g.in_w * c];
            for kx in 0..g.kernel {
                let acc = &mut acc_kkc[(ky * g.kernel + kx) * c..][..c];
                for (ox, gout) in grad_out_row.chunks_exact(c).enumerate() {
                    let Some(ix) = g.source(ox, kx, g.pad_left, g.in_w) else { continue };
                    let x = &in_row[ix * c..][..c];
                    for ((a, &go), &x) in acc.iter_mut().zip(gout).zip(x) {
                        *a += go * x;
                    }
                }
            }
        }
    }
}

/// Gradient of a depthwise convolution with respect to its `[k, k, C]` weights.
pub fn depthwise_grad_weight(grad_out: &[f32], input: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let c = g.channels;
    let taps = g.kernel * g.kernel * c;
    let image_len = g.in_h * g.in_w * c;
    let row_len = g.out_w * c;
    let rows = g.batch * g.out_h;
    if rows == 0 || taps == 0 {
        return vec![0f32; taps];
    }
    let chunks = rows.div_ceil(DW_GRAD_CHUNK_ROWS);
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|chunk| {
            let mut acc = vec![0f32; taps];
            let end = ((chunk + 1) * DW_GRAD_CHUNK_ROWS).min(rows);
            for row in chunk * DW_GRAD_CHUNK_ROWS..end {
                let (n, oy) = (row / g.out_h, row % g.out_h);
                let image = &input[n * image_len..(n + 1) * image_len];
                let gout = &grad_out[row * row_len..(row + 1) * row_len];
                depthwise_grad_weight_row(&mut acc, gout, image, g, oy);
            }
            acc
        })
        .collect();
    sum_partials(&partials, taps)
}
