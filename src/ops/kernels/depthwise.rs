//! Depthwise convolution: forward (with an optional epilogue) and both gradients.

use rayon::prelude::*;

use super::common::{Act, ConvGeometry, Epilogue, output_buffer, sum_partials};

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

/// For every channel `ch` of one pixel, `Σ a[i + ch] · b[j + ch]` over the offset pairs
/// `(i, j)`, in their order, handed to `emit(ch0, sums)` a block of channels at a time. Blocks of
/// 64 channels keep four independent register sums (one dependent chain of adds was the limit),
/// then blocks of 16, then single channels; the order of the adds, and so the result, is the
/// same for every block width.
#[inline(always)]
fn channel_sums(
    pairs: &[(usize, usize)],
    a: &[f32],
    b: &[f32],
    channels: usize,
    mut emit: impl FnMut(usize, &[f32]),
) {
    let mut c0 = 0;
    while c0 + 64 <= channels {
        emit(c0, &lane_sums::<64>(pairs, a, b, c0));
        c0 += 64;
    }
    while c0 + 16 <= channels {
        emit(c0, &lane_sums::<16>(pairs, a, b, c0));
        c0 += 16;
    }
    for ch in c0..channels {
        emit(ch, &lane_sums::<1>(pairs, a, b, ch));
    }
}

#[inline(always)]
fn lane_sums<const W: usize>(
    pairs: &[(usize, usize)],
    a: &[f32],
    b: &[f32],
    c0: usize,
) -> [f32; W] {
    let mut sums = [0f32; W];
    for &(i, j) in pairs {
        let (a, b) = (&a[i + c0..][..W], &b[j + c0..][..W]);
        for ((s, &x), &y) in sums.iter_mut().zip(a).zip(b) {
            *s += x * y;
        }
    }
    sums
}

simd_dispatch! {
    /// One output row of a depthwise convolution (`out_row` is `out_w * C`). Each output pixel's
    /// channels are summed over all taps in registers ([`channel_sums`]) and stored once.
    pub(super) fn depthwise_forward_row(
        out_row: &mut [f32],
        image: &[f32],
        weights_kkc: &[f32],
        g: &ConvGeometry,
        oy: usize,
        epilogue: Option<Epilogue<'_>>,
    ) {
        let c = g.channels;
        let (k, in_w) = (g.kernel, g.in_w);
        // The taps of one output pixel that lie inside the image, in (ky, kx) order: (offset
        // of the input pixel in `image`, offset of the tap's weights).
        let mut taps = Vec::with_capacity(k * k);
        for (ox, out_px) in out_row.chunks_exact_mut(c).enumerate() {
            taps.clear();
            for ky in 0..k {
                let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else { continue };
                for kx in 0..k {
                    let Some(ix) = g.source(ox, kx, g.pad_left, in_w) else { continue };
                    taps.push(((iy * in_w + ix) * c, (ky * k + kx) * c));
                }
            }
            channel_sums(&taps, image, weights_kkc, c, |c0, sums| {
                out_px[c0..c0 + sums.len()].copy_from_slice(sums);
            });
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
    /// One input row of the depthwise input gradient, gathered from the output pixels that read
    /// it: per input pixel, summed in registers ([`channel_sums`]) and stored once.
    fn depthwise_grad_input_row(
        grad_row: &mut [f32],
        grad_out_image: &[f32],
        weights_kkc: &[f32],
        g: &ConvGeometry,
        iy: usize,
    ) {
        let c = g.channels;
        let k = g.kernel;
        // The output position that reads input position `i` through tap `t`, if any.
        let reader = |i: usize, t: usize, pad: usize, out: usize| {
            let shifted = (i + pad).checked_sub(t)?;
            (shifted % g.stride == 0 && shifted / g.stride < out).then_some(shifted / g.stride)
        };
        // (offset of the output gradient pixel, offset of the tap's weights), in (ky, kx) order.
        let mut taps = Vec::with_capacity(k * k);
        for (ix, dst) in grad_row.chunks_exact_mut(c).enumerate() {
            taps.clear();
            for ky in 0..k {
                let Some(oy) = reader(iy, ky, g.pad_top, g.out_h) else { continue };
                for kx in 0..k {
                    let Some(ox) = reader(ix, kx, g.pad_left, g.out_w) else { continue };
                    taps.push(((oy * g.out_w + ox) * c, (ky * k + kx) * c));
                }
            }
            channel_sums(&taps, grad_out_image, weights_kkc, c, |c0, sums| {
                dst[c0..c0 + sums.len()].copy_from_slice(sums);
            });
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
    /// Adds one output row's contribution to the `[k, k, C]` weight gradient: per tap and block
    /// of channels, the row's sum is kept in registers ([`channel_sums`]) and added once.
    fn depthwise_grad_weight_row(
        acc_kkc: &mut [f32],
        grad_out_row: &[f32],
        image: &[f32],
        g: &ConvGeometry,
        oy: usize,
    ) {
        let c = g.channels;
        // (offset in the output gradient row, offset in the input row) of each output pixel
        // whose tap `kx` lies inside the image.
        let mut pixels = Vec::with_capacity(g.out_w);
        for ky in 0..g.kernel {
            let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else { continue };
            let in_row = &image[iy * g.in_w * c..(iy + 1) * g.in_w * c];
            for kx in 0..g.kernel {
                pixels.clear();
                pixels.extend((0..g.out_w).filter_map(|ox| {
                    g.source(ox, kx, g.pad_left, g.in_w).map(|ix| (ox * c, ix * c))
                }));
                let acc = &mut acc_kkc[(ky * g.kernel + kx) * c..][..c];
                channel_sums(&pixels, grad_out_row, in_row, c, |c0, sums| {
                    for (a, &s) in acc[c0..c0 + sums.len()].iter_mut().zip(sums) {
                        *a += s;
                    }
                });
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
    sum_partials(partials, taps)
}
