//! The window's state and its one owner: [`StudioApp`]. Channels are drained in
//! [`eframe::App::logic`]; [`eframe::App::ui`] lays out panels, which return [`Command`]s that
//! are applied afterwards.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::jobs::{FolderPurpose, JobResult, Jobs};
use super::panels;
use crate::data::dataset::{Dataset, LoadOptions};
use crate::guide::probe::ProbePoint;
use crate::guide::recommend::{RecommendOptions, Recommendation, Thresholds};
use crate::model::Unit;
use crate::model::saved::{SavedMetrics, TrainedModel};
use crate::predict::{ClassProb, Predictor};
use crate::train::{
    Case, DataSource, EpochMetrics, TrainCommand, TrainEvent, TrainJob, TrainPlan, TrainReport,
    TrainerHandle, Waker, spawn_training,
};

/// The window's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tab {
    Data,
    Guide,
    Train,
    Results,
    Predict,
}

impl Tab {
    pub const ALL: [Tab; 5] = [
        Tab::Data,
        Tab::Guide,
        Tab::Train,
        Tab::Results,
        Tab::Predict,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Data => "Data",
            Tab::Guide => "Guide",
            Tab::Train => "Train",
            Tab::Results => "Results",
            Tab::Predict => "Predict",
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
        }
    }
}

/// What panels ask for; applied by [`StudioApp::apply`] after layout.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    ShowTab(Tab),
    PickFolder(FolderPurpose),
    ClearValidation,
    LoadDataset,
    SetUsePercent(u32),
    SelectCase(Case),
    Retrain,
    SetPlan(TrainPlan),
    StartTraining,
    Train(TrainCommand),
    ClearRuns,
    /// Asks for a folder, then saves there.
    SaveModel,
    /// Asks for a saved model's folder, then opens it.
    OpenModel,
    /// Saves the trained model into this folder (in the background).
    SaveModelTo(PathBuf),
    /// Opens the saved model in this folder (in the background).
    OpenModelFrom(PathBuf),
    PickImages,
    ClearImages,
    ShowCell {
        truth: usize,
        predicted: usize,
    },
    DismissError(usize),
    /// Trains the four presets one after the other on the current data.
    CompareAll,
    SetThresholds(Thresholds),
    /// Measures the dataset's place on the grid again.
    Recommend,
    RunProbe,
    /// Writes out a bundled demo pack (once) and loads it as the training folder.
    OpenDemo(crate::data::demo::DemoPack),
}

/// A training run shown in the charts.
#[derive(Debug, Clone)]
pub struct Run {
    pub label: String,
    pub epochs: Vec<EpochMetrics>,
    /// (global batch index, loss) pairs.
    pub batch_losses: Vec<[f64; 2]>,
    pub report: Option<TrainReport>,
    pub status: RunStatus,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
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

/// The window.
pub struct StudioApp {
    pub settings: Settings,
    pub device: Device,
    pub jobs: Jobs,
    waker: Waker,
    pub dataset: Option<Arc<Dataset>>,
    pub data_error: Option<String>,
    pub thumbnails: HashMap<PathBuf, egui::TextureHandle>,
    pub trainer: Option<TrainerHandle>,
    pub runs: Vec<Run>,
    pub progress: Progress,
    pub trained: Option<TrainedModel>,
    pub trained_report: Option<TrainReport>,
    pub predictions: Vec<PredictItem>,
    pub imagenet: Option<Arc<Predictor>>,
    pub selected_cell: Option<(usize, usize)>,
    pub errors: Vec<String>,
    pub notices: Vec<String>,
    /// CPU time of the last frame's layout (eframe's measure), shown in the top bar.
    pub frame_secs: Option<f32>,
    pending_thumbnails: Vec<(PathBuf, egui::ColorImage)>,
    /// Presets still to train in a compare-all-four.
    pub compare_queue: std::collections::VecDeque<Case>,
    /// The measurement on the loaded dataset (`Err`: why it failed).
    pub recommendation: Option<Result<Recommendation, String>>,
    /// The measurement classified for the data training would use (size slider, thresholds).
    pub shown_recommendation: Option<Recommendation>,
    pub recommending: bool,
    pub probe: Option<Result<Vec<ProbePoint>, String>>,
    pub probing: bool,
}

impl std::fmt::Debug for StudioApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StudioApp")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

const SETTINGS_KEY: &str = "transfer-studio-settings";

impl StudioApp {
    /// Builds the app; `storage` restores the settings of the last session.
    pub fn new(ctx: &egui::Context, storage: Option<&dyn eframe::Storage>) -> Self {
        let settings: Settings = storage
            .and_then(|s| eframe::get_value(s, SETTINGS_KEY))
            .unwrap_or_default();
        let repaint = ctx.clone();
        let waker: Waker = Arc::new(move || repaint.request_repaint());
        let mut app = Self {
            settings,
            device: crate::runtime::compute_device(),
            jobs: Jobs::new(waker.clone()),
            waker,
            dataset: None,
            data_error: None,
            thumbnails: HashMap::new(),
            trainer: None,
            runs: Vec::new(),
            progress: Progress::default(),
            trained: None,
            trained_report: None,
            predictions: Vec::new(),
            imagenet: None,
            selected_cell: None,
            errors: Vec::new(),
            notices: Vec::new(),
            frame_secs: None,
            pending_thumbnails: Vec::new(),
            compare_queue: std::collections::VecDeque::new(),
            recommendation: None,
            shown_recommendation: None,
            recommending: false,
            probe: None,
            probing: false,
        };
        match Predictor::imagenet(&app.device) {
            Ok(p) => app.imagenet = Some(Arc::new(p)),
            Err(e) => app
                .errors
                .push(format!("cannot load the bundled network: {e}")),
        }
        if app.settings.train_dir.is_some() {
            app.apply(Command::LoadDataset);
        }
        app
    }

