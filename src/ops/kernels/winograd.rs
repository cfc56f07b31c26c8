//! 3×3 stride-1 convolutions by Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2016): a 4×4 input tile and the 3×3 filter
//! are transformed so that the tile's 2×2 outputs take 16 products per channel pair instead of
//! 36 (2.25× fewer multiply-adds). For a block of tiles the products are 16 matrix products
//! `[tiles, C_in] · [C_in, C_out]`, one per transformed position, on the same single-threaded
//! gemm as the direct path; blocks run in parallel, and each block's tiles are transformed back
//! (with the epilogue) while in cache. Forward and the input gradient (itself such a
//! convolution, see [`input_grad`]); the weight gradient is in `winograd_weights.rs`. The
//! transforms only add, subtract and halve, so the error stays at float rounding.

use rayon::prelude::*;

use super::common::{ConvGeometry, Epilogue, output_buffer};
use super::gemm::{View, matmul, with_scratch};
use super::norm::bias_act_rows;

/// Channels below this (an RGB first layer) leave too little work in each matrix product.
const MIN_CHANNELS: usize = 16;
/// Floats of transformed tiles (input and output together) per block, per thread.
pub(super) const BLOCK_FLOATS: usize = 1 << 22;

/// Whether [`conv`] computes this convolution.
pub(super) fn applies(g: &ConvGeometry, c_out: usize) -> bool {
    g.kernel == 3 && g.stride == 1 && g.channels >= MIN_CHANNELS && c_out >= MIN_CHANNELS
}

