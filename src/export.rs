//! ONNX export: the whole classifier (normalisation inside, BatchNorm folded, `probabilities`
//! and `logits` out, dynamic batch, opset 17) with its labels and preprocessing in
//! `metadata_props`, written atomically.

use std::path::{Path, PathBuf};

use onnx_protobuf::{Message, ModelProto, OperatorSetIdProto, StringStringEntryProto};

use crate::model::{Backbone, ModelError, Unit};
use crate::predict::Predictor;
use crate::train::{SavedMetrics, StoreError, TrainedModel};

/// The operator set the graph uses.
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
const IR_VERSION: i64 = 8;

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
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the metadata says besides the labels and preprocessing.
#[derive(Debug, Clone)]
pub struct ExportInfo {
    pub backbone: Backbone,
    pub cut_after: Unit,
    /// Validation results of a trained model (`None`: the pretrained classifier).
    pub metrics: Option<SavedMetrics>,
}

fn entry(key: &str, value: String) -> StringStringEntryProto {
    StringStringEntryProto {
        key: key.into(),
        value,
        ..Default::default()
    }
}

/// The ONNX model of `predictor`, metadata included.
pub fn onnx_model(predictor: &Predictor, info: &ExportInfo) -> Result<ModelProto, ExportError> {
    let pre = predictor.preprocessing();
    let json = |v: serde_json::Value| v.to_string();
    let metrics = info.metrics.as_ref().map_or(serde_json::Value::Null, |m| {
        serde_json::json!({
            "val_accuracy": m.val_accuracy,
            "val_loss": m.val_loss,
            "train_accuracy": m.train_accuracy,
            "best_epoch": m.best_epoch,
            "per_class": m.per_class,
        })
    });
    let metadata = vec![
        entry("labels", json(serde_json::json!(predictor.labels()))),
        entry("image_size", pre.image_size_px.to_string()),
        entry("resize", pre.resize_px.to_string()),
        entry("interpolation", "bilinear".into()),
        entry(
            "normalization",
            json(serde_json::json!({"mean": pre.mean, "std": pre.std})),
        ),
        entry("backbone", info.backbone.name().into()),
        entry("cut_after", info.cut_after.to_string()),
        entry("app_version", env!("CARGO_PKG_VERSION").into()),
        entry("metrics", json(metrics)),
    ];
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        producer_name: "transfer-studio".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(predictor.onnx_graph()?).into(),
        metadata_props: metadata,
        ..Default::default()
    })
}

/// A saved or trained model's classifier and what its metadata says.
pub fn trained_parts(
    model: &TrainedModel,
    metrics: Option<SavedMetrics>,
) -> Result<(Predictor, ExportInfo), ExportError> {
    let predictor = Predictor::from_network(
        &model.network,
        model.classes.clone(),
        model.preprocessing.clone(),
    )?;
    let info = ExportInfo {
        backbone: model.network.spec.backbone,
        cut_after: model.network.spec.cut_after,
        metrics,
    };
    Ok((predictor, info))
}

/// Whether `path` holds an ONNX model (so that writing over it loses nothing unexpected).
fn is_onnx(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| ModelProto::parse_from_bytes(&bytes).ok())
        .is_some_and(|m| m.graph.is_some())
}

/// Writes `predictor` to `path` atomically; an existing file that is not an ONNX model is
/// refused.
pub fn write_onnx(
    predictor: &Predictor,
    info: &ExportInfo,
    path: &Path,
) -> Result<(), ExportError> {
    if path.exists() && !is_onnx(path) {
        return Err(ExportError::NotOnnx(path.to_owned()));
    }
    let bytes = onnx_model(predictor, info)?
        .write_to_bytes()
        .map_err(|e| ExportError::Encode(e.to_string()))?;
    crate::fsutil::write_atomic(path, &bytes).map_err(|source| ExportError::Write {
        path: path.to_owned(),
        source,
    })
}
