//! What the window shows: [`AppState`], owned by the app, read (never written) by panels.
//! [`Settings`] is the part that persists between launches.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::dataset::Dataset;
use crate::guide::recommend::{Recommendation, Thresholds};
use crate::model::Unit;
use crate::predict::ClassProb;
use crate::train::cut::CutChoice;
use crate::train::{Case, EpochMetrics, TrainPlan, TrainReport, TrainedModel};

/// Thumbnails decoded and shown for one cell of the confusion matrix.
pub const CELL_THUMBNAILS: usize = 60;
/// Misclassified images decoded and shown in Results.
pub const MISTAKE_THUMBNAILS: usize = 24;

/// The window's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tab {
    Data,
    Guide,
    Train,
    Results,
    Predict,
    Inspect,
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Data,
        Tab::Guide,
        Tab::Train,
        Tab::Results,
        Tab::Predict,
        Tab::Inspect,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Data => "Data",
            Tab::Guide => "Guide",
            Tab::Train => "Train",
            Tab::Results => "Results",
            Tab::Predict => "Predict",
            Tab::Inspect => "Inspect",
        }
    }
}

/// What persists between launches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub train_dir: Option<PathBuf>,
    pub val_dir: Option<PathBuf>,
    pub plan: TrainPlan,
    /// Share of the training images used (the size axis, for demonstrations), in percent.
    pub use_percent: u32,
    pub tab: Tab,
    /// The grid's size and similarity thresholds.
    pub thresholds: Thresholds,
    /// Predict and the mistakes gallery show where the model looked (Grad-CAM).
    pub show_grad_cam: bool,
    /// Where training and inference run.
    pub device: crate::runtime::DeviceChoice,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            train_dir: None,
            val_dir: None,
            plan: Case::SmallSimilar.plan(),
            use_percent: 100,
            tab: Tab::Guide,
            thresholds: Thresholds::default(),
            show_grad_cam: false,
            device: crate::runtime::DeviceChoice::Auto,
        }
    }
}

impl Settings {
    /// The data a run trains on, as chosen here.
    pub fn data_choice(&self) -> DataChoice {
        DataChoice {
            train_dir: self.train_dir.clone(),
            val_dir: self.val_dir.clone(),
            use_percent: self.use_percent,
        }
    }
}

/// Which data a model was trained on (to tell when the window's choice has moved on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChoice {
    pub train_dir: Option<PathBuf>,
    pub val_dir: Option<PathBuf>,
    pub use_percent: u32,
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

/// An image in the Predict panel.
#[derive(Debug)]
pub struct PredictItem {
    pub path: PathBuf,
    pub result: Option<Result<Vec<ClassProb>, String>>,
}

/// Everything the panels read. Only the app changes it, in [`super::StudioApp::apply`] and
/// when results arrive.
#[derive(Default)]
pub struct AppState {
    pub settings: Settings,
    /// Where training runs, in words.
    pub device_label: String,
    pub dataset: Option<Arc<Dataset>>,
    pub data_error: Option<String>,
    /// Images decoded so far of the dataset being loaded (done, total), while it loads.
    pub loading: Option<(usize, usize)>,
    pub thumbnails: HashMap<PathBuf, egui::TextureHandle>,
    /// Whether a run (or a comparison) is in progress.
    pub training: bool,
    pub runs: Vec<Run>,
    pub progress: Progress,
    pub trained: Option<TrainedModel>,
    pub trained_report: Option<TrainReport>,
    pub predictions: Vec<PredictItem>,
    pub selected_cell: Option<(usize, usize)>,
    pub errors: Vec<String>,
    pub notices: Vec<String>,
    /// CPU time of the last frame's layout (eframe's measure), shown in the top bar.
    pub frame_secs: Option<f32>,
    /// Presets of a compare-all-four still to train.
    pub compare_queue: Vec<Case>,
    /// The measurement on the loaded dataset (`Err`: why it failed).
    pub recommendation: Option<Result<Recommendation, String>>,
    /// The measurement classified for the data training would use (size slider, thresholds).
    pub shown_recommendation: Option<Recommendation>,
    pub recommending: bool,
    /// The cross-validated choice of the cut (the Guide's probe, or the last run's).
    pub probe: Option<Result<CutChoice, String>>,
    pub probing: bool,
    /// The data of the run in progress, and of the model it made (`None`: opened from disk).
    pub training_data: Option<DataChoice>,
    pub trained_data: Option<DataChoice>,
    /// The run whose results Results shows (`None`: the current model's).
    pub results_run: Option<usize>,
    /// What augmentation does to a few training images (after "Preview augmentation").
    pub augment_preview: Option<Vec<super::jobs::PreviewRow<egui::TextureHandle>>>,
    /// The in-window file browser, while open.
    pub browser: Option<super::browser::FileBrowser>,
    /// The desktop's file dialog could not open once: the in-window browser is used from then.
    pub native_dialog_failed: bool,
    /// The Inspect view: an image's activation maps at two units.
    pub inspect: super::inspect::InspectState,
    /// Grad-CAM overlays by image with what they explain, made with the current model
    /// (`Err`: why not).
    pub explanations: HashMap<PathBuf, Result<(egui::TextureHandle, String), String>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .field("runs", &self.runs.len())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The dataset as training will use it (with the size slider applied).
    pub fn training_dataset(&self) -> Option<Arc<Dataset>> {
        let dataset = self.dataset.as_ref()?;
        if self.settings.use_percent >= 100 {
            return Some(dataset.clone());
        }
        Some(Arc::new(dataset.subset(
            f64::from(self.settings.use_percent) / 100.0,
            self.settings.plan.seed,
        )))
    }

    /// The report Results shows: the chosen run's, else the current model's.
    pub fn shown_report(&self) -> Option<&TrainReport> {
        match self.results_run {
            Some(i) => self.runs.get(i).and_then(|r| r.report.as_ref()),
            None => self.trained_report.as_ref(),
        }
    }

    /// The four runs of the last finished Compare all four, in the guide's order (the last
    /// four runs, one per case, each with its results), with their indices.
    pub fn last_comparison(&self) -> Option<Vec<(usize, &Run)>> {
        let n = self.runs.len();
        if self.training || n < Case::ALL.len() {
            return None;
        }
        let last: Vec<(usize, &Run)> = self
            .runs
            .iter()
            .enumerate()
            .skip(n - Case::ALL.len())
            .collect();
        let complete = last.iter().zip(Case::ALL).all(|((_, run), case)| {
            run.case == Some(case)
                && run.status == RunStatus::Finished
                && run.report.as_ref().is_some_and(|r| r.evaluation.is_some())
        });
        complete.then_some(last)
    }

    /// Why the current model no longer matches the window's choices, if it does not: the data
    /// or the plan changed after it was trained here.
    pub fn stale_model_reason(&self) -> Option<&'static str> {
        let (model, data) = (self.trained.as_ref()?, self.trained_data.as_ref()?);
        if *data != self.settings.data_choice() {
            Some("the training data changed since")
        } else if model.plan.as_chosen() != self.settings.plan.as_chosen() {
            Some("the plan changed since")
        } else {
            None
        }
    }

    /// Which cut point and trainable units the block strip shows.
    pub fn plan_units(&self) -> (Unit, usize) {
        let plan = &self.settings.plan;
        (plan.cut_after, plan.effective_trainable_units())
    }
}
