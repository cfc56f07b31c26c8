//! Training on a worker thread: a [`TrainJob`] goes in, [`TrainEvent`]s come out over a
//! bounded channel, [`TrainCommand`]s (pause, resume, stop) go in over another.

pub mod augment;
pub mod features;
pub mod head;
pub mod metrics;
pub mod plan;
mod trainer;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::Device;
use crossbeam_channel::{Receiver, Sender, bounded};
use serde::Serialize;

pub use metrics::{ClassMetrics, Evaluation, Misclassified};
pub use plan::{Case, PlanError, TrainPlan};
pub use trainer::{evaluate_dataset, network_features, time_fine_tune_steps, time_head_epochs};

use crate::data::dataset::{ClassCount, Dataset, SkippedFile};
use crate::model::saved::TrainedModel;

/// Events buffered between the worker and the reader before the worker waits.
pub const EVENT_CHANNEL_CAPACITY: usize = 256;
/// Batch progress is reported at most this often (head-only epochs take milliseconds).
pub const BATCH_EVENT_INTERVAL_SECS: f64 = 0.1;

/// Where the images come from.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// Folders to load (and validate) on the worker thread.
    Folders {
        train: PathBuf,
        val: Option<PathBuf>,
    },
    /// A dataset already loaded (by the window), shared.
    Loaded(Arc<Dataset>),
}

/// A training run to start.
#[derive(Debug, Clone)]
pub struct TrainJob {
    pub data: DataSource,
    pub plan: TrainPlan,
    pub device: Device,
}

/// Commands to a running trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainCommand {
    Pause,
    Resume,
    Stop,
}

/// The phases of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Only the classifier trains, on features computed once.
    HeadOnly,
    /// Trainable backbone units and the classifier train together.
    FineTune,
}

/// Metrics at the end of an epoch. Epochs are numbered from 1 across phases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochMetrics {
    pub phase: Phase,
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// `None` when there are no validation images.
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub head_lr: f64,
    pub backbone_lr: f64,
    pub elapsed_secs: f64,
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum StopReason {
    Completed,
    EarlyStopped {
        epoch: usize,
    },
    /// The loss became NaN or infinite; the best weights before it are kept.
    NonFiniteLoss {
        epoch: usize,
        batch: usize,
    },
}

/// What a finished run reports (also saved in `model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TrainReport {
    pub case: Option<Case>,
    pub plan: TrainPlan,
    pub classes: Vec<String>,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_val_accuracy: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub final_train_accuracy: f64,
    pub trainable_parameters: usize,
    pub wall_secs: f64,
    /// Mean training throughput over the fine-tuning phase (or feature caching).
    pub images_per_sec: f64,
    pub stop_reason: String,
    /// Validation results of the kept (best) weights.
    pub evaluation: Option<Evaluation>,
}

/// The finished run: its report and the trained model.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub report: TrainReport,
    #[serde(skip)]
    pub model: TrainedModel,
}

/// What the worker reports.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum TrainEvent {
    /// Decoding the dataset (only for [`DataSource::Folders`]).
    Loading {
        done: usize,
        total: usize,
    },
    Started {
        plan: TrainPlan,
        case: Option<Case>,
        classes: Vec<String>,
        counts: Vec<ClassCount>,
        skipped: Vec<SkippedFile>,
        trainable_parameters: usize,
        device: String,
    },
    /// Computing the frozen part's outputs once.
    CachingFeatures {
        done: usize,
        total: usize,
    },
    PhaseStarted {
        phase: Phase,
        epochs: usize,
    },
    Batch {
        phase: Phase,
        epoch: usize,
        batch: usize,
        batches: usize,
        loss: f64,
        images_per_sec: f64,
        eta_secs: f64,
    },
    Epoch(EpochMetrics),
    Paused,
    Resumed,
    Warning {
        message: String,
    },
    Finished(Box<TrainOutcome>),
    Failed {
        error: String,
    },
    Cancelled,
}

impl TrainEvent {
    /// Whether this is the last event of a run.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Finished(_) | Self::Failed { .. } | Self::Cancelled
        )
    }
}

/// Called after each event is sent (the window passes its `request_repaint`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A running trainer: send it commands, read its events.
#[derive(Debug)]
pub struct TrainerHandle {
    pub commands: Sender<TrainCommand>,
    pub events: Receiver<TrainEvent>,
    thread: Option<JoinHandle<()>>,
}

impl TrainerHandle {
    pub fn send(&self, command: TrainCommand) {
        // The worker may have finished already; then there is nothing to command.
        let _ = self.commands.send(command);
    }

    /// Waits for the worker thread to end.
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a training run on a named worker thread.
pub fn spawn_training(job: TrainJob, waker: Option<Waker>) -> std::io::Result<TrainerHandle> {
    let (event_tx, event_rx) = bounded(EVENT_CHANNEL_CAPACITY);
    let (command_tx, command_rx) = bounded(16);
    let thread = std::thread::Builder::new()
        .name("trainer".into())
        .spawn(move || trainer::run_worker(job, event_tx, command_rx, waker))?;
    Ok(TrainerHandle {
        commands: command_tx,
        events: event_rx,
        thread: Some(thread),
    })
}
