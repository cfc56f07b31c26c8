//! The layers backbones are made of: parameters, BatchNorm, convolutions (with BatchNorm or a
//! bias) and linear layers, in training form and with BatchNorm folded for inference.
//!
//! This file only names the parts; they import one another directly.

pub mod conv;
pub mod kind;
pub mod layer;
pub mod linear;
pub mod norm;
pub mod param;
pub mod path;

pub use conv::{ConvBias, ConvBn, ConvBnSpec, FoldedConv, train_block};
pub use kind::ConvKind;
pub use layer::Layer;
pub use linear::{Classifier, Linear};
pub use norm::BatchNorm;
pub use param::{Param, ParamSource, RandomInit};
pub use path::ParamPath;

/// The activation after a layer (the kernels apply it in the pass that writes the layer's
/// output).
pub use crate::ops::Act;