/// The convolution of [`super::dense_conv`] (`input` NHWC, `weights` `[9·C_in, C_out]` ordered
/// `(ky, kx, c)`), with the optional epilogue, for geometries where [`applies`] holds.
pub(super) fn conv(
    input: &[f32],
    weights: &[f32],
    g: &ConvGeometry,
    c_out: usize,
    epilogue: Option<(Epilogue<'_>, Option<&[f32]>)>,
    block_floats: usize,
) -> Vec<f32> {
    let (c_in, tiles_h, tiles_w) = (g.channels, g.out_h.div_ceil(2), g.out_w.div_ceil(2));
    let out_len = g.batch * g.out_h * g.out_w * c_out;
    if out_len == 0 {
        return Vec::new();
    }
    let u = transform_weights(weights, c_in, c_out);
    // Tiles go in rows of `tiles_w`; a block is a run of tile rows over the whole batch,
    // whose output pixels are contiguous in NHWC.
    let tile_rows = g.batch * tiles_h;
    let rows_per_block = rows_per_block(block_floats, c_in + c_out, tiles_w, tile_rows);
    let first_pixel = |row: usize| {
        let (n, ty) = (row / tiles_h, row % tiles_h);
        (n * g.out_h + (2 * ty).min(g.out_h)) * g.out_w
    };
    // Every output pixel lies in exactly one tile, whose output transform writes it.
    output_buffer(out_len, |out| {
        let mut blocks = Vec::new();
        let mut rest = out;
        for r0 in (0..tile_rows).step_by(rows_per_block) {
            let r1 = (r0 + rows_per_block).min(tile_rows);
            let len = (first_pixel(r1) - first_pixel(r0)) * c_out;
            let (dst, tail) = std::mem::take(&mut rest).split_at_mut(len);
            blocks.push((r0..r1, dst));
            rest = tail;
        }
        blocks.into_par_iter().for_each(|(rows, dst)| {
            let tiles = rows.len() * tiles_w;
            with_scratch(16 * tiles * (c_in + c_out), |scratch| {
                let (v, m) = scratch.split_at_mut(16 * tiles * c_in);
                let block = Block {
                    g,
                    rows: rows.clone(),
                    tiles_h,
                    tiles_w,
                    pixel0: first_pixel(rows.start),
                };
                transform_input(input, &block, v);
                for xi in 0..16 {
                    let lhs = View {
                        data: &v[xi * tiles * c_in..][..tiles * c_in],
                        row_stride: c_in,
                        col_stride: 1,
                    };
                    let rhs = View {
                        data: &u[xi * c_out..],
                        row_stride: 16 * c_out,
                        col_stride: 1,
                    };
                    let product = &mut m[xi * tiles * c_out..][..tiles * c_out];
                    matmul(tiles, c_out, c_in, product, false, lhs, rhs);
                }
                transform_output(m, &block, c_out, dst);
                if let Some((epilogue, residual)) = epilogue {
                    let residual = residual.map(|r| &r[block.pixel0 * c_out..][..dst.len()]);
                    bias_act_rows(dst, epilogue.bias, residual, epilogue.act);
                }
            });
        });
    })
}

/// The input gradient of [`super::dense_conv`] from the output gradient `grad`, by [`conv`]
/// where that applies to it (see [`input_grad_as_conv`]).
pub(super) fn input_grad(
    grad: &[f32],
    weights: &[f32],
    g: &ConvGeometry,
    c_out: usize,
) -> Option<Vec<f32>> {
    let t = input_grad_as_conv(g, c_out)?;
    let rotated = rotate_and_transpose(weights, g.channels, c_out);
    Some(conv(grad, &rotated, &t, g.channels, None, BLOCK_FLOATS))
}

/// The input gradient of a 3×3 stride-1 convolution is itself a 3×3 stride-1 convolution of the
/// output gradient (filters rotated by 180°, channels swapped, padding `2 - pad`): its geometry,
/// where Winograd's algorithm applies to it.
fn input_grad_as_conv(g: &ConvGeometry, c_out: usize) -> Option<ConvGeometry> {
    if g.kernel != 3 || g.stride != 1 {
        return None;
    }
    let t = ConvGeometry {
        batch: g.batch,
        in_h: g.out_h,
        in_w: g.out_w,
        channels: c_out,
        kernel: 3,
        stride: 1,
        out_h: g.in_h,
        out_w: g.in_w,
        pad_top: 2usize.checked_sub(g.pad_top)?,
        pad_left: 2usize.checked_sub(g.pad_left)?,
    };
    applies(&t, g.channels).then_some(t)
}

/// `[9·C_in, C_out]` filters, ordered `(ky, kx, c)`, to the `[9·C_out, C_in]` filters of
/// [`input_grad_as_conv`]: taps in reverse order, each tap's matrix transposed.
fn rotate_and_transpose(weights: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let tap_len = c_in * c_out;
    let mut rotated = vec![0f32; 9 * tap_len];
    for (tap, src) in weights.chunks_exact(tap_len).take(9).enumerate() {
        let dst = &mut rotated[(8 - tap) * tap_len..][..tap_len];
        for (ci, row) in src.chunks_exact(c_out).enumerate() {
            for (co, &w) in row.iter().enumerate() {
                dst[co * c_in + ci] = w;
            }
        }
    }
    rotated
}

/// Tile rows per block (1 to `max_rows`) so that a block's transformed tiles, `16·channels`
/// floats each (input and output channels together), take about `block_floats`.
pub(super) fn rows_per_block(
    block_floats: usize,
    channels: usize,
    tiles_w: usize,
    max_rows: usize,
) -> usize {
    let tiles_per_block = block_floats / (16 * channels).max(1);
    tiles_per_block
        .div_ceil(tiles_w.max(1))
        .clamp(1, max_rows.max(1))
}

/// The tiles of one block: tile rows `rows` (counted over the batch), `tiles_w` per row.
pub(super) struct Block<'a> {
    pub(super) g: &'a ConvGeometry,
    pub(super) rows: std::ops::Range<usize>,
    pub(super) tiles_h: usize,
    pub(super) tiles_w: usize,
    /// The block's first output pixel (over the batch).
    pub(super) pixel0: usize,
}

