//! After an export: the written file is run (ONNX: tract, a pure-Rust runtime; TFLite: the
//! app's reader of its own operators) on images the app also classifies, and the two are
//! compared: top-1 agreement, the largest difference in probability, and accuracy before and
//! after where the labels are known.

use image::RgbImage;
use serde::Serialize;
use tract_onnx::prelude::*;

use super::types::ExportError;
use crate::predict::Predictor;

/// Images run through both at once.
const BATCH: usize = 16;

/// How the exported file compares with the app's own model on the same images.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Agreement {
    pub images: usize,
    /// Share of images whose top class is the same in both (0–1).
    pub top1_agreement: f64,
    /// The largest absolute difference of any class's probability.
    pub max_prob_diff: f32,
    /// Accuracy of the app's model and of the file, where every image has a label.
    pub accuracy: Option<f64>,
    pub exported_accuracy: Option<f64>,
}

impl Agreement {
    /// In words: "checked on N images (ON): top-1 agreement …; accuracy a % -> b %".
    pub fn summary(&self, on: &str) -> String {
        let mut text = format!(
            "checked on {} images ({on}): top-1 agreement with the app's model {:.1} %, \
             largest probability difference {:.4}",
            self.images,
            self.top1_agreement * 100.0,
            self.max_prob_diff
        );
        if let (Some(before), Some(after)) = (self.accuracy, self.exported_accuracy) {
            text += &format!(
                "; accuracy {:.1} % -> {:.1} %",
                before * 100.0,
                after * 100.0
            );
        }
        text
    }
}

/// An evaluation crop (as `Preprocessing::eval_crop` makes it) and its class, when known.
#[derive(Debug)]
pub struct CheckImage {
    pub crop: RgbImage,
    pub label: Option<usize>,
}

/// Runs the ONNX model in `bytes` and `predictor` on `images` and compares them.
pub fn check_onnx(
    bytes: &[u8],
    predictor: &Predictor,
    images: &[CheckImage],
) -> Result<Agreement, ExportError> {
    let fail = |e: &dyn std::fmt::Display| ExportError::Check(format!("{e:#}"));
    let widened = widen_f16(bytes)?;
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(
            widened.as_deref().unwrap_or(bytes),
        ))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| fail(&e))?;
    compare(predictor, images, |crops| {
        let outputs = model
            .run(tvec!(nchw(crops).into_tensor().into()))
            .map_err(|e| fail(&e))?;
        let probs = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| fail(&e))?;
        Ok(probs
            .outer_iter()
            .map(|row| row.iter().copied().collect())
            .collect())
    })
}

/// Runs the TFLite model in `bytes` (with [`super::tflite::run`], from the file's own
/// operators and quantization) and `predictor` on `images` and compares them.
pub fn check_tflite(
    bytes: &[u8],
    predictor: &Predictor,
    images: &[CheckImage],
) -> Result<Agreement, ExportError> {
    let runner = super::tflite::run::TfliteRunner::load(bytes)?;
    compare(predictor, images, |crops| {
        let fail = |e: candle_core::Error| ExportError::Check(e.to_string());
        let outputs = runner.run(&nhwc(crops).map_err(fail)?)?;
        let probs = outputs
            .first()
            .ok_or_else(|| ExportError::Check("the TFLite file has no output".into()))?;
        probs.to_vec2::<f32>().map_err(fail)
    })
}

/// Runs the file in `bytes`, of `format`, and `predictor` on `images` and compares them.
pub fn check_file(
    format: super::types::Format,
    bytes: &[u8],
    predictor: &Predictor,
    images: &[CheckImage],
) -> Result<Agreement, ExportError> {
    match format {
        super::types::Format::Onnx => check_onnx(bytes, predictor, images),
        super::types::Format::Tflite => check_tflite(bytes, predictor, images),
    }
}

/// Runs both on `images`, a batch at a time, and counts how they agree.
fn compare(
    predictor: &Predictor,
    images: &[CheckImage],
    mut exported: impl FnMut(&[RgbImage]) -> Result<Vec<Vec<f32>>, ExportError>,
) -> Result<Agreement, ExportError> {
    let mut counts = Counts::default();
    for chunk in images.chunks(BATCH) {
        let crops: Vec<RgbImage> = chunk.iter().map(|c| c.crop.clone()).collect();
        let ours = predictor.probabilities(&crops)?;
        let theirs = exported(&crops)?;
        if theirs.len() != ours.len() {
            return Err(ExportError::Check(format!(
                "the file gave {} answers for {} images",
                theirs.len(),
                ours.len()
            )));
        }
        for ((image, ours), theirs) in chunk.iter().zip(&ours).zip(&theirs) {
            counts.add(ours, theirs, image.label);
        }
    }
    Ok(counts.agreement(images.len()))
}

