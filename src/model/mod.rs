//! The networks: a family of backbones behind one interface ([`Backbone`]), the layers they are
//! made of, and the network built from one (cut, frozen, with a classifier) in candle.
//!
//! Nothing here knows about plans, training, the guide or the window.

pub mod backbone;
pub mod hub;
pub mod layers;
pub mod lite0;
pub mod network;
pub mod onnx;
pub mod resnet;
pub mod source;
pub mod unit;
pub mod vgg;
pub mod weights;

use std::path::PathBuf;

pub use backbone::{Architecture, Backbone, BackboneUnit, FoldedUnit};
pub use network::{FoldedNetwork, HeadInit, Init, Network, NetworkSpec, softmax};
pub use source::{LoadedWeights, WeightsSource};
pub use unit::{Unit, UnitInfo};
pub use weights::{Weights, imagenet_labels};

/// Why a network could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the weights have no tensor named `{0}`")]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {found:?}, the network needs {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid safetensors file: {reason}")]
    BadWeightsFile { path: PathBuf, reason: String },
    #[error("cannot draw random initial weights: {0}")]
    RandomInit(String),
    #[error("a classifier needs at least one class")]
    NoClasses,
    #[error("{labels} labels for {classes} classes")]
    LabelCount { labels: usize, classes: usize },
    #[error("{0}")]
    UnknownUnit(String),
    #[error("unknown backbone {0}")]
    UnknownBackbone(String),
    #[error("{path} is not a valid config.json: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("{0}")]
    Export(String),
    #[error("bad weights source {0}")]
    BadWeightsSource(String),
    #[error("{0} has no bundled weights: give --weights FILE or hf:ORG/REPO")]
    NoBundledWeights(String),
    #[error(transparent)]
    Hub(Box<hub::HubError>),
    #[error(
        "{} did not have the sha256 its name promises ({expected}): a damaged download, now \
         removed from the cache; run again to download it again",
        path.display()
    )]
    Corrupt { path: PathBuf, expected: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