impl Block<'_> {
    /// `(tile index in the block, image, tile row in the image, tile column)`.
    pub(super) fn tiles(&self) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        let (th, tw) = (self.tiles_h, self.tiles_w);
        self.rows
            .clone()
            .flat_map(move |r| (0..tw).map(move |tx| (r / th, r % th, tx)))
            .enumerate()
            .map(|(t, (n, ty, tx))| (t, n, ty, tx))
    }

    pub(super) fn len(&self) -> usize {
        self.rows.len() * self.tiles_w
    }
}

/// Four consecutive `len`-float parts of `s`.
pub(super) fn split4(s: &mut [f32], len: usize) -> [&mut [f32]; 4] {
    let (a, rest) = s.split_at_mut(len);
    let (b, rest) = rest.split_at_mut(len);
    let (c, d) = rest.split_at_mut(len);
    [a, b, c, &mut d[..len]]
}

// The one-axis transforms, over whole channel vectors: separate slice arguments (not arrays of
// them) so that LLVM knows the outputs do not alias and vectorises the loops.

/// `Bᵀ·d` along one axis of an input tile.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_axis(
    d0: &[f32],
    d1: &[f32],
    d2: &[f32],
    d3: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
) {
    let n = o0.len();
    let (d0, d1, d2, d3) = (&d0[..n], &d1[..n], &d2[..n], &d3[..n]);
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for i in 0..n {
        let (a, b, c, d) = (d0[i], d1[i], d2[i], d3[i]);
        o0[i] = a - c;
        o1[i] = b + c;
        o2[i] = c - b;
        o3[i] = b - d;
    }
}

/// `G·w` along one axis of a filter.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn filter_axis(
    w0: &[f32],
    w1: &[f32],
    w2: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
) {
    let n = o0.len();
    let (w0, w1, w2) = (&w0[..n], &w1[..n], &w2[..n]);
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for i in 0..n {
        let (a, b, c) = (w0[i], w1[i], w2[i]);
        o0[i] = a;
        o1[i] = 0.5 * (a + b + c);
        o2[i] = 0.5 * (a - b + c);
        o3[i] = c;
    }
}

/// `Aᵀ·m` along one axis of a transformed output tile.
#[inline(always)]
fn output_axis(m0: &[f32], m1: &[f32], m2: &[f32], m3: &[f32], o0: &mut [f32], o1: &mut [f32]) {
    let n = o0.len();
    let (m0, m1, m2, m3, o1) = (&m0[..n], &m1[..n], &m2[..n], &m3[..n], &mut o1[..n]);
    for i in 0..n {
        let (a, b, c, d) = (m0[i], m1[i], m2[i], m3[i]);
        o0[i] = a + b + c;
        o1[i] = b - c - d;
    }
}

simd_dispatch! {
    /// `U = G·w·Gᵀ` for input channel `ci` and every output channel, into `dst` (`[16, C_out]`).
    fn transform_weights_row(w: &[f32], c_in: usize, ci: usize, dst: &mut [f32]) {
        let c_out = dst.len() / 16;
        let tap = |k: usize| &w[(k * c_in + ci) * c_out..][..c_out];
        // Columns first (over ky, for each kx), then rows.
        let mut h = [vec![0f32; 3 * c_out], vec![0f32; 3 * c_out], vec![0f32; 3 * c_out], vec![0f32; 3 * c_out]];
        let [h0, h1, h2, h3] = &mut h;
        for kx in 0..3 {
            filter_axis(
                tap(kx),
                tap(3 + kx),
                tap(6 + kx),
                &mut h0[kx * c_out..][..c_out],
                &mut h1[kx * c_out..][..c_out],
                &mut h2[kx * c_out..][..c_out],
                &mut h3[kx * c_out..][..c_out],
            );
        }
        for (a, row) in h.iter().enumerate() {
            let [o0, o1, o2, o3] = split4(&mut dst[a * 4 * c_out..], c_out);
            let (r0, rest) = row.split_at(c_out);
            let (r1, r2) = rest.split_at(c_out);
            filter_axis(r0, r1, r2, o0, o1, o2, o3);
        }
    }
}