/// An f16 file as [`super::f16::widened`] runs it; `None` for other files.
fn widen_f16(bytes: &[u8]) -> Result<Option<Vec<u8>>, ExportError> {
    use onnx_protobuf::Message;
    let mut model = onnx_protobuf::ModelProto::parse_from_bytes(bytes)
        .map_err(|e| ExportError::Check(format!("the file does not parse: {e}")))?;
    let is_f16 = model
        .metadata_props
        .iter()
        .any(|e| e.key == "precision" && e.value == super::types::Precision::F16.name());
    if !is_f16 {
        return Ok(None);
    }
    if let Some(graph) = model.graph.as_ref() {
        model.graph = Some(super::f16::widened(graph)).into();
    }
    model
        .write_to_bytes()
        .map(Some)
        .map_err(|e| ExportError::Encode(e.to_string()))
}

#[derive(Default)]
struct Counts {
    agree: usize,
    correct: usize,
    exported_correct: usize,
    labelled: usize,
    max_diff: f32,
}

impl Counts {
    fn add(&mut self, ours: &[f32], theirs: &[f32], label: Option<usize>) {
        let (a, b) = (arg_max(ours), arg_max(theirs));
        self.agree += usize::from(a == b);
        for (x, y) in ours.iter().zip(theirs) {
            self.max_diff = self.max_diff.max((x - y).abs());
        }
        if let Some(label) = label {
            self.labelled += 1;
            self.correct += usize::from(a == label);
            self.exported_correct += usize::from(b == label);
        }
    }

    fn agreement(&self, images: usize) -> Agreement {
        let share = |n: usize, of: usize| n as f64 / of.max(1) as f64;
        let labelled = self.labelled == images && images > 0;
        Agreement {
            images,
            top1_agreement: share(self.agree, images),
            max_prob_diff: self.max_diff,
            accuracy: labelled.then(|| share(self.correct, images)),
            exported_accuracy: labelled.then(|| share(self.exported_correct, images)),
        }
    }
}

fn arg_max(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Crops as a TFLite file takes them: NHWC, values in [0, 1].
pub(super) fn nhwc(crops: &[RgbImage]) -> candle_core::Result<candle_core::Tensor> {
    let side = crops.first().map_or(0, |c| c.width() as usize);
    let values: Vec<f32> = crops
        .iter()
        .flat_map(|c| c.as_raw().iter().map(|&v| f32::from(v) / 255.0))
        .collect();
    candle_core::Tensor::from_vec(
        values,
        (crops.len(), side, side, 3),
        &candle_core::Device::Cpu,
    )
}

/// Crops as the file takes them: NCHW, values in [0, 1] (normalisation is inside the file).
pub(super) fn nchw(crops: &[RgbImage]) -> tract_ndarray::ArrayD<f32> {
    let side = crops.first().map_or(0, |c| c.width() as usize);
    tract_ndarray::ArrayD::from_shape_fn(vec![crops.len(), 3, side, side], |i| {
        f32::from(crops[i[0]].get_pixel(i[3] as u32, i[2] as u32)[i[1]]) / 255.0
    })
}

/// Every fifth image of the bundled demo packs (48; no labels the model knows): the check
/// when no data is given.
pub fn demo_images(predictor: &Predictor) -> Vec<CheckImage> {
    crate::data::demo::DemoPack::ALL
        .into_iter()
        .flat_map(|pack| pack.files())
        .step_by(5)
        .filter_map(|(_, bytes)| crate::data::decode::decode_rgb_bytes(bytes).ok())
        .map(|image| CheckImage {
            crop: predictor.preprocessing().eval_crop(&image),
            label: None,
        })
        .collect()
}

/// A dataset's validation images, labelled with the model's class of the same name.
pub fn validation_images(
    dataset: &crate::data::dataset::Dataset,
    predictor: &Predictor,
) -> Vec<CheckImage> {
    let pre = predictor.preprocessing();
    dataset
        .val
        .iter()
        .filter_map(|sample| {
            let image = sample.image(pre.resize_px).ok()?;
            let name = &dataset.classes[sample.label];
            Some(CheckImage {
                crop: pre.eval_crop(&image),
                label: predictor.labels().iter().position(|l| l == name),
            })
        })
        .collect()
}
