//! The network: architecture, weights, and the candle implementation.

pub mod arch;
pub mod network;
pub mod saved;
pub mod weights;

use std::path::PathBuf;

pub use arch::{BlockSpec, Unit};
pub use network::{FoldedNetwork, HeadInit, Init, Network, NetworkSpec};
pub use saved::MANIFEST_FILE;
pub use weights::{Weights, imagenet_labels};

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
    #[error("{0} is not a valid safetensors file: {1}")]
    BadWeightsFile(PathBuf, String),
    #[error("cannot initialise the network: {0}")]
    Init(String),
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