fn transform_weights(w: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let mut u = vec![0f32; c_in * 16 * c_out];
    u.par_chunks_mut(16 * c_out)
        .enumerate()
        .for_each(|(ci, dst)| transform_weights_row(w, c_in, ci, dst));
    u
}

simd_dispatch! {
    /// `V = Bᵀ·d·B` for every tile of the block and input channel, laid out
    /// `[16, tiles, C_in]`; padding reads as zero.
    pub(super) fn transform_input(input: &[f32], block: &Block<'_>, v: &mut [f32]) {
        let g = block.g;
        let (c, tiles) = (g.channels, block.len());
        let image_len = g.in_h * g.in_w * c;
        let zeros = vec![0f32; c];
        // The column transforms of one tile: `cols[a]` holds row `a` of `Bᵀ·d`, 4 pixels.
        let mut cols = [vec![0f32; 4 * c], vec![0f32; 4 * c], vec![0f32; 4 * c], vec![0f32; 4 * c]];
        for (t, n, ty, tx) in block.tiles() {
            let image = &input[n * image_len..][..image_len];
            let mut pixels = [&zeros[..]; 16];
            for (i, pixel) in pixels.iter_mut().enumerate() {
                let iy = g.source(2 * ty, i / 4, g.pad_top, g.in_h);
                let ix = g.source(2 * tx, i % 4, g.pad_left, g.in_w);
                if let (Some(iy), Some(ix)) = (iy, ix) {
                    *pixel = &image[(iy * g.in_w + ix) * c..][..c];
                }
            }
            let [c0, c1, c2, c3] = &mut cols;
            for x in 0..4 {
                input_axis(
                    pixels[x],
                    pixels[4 + x],
                    pixels[8 + x],
                    pixels[12 + x],
                    &mut c0[x * c..][..c],
                    &mut c1[x * c..][..c],
                    &mut c2[x * c..][..c],
                    &mut c3[x * c..][..c],
                );
            }
            for (a, row) in cols.iter().enumerate() {
                let planes = &mut v[a * 4 * tiles * c..][..4 * tiles * c];
                let [o0, o1, o2, o3] = split4(planes, tiles * c);
                let r = t * c..(t + 1) * c;
                input_axis(
                    &row[..c],
                    &row[c..2 * c],
                    &row[2 * c..3 * c],
                    &row[3 * c..],
                    &mut o0[r.clone()],
                    &mut o1[r.clone()],
                    &mut o2[r.clone()],
                    &mut o3[r],
                );
            }
        }
    }
}

