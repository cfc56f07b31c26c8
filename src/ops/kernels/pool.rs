//! Max pooling over NHWC windows (PyTorch's semantics: padding never wins, floor mode) and its
//! gradient, which goes to the first maximum of each window in scan order.

use rayon::prelude::*;

use super::common::ConvGeometry;

simd_dispatch! {
    fn max_into(dst: &mut [f32], src: &[f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = d.max(s);
        }
    }
}

simd_dispatch! {
    /// Moves each channel's `pending` gradient into `d` where `x` is the window's maximum
    /// (`best`), leaving zero pending: later maxima of the window get nothing. Selects, not
    /// branches, so that the loop vectorises.
    fn route_to_max(x: &[f32], best: &[f32], pending: &mut [f32], d: &mut [f32]) {
        for (((&x, &best), p), d) in x.iter().zip(best).zip(pending.iter_mut()).zip(d) {
            let hit = x == best;
            *d += if hit { *p } else { 0.0 };
            *p = if hit { 0.0 } else { *p };
        }
    }
}

/// Input pixels `(iy, ix)` of output pixel `(oy, ox)`'s window, in scan order.
fn window(g: &ConvGeometry, oy: usize, ox: usize) -> impl Iterator<Item = usize> + '_ {
    (0..g.kernel)
        .filter_map(move |ky| g.source(oy, ky, g.pad_top, g.in_h))
        .flat_map(move |iy| {
            (0..g.kernel)
                .filter_map(move |kx| g.source(ox, kx, g.pad_left, g.in_w))
                .map(move |ix| iy * g.in_w + ix)
        })
}

/// Max pooling with `g`'s window (`kernel`), stride and padding; `[N, out_h, out_w, C]`.
pub fn max_pool(input: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let c = g.channels;
    let mut out = vec![f32::NEG_INFINITY; g.batch * g.out_h * g.out_w * c];
    let row_len = g.out_w * c;
    let image_len = g.in_h * g.in_w * c;
    if row_len == 0 {
        return out;
    }
    out.par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(row, dst_row)| {
            let (n, oy) = (row / g.out_h, row % g.out_h);
            let image = &input[n * image_len..(n + 1) * image_len];
            for (ox, dst) in dst_row.chunks_exact_mut(c).enumerate() {
                for pixel in window(g, oy, ox) {
                    max_into(dst, &image[pixel * c..][..c]);
                }
            }
        });
    out
}

/// Gradient of [`max_pool`]: each output gradient goes to the first input of its window that
/// equals the window's maximum (`output`). Images run in parallel (windows overlap within one).
pub fn max_pool_backward(
    input: &[f32],
    output: &[f32],
    grad: &[f32],
    g: &ConvGeometry,
) -> Vec<f32> {
    let c = g.channels;
    let image_len = g.in_h * g.in_w * c;
    let out_image_len = g.out_h * g.out_w * c;
    let mut grad_in = vec![0f32; g.in_len()];
    if image_len == 0 || out_image_len == 0 {
        return grad_in;
    }
    grad_in
        .par_chunks_mut(image_len)
        .enumerate()
        .for_each(|(n, dst)| {
            let image = &input[n * image_len..][..image_len];
            let pooled = &output[n * out_image_len..][..out_image_len];
            let grad = &grad[n * out_image_len..][..out_image_len];
            let mut pending = vec![0f32; c];
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let at = (oy * g.out_w + ox) * c;
                    let best = &pooled[at..][..c];
                    pending.copy_from_slice(&grad[at..][..c]);
                    for pixel in window(g, oy, ox) {
                        let (x, d) = (&image[pixel * c..][..c], &mut dst[pixel * c..][..c]);
                        route_to_max(x, best, &mut pending, d);
                    }
                }
            }
        });
    grad_in
}

#[cfg(test)]
mod tests {
    use super::super::Padding;
    use super::*;

    #[test]
    fn the_gradient_goes_to_the_first_maximum_only() {
        // One image, one channel, 3×3, pooled 2×2 at stride 1: ties between 5s.
        let x = [1.0, 5.0, 5.0, 2.0, 3.0, 4.0, 0.0, 9.0, 1.0];
        let g = ConvGeometry::new(1, 3, 3, 1, 2, 1, Padding::Symmetric(0));
        let y = max_pool(&x, &g);
        assert_eq!(y, vec![5.0, 5.0, 9.0, 9.0]);
        let gx = max_pool_backward(&x, &y, &[1.0, 10.0, 100.0, 1000.0], &g);
        // Window (0,0) -> x[1]; (0,1) -> x[1] (first 5 in scan order); both 9-windows -> x[7].
        assert_eq!(gx, vec![0.0, 11.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1100.0, 0.0]);
    }

    #[test]
    fn padding_never_wins() {
        let x = [-3.0, -1.0, -2.0, -4.0];
        let g = ConvGeometry::new(1, 2, 2, 1, 3, 2, Padding::Symmetric(1));
        assert_eq!(max_pool(&x, &g), vec![-1.0]);
    }
}
