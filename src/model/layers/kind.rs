//! The kinds of convolution the networks use, and how each runs.

use crate::ops::{self, Padding};

/// What kind of convolution a layer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// Dense k×k (Lite0's stem: "SAME" padding; the torchvision networks: symmetric).
    Dense {
        kernel: usize,
        stride: usize,
        padding: Padding,
    },
    /// Depthwise k×k with "SAME" padding.
    Depthwise { kernel: usize, stride: usize },
    /// 1×1.
    Pointwise,
}

impl ConvKind {
    pub(super) fn weight_shape(self, c_in: usize, c_out: usize) -> Vec<usize> {
        match self {
            ConvKind::Dense { kernel, .. } => vec![c_out, c_in, kernel, kernel],
            ConvKind::Depthwise { kernel, .. } => vec![c_out, 1, kernel, kernel],
            ConvKind::Pointwise => vec![c_out, c_in, 1, 1],
        }
    }

    /// The same convolution as the ops name it; [`ops::FusedConv::apply`] runs it on tensors.
    pub(super) fn fused(self) -> ops::FusedConv {
        match self {
            ConvKind::Dense {
                stride, padding, ..
            } => ops::FusedConv::Dense { stride, padding },
            ConvKind::Depthwise { stride, .. } => ops::FusedConv::Depthwise { stride },
            ConvKind::Pointwise => ops::FusedConv::Pointwise,
        }
    }
}
