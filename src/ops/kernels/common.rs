//! What every kernel shares: padding and convolution geometry, activations, the epilogue
//! applied while a row is in cache, and output buffers written without zeroing.

use rayon::prelude::*;

/// TensorFlow "SAME" padding along one axis: `(out, pad_before, pad_after)`.
pub fn same_padding(in_px: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = in_px.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(in_px);
    (out, total / 2, total - total / 2)
}

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// TensorFlow "SAME": `ceil(in / stride)` outputs, the odd pixel at the bottom/right.
    Same,
    /// PyTorch's `padding = p`: `p` zeros on every side.
    Symmetric(usize),
}

/// Shapes of a convolution over an NHWC input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl ConvGeometry {
    /// The geometry with TensorFlow "SAME" padding.
    pub fn same(
        batch: usize,
        in_h: usize,
        in_w: usize,
        channels: usize,
        kernel: usize,
        stride: usize,
    ) -> Self {
        Self::new(batch, in_h, in_w, channels, kernel, stride, Padding::Same)
    }

    /// The geometry for any [`Padding`].
    pub fn new(
        batch: usize,
        in_h: usize,
        in_w: usize,
        channels: usize,
        kernel: usize,
        stride: usize,
        padding: Padding,
    ) -> Self {
        // (outputs, padding before) along one axis.
        let axis = |size: usize| match padding {
            Padding::Same => {
                let (out, before, _) = same_padding(size, kernel, stride);
                (out, before)
            }
            Padding::Symmetric(pad) => {
                (((size + 2 * pad).saturating_sub(kernel)) / stride + 1, pad)
            }
        };
        let ((out_h, pad_top), (out_w, pad_left)) = (axis(in_h), axis(in_w));
        Self {
            batch,
            in_h,
            in_w,
            channels,
            kernel,
            stride,
            out_h,
            out_w,
            pad_top,
            pad_left,
        }
    }

    pub fn in_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.channels
    }

    pub fn out_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.channels
    }

    /// Input coordinate read by output coordinate `o` at tap `k`, if inside the image.
    #[inline(always)]
    pub(super) fn source(&self, o: usize, k: usize, pad: usize, size: usize) -> Option<usize> {
        (o * self.stride + k).checked_sub(pad).filter(|&i| i < size)
    }
}

/// An activation that the kernels apply in the pass that writes their output (and undo in
/// the pass that reads their output gradient), instead of as a graph node of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Act {
    #[default]
    None,
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

impl Act {
    /// The activation of `v`.
    #[inline(always)]
    pub fn on(self, v: f32) -> f32 {
        match self {
            Act::None => v,
            Act::Relu => v.max(0.0),
            Act::Relu6 => v.clamp(0.0, 6.0),
        }
    }

    /// The gradient before the activation, from its output `y` and the gradient `dy` after it.
    #[inline(always)]
    pub fn grad(self, y: f32, dy: f32) -> f32 {
        let passes = match self {
            Act::None => true,
            Act::Relu => y > 0.0,
            Act::Relu6 => y > 0.0 && y < 6.0,
        };
        if passes { dy } else { 0.0 }
    }
}

/// Optional bias + activation applied to a convolution's output in the same pass.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    pub bias: &'a [f32],
    pub act: Act,
}

/// A vector of `len` floats that `write` fills, without zeroing it first. The allocator hands
/// back reused memory, so a zeroed output costs a full extra pass (`memset` was a fifth of a
/// Lite0 fine-tune step). `write` must store every element before it reads that element.
/// Debug builds, which the tests use, fill the buffer with NaN first, so an element a kernel
/// misses shows up in its results.
pub fn output_buffer(len: usize, write: impl FnOnce(&mut [f32])) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    if cfg!(debug_assertions) {
        for v in spare.iter_mut() {
            v.write(f32::NAN);
        }
    }
    // SAFETY: `spare` is `len` aligned f32 slots inside `out`'s allocation, borrowed only
    // here. `write` stores every element before reading it (its contract), so no
    // uninitialised value is ever read, and after it returns all `len` elements are
    // initialised, which is what `set_len` requires.
    unsafe {
        write(std::slice::from_raw_parts_mut(
            spare.as_mut_ptr().cast::<f32>(),
            len,
        ));
        out.set_len(len);
    }
    out
}

/// Sums equally long partial vectors in their given order (deterministic), in parallel
/// over elements; a single partial is the sum itself.
pub(super) fn sum_partials(mut partials: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    if partials.len() == 1 {
        return partials.pop().unwrap_or_default();
    }
    let mut total = vec![0f32; len];
    const BLOCK: usize = 1024;
    total
        .par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(b, out)| {
            for p in &partials {
                for (o, &v) in out.iter_mut().zip(&p[b * BLOCK..]) {
                    *o += v;
                }
            }
        });
    total
}
