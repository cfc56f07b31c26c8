//! CPU kernels on plain slices, NHWC layout (channels innermost, so the inner loops run over
//! contiguous channels and vectorise).
//!
//! * Leaf loops are compiled three times, for the baseline target, AVX2 and AVX-512F, and picked
//!   at run time ([`simd_dispatch!`]), so one portable binary uses the wide registers where
//!   present.
//! * Work is split into chunks whose boundaries depend only on the shapes, never on the
//!   thread count, and partial sums are combined in a fixed order: results are bit-identical
//!   from run to run and from machine to machine.

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

mod common;
mod dense;
mod depthwise;
mod elementwise;
mod filters;
mod gemm;
mod mbconv;
mod norm;
mod pointwise;
mod pool;
mod winograd;
mod winograd_weights;

pub use common::*;
pub use dense::*;
pub use depthwise::*;
pub use elementwise::*;
pub use filters::*;
pub use mbconv::*;
pub use norm::*;
pub use pointwise::*;
pub use pool::*;

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
