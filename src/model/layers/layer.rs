//! What every layer of a network provides.

use candle_core::{Tensor, Var};

use super::norm::BatchNorm;
use super::param::Param;

/// What the network needs of every layer: its parameters, its other state, its saved form.
pub trait Layer: std::fmt::Debug + Send + Sync {
    fn params(&self) -> Vec<&Param>;
    /// State that training changes besides the parameters (BatchNorm running statistics).
    fn running_stats(&self) -> Vec<&Var> {
        Vec::new()
    }
    /// Every tensor to save, by checkpoint name.
    fn tensors(&self) -> Vec<(String, Tensor)>;
    /// The layer's BatchNorm, if it has one.
    fn batch_norm(&self) -> Option<&BatchNorm> {
        None
    }
}
