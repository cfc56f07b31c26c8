//! Why a network could not be built, loaded or run.

use std::path::PathBuf;

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
    Hub(Box<HubError>),
    #[error(
        "{} did not have the sha256 its name promises ({expected}): a damaged download, now \
         removed from the cache; run again to download it again",
        path.display()
    )]
    Corrupt { path: PathBuf, expected: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// A hub file that is neither cached nor downloadable, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot get {file} of hf:{repo} ({reason}); it is not in the cache at {}. Connect to the \
     network once to download it, copy it into that cache, or pass --weights FILE \
     (.safetensors or .pth)",
    cache.display()
)]
pub struct HubError {
    pub repo: String,
    pub file: String,
    pub cache: PathBuf,
    pub reason: String,
}
