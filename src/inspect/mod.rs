//! Looking inside the network: the strongest activation maps at a unit (what each layer
//! responds to, as in Zeiler & Fergus) and Grad-CAM (which parts of the image raised a class's
//! score). Both work on one image's evaluation crop with any [`Predictor`], so the pretrained
//! network and trained (also truncated) models alike.

mod colour;
pub mod error;
mod gradcam;
mod maps;

pub use colour::{encode_png, overlay};
pub use error::InspectError;
pub use gradcam::{Explanation, grad_cam, resolve_class};
pub use maps::{
    ActivationMaps, ChannelMap, DEFAULT_CHANNELS, activation_maps, maps_grid, spatial_units,
};

#[cfg(doc)]
use crate::predict::Predictor;
