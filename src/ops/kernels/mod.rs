//! CPU kernels on plain slices, NHWC layout (channels innermost, so the inner loops run over
//! contiguous channels and vectorise).
//!
//! * Leaf loops are compiled three times, for the baseline target, AVX2 and AVX-512F, and picked
//!   at run time ([`simd_dispatch!`]), so one portable binary uses the wide registers where
//!   present.
//! * Work is split into chunks whose boundaries depend only on the shapes, never on the
//!   thread count, and partial sums are combined in a fixed order: results are bit-identical
//!   from run to run and from machine to machine.

use rayon::prelude::*;

/// Defines `pub fn $name(..)` that runs its body compiled with AVX-512F or AVX2, the widest the
/// CPU supports. The loops vectorise across channels, element by element, so the results do not
/// depend on the vector width.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn inner($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) {
                    inner($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) {
                    inner($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            inner($($arg),*)
        }
    };
}

/// Runs `$body` with `$name` bound to `$act` as a constant, one copy per activation, so that
/// each loop inside is compiled (and vectorised) for one activation: a `match` on the runtime
/// value inside the loop stops LLVM from vectorising it (BatchNorm backward ran 3× slower).
macro_rules! per_act {
    ($act:expr, |$name:ident| $body:block) => {
        match $act {
            Act::None => {
                const $name: Act = Act::None;
                $body
            }
            Act::Relu => {
                const $name: Act = Act::Relu;
                $body
            }
            Act::Relu6 => {
                const $name: Act = Act::Relu6;
                $body
            }
        }
    };
}

mod dense;
mod depthwise;
mod elementwise;
mod filters;
mod norm;
mod pointwise;
mod pool;
mod winograd;

pub use dense::*;
pub use depthwise::*;
pub use elementwise::*;
pub use filters::*;
pub use norm::*;
pub use pointwise::*;
pub use pool::*;

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
    fn source(&self, o: usize, k: usize, pad: usize, size: usize) -> Option<usize> {
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
/// over elements.
pub(super) fn sum_partials(partials: &[Vec<f32>], len: usize) -> Vec<f32> {
    let mut total = vec![0f32; len];
    const BLOCK: usize = 1024;
    total
        .par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(b, out)| {
            for p in partials {
                for (o, &v) in out.iter_mut().zip(&p[b * BLOCK..]) {
                    *o += v;
                }
            }
        });
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // (in, k, s) -> (out, before, after)
        assert_eq!(same_padding(224, 3, 2), (112, 0, 1));
        assert_eq!(same_padding(112, 3, 1), (112, 1, 1));
        assert_eq!(same_padding(56, 5, 2), (28, 1, 2));
        assert_eq!(same_padding(7, 5, 1), (7, 2, 2));
        assert_eq!(same_padding(1, 5, 2), (1, 2, 2));
    }

    #[test]
    fn batch_stats_are_exact_on_small_input() {
        let x = [1.0, 10.0, 3.0, 20.0, 5.0, 30.0];
        let s = batch_stats(&x, 2);
        assert_eq!(s.mean, vec![3.0, 20.0]);
        assert!((s.var[0] - 8.0 / 3.0).abs() < 1e-6);
        assert!((s.var[1] - 200.0 / 3.0).abs() < 1e-4);
        assert_eq!(s.count, 3);
    }
}
