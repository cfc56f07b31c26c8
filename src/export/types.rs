//! What export reports and chooses: its errors and the number format.

use std::path::PathBuf;

use crate::model::ModelError;
use crate::train::StoreError;

/// Why a model could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode the ONNX model: {0}")]
    Encode(String),
    #[error("{} exists and is not an ONNX model: not overwritten", .0.display())]
    NotOnnx(PathBuf),
    #[error("the exported file could not be run to check it: {0}")]
    Check(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The number format of the exported weights and activations.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// Half precision: half the file size; input and outputs stay f32.
    F16,
    /// int8 weights and uint8 activations (QDQ), calibrated on the user's images.
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Int8 => "int8",
        }
    }
}
