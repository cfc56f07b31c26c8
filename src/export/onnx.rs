//! The ONNX model of a classifier: its graph (from `Predictor::onnx_graph`), at a precision,
//! with the labels, preprocessing and precision in `metadata_props`.

use std::collections::HashMap;

use onnx_protobuf::{GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto};

use super::f16;
use super::types::{ExportError, Precision};
use crate::model::{Backbone, Unit};
use crate::predict::Predictor;
use crate::train::SavedMetrics;

/// The operator set the graph uses.
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
const IR_VERSION: i64 = 8;

/// What the metadata says besides the labels and preprocessing.
#[derive(Debug, Clone)]
pub struct ExportInfo {
    pub backbone: Backbone,
    pub cut_after: Unit,
    /// Validation results of a trained model (`None`: the pretrained classifier).
    pub metrics: Option<SavedMetrics>,
    pub precision: Precision,
}

pub(super) fn entry(key: &str, value: String) -> StringStringEntryProto {
    StringStringEntryProto {
        key: key.into(),
        value,
        ..Default::default()
    }
}

/// What every exported file says of itself (ONNX `metadata_props`, TFLite `metadata`), as
/// key and text.
pub(super) fn metadata(predictor: &Predictor, info: &ExportInfo) -> Vec<(&'static str, String)> {
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
    vec![
        ("labels", json(serde_json::json!(predictor.labels()))),
        ("image_size", pre.image_size_px.to_string()),
        ("resize", pre.resize_px.to_string()),
        ("interpolation", "bilinear".into()),
        (
            "normalization",
            json(serde_json::json!({"mean": pre.mean, "std": pre.std})),
        ),
        ("backbone", info.backbone.name().into()),
        ("cut_after", info.cut_after.to_string()),
        ("app_version", env!("CARGO_PKG_VERSION").into()),
        ("metrics", json(metrics)),
        ("precision", info.precision.name().into()),
    ]
}

/// The ONNX model of `predictor`, metadata included.
pub fn onnx_model(predictor: &Predictor, info: &ExportInfo) -> Result<ModelProto, ExportError> {
    let metadata = metadata(predictor, info)
        .into_iter()
        .map(|(key, value)| entry(key, value))
        .collect();
    let mut graph = predictor.onnx_graph()?;
    match info.precision {
        Precision::F32 => {}
        Precision::F16 => f16::convert_graph(&mut graph)?,
        Precision::Int8 => {
            return Err(ExportError::Check(
                "an int8 model needs calibration images (quantized_model)".into(),
            ));
        }
    }
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        producer_name: "transfer-studio".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph).into(),
        metadata_props: metadata,
        ..Default::default()
    })
}

/// For each node whose output a `Relu` or `Clip` alone reads, that activation's node index:
/// the activation a runtime folds into the node before it.
pub(super) fn sole_activations(graph: &GraphProto) -> HashMap<usize, usize> {
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            readers.entry(input.as_str()).or_default().push(i);
        }
    }
    graph
        .node
        .iter()
        .enumerate()
        .filter_map(|(i, node)| {
            let r = readers.get(node.output.first()?.as_str())?;
            let only = *r.first().filter(|_| r.len() == 1)?;
            matches!(graph.node[only].op_type.as_str(), "Relu" | "Clip").then_some((i, only))
        })
        .collect()
}