    pub fn is_training(&self) -> bool {
        self.trainer.is_some()
    }

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

    /// The predictor the Predict panel uses: the trained head if any, else ImageNet's.
    pub fn active_predictor(&self) -> Option<Arc<Predictor>> {
        match &self.trained {
            Some(model) => Predictor::from_network(
                &model.network,
                model.classes.clone(),
                model.preprocessing.clone(),
            )
            .ok()
            .map(Arc::new),
            None => self.imagenet.clone(),
        }
    }

    /// Applies a panel's request. Anything slow goes to a background thread.
    pub fn apply(&mut self, command: Command) {
        match command {
            Command::ShowTab(tab) => self.settings.tab = tab,
            Command::PickFolder(purpose) => self.jobs.pick_folder(purpose),
            Command::ClearValidation => {
                self.settings.val_dir = None;
                self.apply(Command::LoadDataset);
            }
            Command::LoadDataset => {
                if let Some(root) = self.settings.train_dir.clone() {
                    let plan = &self.settings.plan;
                    let options = LoadOptions {
                        val_dir: self.settings.val_dir.clone(),
                        val_fraction: plan.val_fraction,
                        seed: plan.seed,
                        cache_short_side_px: crate::data::preprocess::Preprocessing::for_size(
                            plan.image_size_px,
                        )
                        .resize_px,
                        ..LoadOptions::default()
                    };
                    self.dataset = None;
                    self.data_error = None;
                    self.jobs.load_dataset(root, options, 6);
                }
            }
            Command::SetUsePercent(p) => {
                self.settings.use_percent = p.clamp(1, 100);
                self.refresh_recommendation();
            }
            Command::SetThresholds(t) => {
                self.settings.thresholds = t;
                self.refresh_recommendation();
            }
            Command::Recommend => {
                if let Some(d) = &self.dataset {
                    self.recommending = true;
                    let options = RecommendOptions {
                        thresholds: self.settings.thresholds,
                        ..RecommendOptions::default()
                    };
                    self.jobs.recommend(d.clone(), options, self.device.clone());
                }
            }
            Command::RunProbe => {
                if let Some(d) = &self.dataset
                    && !self.probing
                {
                    self.probing = true;
                    self.probe = None;
                    self.jobs.probe(d.clone(), self.device.clone());
                }
            }
            Command::OpenDemo(pack) => {
                self.settings.val_dir = None;
                self.jobs.open_demo(pack);
            }
            Command::CompareAll => {
                if !self.is_training() && self.dataset.is_some() {
                    self.compare_queue = Case::ALL.into_iter().collect();
                    self.start_next_compared();
                }
            }
            Command::SelectCase(case) => {
                let seed = self.settings.plan.seed;
                self.settings.plan = TrainPlan {
                    seed,
                    ..case.plan()
                };
            }
            Command::Retrain => {
                let seed = self.settings.plan.seed;
                self.settings.plan = TrainPlan {
                    seed,
                    ..Case::retrain_plan()
                };
            }
            Command::SetPlan(plan) => self.settings.plan = plan,
            Command::StartTraining => self.start_training(),
            Command::Train(c) => {
                if let Some(t) = &self.trainer {
                    t.send(c);
                }
            }
            Command::ClearRuns => {
                if !self.is_training() {
                    self.runs.clear();
                }
            }
            Command::SaveModel => self.jobs.pick_model_folder(true),
            Command::OpenModel => self.jobs.pick_model_folder(false),
            Command::SaveModelTo(dir) => match &self.trained {
                Some(model) => self.jobs.save_model(
                    model.clone(),
                    self.trained_report.as_ref().map(SavedMetrics::from_report),
                    dir,
                ),
                None => self.errors.push("nothing trained to save yet".into()),
            },
            Command::OpenModelFrom(dir) => self.jobs.open_model(dir, self.device.clone()),
            Command::PickImages => self.jobs.pick_images(),
            Command::ClearImages => self.predictions.clear(),
            Command::ShowCell { truth, predicted } => {
                self.selected_cell = Some((truth, predicted));
                if let Some(eval) = self
                    .trained_report
                    .as_ref()
                    .and_then(|r| r.evaluation.as_ref())
                {
                    let paths: Vec<PathBuf> = eval
                        .predictions
                        .iter()
                        .filter(|(p, t, pr)| {
                            *t == truth && *pr == predicted && !self.thumbnails.contains_key(p)
                        })
                        .take(60)
                        .map(|(p, _, _)| p.clone())
                        .collect();
                    self.jobs.thumbnails(paths);
                }
            }
            Command::DismissError(i) => {
                if i < self.errors.len() {
                    self.errors.remove(i);
                }
            }
        }
    }

