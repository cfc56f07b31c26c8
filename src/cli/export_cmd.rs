//! `transfer-studio export`: a model as ONNX (f32 or f16), labels, preprocessing and precision
//! in its metadata; the written file is then run on images and compared with the app's model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::args::{ModelChoice, NetworkArgs, load_predictor};
use crate::export::Precision;
use crate::export::check::{Agreement, check_onnx, demo_images, validation_images};
use crate::runtime;
use crate::train::TrainedModel;

/// Calibration images used at most.
const CALIBRATION_IMAGES: usize = 256;

/// Export a model to ONNX (labels and preprocessing in its metadata), then check the file.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// `builtin` (the pretrained ImageNet classifier) or a directory saved by `train`.
    #[arg(long, default_value = "builtin")]
    pub model: ModelChoice,
    /// With `--model builtin`: the network and its weights.
    #[command(flatten)]
    pub network: NetworkArgs,
    /// The file to write (an existing file that is not ONNX is not overwritten).
    #[arg(long)]
    pub onnx: PathBuf,
    /// Weights and activations in f32, f16 (half the size; input and outputs stay f32) or
    /// int8 (a quarter; calibrated on `--calibration`'s images).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// With `--precision int8`: images like the ones the model will see (the training folder,
    /// say) to measure the activations' ranges on; up to 256 are used.
    #[arg(long, value_name = "DIR")]
    pub calibration: Option<PathBuf>,
    /// The model's training folder: the file is checked on its validation split (split as
    /// the model's plan split it). Without it, on the bundled demo photos.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl ExportArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let (model, network, onnx) = (&self.model, &self.network, &self.onnx);
        let (predictor, mut info, plan) = match model {
            ModelChoice::Builtin => {
                let predictor = load_predictor(model, network)?;
                let info = crate::export::ExportInfo {
                    backbone: network.backbone,
                    cut_after: network.backbone.last_unit(),
                    metrics: None,
                    precision: Precision::F32,
                };
                (predictor, info, None)
            }
            ModelChoice::Saved(dir) => {
                let device = runtime::compute_device();
                let (trained, manifest) = TrainedModel::load(dir, &device)
                    .with_context(|| format!("loading the model in {}", dir.display()))?;
                let (predictor, info) = crate::export::trained_parts(&trained, manifest.metrics)?;
                (predictor, info, Some(manifest.plan))
            }
        };
        info.precision = self.precision;
        let bytes = match self.precision {
            Precision::Int8 => {
                let Some(dir) = &self.calibration else {
                    anyhow::bail!(
                        "--precision int8 needs --calibration DIR: images like the ones the \
                         model will see (its training folder, say), to calibrate on"
                    );
                };
                let crops = crate::export::int8::calibration_crops(
                    dir,
                    predictor.preprocessing(),
                    CALIBRATION_IMAGES,
                )?;
                let model = crate::export::quantized_model(&predictor, &info, &crops)?;
                crate::export::write_model(&model, onnx)?
            }
            _ => crate::export::write_onnx(&predictor, &info, onnx)?,
        };
        let (images, on) = match &self.data {
            Some(dir) => {
                let mut options = crate::data::dataset::LoadOptions {
                    cache_short_side_px: predictor.preprocessing().resize_px,
                    ..Default::default()
                };
                if let Some(plan) = &plan {
                    options.val_fraction = plan.val_fraction;
                    options.seed = plan.seed;
                }
                let dataset = super::load::load_with(dir, &options)?;
                let images = validation_images(&dataset, &predictor);
                (images, format!("the validation split of {}", dir.display()))
            }
            None => (
                demo_images(&predictor),
                "the bundled demo photos".to_owned(),
            ),
        };
        let agreement = check_onnx(&bytes, &predictor, &images)?;
        self.report(&predictor, &bytes, &agreement, &on);
        Ok(ExitCode::SUCCESS)
    }

    fn report(&self, predictor: &crate::predict::Predictor, bytes: &[u8], a: &Agreement, on: &str) {
        let mb = bytes.len() as f64 / 1e6;
        if self.json {
            let out = serde_json::json!({
                "onnx": self.onnx,
                "precision": self.precision,
                "bytes": bytes.len(),
                "classes": predictor.labels().len(),
                "checked_on": on,
                "check": a,
            });
            println!("{out}");
            return;
        }
        println!(
            "{} classes, {} px crops, {}: {mb:.1} MB written to {}",
            predictor.labels().len(),
            predictor.preprocessing().image_size_px,
            self.precision.name(),
            self.onnx.display()
        );
        println!("{}", a.summary(on));
    }
}
