//! The registry of networks: [`Backbone`] names one of them, and everything outside `model/`
//! (plans, the trainer, the guide, the window, saved models) asks a [`Backbone`] instead of
//! knowing a network.
//!
//! Adding a network: a new file implementing [`Architecture`], plus one line in [`REGISTRY`].

use std::fmt;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::architecture::{Architecture, missing_unit};
use super::error::ModelError;
use super::hub::DownloadProgress;
use super::source::{LoadedWeights, WeightsSource, load_raw};
use super::unit::{Unit, UnitInfo, UnitParseError};
use super::weights::Weights;
use crate::data::preprocess::Preprocessing;

/// Every network the app knows, by name. The first one is the default.
static REGISTRY: &[&dyn Architecture] = &[
    &super::lite0::Lite0,
    &super::resnet::RESNET18,
    &super::resnet::RESNET50,
    &super::vgg::Vgg16,
];

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
            .map_err(|e: UnitParseError| ModelError::UnknownUnit(e.to_string()))?;
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
        progress: Option<&mut DownloadProgress<'_>>,
    ) -> Result<LoadedWeights, ModelError> {
        let bundled = match source {
            WeightsSource::Bundled => Some(
                self.0
                    .bundled_weights()
                    .ok_or_else(|| ModelError::NoBundledWeights(self.title().into()))?,
            ),
            _ => None,
        };
        let mut loaded = load_raw(bundled, source, device, progress)?;
        loaded.weights = self.0.adapt_weights(loaded.weights)?;
        Ok(loaded)
    }

    /// Preprocessing for crops of `image_size_px` with `loaded`: the hub's `config.json`
    /// where it came with one, else the network's own.
    pub fn preprocessing_with(self, loaded: &LoadedWeights, image_size_px: u32) -> Preprocessing {
        match &loaded.config {
            Some(config) => config.preprocessing(image_size_px),
            None => self.0.preprocessing(image_size_px),
        }
    }

    /// The weights to load: `given`, else the network's default (bundled, or the hub's). The
    /// one place that makes this choice (plans, the command line, the probe, Predict).
    pub fn weights_or_default(self, given: Option<&WeightsSource>) -> WeightsSource {
        given.cloned().unwrap_or_else(|| self.0.default_weights())
    }

    /// The default pretrained weights (bundled, or from the hub's cache).
    pub fn pretrained_weights(self, device: &Device) -> Result<Weights, ModelError> {
        Ok(self
            .load_weights(&self.weights_or_default(None), device)?
            .weights)
    }
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
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            names.len(),
            unique.len(),
            "a name registered twice: {names:?}"
        );
        for b in Backbone::all() {
            assert_eq!(b.name().parse::<Backbone>().ok(), Some(b));
            for (i, info) in b.units().iter().enumerate() {
                assert_eq!(b.index_of(info.unit), i);
            }
        }
        assert!("no-such-net".parse::<Backbone>().is_err());
    }
}