    /// Starts the next preset of a compare-all-four, if any.
    fn start_next_compared(&mut self) {
        if let Some(case) = self.compare_queue.pop_front() {
            self.apply(Command::SelectCase(case));
            self.start_training();
            if !self.is_training() {
                self.compare_queue.clear();
            }
        }
    }

    /// Classifies the measurement for the data training would use.
    fn refresh_recommendation(&mut self) {
        self.shown_recommendation = match (&self.recommendation, self.training_dataset()) {
            (Some(Ok(r)), Some(d)) => Some(r.reclassified(
                crate::guide::recommend::images_per_class(&d),
                self.settings.thresholds,
            )),
            _ => None,
        };
    }

    fn start_training(&mut self) {
        if self.is_training() {
            return;
        }
        let Some(dataset) = self.training_dataset() else {
            self.errors
                .push("choose a training folder first (Data)".into());
            return;
        };
        let plan = self.settings.plan.clone();
        if let Err(e) = plan.validate() {
            self.errors.push(e.to_string());
            return;
        }
        let label = format!(
            "{} #{}",
            Case::matching(&plan).map_or_else(|| "custom".to_string(), |c| c.title().to_string()),
            self.runs.len() + 1
        );
        let job = TrainJob {
            data: DataSource::Loaded(dataset),
            plan,
            device: self.device.clone(),
        };
        match spawn_training(job, Some(self.waker.clone())) {
            Ok(handle) => {
                self.trainer = Some(handle);
                self.progress = Progress::default();
                self.runs.push(Run {
                    label,
                    epochs: Vec::new(),
                    batch_losses: Vec::new(),
                    report: None,
                    status: RunStatus::Running,
                });
                self.settings.tab = Tab::Train;
            }
            Err(e) => self.errors.push(format!("cannot start training: {e}")),
        }
    }

    /// Drains the trainer's and the background jobs' channels. Called every frame.
    pub fn drain(&mut self, ctx: &egui::Context) {
        self.drain_trainer();
        while let Ok(result) = self.jobs.rx.try_recv() {
            self.on_job(result);
        }
        for (path, image) in self.pending_thumbnails.drain(..) {
            let name = path.to_string_lossy().into_owned();
            let texture = ctx.load_texture(name, image, egui::TextureOptions::LINEAR);
            self.thumbnails.insert(path, texture);
        }
    }

