//! Backbones as a family: one small interface ([`Architecture`]) that each network implements
//! in its own file, and a registry of them. Everything outside `model/` (plans, the trainer,
//! the guide, the window, saved models) asks a [`Backbone`] instead of knowing a network.
//!
//! Adding a network: a new file implementing [`Architecture`], plus one line in [`REGISTRY`].

use std::fmt;
use std::sync::Arc;

use candle_core::{Device, Result as CandleResult, Tensor};
use serde::{Deserialize, Serialize};

use super::layers::{Layer, ParamSource};
use super::onnx::{OnnxGraph, Port};
use super::source::{LoadedWeights, WeightsSource};
use super::unit::{Unit, UnitInfo};
use super::{ModelError, Weights};
use crate::data::preprocess::Preprocessing;

/// Every network the app knows, by name. The first one is the default.
static REGISTRY: &[&dyn Architecture] = &[
    &super::lite0::Lite0,
    &super::resnet::RESNET18,
    &super::resnet::RESNET50,
    &super::vgg::Vgg16,
];

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

/// A registered network: cheap to copy, saved by name.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Backbone(&'static dyn Architecture);

impl Backbone {
    /// Every registered network, the default first.
    pub fn all() -> impl Iterator<Item = Backbone> {
        REGISTRY.iter().map(|&a| Backbone(a))
    }

    /// The network registered as `name`.
    pub fn by_name(name: &str) -> Option<Backbone> {
        Self::all().find(|b| b.name() == name)
    }

    pub fn architecture(self) -> &'static dyn Architecture {
        self.0
    }

    pub fn unit_count(self) -> usize {
        self.0.units().len()
    }

    /// Position of `unit` in the network (0: the stem). Units the network does not have
    /// count as its last unit, as the whole network is kept then.
    pub fn index_of(self, unit: Unit) -> usize {
        let units = self.0.units();
        units
            .iter()
            .position(|u| u.unit == unit)
            .unwrap_or(units.len().saturating_sub(1))
    }

    /// The unit at `index`; indices past the end mean the last unit.
    pub fn unit_at(self, index: usize) -> Unit {
        let units = self.0.units();
        units[index.min(units.len() - 1)].unit
    }

    pub fn last_unit(self) -> Unit {
        self.unit_at(usize::MAX)
    }

    pub fn has_unit(self, unit: Unit) -> bool {
        self.0.units().iter().any(|u| u.unit == unit)
    }

    /// What the network says of `unit` (the last unit's, for one it does not have).
    pub fn info(self, unit: Unit) -> UnitInfo {
        self.0.units()[self.index_of(unit)]
    }

    /// Parses a cut point and checks that this network has it.
    pub fn parse_unit(self, text: &str) -> Result<Unit, ModelError> {
        let unit: Unit = text
            .parse()
            .map_err(|e: super::unit::UnitParseError| ModelError::UnknownUnit(e.to_string()))?;
        if self.has_unit(unit) {
            Ok(unit)
        } else {
            Err(self.missing_unit(unit))
        }
    }

    /// The error for a unit this network does not have.
    pub fn missing_unit(self, unit: Unit) -> ModelError {
        missing_unit(self.0, unit)
    }

    /// Loads weights for this network from `source`, renamed into its naming scheme; hub
    /// downloads are checked against their sha256.
    pub fn load_weights(
        self,
        source: &WeightsSource,
        device: &Device,
    ) -> Result<LoadedWeights, ModelError> {
        self.load_weights_reporting(source, device, None)
    }

    /// [`Self::load_weights`], a hub download's progress going to `progress`.
    pub fn load_weights_reporting(
        self,
        source: &WeightsSource,
        device: &Device,
        progress: Option<&mut super::hub::DownloadProgress<'_>>,
    ) -> Result<LoadedWeights, ModelError> {
        let mut loaded = super::source::load_raw(self, source, device, progress)?;
        loaded.weights = self.0.adapt_weights(loaded.weights)?;
        Ok(loaded)
    }

    /// The default pretrained weights (bundled, or from the hub's cache).
    pub fn pretrained_weights(self, device: &Device) -> Result<Weights, ModelError> {
        Ok(self
            .load_weights(&self.0.default_weights(), device)?
            .weights)
    }
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

impl std::ops::Deref for Backbone {
    type Target = dyn Architecture;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl Default for Backbone {
    fn default() -> Self {
        Backbone(REGISTRY[0])
    }
}

impl PartialEq for Backbone {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Backbone {}

impl fmt::Debug for Backbone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Backbone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backbone {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backbone::by_name(s.trim()).ok_or_else(|| {
            let known: Vec<&str> = Backbone::all().map(|b| b.name()).collect();
            ModelError::UnknownBackbone(format!("{s:?} (known: {})", known.join(", ")))
        })
    }
}

impl TryFrom<String> for Backbone {
    type Error = ModelError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

impl From<Backbone> for String {
    fn from(backbone: Backbone) -> Self {
        backbone.name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_names_each_network_once() {
        let names: Vec<&str> = Backbone::all().map(|b| b.name()).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique);
        for b in Backbone::all() {
            assert_eq!(b.name().parse::<Backbone>().ok(), Some(b));
            for (i, info) in b.units().iter().enumerate() {
                assert_eq!(b.index_of(info.unit), i);
            }
        }
        assert!("no-such-net".parse::<Backbone>().is_err());
    }
}
