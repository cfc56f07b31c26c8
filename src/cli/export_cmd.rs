//! `transfer-studio export`: a model as ONNX (f32, f16 or int8) or TFLite (f32 or int8),
//! labels, preprocessing and precision in its metadata; the written file is then run on
//! images and compared with the app's model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::args::{ModelChoice, NetworkArgs, load_predictor};
use crate::export::check::{Agreement, check_file, demo_images, validation_images};
use crate::export::{Format, Precision};
use crate::runtime;
use crate::train::TrainedModel;

/// Calibration images used at most.
const CALIBRATION_IMAGES: usize = 256;

/// Export a model to ONNX or TFLite (labels and preprocessing in its metadata), then check
/// the file.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// `builtin` (the pretrained ImageNet classifier) or a directory saved by `train`.
    #[arg(long, default_value = "builtin")]
    pub model: ModelChoice,
    /// With `--model builtin`: the network and its weights.
    #[command(flatten)]
    pub network: NetworkArgs,
    /// The file to write (an existing file of another kind is not overwritten).
    #[arg(long, alias = "onnx", short = 'o')]
    pub out: PathBuf,
    /// `onnx` or `tflite` (NHWC input); by default from the file's extension (`.tflite`).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Weights and activations in f32, f16 (ONNX only: half the size; input and outputs stay
    /// f32) or int8 (a quarter; calibrated on `--calibration`'s images; TFLite: full-integer
    /// with f32 input and outputs).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// With `--precision int8`: images like the ones the model will see to measure the
    /// activations' ranges on; up to 256 are used. Default: the folder a saved model was
    /// trained on (recorded in its model.json), when it is still there.
    #[arg(long, value_name = "DIR")]
    pub calibration: Option<PathBuf>,
    /// The model's training folder: the file is checked on its validation split (split as
    /// the model's plan split it). Default: the recorded training folder of a saved model,
    /// else the bundled demo photos.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl ExportArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let (model, network, out) = (&self.model, &self.network, &self.out);
        let format = self.format();
        if format == Format::Tflite && self.precision == Precision::F16 {
            anyhow::bail!(
                "TFLite export is f32 or int8: f16 TFLite runs as f32 on CPUs (use ONNX for f16)"
            );
        }
        let (predictor, mut info, plan, trained_on) = match model {
            ModelChoice::Builtin => {
                let predictor = load_predictor(model, network)?;
                let info = crate::export::ExportInfo {
                    backbone: network.backbone,
                    cut_after: network.backbone.last_unit(),
                    metrics: None,
                    precision: Precision::F32,
                };
                (predictor, info, None, None)
            }
            ModelChoice::Saved(dir) => {
                let device = runtime::compute_device();
                let (trained, manifest) = TrainedModel::load(dir, &device)
                    .with_context(|| format!("loading the model in {}", dir.display()))?;
                let (predictor, info) = crate::export::trained_parts(&trained, manifest.metrics)?;
                // The folder it was trained on, where it is still there.
                let folder = manifest.training_folder.filter(|d| d.is_dir());
                (predictor, info, Some(manifest.plan), folder)
            }
        };
        info.precision = self.precision;
        let calibration = self.calibration.as_ref().or(trained_on.as_ref());
        let crops = match (self.precision, calibration) {
            (Precision::Int8, None) => anyhow::bail!(
                "--precision int8 needs --calibration DIR: images like the ones the model \
                 will see (its training folder, say), to calibrate on (a model trained by this \
                 version calibrates on its training folder when it is still there)"
            ),
            (Precision::Int8, Some(dir)) => Some(crate::export::int8::calibration_crops(
                dir,
                predictor.preprocessing(),
                CALIBRATION_IMAGES,
            )?),
            _ => None,
        };
        let bytes = crate::export::export_file(&predictor, &info, format, out, crops.as_deref())?;
        let (images, on) = match self.data.as_ref().or(trained_on.as_ref()) {
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
        let agreement = check_file(format, &bytes, &predictor, &images)?;
        self.report(&predictor, &bytes, &agreement, &on);
        Ok(ExitCode::SUCCESS)
    }

    fn format(&self) -> Format {
        self.format.unwrap_or_else(|| Format::of_path(&self.out))
    }

    fn report(&self, predictor: &crate::predict::Predictor, bytes: &[u8], a: &Agreement, on: &str) {
        let mb = bytes.len() as f64 / 1e6;
        if self.json {
            let out = serde_json::json!({
                "file": self.out,
                "format": self.format(),
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
            "{} classes, {} px crops, {} {}: {mb:.1} MB written to {}",
            predictor.labels().len(),
            predictor.preprocessing().image_size_px,
            self.format().name(),
            self.precision.name(),
            self.out.display()
        );
        println!("{}", a.summary(on));
    }
}
