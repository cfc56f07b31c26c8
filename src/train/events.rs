//! What a run reports: one documented event enum, sent by the worker and rendered by observers
//! (terminal, JSON lines, the window).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::cut::CutChoice;
use super::metrics::Evaluation;
use super::plan::{Case, TrainPlan};
use super::saved::{SavedMetrics, TrainedModel};
use crate::data::dataset::{ClassCount, SkippedFile};

/// The phases of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl StopReason {
    pub fn is_completed(&self) -> bool {
        matches!(self, StopReason::Completed)
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Completed => write!(f, "completed all epochs"),
            StopReason::EarlyStopped { epoch } => write!(
                f,
                "stopped early after epoch {epoch}: validation stopped improving"
            ),
            StopReason::NonFiniteLoss { epoch, batch } => write!(
                f,
                "stopped at epoch {epoch}, batch {batch}: the loss became NaN or infinite; the \
                 best weights before it are kept (try a lower learning rate)"
            ),
        }
    }
}

/// What a finished run reports (also saved in `model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub stop_reason: StopReason,
    /// Validation results of the kept (best) weights.
    pub evaluation: Option<Evaluation>,
    /// How the cut was chosen from the data (plans with `auto_cut`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_choice: Option<CutChoice>,
}

/// The finished run: its report and the trained model.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub report: TrainReport,
    #[serde(skip)]
    pub model: TrainedModel,
}

/// What the worker reports, in order: `Downloading`/`Loading`/`ChoosingCut`/`CutChosen` as
/// they apply, `Started`, then per phase `PhaseStarted`, `Batch`es and one `Epoch` per epoch
/// (with `Paused`/`Resumed`/`Warning` in between), and exactly one terminal event:
/// `Finished`, `Failed` or `Cancelled`. The terminal, JSON and window observers all read this
/// one enum.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum TrainEvent {
    /// Downloading the pretrained weights (only when they are not in the cache yet).
    Downloading {
        done_bytes: u64,
        total_bytes: u64,
    },
    /// Decoding the dataset (only for [`super::DataSource::Folders`]).
    Loading {
        done: usize,
        total: usize,
    },
    /// Computing the pretrained network's features on the training images for the
    /// cross-validated choice of the cut (plans with `auto_cut`).
    ChoosingCut {
        done: usize,
        total: usize,
    },
    /// The cut chosen from the data, and the probe behind it.
    CutChosen(CutChoice),
    /// The run begins: the plan as it will run (the cut chosen), the preset it is (if any),
    /// the classes with their image counts, the files left out, the trainable parameter
    /// count and the device, in words.
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
    /// A phase begins: the classifier alone, or fine-tuning, for `epochs` epochs at most.
    PhaseStarted {
        phase: Phase,
        epochs: usize,
    },
    /// Progress within an epoch (at most every [`super::BATCH_EVENT_INTERVAL_SECS`], and on
    /// the last batch): the batch's loss, throughput and the estimated time left.
    Batch {
        phase: Phase,
        epoch: usize,
        batch: usize,
        batches: usize,
        loss: f64,
        images_per_sec: f64,
        eta_secs: f64,
    },
    /// An epoch ended: its training and validation loss and accuracy.
    Epoch(EpochMetrics),
    /// The worker is paused (a `Pause` command) and waits for `Resume` or `Stop`.
    Paused,
    Resumed,
    /// Something the user should know that does not stop the run (images that could not be
    /// read any more, class weights switched on, no validation images, a cut that could not
    /// be cross-validated).
    Warning {
        message: String,
    },
    /// Terminal: the run ended with a model and its report.
    Finished(Box<TrainOutcome>),
    /// Terminal: the run ended without a model; `error` says why in one line.
    Failed {
        error: String,
    },
    /// Terminal: stopped by a `Stop` command (or its reader went away).
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

impl TrainReport {
    /// What a saved model keeps of the run that made it.
    pub fn saved_metrics(&self) -> SavedMetrics {
        let report = self;
        SavedMetrics {
            best_epoch: report.best_epoch,
            epochs_run: report.epochs_run,
            val_accuracy: report.best_val_accuracy,
            val_loss: report.best_val_loss,
            train_accuracy: report.final_train_accuracy,
            wall_secs: report.wall_secs,
            per_class: report
                .evaluation
                .as_ref()
                .map(|e| e.per_class.clone())
                .unwrap_or_default(),
            confusion: report
                .evaluation
                .as_ref()
                .map(|e| e.confusion.clone())
                .unwrap_or_default(),
            cut_choice: report.cut_choice.clone(),
        }
    }
}