    fn drain_trainer(&mut self) {
        let Some(handle) = &self.trainer else { return };
        let mut ended = false;
        let events: Vec<TrainEvent> = handle.events.try_iter().collect();
        for event in events {
            ended |= event.is_terminal();
            self.on_train_event(event);
        }
        if ended && let Some(handle) = self.trainer.take() {
            handle.join();
            self.start_next_compared();
        }
    }

    fn on_train_event(&mut self, event: TrainEvent) {
        let Some(run) = self.runs.last_mut() else {
            return;
        };
        match event {
            TrainEvent::Loading { done, total } => run.status = RunStatus::Loading { done, total },
            TrainEvent::Started { plan, .. } => {
                self.progress.epochs_total = if plan.is_head_only() {
                    plan.epochs
                } else if plan.has_head_phase() {
                    plan.head_epochs + plan.epochs
                } else {
                    plan.epochs
                };
                run.status = RunStatus::Running;
            }
            TrainEvent::CachingFeatures { done, total } => {
                run.status = RunStatus::Caching { done, total };
                self.progress.fraction = done as f32 / total.max(1) as f32;
            }
            TrainEvent::PhaseStarted { .. } => run.status = RunStatus::Running,
            TrainEvent::Batch {
                epoch,
                batch,
                batches,
                loss,
                images_per_sec,
                eta_secs,
                ..
            } => {
                run.status = RunStatus::Running;
                let x = (epoch - 1) as f64 + batch as f64 / batches.max(1) as f64;
                run.batch_losses.push([x, loss]);
                self.progress = Progress {
                    epoch,
                    batch,
                    batches,
                    images_per_sec,
                    eta_secs,
                    fraction: (x / self.progress.epochs_total.max(1) as f64) as f32,
                    ..self.progress
                };
            }
            TrainEvent::Epoch(m) => run.epochs.push(m),
            TrainEvent::Paused => run.status = RunStatus::Paused,
            TrainEvent::Resumed => run.status = RunStatus::Running,
            TrainEvent::Warning { message } => self.notices.push(message),
            TrainEvent::Finished(outcome) => {
                run.status = RunStatus::Finished;
                run.report = Some(outcome.report.clone());
                self.trained_report = Some(outcome.report);
                self.trained = Some(outcome.model);
                self.selected_cell = None;
                self.progress.fraction = 1.0;
                self.queue_mistake_thumbnails();
            }
            TrainEvent::Failed { error } => {
                self.compare_queue.clear();
                run.status = RunStatus::Failed(error.clone());
                self.errors.push(format!("training failed: {error}"));
            }
            TrainEvent::Cancelled => {
                self.compare_queue.clear();
                run.status = RunStatus::Cancelled;
            }
        }
    }

    fn queue_mistake_thumbnails(&mut self) {
        if let Some(eval) = self
            .trained_report
            .as_ref()
            .and_then(|r| r.evaluation.as_ref())
        {
            let paths = eval
                .misclassified
                .iter()
                .take(24)
                .map(|m| m.path.clone())
                .collect();
            self.jobs.thumbnails(paths);
        }
    }

