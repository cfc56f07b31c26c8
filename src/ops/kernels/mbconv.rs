//! An inverted-residual (MBConv) block for inference in one pass per image: expand (1×1),
//! depthwise and project (1×1) run row by row, so the expanded tensors (six times the block's
//! width) never leave the cache. Run op by op, each of them is written to memory and read back
//! (a 112×112×96 one is 154 MB at batch 32), and those layers are limited by that traffic.
//!
//! Each image keeps a window of its expanded input rows: the rows a depthwise output row reads
//! are expanded once (a few rows at a time, for the matrix product's sake), used by every
//! output row that reads them, and dropped when no later row needs them.

use std::cell::RefCell;

use rayon::prelude::*;

use super::common::{Act, ConvGeometry, Epilogue, output_buffer};
use super::depthwise::depthwise_forward_row;
use super::pointwise::pointwise_rows;

/// Pixels per matrix product at least (rows of pixels are gathered until there are this many).
const MIN_PIXELS: usize = 64;

/// A folded 1×1 convolution: `[C_out, C_in]` weights, bias, activation.
#[derive(Debug, Clone, Copy)]
pub struct Pointwise<'a> {
    pub weights: &'a [f32],
    pub bias: &'a [f32],
    pub act: Act,
}

impl Pointwise<'_> {
    /// The convolution of `src`'s rows (`c_in` floats each) into `dst`, on this thread.
    fn rows(&self, dst: &mut [f32], src: &[f32], c_in: usize, residual: Option<&[f32]>) {
        let epilogue = Epilogue {
            bias: self.bias,
            act: self.act,
        };
        pointwise_rows(dst, src, self.weights, c_in, epilogue, residual);
    }
}

/// A folded depthwise convolution ("SAME" padding): `[k, k, C]` weights, bias, activation.
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseFolded<'a> {
    pub weights_kkc: &'a [f32],
    pub bias: &'a [f32],
    pub act: Act,
    pub kernel: usize,
    pub stride: usize,
}

/// The block's layers; `skip` adds the input to the projection (stride 1, same width).
#[derive(Debug, Clone, Copy)]
pub struct MbConvFolded<'a> {
    pub expand: Pointwise<'a>,
    pub depthwise: DepthwiseFolded<'a>,
    pub project: Pointwise<'a>,
    pub skip: bool,
}

impl MbConvFolded<'_> {
    fn widths(&self) -> (usize, usize, usize) {
        let c_exp = self.expand.bias.len();
        let c_out = self.project.bias.len();
        (self.expand.weights.len() / c_exp.max(1), c_exp, c_out)
    }
}

/// `y = project(depthwise(expand(x))) [+ x]` over an NHWC batch `[n, h, w, C_in]`; returns
/// `[n, out_h, out_w, C_out]` and its `(out_h, out_w)`. Images run in parallel.
pub fn mbconv_forward(
    x: &[f32],
    (n, h, w): (usize, usize, usize),
    block: &MbConvFolded<'_>,
) -> (Vec<f32>, (usize, usize)) {
    let (c_in, c_exp, c_out) = block.widths();
    let dw = &block.depthwise;
    let g = ConvGeometry::same(1, h, w, c_exp, dw.kernel, dw.stride);
    let (in_len, out_len) = (h * w * c_in, g.out_h * g.out_w * c_out);
    assert!(x.len() == n * in_len && block.project.weights.len() == c_out * c_exp);
    assert!(!block.skip || (c_in == c_out && g.out_h == h && g.out_w == w));
    if out_len == 0 {
        return (Vec::new(), (g.out_h, g.out_w));
    }
    let y = output_buffer(n * out_len, |out| {
        out.par_chunks_mut(out_len)
            .zip(x.par_chunks(in_len))
            .for_each(|(out, image)| image_forward(out, image, block, &g));
    });
    (y, (g.out_h, g.out_w))
}

