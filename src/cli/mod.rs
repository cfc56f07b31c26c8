//! The command line: argument parsing and the commands' terminal output (`anyhow` at this edge).
//!
//! One file per subcommand, each with its argument struct and `run()`; this file only parses
//! and dispatches.

mod args;
mod bench_cmd;
mod camera_cmd;
mod compare_cmd;
mod doctor_cmd;
mod evaluate_cmd;
mod explain_cmd;
mod export_cmd;
mod import_cmd;
mod inspect_cmd;
mod load;
mod predict_cmd;
mod probe_cmd;
mod progress;
mod recommend_cmd;
mod relabel_cmd;
mod train_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::runtime;

pub use args::{ModelChoice, NetworkArgs, parse_backbone, parse_weights};
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
    /// Open the window with this camera running: a device (`/dev/video0`) or a recorded
    /// `.mjpeg` file played in a loop (for demonstrations without a camera).
    #[arg(long, value_name = "SOURCE")]
    pub camera: Option<String>,
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
    Predict(predict_cmd::PredictArgs),
    /// Train a classifier on an image folder (one sub-folder per class) and save it.
    Train(Box<TrainArgs>),
    Evaluate(evaluate_cmd::EvaluateArgs),
    Bench(bench_cmd::BenchArgs),
    Recommend(recommend_cmd::RecommendArgs),
    Compare(Box<compare_cmd::CompareArgs>),
    Probe(probe_cmd::ProbeArgs),
    Doctor(Box<doctor_cmd::DoctorArgs>),
    Export(export_cmd::ExportArgs),
    Inspect(Box<inspect_cmd::InspectArgs>),
    Explain(Box<explain_cmd::ExplainArgs>),
    ImportWeights(import_cmd::ImportWeightsArgs),
    Relabel(relabel_cmd::RelabelArgs),
    Camera(Box<camera_cmd::CameraArgs>),
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
    let Some(command) = cli.command else {
        crate::ui::run_window(cli.data, cli.paths, cli.device, cli.camera)
            .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
        return Ok(ExitCode::SUCCESS);
    };
    match command {
        Command::Predict(args) => args.run(),
        Command::Train(args) => args.run(),
        Command::Evaluate(args) => args.run(),
        Command::Bench(args) => args.run(),
        Command::Recommend(args) => args.run(),
        Command::Compare(args) => args.run(),
        Command::Probe(args) => args.run(),
        Command::Doctor(args) => args.run(),
        Command::Export(args) => args.run(),
        Command::Inspect(args) => args.run(),
        Command::Explain(args) => args.run(),
        Command::ImportWeights(args) => args.run(),
        Command::Relabel(args) => args.run(),
        Command::Camera(args) => args.run(),
    }
}
