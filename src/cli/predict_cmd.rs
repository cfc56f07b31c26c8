//! `transfer-studio predict`: the top classes of each image.

use std::path::PathBuf;
use std::process::ExitCode;

use super::args::{ModelChoice, NetworkArgs, load_predictor};
use crate::predict::{self, FilePrediction};

/// Classify images with the bundled ImageNet network or a trained model.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// `builtin` (ImageNet classes) or a directory saved by `train`.
    #[arg(long, default_value = "builtin")]
    pub model: ModelChoice,
    /// With `--model builtin`: the network and its weights.
    #[command(flatten)]
    pub network: NetworkArgs,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = predict::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

impl PredictArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let predictor = load_predictor(&self.model, &self.network)?;
        let results =
            predict::classify_files(&predictor, &self.images, self.top_k.max(1), self.batch_size);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&results)?);
        } else {
            for result in &results {
                match result {
                    FilePrediction::Classified { image, top } => {
                        println!("{}", image.display());
                        for class in top {
                            println!(
                                "  {:>6.2}%  {} ({})",
                                class.prob * 100.0,
                                class.label,
                                class.index
                            );
                        }
                    }
                    FilePrediction::Failed { image, error } => {
                        println!("{}\n  error: {error}", image.display());
                    }
                }
            }
        }
        let classified = results
            .iter()
            .filter(|r| matches!(r, FilePrediction::Classified { .. }))
            .count();
        if classified == 0 {
            eprintln!(
                "error: none of the {} images could be classified",
                results.len()
            );
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }
}
