//! The command line: argument parsing and the commands' terminal output (`anyhow` at this edge).

mod guide_cmd;
mod inspect_cmd;
mod progress;
mod train_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::checkpoint::{self, FloatStorage};
use crate::data::dataset::{LoadOptions, LoadProgress, load_dataset};
use crate::model::{Backbone, WeightsSource};
use crate::predict::{self, FilePrediction, Predictor};
use crate::runtime;
use crate::train::TrainedModel;

pub use train_cmd::TrainArgs;

#[derive(Debug, Parser)]
#[command(
    name = "transfer-studio",
    version,
    about = "Transfer learning of image classifiers on a bundled EfficientNet-Lite0",
    long_about = "Transfer learning of image classifiers on a bundled EfficientNet-Lite0.\n\
                  Without a command, opens the window.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Open the window with this training folder loaded (one sub-folder per class).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Files to open in the window: images go to Predict, a folder becomes the training data.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Where to compute: auto (a CUDA GPU when the build has CUDA and one is present, else the
    /// CPU), cpu, or cuda (an error without one).
    #[arg(long, global = true, value_enum, default_value_t = runtime::DeviceChoice::Auto)]
    pub device: runtime::DeviceChoice,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify images with the bundled ImageNet network or a trained model.
    Predict {
        /// `builtin` (ImageNet classes) or a directory saved by `train`.
        #[arg(long, default_value = "builtin")]
        model: ModelChoice,
        /// With `--model builtin`: the network and its weights.
        #[command(flatten)]
        network: NetworkArgs,
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
    /// Train a classifier on an image folder (one sub-folder per class) and save it.
    Train(Box<TrainArgs>),
    /// Accuracy, per-class precision/recall and the confusion matrix of a saved model.
    Evaluate {
        /// A directory saved by `train`.
        #[arg(long)]
        model: PathBuf,
        /// Image folder with one sub-folder per class (names as in training).
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Measure speed on synthetic input (see README: Performance).
    Bench {
        #[command(flatten)]
        network: NetworkArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[arg(long, default_value_t = 224)]
        image_size: usize,
        /// Timed repetitions per measurement (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Leave out the full fine-tune step (the slowest workload).
        #[arg(long)]
        no_fine_tune: bool,
    },
    /// Place a dataset on the guide's grid: size, similarity to ImageNet, suggested case.
    Recommend {
        #[arg(long)]
        data: PathBuf,
        /// Images per class from which a dataset counts as large.
        #[arg(long, default_value_t = 200)]
        large_from: usize,
        /// Similarity score (0-1) from which a dataset counts as similar.
        #[arg(long, default_value_t = 0.45)]
        similar_from: f64,
        /// Images measured (spread over the classes).
        #[arg(long, default_value_t = 192)]
        max_images: usize,
        #[arg(long)]
        json: bool,
    },
    /// Train the four presets on the same data and compare them.
    Compare {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        val: Option<PathBuf>,
        /// A held-out test folder (classes as in --data), used for nothing else: every model
        /// is evaluated on it and the advice is judged on it (validation chose each run's best
        /// epoch, so its accuracy flatters).
        #[arg(long)]
        test: Option<PathBuf>,
        /// Directory for the four models and compare.json.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        network: NetworkArgs,
        #[command(flatten)]
        quick: guide_cmd::CompareArgs,
        #[arg(long)]
        json: bool,
    },
    /// Linear-probe accuracy at several depths of the pretrained network.
    Probe {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        val: Option<PathBuf>,
        /// Training epochs of each linear probe.
        #[arg(long, default_value_t = 60)]
        epochs: usize,
        #[command(flatten)]
        network: NetworkArgs,
        #[arg(long)]
        json: bool,
    },
    /// Export a model to ONNX (labels and preprocessing in its metadata).
    Export {
        /// `builtin` (the pretrained ImageNet classifier) or a directory saved by `train`.
        #[arg(long, default_value = "builtin")]
        model: ModelChoice,
        /// With `--model builtin`: the network and its weights.
        #[command(flatten)]
        network: NetworkArgs,
        /// The file to write (an existing file that is not ONNX is not overwritten).
        #[arg(long)]
        onnx: PathBuf,
    },
    /// The strongest activation maps of one image at a unit of the network, as a PNG grid.
    Inspect(Box<inspect_cmd::InspectArgs>),
    /// Grad-CAM: where in the image the network found a class (default: its top-1), as a PNG
    /// overlay of the network's input crop.
    Explain(Box<inspect_cmd::ExplainArgs>),
    /// Convert a PyTorch checkpoint (.pth, zip or legacy format) into safetensors.
    ImportWeights {
        input: PathBuf,
        output: PathBuf,
        /// Store float tensors as f16 (half the size).
        #[arg(long)]
        f16: bool,
    },
}

/// Which model classifies: the bundled network's ImageNet head, or a saved model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    Builtin,
    Saved(PathBuf),
}

