//! The Train panel's state: the runs in the charts, the live run's progress, and the trainer.

use crate::train::{Case, EpochMetrics, TrainReport};
use crate::ui::session::Session;

use super::settings::DataChoice;

/// The trainer: idle, or a run (or a comparison of the four presets) in progress.
#[derive(Default)]
pub enum Trainer {
    #[default]
    Idle,
    Running(Session),
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trainer::Idle => "Idle",
            Trainer::Running(_) => "Running",
        })
    }
}

/// What the Train panel shows.
#[derive(Debug, Default)]
pub struct TrainState {
    pub trainer: Trainer,
    pub runs: Vec<Run>,
    pub progress: Progress,
    /// Presets of a compare-all-four still to train.
    pub compare_queue: Vec<Case>,
    /// The data of the run in progress.
    pub data: Option<DataChoice>,
}

impl TrainState {
    /// Whether a run (or a comparison) is in progress.
    pub fn is_running(&self) -> bool {
        matches!(self.trainer, Trainer::Running(_))
    }
}

/// A training run shown in the charts.
#[derive(Debug, Clone)]
pub struct Run {
    pub label: String,
    /// The preset it trains, if it is one (compare-all-four tells runs apart by it).
    pub case: Option<Case>,
    pub epochs: Vec<EpochMetrics>,
    /// (global batch index, loss) pairs.
    pub batch_losses: Vec<[f64; 2]>,
    pub report: Option<TrainReport>,
    pub status: RunStatus,
}

impl Run {
    pub fn new(label: String, case: Option<Case>) -> Self {
        Self {
            label,
            case,
            epochs: Vec::new(),
            batch_losses: Vec::new(),
            report: None,
            status: RunStatus::Running,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    Downloading { done_bytes: u64, total_bytes: u64 },
    Loading { done: usize, total: usize },
    Caching { done: usize, total: usize },
    Running,
    Paused,
    Finished,
    Failed(String),
    Cancelled,
}

/// The latest batch progress of the live run.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub epoch: usize,
    pub epochs_total: usize,
    pub batch: usize,
    pub batches: usize,
    pub images_per_sec: f64,
    pub eta_secs: f64,
    pub fraction: f32,
}