    fn on_job(&mut self, result: JobResult) {
        match result {
            JobResult::FolderPicked { purpose, path } => {
                match purpose {
                    FolderPurpose::Train => self.settings.train_dir = Some(path),
                    FolderPurpose::Validation => self.settings.val_dir = Some(path),
                }
                self.apply(Command::LoadDataset);
            }
            JobResult::ImagesPicked(paths) => self.add_images(paths),
            JobResult::ModelFolderPicked { save: true, path } => {
                self.apply(Command::SaveModelTo(path));
            }
            JobResult::ModelFolderPicked { save: false, path } => {
                self.apply(Command::OpenModelFrom(path));
            }
            JobResult::DatasetLoaded(result) => {
                self.jobs.loading = None;
                match result {
                    Ok(d) => {
                        self.dataset = Some(d);
                        self.data_error = None;
                        self.recommendation = None;
                        self.shown_recommendation = None;
                        self.probe = None;
                        self.apply(Command::Recommend);
                    }
                    Err(e) => self.data_error = Some(e),
                }
            }
            JobResult::Thumbnail { path, image } => self.pending_thumbnails.push((path, image)),
            JobResult::Predicted { path, result } => {
                if let Some(item) = self.predictions.iter_mut().find(|i| i.path == path) {
                    match result {
                        Ok((thumb, top)) => {
                            self.pending_thumbnails.push((path, thumb));
                            item.result = Some(Ok(top));
                        }
                        Err(e) => item.result = Some(Err(e)),
                    }
                }
            }
            JobResult::ModelSaved(Ok(dir)) => {
                self.notices
                    .push(format!("model saved to {}", dir.display()));
            }
            JobResult::ModelSaved(Err(e)) => self.errors.push(format!("saving failed: {e}")),
            JobResult::ModelOpened(Ok(model)) => {
                self.notices.push(format!(
                    "opened a model of {} classes ({})",
                    model.classes.len(),
                    model.classes.join(", ")
                ));
                self.trained = Some(*model);
                self.trained_report = None;
                self.rerun_predictions();
            }
            JobResult::ModelOpened(Err(e)) => self.errors.push(format!("cannot open: {e}")),
            JobResult::Recommended(result) => {
                self.recommending = false;
                if let Err(e) = &result {
                    self.errors.push(format!("cannot measure the dataset: {e}"));
                }
                self.recommendation = Some(result);
                self.refresh_recommendation();
            }
            JobResult::Probed(result) => {
                self.probing = false;
                if let Err(e) = &result {
                    self.errors.push(format!("depth probe failed: {e}"));
                }
                self.probe = Some(result);
            }
        }
    }

    /// Adds images to the Predict panel and classifies them in the background.
    pub fn add_images(&mut self, paths: Vec<PathBuf>) {
        let new: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| !self.predictions.iter().any(|i| &i.path == p))
            .collect();
        for path in &new {
            self.predictions.push(PredictItem {
                path: path.clone(),
                result: None,
            });
        }
        if let Some(predictor) = self.active_predictor() {
            self.jobs.predict(predictor, new);
        }
        self.settings.tab = Tab::Predict;
    }

    /// Classifies every shown image again (after training or opening a model).
    pub fn rerun_predictions(&mut self) {
        let paths: Vec<PathBuf> = self.predictions.iter().map(|i| i.path.clone()).collect();
        for item in &mut self.predictions {
            item.result = None;
        }
        if let Some(predictor) = self.active_predictor() {
            self.jobs.predict(predictor, paths);
        }
    }

    /// Which cut point and trainable units the block strip shows.
    pub fn plan_units(&self) -> (Unit, usize) {
        let plan = &self.settings.plan;
        (plan.cut_after, plan.effective_trainable_units())
    }
}

impl eframe::App for StudioApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let was_training = self.trained.is_some();
        self.drain(ctx);
        if !was_training && self.trained.is_some() && !self.predictions.is_empty() {
            self.rerun_predictions();
        }
        // Files dropped onto the window: a saved model's folder opens that model, another
        // folder becomes the training set, images go to Predict.
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_owned())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        let (model_dirs, other): (Vec<PathBuf>, Vec<PathBuf>) = dropped
            .into_iter()
            .partition(|p| p.join(crate::model::MANIFEST_FILE).is_file());
        let dropped = other;
        if let Some(dir) = model_dirs.into_iter().next() {
            self.settings.tab = Tab::Predict;
            self.apply(Command::OpenModelFrom(dir));
        }
        if let Some(dir) = dropped.iter().find(|p| p.is_dir()) {
            self.settings.train_dir = Some(dir.clone());
            self.settings.tab = Tab::Data;
            self.apply(Command::LoadDataset);
        }
        let images: Vec<PathBuf> = dropped.into_iter().filter(|p| p.is_file()).collect();
        if !images.is_empty() {
            self.add_images(images);
        }
        if self.jobs.loading.is_some() {
            // Loading progress is polled, not pushed: refresh a few times a second.
            ctx.request_repaint_after(std::time::Duration::from_millis(200));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.frame_secs = frame.info().cpu_usage;
        let commands = panels::show(ui, self);
        for command in commands {
            self.apply(command);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, SETTINGS_KEY, &self.settings);
    }
}