impl std::str::FromStr for ModelChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s == "builtin" {
            ModelChoice::Builtin
        } else {
            ModelChoice::Saved(PathBuf::from(s))
        })
    }
}

/// `--backbone` and `--weights`, shared by the commands that build a pretrained network.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkArgs {
    /// The network: efficientnet-lite0 (bundled; `lite0` for short), resnet18, resnet50, vgg16.
    #[arg(long, default_value = "efficientnet-lite0", value_parser = parse_backbone)]
    pub backbone: Backbone,
    /// Pretrained weights: a .safetensors or .pth file, or hf:ORG/REPO (default: bundled for
    /// Lite0, timm's torchvision weights from the Hugging Face hub for the others).
    #[arg(long, value_parser = parse_weights)]
    pub weights: Option<WeightsSource>,
}

impl NetworkArgs {
    /// The weights to load: the ones given, else the network's default.
    pub fn source(&self) -> WeightsSource {
        self.weights
            .clone()
            .unwrap_or_else(|| self.backbone.default_weights())
    }
}

/// A registered network, by name (`lite0` for short).
pub fn parse_backbone(s: &str) -> Result<Backbone, String> {
    let name = if s == "lite0" {
        "efficientnet-lite0"
    } else {
        s
    };
    name.parse()
        .map_err(|e: crate::model::ModelError| e.to_string())
}

/// A weights source: a file, `hf:ORG/REPO` or `bundled`.
pub fn parse_weights(s: &str) -> Result<WeightsSource, String> {
    s.parse()
        .map_err(|e: crate::model::ModelError| e.to_string())
}

