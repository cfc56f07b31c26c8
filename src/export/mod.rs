//! Export: the whole classifier (normalisation inside, BatchNorm folded, `probabilities` and
//! `logits` out) with its labels, preprocessing and precision, written atomically as ONNX
//! (`onnx.rs`, opset 17, dynamic batch; f16 in `f16.rs`, int8 in `int8.rs`) or TFLite
//! (`tflite/`), and checked against the app's own model after writing (`check.rs`).

pub mod check;
pub mod f16;
pub mod int8;
mod onnx;
pub mod tflite;
mod types;

pub use onnx::{ExportInfo, OPSET, onnx_model};
pub use types::{ExportError, Format, Precision};

use std::path::Path;

use onnx_protobuf::{Message, ModelProto};

use crate::predict::Predictor;
use crate::train::{SavedMetrics, TrainedModel};

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
        precision: Precision::F32,
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

/// The int8 model of `predictor`: the f32 graph calibrated on `crops` (evaluation crops of
/// the user's images) and quantized; the metadata says how.
pub fn quantized_model(
    predictor: &Predictor,
    info: &ExportInfo,
    crops: &[image::RgbImage],
) -> Result<ModelProto, ExportError> {
    let f32_info = ExportInfo {
        precision: Precision::F32,
        ..info.clone()
    };
    let mut model = onnx_model(predictor, &f32_info)?;
    let calibration = int8::calibrate(&model, crops)?;
    if let Some(graph) = model.graph.as_mut() {
        int8::quantize_graph(graph, &calibration)?;
    }
    let int8_info = ExportInfo {
        precision: Precision::Int8,
        ..info.clone()
    };
    model.metadata_props = onnx::metadata(predictor, &int8_info)
        .into_iter()
        .chain([(
            "calibration",
            format!(
                "{}; weights per channel, symmetric",
                calibration.description()
            ),
        )])
        .map(|(key, value)| onnx::entry(key, value))
        .collect();
    Ok(model)
}

/// Writes `predictor` to `path` as `format` at `info.precision` (an int8 model is calibrated
/// on `crops`, required for it) and returns the bytes written.
pub fn export_file(
    predictor: &Predictor,
    info: &ExportInfo,
    format: Format,
    path: &Path,
    crops: Option<&[image::RgbImage]>,
) -> Result<Vec<u8>, ExportError> {
    match (format, info.precision, crops) {
        (Format::Tflite, _, crops) => {
            let bytes = tflite::tflite_bytes(predictor, info, crops)?;
            tflite::write_tflite(&bytes, path)?;
            Ok(bytes)
        }
        (Format::Onnx, Precision::Int8, Some(crops)) => {
            write_model(&quantized_model(predictor, info, crops)?, path)
        }
        (Format::Onnx, _, _) => write_onnx(predictor, info, path),
    }
}

/// Writes `predictor` to `path` atomically and returns the bytes written; an existing file
/// that is not an ONNX model is refused. int8 takes [`write_model`] of [`quantized_model`].
pub fn write_onnx(
    predictor: &Predictor,
    info: &ExportInfo,
    path: &Path,
) -> Result<Vec<u8>, ExportError> {
    write_model(&onnx_model(predictor, info)?, path)
}

/// Writes an ONNX model to `path` atomically and returns the bytes written.
pub fn write_model(model: &ModelProto, path: &Path) -> Result<Vec<u8>, ExportError> {
    if path.exists() && !is_onnx(path) {
        return Err(ExportError::NotOnnx(path.to_owned()));
    }
    let bytes = model
        .write_to_bytes()
        .map_err(|e| ExportError::Encode(e.to_string()))?;
    crate::fsutil::write_atomic(path, &bytes).map_err(|source| ExportError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(bytes)
}
