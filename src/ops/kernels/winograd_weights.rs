//! The weight gradient of a 3×3 stride-1 convolution by Winograd's F(2×2, 3×3), the adjoint of
//! [`super::winograd::conv`]. Per tile the forward computes `Y = Aᵀ·(U ⊙ V)·A` with
//! `U = G·w·Gᵀ` and `V = Bᵀ·d·B`, so the filter's gradient is `Gᵀ·(Σ_tiles V ⊙ A·dY·Aᵀ)·G`:
//! for each of the 16 transformed positions one matrix product `[C_in, tiles] · [tiles, C_out]`
//! summed over every tile of the batch, then one back-transform of the `[C_in, C_out]` sums.
//! That is 16 multiply-adds per tile (4 output pixels) and channel pair against 36 for the
//! direct product of gathered patches, the 2.25× the forward and the input gradient already
//! save. Partial sums are cut by the shape alone and added in a fixed order, so the result does
//! not depend on the thread count.

use rayon::prelude::*;

use super::common::{ConvGeometry, sum_partials};
use super::gemm::{View, matmul, with_scratch};
use super::winograd::{Block, rows_per_block, split4, transform_input};

/// At least this many tiles go into one partial sum.
const MIN_TILES_PER_PARTIAL: usize = 256;
/// At most this many partial sums.
const MAX_PARTIALS: usize = 16;
/// The partial sums (`16·C_in·C_out` floats each) hold at most this many floats together
/// (64 MB), unless one alone is larger.
const PARTIAL_FLOATS: usize = 1 << 24;

/// Gradient of [`super::dense_conv`] with respect to its weights (`[9·C_in, C_out]`, ordered
/// `(ky, kx, c)`) for geometries where [`super::winograd::applies`] holds; `block_floats` bounds
/// each block's transformed tiles, as in the forward.
pub(super) fn weight_grad(
    input: &[f32],
    grad: &[f32],
    g: &ConvGeometry,
    c_out: usize,
    block_floats: usize,
) -> Vec<f32> {
    let (c_in, tiles_h, tiles_w) = (g.channels, g.out_h.div_ceil(2), g.out_w.div_ceil(2));
    let plane = c_in * c_out;
    let tile_rows = g.batch * tiles_h;
    let partials_count = (tile_rows * tiles_w)
        .div_ceil(MIN_TILES_PER_PARTIAL)
        .min(MAX_PARTIALS)
        .min(PARTIAL_FLOATS / (16 * plane).max(1))
        .max(1);
    let rows_per_partial = tile_rows.div_ceil(partials_count).max(1);
    let rows_per_block = rows_per_block(block_floats, c_in + c_out, tiles_w, rows_per_partial);
    let partials: Vec<Vec<f32>> = (0..partials_count)
        .into_par_iter()
        .map(|p| {
            let mut sums = vec![0f32; 16 * plane];
            let end = ((p + 1) * rows_per_partial).min(tile_rows);
            for r0 in (p * rows_per_partial..end).step_by(rows_per_block) {
                let block = Block {
                    g,
                    rows: r0..(r0 + rows_per_block).min(end),
                    tiles_h,
                    tiles_w,
                    pixel0: 0,
                };
                accumulate_block(input, grad, &block, c_out, &mut sums);
            }
            sums
        })
        .collect();
    let sums = sum_partials(partials, 16 * plane);
    let mut dw = vec![0f32; 9 * plane];
    if plane > 0 {
        dw.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(tap, dst)| transform_back(&sums, tap, dst));
    }
    dw
}

/// Adds one block's `Σ_tiles V_ξᵀ · (A·dY·Aᵀ)_ξ` to `sums` (`[16, C_in, C_out]`).
fn accumulate_block(
    input: &[f32],
    grad: &[f32],
    block: &Block<'_>,
    c_out: usize,
    sums: &mut [f32],
) {
    let (c_in, tiles) = (block.g.channels, block.len());
    let plane = c_in * c_out;
    with_scratch(16 * tiles * (c_in + c_out), |scratch| {
        let (v, m) = scratch.split_at_mut(16 * tiles * c_in);
        transform_input(input, block, v);
        transform_grad(grad, block, c_out, m);
        for xi in 0..16 {
            // Element (ci, t) of the transposed tiles.
            let lhs = View {
                data: &v[xi * tiles * c_in..][..tiles * c_in],
                row_stride: 1,
                col_stride: c_in,
            };
            let rhs = View {
                data: &m[xi * tiles * c_out..][..tiles * c_out],
                row_stride: c_out,
                col_stride: 1,
            };
            let dst = &mut sums[xi * plane..][..plane];
            matmul(c_in, c_out, tiles, dst, true, lhs, rhs);
        }
    });
}

