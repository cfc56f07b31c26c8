//! The convolutions of the conv + BatchNorm layers that train as one graph node
//! ([`super::block`]): on tensors, and on slices for the CPU node's forward and backward.

use candle_core::{Result, Tensor};

use super::conv::{conv1x1, conv2d};
use super::depthwise::depthwise_conv;
use super::kernels::{self, ConvGeometry, Epilogue, Padding};

/// The convolution of [`super::conv_bn_train`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusedConv {
    /// 1×1, as a matrix product.
    Pointwise,
    /// Depthwise k×k with "SAME" padding.
    Depthwise { stride: usize },
    /// Dense k×k.
    Dense { stride: usize, padding: Padding },
}

/// NHWC dimensions.
pub(super) type Dims = (usize, usize, usize, usize);

impl FusedConv {
    pub(super) fn stride(self) -> usize {
        match self {
            Self::Pointwise => 1,
            Self::Depthwise { stride } | Self::Dense { stride, .. } => stride,
        }
    }

    /// The convolution on tensors, `w` in the checkpoint layout.
    pub fn apply(self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        match self {
            Self::Pointwise => conv1x1(x, w),
            Self::Depthwise { stride } => depthwise_conv(x, w, stride),
            Self::Dense { stride, padding } => conv2d(x, w, stride, padding),
        }
    }

    /// The input channels each of `c_out` filters reads from an input of `c` channels, or
    /// `None` where they do not fit it: depthwise filters are `[C, 1, k, k]`, one per channel.
    pub(super) fn filter_channels(self, c: usize, c_out: usize) -> Option<usize> {
        match self {
            Self::Depthwise { .. } => (c_out == c).then_some(1),
            _ => Some(c),
        }
    }

    /// The convolution on slices (CPU): `x` with dimensions `d`, `w` in the checkpoint layout
    /// (`[C_out, C_in, k, k]`, depthwise `[C, 1, k, k]`) with `kernel` and `c_out`, then
    /// `epilogue`'s bias and activation (`c_out` of them) on each block while it is in cache.
    pub(super) fn forward_slices(
        self,
        x: &[f32],
        d: Dims,
        w: &[f32],
        (kernel, c_out): (usize, usize),
        epilogue: Option<Epilogue<'_>>,
    ) -> (Vec<f32>, Dims) {
        let (n, h, wd, c_in) = d;
        match self {
            Self::Pointwise => {
                let out = match epilogue {
                    Some(e) => kernels::pointwise_epilogue(x, w, c_in, e, None),
                    None => kernels::pointwise(x, w, c_in, c_out),
                };
                (out, (n, h, wd, c_out))
            }
            Self::Depthwise { stride } => {
                let g = ConvGeometry::same(n, h, wd, c_in, kernel, stride);
                let kkc = kernels::depthwise_weights_to_kkc(w, c_in, kernel);
                let out = kernels::depthwise_forward(x, &kkc, &g, epilogue);
                (out, (n, g.out_h, g.out_w, c_in))
            }
            Self::Dense { stride, padding } => {
                let g = ConvGeometry::new(n, h, wd, c_in, kernel, stride, padding);
                let m = kernels::filters_to_matrix(w, c_out, c_in, kernel * kernel);
                let out = match epilogue {
                    Some(e) => kernels::dense_conv_epilogue(x, &m, &g, e, None),
                    None => kernels::dense_conv(x, &m, &g, c_out),
                };
                (out, (n, g.out_h, g.out_w, c_out))
            }
        }
    }

    /// Gradients of [`Self::forward_slices`] from its output gradient `gy`: the input's where
    /// `need_x`, and the weights' (checkpoint layout).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_slices(
        self,
        x: &[f32],
        d: Dims,
        w: &[f32],
        kernel: usize,
        c_out: usize,
        gy: &[f32],
        need_x: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>) {
        let (n, h, wd, c_in) = d;
        match self {
            Self::Pointwise => (
                need_x.then(|| kernels::pointwise_input_grad(gy, w, c_in, c_out)),
                kernels::pointwise_weight_grad(x, gy, c_in, c_out),
            ),
            Self::Depthwise { stride } => {
                let g = ConvGeometry::same(n, h, wd, c_in, kernel, stride);
                let kkc = kernels::depthwise_weights_to_kkc(w, c_in, kernel);
                let gw = kernels::depthwise_grad_weight(gy, x, &g);
                (
                    need_x.then(|| kernels::depthwise_grad_input(gy, &kkc, &g)),
                    kernels::depthwise_weights_from_kkc(&gw, c_in, kernel),
                )
            }
            Self::Dense { stride, padding } => {
                let g = ConvGeometry::new(n, h, wd, c_in, kernel, stride, padding);
                let taps = kernel * kernel;
                let gx = need_x.then(|| {
                    let m = kernels::filters_to_matrix(w, c_out, c_in, taps);
                    kernels::dense_conv_input_grad(gy, &m, &g, c_out)
                });
                let gm = kernels::dense_conv_weight_grad(x, gy, &g, c_out);
                (gx, kernels::matrix_to_filters(&gm, c_out, c_in, taps))
            }
        }
    }
}