thread_local! {
    /// Each thread's window of expanded rows and its depthwise output rows, grown once and
    /// reused for every image and block (every element is written before it is read).
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// One image: `g` is the depthwise geometry of one image with `C_exp` channels.
fn image_forward(out: &mut [f32], image: &[f32], block: &MbConvFolded<'_>, g: &ConvGeometry) {
    let (c_in, c_exp, _) = block.widths();
    // Input rows expanded per product, and output rows per projection.
    let expand_rows = MIN_PIXELS.div_ceil(g.in_w).max(g.stride);
    let project_rows = MIN_PIXELS.div_ceil(g.out_w).min(g.out_h);
    let window_len = (g.kernel + expand_rows) * g.in_w * c_exp;
    let dw_len = project_rows * g.out_w * c_exp;
    BUFFERS.with(|cell| {
        let mut buffers = cell.borrow_mut();
        let (window, dw_out) = &mut *buffers;
        if window.len() < window_len {
            window.resize(window_len, 0.0);
        }
        if dw_out.len() < dw_len {
            dw_out.resize(dw_len, 0.0);
        }
        let mut rows = Rows {
            image,
            block,
            g,
            c_in,
            window: &mut window[..window_len],
            first: 0,
            end: 0,
        };
        let out_row = g.out_w * block.project.bias.len();
        for oy0 in (0..g.out_h).step_by(project_rows) {
            let n = project_rows.min(g.out_h - oy0);
            let dw_out = &mut dw_out[..n * g.out_w * c_exp];
            for (r, dst) in dw_out.chunks_exact_mut(g.out_w * c_exp).enumerate() {
                rows.depthwise_row(dst, oy0 + r);
            }
            let residual = block
                .skip
                .then(|| &image[oy0 * g.in_w * c_in..(oy0 + n) * g.in_w * c_in]);
            let dst = &mut out[oy0 * out_row..(oy0 + n) * out_row];
            block.project.rows(dst, dw_out, c_exp, residual);
        }
    })
}

/// The window of expanded input rows `first..end` of one image.
struct Rows<'a, 'b> {
    image: &'a [f32],
    block: &'a MbConvFolded<'b>,
    g: &'a ConvGeometry,
    c_in: usize,
    window: &'a mut [f32],
    first: usize,
    end: usize,
}

impl Rows<'_, '_> {
    /// Depthwise output row `oy` into `dst`, expanding the input rows it reads first.
    fn depthwise_row(&mut self, dst: &mut [f32], oy: usize) {
        let g = self.g;
        let row_len = g.in_w * g.channels;
        // Input rows `top..bottom` are read by output row `oy`.
        let top = (oy * g.stride).saturating_sub(g.pad_top);
        let bottom = (oy * g.stride + g.kernel - g.pad_top).min(g.in_h);
        if bottom > self.end {
            // Keep the rows from `top` on, then expand as many more as the window holds.
            let keep_from = top.clamp(self.first, self.end);
            let kept = (keep_from - self.first) * row_len..(self.end - self.first) * row_len;
            self.window.copy_within(kept, 0);
            self.first = keep_from;
            let capacity = self.window.len() / row_len;
            let new_end = (self.first + capacity).min(g.in_h);
            let in_row = g.in_w * self.c_in;
            let src = &self.image[self.end * in_row..new_end * in_row];
            let dst = &mut self.window
                [(self.end - self.first) * row_len..(new_end - self.first) * row_len];
            self.block.expand.rows(dst, src, self.c_in, None);
            self.end = new_end;
        }
        // Output row `oy` as row 0 of a geometry whose input starts where the window does, or
        // at the first row it reads, whichever is lower.
        let first_read = (oy * g.stride) as isize - g.pad_top as isize;
        let shift = first_read - self.first as isize;
        let skip_rows = shift.max(0) as usize;
        let local = ConvGeometry {
            in_h: self.end - self.first - skip_rows,
            out_h: 1,
            pad_top: (-shift).max(0) as usize,
            ..*g
        };
        let rows = &self.window[skip_rows * row_len..(self.end - self.first) * row_len];
        let dw = &self.block.depthwise;
        let epilogue = Epilogue {
            bias: dw.bias,
            act: dw.act,
        };
        depthwise_forward_row(dst, rows, dw.weights_kkc, &local, 0, Some(epilogue));
    }
}
