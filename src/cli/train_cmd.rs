//! `transfer-studio train`: a run with a progress bar, or JSON lines with `--json`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::model::saved::SavedMetrics;
use crate::model::{Init, Unit};
use crate::runtime;
use crate::train::{
    Case, DataSource, TrainEvent, TrainJob, TrainOutcome, TrainPlan, spawn_training,
};

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
    /// Last backbone unit kept: stem, a block number 0-15, or head.
    #[arg(long)]
    pub cut_after: Option<Unit>,
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
        let mut plan = if self.case == Case::LargeDifferent && self.init == Some(Init::Random) {
            Case::retrain_plan()
        } else {
            self.case.plan()
        };
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
            cut_after <- cut_after,
            trainable_units <- trainable_blocks,
            init <- init,
            seed <- seed,
            patience <- patience,
            val_fraction <- val_fraction,
            augment <- augment,
            dropout <- dropout,
        );
        plan
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0))
}

pub(super) fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
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
    let show_bar = !args.json && std::io::stderr().is_terminal();
    let bar = ProgressBar::hidden();
    if show_bar {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    let style = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let say = |line: String| {
        if show_bar {
            bar.println(line);
        } else if !args.json {
            eprintln!("{line}");
        }
    };
    let mut outcome: Option<Box<TrainOutcome>> = None;
    let mut failure = None;
    for event in handle.events.iter() {
        if args.json {
            println!("{}", serde_json::to_string(&event)?);
        }
        match event {
            TrainEvent::Loading { done, total } => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message("decoding images");
            }
            TrainEvent::Started {
                plan,
                case,
                counts,
                skipped,
                trainable_parameters,
                device,
                ..
            } => {
                say(format!(
                    "{}: {}",
                    case.map_or_else(|| "custom plan".into(), |c| format!("{c} ({})", c.title())),
                    plan.summary()
                ));
                for c in &counts {
                    say(format!(
                        "  {:<20} {:>6} train {:>6} val",
                        c.class, c.train, c.val
                    ));
                }
                if !skipped.is_empty() {
                    say(format!("skipped {} files:", skipped.len()));
                    for s in &skipped {
                        say(format!("  {}: {}", s.path.display(), s.reason));
                    }
                }
                say(format!(
                    "{trainable_parameters} trainable parameters on {device}"
                ));
            }
            TrainEvent::CachingFeatures { done, total } => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message("computing features of the frozen layers");
            }
            TrainEvent::PhaseStarted { phase, epochs } => {
                say(format!("phase {phase:?}: {epochs} epochs"));
            }
            TrainEvent::Batch {
                epoch,
                batch,
                batches,
                loss,
                images_per_sec,
                eta_secs,
                ..
            } => {
                bar.set_length(batches as u64);
                bar.set_position(batch as u64);
                bar.set_message(format!(
                    "epoch {epoch} loss {loss:.3} {images_per_sec:.1} img/s ETA {:.0}s",
                    eta_secs
                ));
            }
            TrainEvent::Epoch(m) => say(format!(
                "epoch {:>3}  train loss {:.4} acc {}  val loss {} acc {}  lr {:.2e}",
                m.epoch,
                m.train_loss,
                percent(Some(m.train_accuracy)),
                m.val_loss.map_or_else(|| "-".into(), |l| format!("{l:.4}")),
                percent(m.val_accuracy),
                m.head_lr
            )),
            TrainEvent::Paused => say("paused".into()),
            TrainEvent::Resumed => say("resumed".into()),
            TrainEvent::Warning { message } => say(format!("warning: {message}")),
            TrainEvent::Finished(o) => outcome = Some(o),
            TrainEvent::Failed { error } => failure = Some(error),
            TrainEvent::Cancelled => failure = Some("training was stopped".into()),
        }
    }
    bar.finish_and_clear();
    handle.join();
    if let Some(error) = failure {
        anyhow::bail!(error);
    }
    let outcome = outcome.context("the trainer ended without a result")?;
    let report = &outcome.report;
    outcome
        .model
        .save(&args.out, Some(SavedMetrics::from_report(report)))
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
