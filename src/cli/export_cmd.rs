//! `transfer-studio export`: a model as ONNX, labels and preprocessing in its metadata.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::args::{ModelChoice, NetworkArgs, load_predictor};
use crate::runtime;
use crate::train::TrainedModel;

/// Export a model to ONNX (labels and preprocessing in its metadata).
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
}

impl ExportArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let (model, network, onnx) = (&self.model, &self.network, &self.onnx);
        let (predictor, info) = match model {
            ModelChoice::Builtin => {
                let predictor = load_predictor(model, network)?;
                let info = crate::export::ExportInfo {
                    backbone: network.backbone,
                    cut_after: network.backbone.last_unit(),
                    metrics: None,
                };
                (predictor, info)
            }
            ModelChoice::Saved(dir) => {
                let device = runtime::compute_device();
                let (trained, manifest) = TrainedModel::load(dir, &device)
                    .with_context(|| format!("loading the model in {}", dir.display()))?;
                crate::export::trained_parts(&trained, manifest.metrics)?
            }
        };
        crate::export::write_onnx(&predictor, &info, onnx)?;
        println!(
            "{} classes, {} px crops: written to {}",
            predictor.labels().len(),
            predictor.preprocessing().image_size_px,
            onnx.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}