/// `A·dy` along one axis of an output-gradient tile (the adjoint of the output transform).
#[inline(always)]
fn grad_axis(
    y0: &[f32],
    y1: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
) {
    let n = o0.len();
    let (y0, y1) = (&y0[..n], &y1[..n]);
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for i in 0..n {
        let (a, b) = (y0[i], y1[i]);
        o0[i] = a;
        o1[i] = a + b;
        o2[i] = a - b;
        o3[i] = -b;
    }
}

simd_dispatch! {
    /// `A·dY·Aᵀ` for every tile of the block, laid out `[16, tiles, C_out]`; outputs past the
    /// edge (of partial tiles) read as zero.
    fn transform_grad(grad: &[f32], block: &Block<'_>, c: usize, m: &mut [f32]) {
        let g = block.g;
        let tiles = block.len();
        let zeros = vec![0f32; c];
        // `rows[a]` holds row `a` of `A·dY`, 2 columns.
        let mut rows = [vec![0f32; 2 * c], vec![0f32; 2 * c], vec![0f32; 2 * c], vec![0f32; 2 * c]];
        for (t, n, ty, tx) in block.tiles() {
            let mut pixels = [&zeros[..]; 4];
            for (i, pixel) in pixels.iter_mut().enumerate() {
                let (oy, ox) = (2 * ty + i / 2, 2 * tx + i % 2);
                if oy < g.out_h && ox < g.out_w {
                    *pixel = &grad[((n * g.out_h + oy) * g.out_w + ox) * c..][..c];
                }
            }
            let [r0, r1, r2, r3] = &mut rows;
            for x in 0..2 {
                grad_axis(
                    pixels[x],
                    pixels[2 + x],
                    &mut r0[x * c..][..c],
                    &mut r1[x * c..][..c],
                    &mut r2[x * c..][..c],
                    &mut r3[x * c..][..c],
                );
            }
            for (a, row) in rows.iter().enumerate() {
                let planes = &mut m[a * 4 * tiles * c..][..4 * tiles * c];
                let [o0, o1, o2, o3] = split4(planes, tiles * c);
                let r = t * c..(t + 1) * c;
                grad_axis(
                    &row[..c],
                    &row[c..],
                    &mut o0[r.clone()],
                    &mut o1[r.clone()],
                    &mut o2[r.clone()],
                    &mut o3[r],
                );
            }
        }
    }
}

/// `Gᵀ`: the adjoint of the filter transform along one axis.
const G_T: [[f32; 4]; 3] = [
    [1.0, 0.5, 0.5, 0.0],
    [0.0, 0.5, -0.5, 0.0],
    [0.0, 0.5, 0.5, 1.0],
];

/// Tap `(ky, kx)` of `Gᵀ·S·G` for every channel pair of the summed products `sums`
/// (`[16, C_in·C_out]`), into `dst` (`C_in·C_out`).
fn transform_back(sums: &[f32], tap: usize, dst: &mut [f32]) {
    let (ky, kx) = (tap / 3, tap % 3);
    dst.fill(0.0);
    for (xi, s) in sums.chunks_exact(dst.len()).enumerate() {
        let w = G_T[ky][xi / 4] * G_T[kx][xi % 4];
        if w != 0.0 {
            for (d, &v) in dst.iter_mut().zip(s) {
                *d += w * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Padding;
    use super::super::dense::direct_weight_grad;
    use super::super::dense::tests::values;
    use super::*;

    /// Winograd's weight gradient against the direct product of gathered patches: odd sizes
    /// (partial edge tiles), "same" and "valid" padding, channel counts off the 8-lane width,
    /// one tile row per block up to the whole batch, one partial sum and several.
    #[test]
    fn winograd_weight_gradient_equals_the_direct_one() {
        for (g, c_out) in [
            (
                ConvGeometry::new(2, 7, 9, 19, 3, 1, Padding::Symmetric(1)),
                21,
            ),
            (
                ConvGeometry::new(3, 9, 6, 16, 3, 1, Padding::Symmetric(0)),
                16,
            ),
            (ConvGeometry::same(5, 13, 11, 17, 3, 1), 24),
            (ConvGeometry::same(40, 8, 8, 16, 3, 1), 16),
        ] {
            let x = values(g.in_len(), 17);
            let dy = values(g.batch * g.out_h * g.out_w * c_out, 18);
            let direct = direct_weight_grad(&x, &dy, &g, c_out);
            let scale = direct.iter().fold(1f32, |m, v| m.max(v.abs()));
            for block_floats in [1, 20_000, super::super::winograd::BLOCK_FLOATS] {
                let fast = weight_grad(&x, &dy, &g, c_out, block_floats);
                assert_eq!(fast.len(), direct.len());
                for (i, (f, d)) in fast.iter().zip(&direct).enumerate() {
                    assert!(
                        (f - d).abs() < 2e-5 * scale,
                        "{g:?} {block_floats} at {i}: {f} vs {d}"
                    );
                }
            }
        }
    }
}