/// Parses the arguments and runs the command; errors are printed, never panicked.
pub fn main() -> ExitCode {
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
    runtime::choose_device(cli.device)?;
    match cli.command {
        Some(Command::Predict {
            model,
            network,
            top_k,
            json,
            batch_size,
            images,
        }) => predict_command(
            &model,
            network.backbone,
            network.weights.as_ref(),
            top_k,
            json,
            batch_size,
            &images,
        ),
        Some(Command::Train(args)) => train_cmd::run(*args),
        Some(Command::Evaluate { model, data, json }) => evaluate_command(&model, &data, json),
        Some(Command::Bench {
            json,
            batch_size,
            image_size,
            repeats,
            no_fine_tune,
            network,
        }) => bench_command(
            json,
            &crate::bench::BenchOptions {
                backbone: network.backbone,
                weights: network.source(),
                batch_size,
                image_size_px: image_size,
                repeats,
                skip_fine_tune: no_fine_tune,
            },
        ),
        Some(Command::Recommend {
            data,
            large_from,
            similar_from,
            max_images,
            json,
        }) => guide_cmd::recommend_command(
            &data,
            crate::guide::recommend::Thresholds {
                large_images_per_class: large_from,
                similar_min_score: similar_from,
            },
            max_images,
            json,
        ),
        Some(Command::Compare {
            data,
            val,
            test,
            out,
            network,
            quick,
            json,
        }) => guide_cmd::compare_command(
            &guide_cmd::CompareFolders {
                data: &data,
                val,
                test: test.as_deref(),
                out: &out,
            },
            &network,
            &quick,
            json,
        ),
        Some(Command::Probe {
            data,
            val,
            epochs,
            network,
            json,
        }) => guide_cmd::probe_command(&data, val, epochs, &network, json),
        Some(Command::Inspect(args)) => inspect_cmd::inspect_command(&args),
        Some(Command::Explain(args)) => inspect_cmd::explain_command(&args),
        Some(Command::ImportWeights { input, output, f16 }) => import_command(&input, &output, f16),
        Some(Command::Export {
            model,
            network,
            onnx,
        }) => export_command(&model, &network, &onnx),
        None => {
            crate::ui::run_window(cli.data, cli.paths, cli.device)
                .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn import_command(
    input: &std::path::Path,
    output: &std::path::Path,
    f16: bool,
) -> anyhow::Result<ExitCode> {
    let storage = if f16 {
        FloatStorage::F16
    } else {
        FloatStorage::Keep
    };
    let summary = checkpoint::import_weights(input, output, storage)
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

fn load_predictor(
    model: &ModelChoice,
    backbone: Backbone,
    weights: Option<&WeightsSource>,
) -> anyhow::Result<Predictor> {
    let device = runtime::compute_device();
    let dir = match model {
        ModelChoice::Builtin => {
            let source = weights
                .cloned()
                .unwrap_or_else(|| backbone.default_weights());
            return Predictor::pretrained(backbone, &source, &device)
                .with_context(|| format!("loading {} with weights {source}", backbone.title()));
        }
        ModelChoice::Saved(dir) => dir,
    };
    let (trained, _) = TrainedModel::load(dir, &device)
        .with_context(|| format!("loading the model in {}", dir.display()))?;
    Ok(Predictor::from_network(
        &trained.network,
        trained.classes,
        trained.preprocessing,
    )?)
}

#[allow(clippy::too_many_arguments)]
fn predict_command(
    model: &ModelChoice,
    backbone: Backbone,
    weights: Option<&WeightsSource>,
    top_k: usize,
    json: bool,
    batch_size: usize,
    images: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let predictor = load_predictor(model, backbone, weights)?;
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

fn evaluate_command(
    model: &std::path::Path,
    data: &std::path::Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
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

fn bench_command(json: bool, options: &crate::bench::BenchOptions) -> anyhow::Result<ExitCode> {
    if options.batch_size == 0 || options.image_size_px < 32 {
        anyhow::bail!("--batch-size must be at least 1 and --image-size at least 32");
    }
    let device = runtime::compute_device();
    let r = crate::bench::run(options, &device)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let gb = |b: u64| b as f64 / 1e9;
    let (px, batch) = (r.image_size_px, r.batch_size);
    println!("{} threads, {}", r.threads, r.device);
    println!(
        "forward ({px} px, batch {batch}):            {:8.1} images/s",
        r.forward_images_per_sec
    );
    if let Some(rate) = r.fine_tune_images_per_sec {
        println!("full fine-tune step ({px} px, batch {batch}): {rate:8.1} images/s");
    }
    println!(
        "head-only epoch ({} cached features):   {:8.2} ms",
        r.head_epoch_features, r.head_epoch_ms
    );
    println!(
        "feature caching ({px} px):              {:8.1} images/s",
        r.feature_caching_images_per_sec
    );
    if let Some(peak) = r.fine_tune_peak_rss_bytes {
        println!(
            "peak RSS during the fine-tune step:      {:8.2} GB",
            gb(peak)
        );
    }
    println!(
        "peak RSS of the whole benchmark:        {:8.2} GB",
        gb(r.peak_rss_bytes)
    );
    Ok(ExitCode::SUCCESS)
}

fn export_command(
    model: &ModelChoice,
    network: &NetworkArgs,
    onnx: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let (predictor, info) = match model {
        ModelChoice::Builtin => {
            let predictor = load_predictor(model, network.backbone, network.weights.as_ref())?;
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
