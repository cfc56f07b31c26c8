//! Elementwise ReLU6 and its gradient, and im2col / col2im for dense convolutions.

use rayon::prelude::*;

use super::ConvGeometry;

simd_dispatch! {
    fn relu6_backward_rows(out: &mut [f32], y: &[f32], dy: &[f32]) {
        for ((o, &y), &d) in out.iter_mut().zip(y).zip(dy) {
            *o = if y > 0.0 && y < 6.0 { d } else { 0.0 };
        }
    }
}

simd_dispatch! {
    fn relu6_rows(out: &mut [f32], x: &[f32]) {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = x.clamp(0.0, 6.0);
        }
    }
}

const ELEMENTWISE_CHUNK: usize = 1 << 15;

/// `min(max(x, 0), 6)` in one pass.
pub fn relu6(x: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(x.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|(o, x)| relu6_rows(o, x));
    out
}

/// Gradient of ReLU6 from its output: passes `dy` where `0 < y < 6`.
pub fn relu6_backward(y: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; y.len()];
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(y.par_chunks(ELEMENTWISE_CHUNK))
        .zip(dy.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|((o, y), d)| relu6_backward_rows(o, y, d));
    out
}

/// Patches of a "SAME"-padded convolution, `[N * out_h * out_w, k * k * C]`, ordered
/// `(ky, kx, c)`; padding reads as zero.
pub fn im2col(input: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let c = g.channels;
    let patch = g.kernel * g.kernel * c;
    let mut cols = vec![0f32; g.batch * g.out_h * g.out_w * patch];
    let image_len = g.in_h * g.in_w * c;
    let row_len = g.out_w * patch;
    if row_len == 0 {
        return cols;
    }
    cols.par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(row, out)| {
            let (n, oy) = (row / g.out_h, row % g.out_h);
            let image = &input[n * image_len..(n + 1) * image_len];
            for (ox, dst) in out.chunks_exact_mut(patch).enumerate() {
                for ky in 0..g.kernel {
                    let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else {
                        continue;
                    };
                    for kx in 0..g.kernel {
                        let Some(ix) = g.source(ox, kx, g.pad_left, g.in_w) else {
                            continue;
                        };
                        let src = &image[(iy * g.in_w + ix) * c..][..c];
                        dst[(ky * g.kernel + kx) * c..][..c].copy_from_slice(src);
                    }
                }
            }
        });
    cols
}

/// Adjoint of [`im2col`]: sums patch gradients back into an input-shaped gradient.
pub fn col2im(grad_cols: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let c = g.channels;
    let patch = g.kernel * g.kernel * c;
    let mut grad = vec![0f32; g.in_len()];
    let image_len = g.in_h * g.in_w * c;
    let cols_per_image = g.out_h * g.out_w * patch;
    if image_len == 0 {
        return grad;
    }
    grad.par_chunks_mut(image_len)
        .enumerate()
        .for_each(|(n, image)| {
            let cols = &grad_cols[n * cols_per_image..(n + 1) * cols_per_image];
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let src = &cols[(oy * g.out_w + ox) * patch..][..patch];
                    for ky in 0..g.kernel {
                        let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else {
                            continue;
                        };
                        for kx in 0..g.kernel {
                            let Some(ix) = g.source(ox, kx, g.pad_left, g.in_w) else {
                                continue;
                            };
                            let dst = &mut image[(iy * g.in_w + ix) * c..][..c];
                            for (d, &s) in dst.iter_mut().zip(&src[(ky * g.kernel + kx) * c..][..c])
                            {
                                *d += s;
                            }
                        }
                    }
                }
            }
        });
    grad
}
