//! Looking inside the network: the strongest activation maps at a unit (what each layer
//! responds to, as in Zeiler & Fergus) and Grad-CAM (which parts of the image raised a class's
//! score). Both work on one image's evaluation crop with any [`Predictor`], so the pretrained
//! network and trained (also truncated) models alike.

mod colour;
mod gradcam;
mod maps;

pub use colour::{encode_png, overlay};
pub use gradcam::{Explanation, grad_cam, resolve_class};
pub use maps::{
    ActivationMaps, ChannelMap, DEFAULT_CHANNELS, activation_maps, maps_grid, spatial_units,
};

use crate::model::{ModelError, Unit};
#[cfg(doc)]
use crate::predict::Predictor;

/// Why a look inside could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{unit} is cut away in this model (its last unit is {cut})")]
    UnitCutAway { unit: Unit, cut: Unit },
    #[error("{unit} is fully connected and has no map: pick a convolutional unit")]
    NotSpatial { unit: Unit },
    #[error("no class {given:?}: give a class index below {classes} or one of the model's labels")]
    UnknownClass { given: String, classes: usize },
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl From<candle_core::Error> for InspectError {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(ModelError::from(e))
    }
}