simd_dispatch! {
    /// `Aᵀ·m·A` into `dst`, the block's output pixels (`C_out` floats each).
    fn transform_output(m: &[f32], block: &Block<'_>, c: usize, dst: &mut [f32]) {
        let g = block.g;
        let tiles = block.len();
        let plane = |xi: usize, t: usize| &m[(xi * tiles + t) * c..][..c];
        // `rows[i]` holds row `i` of `Aᵀ·m`, 4 columns; `spare` takes outputs past the edge.
        let mut rows = [vec![0f32; 4 * c], vec![0f32; 4 * c]];
        let mut spare = vec![0f32; c];
        for (t, n, ty, tx) in block.tiles() {
            let [r0, r1] = &mut rows;
            for x in 0..4 {
                output_axis(
                    plane(x, t),
                    plane(4 + x, t),
                    plane(8 + x, t),
                    plane(12 + x, t),
                    &mut r0[x * c..][..c],
                    &mut r1[x * c..][..c],
                );
            }
            for (i, row) in rows.iter().enumerate() {
                let oy = 2 * ty + i;
                if oy >= g.out_h {
                    break;
                }
                let at = ((n * g.out_h + oy) * g.out_w + 2 * tx - block.pixel0) * c;
                let (y0, y1) = if 2 * tx + 1 < g.out_w {
                    dst[at..][..2 * c].split_at_mut(c)
                } else {
                    (&mut dst[at..][..c], &mut spare[..])
                };
                output_axis(&row[..c], &row[c..2 * c], &row[2 * c..3 * c], &row[3 * c..], y0, y1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::dense::tests::{dot, naive, values};
    use super::super::{Act, Padding};
    use super::*;

    /// Winograd's F(2×2, 3×3) against the direct sum: odd sizes (partial edge tiles), "valid"
    /// and "same" padding, channel counts off the 8-lane width, blocks of one tile row to the
    /// whole batch, and the fused epilogue.
    #[test]
    fn winograd_equals_the_direct_convolution() {
        for (g, c_out) in [
            (
                ConvGeometry::new(2, 7, 7, 19, 3, 1, Padding::Symmetric(1)),
                21,
            ),
            (
                ConvGeometry::new(3, 9, 6, 16, 3, 1, Padding::Symmetric(0)),
                16,
            ),
            (ConvGeometry::same(1, 5, 11, 33, 3, 1), 17),
        ] {
            assert!(applies(&g, c_out));
            let x = values(g.in_len(), 10);
            let w = values(9 * g.channels * c_out, 11);
            let bias = values(c_out, 12);
            let residual = values(g.batch * g.out_h * g.out_w * c_out, 13);
            let direct = naive(&x, &w, &g, c_out);
            let scale = direct.iter().fold(1f32, |m, v| m.max(v.abs()));
            for block_floats in [1, 5000, BLOCK_FLOATS] {
                let plain = conv(&x, &w, &g, c_out, None, block_floats);
                let epilogue = Epilogue {
                    bias: &bias,
                    act: Act::Relu6,
                };
                let fused = Some((epilogue, Some(&residual[..])));
                let fused = conv(&x, &w, &g, c_out, fused, block_floats);
                for (i, ((p, f), d)) in plain.iter().zip(&fused).zip(&direct).enumerate() {
                    let expected = (d + bias[i % c_out] + residual[i]).clamp(0.0, 6.0);
                    assert!(
                        (p - d).abs() < 1e-5 * scale,
                        "{g:?} {block_floats} at {i}: {p} vs {d}"
                    );
                    assert!(
                        (f - expected).abs() < 1e-5 * scale,
                        "{g:?} at {i}: {f} vs {expected}"
                    );
                }
                assert_eq!(plain.len(), direct.len());
            }
        }
    }

    /// The input gradient by Winograd (a convolution of the output gradient) is the adjoint
    /// of the direct convolution, for "same" and "valid" padding: `<x, dx(y)> = <conv(x), y>`.
    #[test]
    fn the_input_gradient_as_a_convolution_is_the_adjoint() {
        for (g, c_out) in [
            (
                ConvGeometry::new(2, 7, 9, 17, 3, 1, Padding::Symmetric(1)),
                19,
            ),
            (
                ConvGeometry::new(1, 8, 5, 24, 3, 1, Padding::Symmetric(0)),
                16,
            ),
        ] {
            let x = values(g.in_len(), 14);
            let w = values(9 * g.channels * c_out, 15);
            let y = values(g.batch * g.out_h * g.out_w * c_out, 16);
            let dx = input_grad(&y, &w, &g, c_out).expect("applies");
            assert_eq!(dx.len(), x.len());
            let (by_input, forward) = (dot(&x, &dx), dot(&naive(&x, &w, &g, c_out), &y));
            let tolerance = 1e-5 * forward.abs().max(1.0);
            assert!(
                (by_input - forward).abs() < tolerance,
                "{g:?}: {by_input} vs {forward}"
            );
        }
    }
}
