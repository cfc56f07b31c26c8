//! `transfer-studio`: opens the app, or runs one of the engine's commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use transfer_studio::checkpoint::{self, FloatStorage};
use transfer_studio::predict::{self, FilePrediction, Predictor};
use transfer_studio::runtime;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "transfer-studio",
    version,
    about = "Transfer learning of image classifiers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Classify images with the bundled ImageNet network or a trained model.
    Predict {
        /// `builtin` (ImageNet classes) or a directory saved by `train`.
        #[arg(long, default_value = "builtin")]
        model: String,
        /// How many classes to show per image.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Images per forward pass.
        #[arg(long, default_value_t = predict::DEFAULT_BATCH_SIZE)]
        batch_size: usize,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Convert a PyTorch checkpoint (.pth, zip or legacy format) into safetensors.
    ImportWeights {
        input: PathBuf,
        output: PathBuf,
        /// Store float tensors as f16 (half the size).
        #[arg(long)]
        f16: bool,
    },
}

fn main() -> ExitCode {
    runtime::init_threads();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Predict {
            model,
            top_k,
            json,
            batch_size,
            images,
        }) => predict_command(&model, top_k, json, batch_size, &images),
        Some(Command::ImportWeights { input, output, f16 }) => {
            let storage = if f16 {
                FloatStorage::F16
            } else {
                FloatStorage::Keep
            };
            let summary = checkpoint::import_weights(&input, &output, storage)
                .with_context(|| format!("importing {}", input.display()))?;
            println!(
                "{}: {:?} format, {} tensors ({} values) written to {}; \
                 {} BatchNorm step counters dropped",
                input.display(),
                summary.format,
                summary.tensors,
                summary.parameters,
                output.display(),
                summary.dropped_counters
            );
            if !summary.skipped_entries.is_empty() {
                println!(
                    "not tensors, not imported: {}",
                    summary.skipped_entries.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

fn load_predictor(model: &str) -> anyhow::Result<Predictor> {
    let device = runtime::compute_device();
    if model == "builtin" {
        return Predictor::imagenet(&device).context("loading the bundled network");
    }
    anyhow::bail!("unknown model {model:?}: use `builtin` or a directory saved by `train`")
}

fn predict_command(
    model: &str,
    top_k: usize,
    json: bool,
    batch_size: usize,
    images: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let predictor = load_predictor(model)?;
    let results = predict::classify_files(&predictor, images, top_k.max(1), batch_size);
    if json {
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
