//! What each network provides ([`Architecture`]) and what a built unit is ([`BackboneUnit`],
//! [`FoldedUnit`]). A network implements these in its own file; the registry
//! ([`super::backbone`]) lists them.

use std::fmt;
use std::sync::Arc;

use candle_core::{Result as CandleResult, Tensor};

use super::error::ModelError;
use super::layers::layer::Layer;
use super::layers::param::ParamSource;
use super::onnx::{OnnxGraph, Port};
use super::source::WeightsSource;
use super::unit::{Unit, UnitInfo};
use super::weights::Weights;
use crate::data::preprocess::Preprocessing;

/// What a network provides: its units, its preprocessing, its weights and how to build it.
pub trait Architecture: Send + Sync + 'static {
    /// The stable name saved in `model.json` and given on the command line.
    fn name(&self) -> &'static str;
    /// The name shown to people.
    fn title(&self) -> &'static str;
    /// The units in order (stem first); a network can be cut after any of them.
    fn units(&self) -> &[UnitInfo];
    /// The unit's short name on the block strip.
    fn unit_label(&self, unit: Unit) -> String {
        unit.short_label()
    }
    /// A sentence about the unit for the block strip's hover text (beyond width and stride).
    fn unit_note(&self, _unit: Unit) -> Option<String> {
        None
    }
    /// Input preprocessing for square crops of `image_size_px` (the normalisation the
    /// pretrained weights expect).
    fn preprocessing(&self, image_size_px: u32) -> Preprocessing;
    /// Where *Start of ConvNet* cuts: the end of the early, generic layers.
    fn generic_cut(&self) -> Unit;
    /// Cut points the depth probe compares, in order.
    fn probe_units(&self) -> Vec<Unit>;
    /// Checkpoint names of the pretrained classifier's weight and bias.
    fn classifier_names(&self) -> (&'static str, &'static str);
    /// Classes of the pretrained classifier.
    fn pretrained_classes(&self) -> usize;
    /// Where the pretrained weights come from by default.
    fn default_weights(&self) -> WeightsSource;
    /// Weights shipped inside the binary, if any (safetensors bytes).
    fn bundled_weights(&self) -> Option<&'static [u8]> {
        None
    }
    /// Renames (and reshapes) another naming scheme's tensors into this network's.
    fn adapt_weights(&self, weights: Weights) -> Result<Weights, ModelError> {
        Ok(weights)
    }
    /// Builds one unit, its parameters named as in the checkpoint.
    fn build_unit(
        &self,
        unit: Unit,
        source: &mut ParamSource<'_>,
        trainable: bool,
    ) -> Result<Box<dyn BackboneUnit>, ModelError>;
}

/// One unit of a built network (training form).
pub trait BackboneUnit: fmt::Debug + Send + Sync {
    /// Train mode: BatchNorm uses batch statistics and updates its running averages.
    fn forward_train(&self, x: &Tensor, bn_momentum: f64) -> CandleResult<Tensor>;
    /// The inference form, with BatchNorm folded into the convolutions (current values).
    fn fold(&self) -> CandleResult<Arc<dyn FoldedUnit>>;
    /// The unit's layers in order (parameters, running statistics, saving).
    fn layers(&self) -> Vec<&dyn Layer>;
}

/// One unit in inference form.
pub trait FoldedUnit: fmt::Debug + Send + Sync {
    fn forward(&self, x: &Tensor) -> CandleResult<Tensor>;
    /// Adds the unit's ONNX nodes after `x` and returns their output.
    fn export_onnx(&self, g: &mut OnnxGraph, x: &Port) -> Result<Port, ModelError>;
}

/// The error for a unit that `arch` does not have.
pub fn missing_unit(arch: &dyn Architecture, unit: Unit) -> ModelError {
    let blocks = arch
        .units()
        .iter()
        .filter(|u| matches!(u.unit, Unit::Block(_)))
        .count();
    let names: Vec<String> = arch
        .units()
        .iter()
        .filter(|u| !matches!(u.unit, Unit::Block(_)))
        .map(|u| u.unit.to_string())
        .collect();
    ModelError::UnknownUnit(format!(
        "{} has no unit {unit}: use a block 0–{}{}{}",
        arch.title(),
        blocks.saturating_sub(1),
        if names.is_empty() { "" } else { " or " },
        names.join(", ")
    ))
}
