//! TensorFlow Lite export: the same classifier as the ONNX file (`probabilities` and `logits`
//! out), NHWC input `[1, H, W, 3]` with values in [0, 1], normalisation inside; f32, or
//! full-integer int8 with f32 input and outputs. The ONNX metadata goes into the model's
//! `metadata` entries (and the labels also one per line, `labels.txt`).

mod convert;
pub mod run;
mod spec;
mod write;

use std::path::Path;

use image::RgbImage;

use super::int8;
use super::onnx::{ExportInfo, metadata as metadata_entries, onnx_model};
use super::types::{ExportError, Precision};
use crate::predict::Predictor;

/// The TFLite file of `predictor`; `crops` calibrate an int8 model (required for it).
pub fn tflite_bytes(
    predictor: &Predictor,
    info: &ExportInfo,
    crops: Option<&[RgbImage]>,
) -> Result<Vec<u8>, ExportError> {
    // The f32 graph: converted as it is, or calibrated and then quantized.
    let f32_info = ExportInfo {
        precision: Precision::F32,
        ..info.clone()
    };
    let onnx = onnx_model(predictor, &f32_info)?;
    let graph = onnx
        .graph
        .as_ref()
        .ok_or_else(|| ExportError::Encode("no graph".into()))?;
    let side = predictor.preprocessing().image_size_px as usize;
    let mut metadata: Vec<(String, Vec<u8>)> = metadata_entries(predictor, info)
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.into_bytes()))
        .collect();
    let mut spec = match (info.precision, crops) {
        (Precision::F32, _) => convert::Converter::convert(graph, side, None)?,
        (Precision::Int8, Some(crops)) => {
            // Every value of the graph gets a range: all of them are int8 tensors.
            // (The input's is [0, 1].)
            let names = graph.node.iter().flat_map(|n| n.output.clone()).collect();
            let calibration = int8::calibrate_tensors(&onnx, crops, names)?;
            metadata.push((
                "calibration".into(),
                format!(
                    "{}; weights per channel (fully connected: per tensor), symmetric",
                    calibration.description()
                )
                .into_bytes(),
            ));
            convert::Converter::convert(graph, side, Some(&calibration.ranges))?
        }
        (Precision::Int8, None) => {
            return Err(ExportError::Check(
                "an int8 model needs calibration images".into(),
            ));
        }
        (Precision::F16, _) => {
            return Err(ExportError::Encode(
                "TFLite export is f32 or int8 (f16 TFLite runs as f32 on CPUs)".into(),
            ));
        }
    };
    metadata.push(("layout".into(), b"NHWC, values in [0, 1]".to_vec()));
    metadata.push((
        "labels.txt".into(),
        predictor.labels().join("\n").into_bytes(),
    ));
    spec.metadata = metadata;
    spec.description = format!(
        "transfer-studio {}: {} classes",
        env!("CARGO_PKG_VERSION"),
        predictor.labels().len()
    );
    Ok(write::to_flatbuffer(&spec))
}

/// Whether `bytes` are a TFLite flatbuffer (its `TFL3` identifier).
pub fn is_tflite(bytes: &[u8]) -> bool {
    tract_tflite::tflite::model_buffer_has_identifier(bytes)
}

/// Writes TFLite `bytes` to `path` atomically; an existing file that is not TFLite is refused.
pub fn write_tflite(bytes: &[u8], path: &Path) -> Result<(), ExportError> {
    if path.exists() && !std::fs::read(path).is_ok_and(|b| is_tflite(&b)) {
        return Err(ExportError::NotTflite(path.to_owned()));
    }
    crate::fsutil::write_atomic(path, bytes).map_err(|source| ExportError::Write {
        path: path.to_owned(),
        source,
    })
}

/// A metadata entry of a TFLite file the app wrote, as text.
pub fn metadata(bytes: &[u8], name: &str) -> Option<String> {
    let model = tract_tflite::tflite::root_as_model(bytes).ok()?;
    let entry = model.metadata()?.iter().find(|m| m.name() == Some(name))?;
    let buffer = model.buffers()?.get(entry.buffer() as usize);
    String::from_utf8(buffer.data()?.bytes().to_vec()).ok()
}
