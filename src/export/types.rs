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
    #[error("cannot encode the model: {0}")]
    Encode(String),
    #[error("{} exists and is not an ONNX model: not overwritten", .0.display())]
    NotOnnx(PathBuf),
    #[error("{} exists and is not a TFLite model: not overwritten", .0.display())]
    NotTflite(PathBuf),
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
    /// int8 weights and 8-bit activations (ONNX: QDQ, uint8; TFLite: full-integer int8),
    /// calibrated on the user's images.
    Int8,
}

/// The exported file's format.
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
pub enum Format {
    #[default]
    Onnx,
    /// TensorFlow Lite (NHWC input), for phones and microcontrollers.
    Tflite,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Onnx => "onnx",
            Self::Tflite => "tflite",
        }
    }

    /// The format's name as people write it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Onnx => "ONNX",
            Self::Tflite => "TFLite",
        }
    }

    /// `.tflite` files are TFLite; anything else ONNX.
    pub fn of_path(path: &std::path::Path) -> Self {
        let tflite = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tflite"));
        if tflite { Self::Tflite } else { Self::Onnx }
    }
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
