//! `transfer-studio evaluate`: a saved model's accuracy on a folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::data::dataset::{LoadOptions, LoadProgress, load_dataset};
use crate::runtime;
use crate::train::TrainedModel;

/// Accuracy, per-class precision/recall and the confusion matrix of a saved model.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// A directory saved by `train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Image folder with one sub-folder per class (names as in training).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub json: bool,
}

impl EvaluateArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let (model, data, json) = (&self.model, &self.data, self.json);
        let device = runtime::compute_device();
        let (trained, _) = TrainedModel::load(model, &device)
            .with_context(|| format!("loading the model in {}", model.display()))?;
        let options = LoadOptions {
            val_fraction: 0.0,
            cache_short_side_px: trained.preprocessing.resize_px,
            ..LoadOptions::default()
        };
        let dataset = load_dataset(data, &options, &LoadProgress::default())?;
        let evaluation = crate::train::evaluate_dataset(&trained, &dataset)?;
        if json {
            let doc = serde_json::json!({
                "model": model,
                "data": data,
                "images": evaluation.images,
                "accuracy": evaluation.accuracy,
                "loss": evaluation.loss,
                "classes": evaluation.classes,
                "per_class": evaluation.per_class,
                "confusion": evaluation.confusion,
                "skipped": dataset.skipped,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            print!("{}", evaluation.to_text());
            if !dataset.skipped.is_empty() {
                println!("{} files skipped:", dataset.skipped.len());
                for s in &dataset.skipped {
                    println!("  {}: {}", s.path.display(), s.reason);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
