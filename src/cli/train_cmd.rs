//! `transfer-studio train`: a run with a progress bar, or JSON lines with `--json`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::args::NetworkArgs;
use super::progress::{TerminalObserver, percent};
use crate::model::{Init, Unit};
use crate::runtime;
use crate::train::{Case, DataSource, RunError, TrainJob, TrainPlan, run_to_end, spawn_training};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Image folder with one sub-folder per class.
    #[arg(long)]
    pub data: PathBuf,
    /// Separate validation folder with the same classes (default: a stratified split).
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// The guide's cell: small-similar, small-different, large-similar, large-different.
    #[arg(long)]
    pub case: Case,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Where to save the model (a new directory, or a model saved before).
    #[arg(long)]
    pub out: PathBuf,
    /// Epochs of the main phase.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Classifier-only epochs before fine-tuning.
    #[arg(long)]
    pub head_epochs: Option<usize>,
    #[arg(long)]
    pub image_size: Option<u32>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Classifier learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Backbone learning rate as a fraction of --lr.
    #[arg(long)]
    pub backbone_lr_mult: Option<f64>,
    /// Last backbone unit kept: stem, a block number (Lite0: 0-15), head, fc6/fc7 (VGG), or
    /// auto: chosen by a cross-validated probe on the training images (small-different's
    /// default).
    #[arg(long)]
    pub cut_after: Option<CutArg>,
    /// Backbone units that train, counted down from the cut (0: classifier only).
    #[arg(long)]
    pub trainable_blocks: Option<usize>,
    /// pretrained or random (random with large-different: retrain from scratch).
    #[arg(long, value_parser = parse_init)]
    pub init: Option<Init>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Early-stopping patience in epochs (0: off).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Share of each class held out for validation when --val is not given.
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Random crops and flips (on or off).
    #[arg(long)]
    pub augment: Option<bool>,
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Class-weighted loss: auto (on when the largest class has more than 3x the images of
    /// the smallest), on or off.
    #[arg(long)]
    pub class_weights: Option<crate::train::plan::ClassWeights>,
    /// Print each event as one JSON object per line instead of a progress bar.
    #[arg(long)]
    pub json: bool,
}

fn parse_init(s: &str) -> Result<Init, String> {
    match s {
        "pretrained" => Ok(Init::Pretrained),
        "random" => Ok(Init::Random),
        other => Err(format!("unknown init {other:?}: use pretrained or random")),
    }
}

impl TrainArgs {
    /// The case's preset with every given option applied.
    pub fn plan(&self) -> TrainPlan {
        let backbone = self.network.backbone;
        let mut plan = if self.case == Case::LargeDifferent && self.init == Some(Init::Random) {
            Case::retrain_plan_for(backbone)
        } else {
            self.case.plan_for(backbone)
        };
        plan.weights = self.network.weights.clone();
        macro_rules! set {
            ($($field:ident <- $arg:ident),* $(,)?) => {
                $(if let Some(v) = self.$arg.clone() { plan.$field = v; })*
            };
        }
        set!(
            epochs <- epochs,
            head_epochs <- head_epochs,
            image_size_px <- image_size,
            batch_size <- batch_size,
            head_lr <- lr,
            backbone_lr_mult <- backbone_lr_mult,
            trainable_units <- trainable_blocks,
            init <- init,
            seed <- seed,
            patience <- patience,
            val_fraction <- val_fraction,
            augment <- augment,
            dropout <- dropout,
            class_weights <- class_weights,
        );
        match self.cut_after {
            Some(CutArg::Auto) => plan.auto_cut = true,
            Some(CutArg::After(unit)) => {
                plan.cut_after = unit;
                plan.auto_cut = false;
            }
            None => {}
        }
        plan
    }
}

/// `--cut-after`: a unit, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutArg {
    Auto,
    After(Unit),
}

impl std::str::FromStr for CutArg {
    type Err = crate::model::unit::UnitParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(CutArg::Auto)
        } else {
            s.parse().map(CutArg::After)
        }
    }
}

impl TrainArgs {
    /// Trains as the arguments say and saves the model.
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let args = self;
        let plan = args.plan();
        plan.validate()?;
        let job = TrainJob {
            data: DataSource::Folders {
                train: args.data.clone(),
                val: args.val.clone(),
            },
            plan,
            device: runtime::compute_device(),
        };
        let handle = spawn_training(job, None).context("starting the trainer")?;
        let mut observer = TerminalObserver::new(args.json);
        let outcome = run_to_end(handle, &mut observer, None);
        observer.finish();
        let outcome = match outcome {
            Err(RunError::Cancelled) => anyhow::bail!("training was stopped"),
            other => other?,
        };
        let report = &outcome.report;
        outcome
            .model
            .save(&args.out, Some(report.saved_metrics()))
            .with_context(|| format!("saving the model to {}", args.out.display()))?;
        if !args.json {
            eprintln!(
                "{}; best epoch {} with validation accuracy {} in {:.1}s",
                report.stop_reason,
                report.best_epoch,
                percent(report.best_val_accuracy),
                report.wall_secs
            );
            if let Some(e) = &report.evaluation {
                eprint!("{}", e.to_text());
            }
            eprintln!("saved to {}", args.out.display());
        } else {
            println!(
                "{}",
                serde_json::json!({"event": "saved", "model": args.out})
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
