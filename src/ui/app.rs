//! The window and its one owner: [`StudioApp`]. Channels are drained in
//! [`eframe::App::logic`]; [`eframe::App::ui`] lays out panels, which read [`AppState`] and
//! return [`Command`]s that are applied afterwards (see [`super::command`]).

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;

use super::command::Command;
use super::jobs::{JobError, JobResult, Jobs, PendingImages};
use super::panels;
use super::runs::{Effect, apply_event};
use super::session::SessionEvent;
use super::state::predict::PredictItem;
use super::state::shell::Topic;
use super::state::train::Trainer;
use super::state::{AppState, Job, MISTAKE_THUMBNAILS, Run, Settings, Tab};
use crate::predict::Predictor;
use crate::train::{Case, TrainEvent, TrainOutcome, Waker};

const SETTINGS_KEY: &str = "transfer-studio-settings";

/// The window: its state, and the machinery that fills it.
pub struct StudioApp {
    /// What the panels read; only this app writes it.
    pub(super) state: AppState,
    pub(super) device: Device,
    pub(super) jobs: Jobs,
    pub(super) waker: Waker,
    pub(super) imagenet: Option<Arc<Predictor>>,
    /// The predictor in use (the trained model's, else `imagenet`), rebuilt only when the model
    /// changes: folding a network copies its weights (VGG16: 138 M).
    pub(super) predictor: Option<Arc<Predictor>>,
    pending_thumbnails: Vec<(PathBuf, egui::ColorImage)>,
    pending_preview: Option<Vec<super::jobs::PreviewRow<egui::ColorImage>>>,
    pub(super) pending_images: Vec<PendingImages>,
    /// Where removed images and classes go (the desktop's trash; none without a home folder).
    pub(super) trash: Option<crate::data::trash::Trash>,
    /// Counts model changes, so that overlays made with an earlier model are dropped.
    pub(super) explain_generation: u64,
    /// The camera's session and live predictor, while running.
    pub(super) camera: super::camera_runtime::CameraRuntime,
}

impl std::fmt::Debug for StudioApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StudioApp")
            .field("settings", &self.state.settings)
            .finish_non_exhaustive()
    }
}

impl StudioApp {
    /// Builds the app; `storage` restores the settings of the last session.
    pub fn new(ctx: &egui::Context, storage: Option<&dyn eframe::Storage>) -> Self {
        let settings: Settings = storage
            .and_then(|s| eframe::get_value(s, SETTINGS_KEY))
            .unwrap_or_default();
        let repaint = ctx.clone();
        let waker: Waker = Arc::new(move || repaint.request_repaint());
        // The remembered choice, where it can still be used.
        let device = crate::runtime::device_for(settings.device)
            .unwrap_or_else(|_| crate::runtime::compute_device());
        let mut app = Self {
            state: AppState {
                settings,
                ..AppState::default()
            },
            device,
            jobs: Jobs::new(waker.clone()),
            waker,
            imagenet: None,
            predictor: None,
            pending_thumbnails: Vec::new(),
            pending_preview: None,
            pending_images: Vec::new(),
            trash: crate::data::trash::Trash::desktop(),
            explain_generation: 0,
            camera: super::camera_runtime::CameraRuntime::default(),
        };
        match Predictor::imagenet(&app.device) {
            Ok(p) => app.imagenet = Some(Arc::new(p)),
            Err(e) => app.state.shell.error(
                Topic::Network,
                format!("cannot load the bundled network: {e}"),
            ),
        }
        app.state.shell.device_label = crate::runtime::describe_device(&app.device);
        app.model_changed();
        if app.state.settings.train_dir.is_some() {
            app.apply(Command::LoadDataset);
        }
        app
    }

    /// What the window shows.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn is_training(&self) -> bool {
        self.state.train.is_running()
    }

    /// The predictor the Predict panel uses: the trained head if any, else ImageNet's.
    pub(super) fn active_predictor(&self) -> Option<Arc<Predictor>> {
        self.predictor.clone()
    }

    /// After the model in use changed (trained, opened, or moved to another device): the
    /// predictor is rebuilt once, Predict's images are classified again (they showed the
    /// previous model's answers), and the Inspect view and the Grad-CAM overlays follow.
    pub(super) fn model_changed(&mut self) {
        self.predictor = match &self.state.model.trained {
            Some(model) => Predictor::from_network(
                &model.network,
                model.classes.clone(),
                model.preprocessing.clone(),
            )
            .ok()
            .map(Arc::new),
            None => self.imagenet.clone(),
        };
        self.rerun_predictions();
        self.inspection_follows_model();
        self.restart_live();
    }

    /// Drains the training session's and the background jobs' channels. Called every frame.
    pub fn drain(&mut self, ctx: &egui::Context) {
        self.drain_session();
        self.drain_camera(ctx);
        while let Ok(result) = self.jobs.rx.try_recv() {
            self.on_job(result);
        }
        self.state.data.loading = self.jobs.loading_progress();
        self.load_inspection_textures(ctx);
        for (path, image) in self.pending_thumbnails.drain(..) {
            let name = path.to_string_lossy().into_owned();
            let texture = ctx.load_texture(name, image, egui::TextureOptions::LINEAR);
            self.state.shell.thumbnails.insert(path, texture);
        }
        if let Some(rows) = self.pending_preview.take() {
            let texture =
                |name: String, image| ctx.load_texture(name, image, egui::TextureOptions::LINEAR);
            let rows = rows
                .into_iter()
                .map(|(class, eval, views)| {
                    let views = views
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| texture(format!("preview-{class}-{i}"), v))
                        .collect();
                    (
                        class.clone(),
                        texture(format!("preview-{class}"), eval),
                        views,
                    )
                })
                .collect();
            self.state.data.augment_preview = Some(rows);
        }
    }

    fn drain_session(&mut self) {
        let Trainer::Running(session) = &self.state.train.trainer else {
            return;
        };
        let mut ended = false;
        for event in session.drain() {
            match event {
                SessionEvent::Train { case, event } => self.on_train_event(case, *event),
                SessionEvent::Ended => ended = true,
            }
        }
        if ended {
            self.state.train.trainer = Trainer::Idle;
            self.state.train.compare_queue.clear();
        }
    }

    /// Starts a new run in the charts for `case` when a comparison moves on to it.
    fn follow_compare(&mut self, case: Option<Case>, event: &TrainEvent) {
        let Some(case) = case else { return };
        let moved_on = self
            .state
            .train
            .runs
            .last()
            .is_none_or(|r| r.case != Some(case));
        if !moved_on {
            return;
        }
        self.state.train.compare_queue.retain(|&c| c != case);
        let label = format!("{} #{}", case.title(), self.state.train.runs.len() + 1);
        self.state.train.runs.push(Run::new(label, Some(case)));
        self.state.train.progress = Default::default();
        if let TrainEvent::Started { plan, .. } = event {
            self.state.settings.plan = plan.clone();
        }
    }

    fn on_train_event(&mut self, case: Option<Case>, event: TrainEvent) {
        self.follow_compare(case, &event);
        let state = &mut self.state;
        let Some(run) = state.train.runs.last_mut() else {
            return;
        };
        match apply_event(run, &mut state.train.progress, event) {
            Effect::None => {}
            Effect::Notice(message) => state.shell.notices.push(message),
            Effect::CutChosen(choice) => {
                state.shell.notices.push(choice.sentence());
                state.guide.probe = Job::Done(*choice);
            }
            Effect::Finished(outcome) => self.on_finished(*outcome),
            Effect::Failed(error) => {
                state.train.compare_queue.clear();
                state
                    .shell
                    .error(Topic::Training, format!("training failed: {error}"));
            }
            Effect::Cancelled => state.train.compare_queue.clear(),
        }
    }

    fn on_finished(&mut self, outcome: TrainOutcome) {
        self.state.shell.succeeded(Topic::Training);
        self.state.model.report = Some(outcome.report);
        self.state.model.trained = Some(outcome.model);
        self.state.model.data = self.state.train.data.clone();
        self.state.results.run = None;
        self.state.results.selected_cell = None;
        self.queue_mistake_thumbnails();
        self.model_changed();
    }

    pub(super) fn queue_mistake_thumbnails(&mut self) {
        if let Some(eval) = self
            .state
            .shown_report()
            .and_then(|r| r.evaluation.as_ref())
        {
            let paths = eval
                .misclassified
                .iter()
                .take(MISTAKE_THUMBNAILS)
                .map(|m| m.path.clone())
                .collect();
            self.jobs.thumbnails(paths);
        }
    }

    fn on_job(&mut self, result: JobResult) {
        let state = &mut self.state;
        match result {
            JobResult::CameraCounts(_) | JobResult::CameraClassMade(_) => {
                self.on_camera_job(result);
            }
            JobResult::Picked { request, paths } => self.apply_picked(request, paths),
            JobResult::DialogUnavailable(request) => {
                if !state.shell.native_dialog_failed {
                    state.shell.native_dialog_failed = true;
                    state.shell.notices.push(
                        "The desktop's file dialog could not open (no xdg-desktop-portal or \
                         zenity): using the built-in browser; a folder can also be dropped on \
                         the window."
                            .into(),
                    );
                }
                self.open_browser(request);
            }
            JobResult::AugmentationPreview(rows) => self.pending_preview = Some(rows),
            JobResult::Listed { dir, entries } => {
                if let Some(browser) = state.shell.browser.as_mut().filter(|b| b.dir == dir) {
                    browser.entries = Some(entries);
                }
            }
            JobResult::DatasetLoaded(result) => self.on_dataset(result),
            JobResult::Thumbnail { path, image } => self.pending_thumbnails.push((path, image)),
            JobResult::Predicted { path, result } => {
                if let Some(item) = state.predict.items.iter_mut().find(|i| i.path == path) {
                    match result {
                        Ok((thumb, top)) => {
                            self.pending_thumbnails.push((path, thumb));
                            item.result = Some(Ok(top));
                        }
                        Err(e) => item.result = Some(Err(e.to_string())),
                    }
                }
            }
            JobResult::ModelSaved(Ok(dir)) => {
                state.shell.succeeded(Topic::Model);
                state
                    .shell
                    .notices
                    .push(format!("model saved to {}", dir.display()));
            }
            JobResult::ModelSaved(Err(e)) => state
                .shell
                .error(Topic::Model, format!("saving failed: {e}")),
            JobResult::Exported(Ok((path, check))) => {
                state.shell.succeeded(Topic::Model);
                let format = crate::export::Format::of_path(&path).label();
                let path = path.display();
                (state.shell.notices).push(format!("exported to {path} ({format}); {check}"));
            }
            JobResult::Exported(Err(e)) => state
                .shell
                .error(Topic::Model, format!("export failed: {e}")),
            JobResult::ModelOpened(Ok(model)) => {
                state.shell.succeeded(Topic::Model);
                state.shell.notices.push(format!(
                    "opened a model of {} classes ({})",
                    model.classes.len(),
                    model.classes.join(", ")
                ));
                state.model.trained = Some(*model);
                state.model.report = None;
                state.model.data = None;
                state.results.run = None;
                self.model_changed();
            }
            JobResult::ModelOpened(Err(e)) => {
                state.shell.error(Topic::Model, format!("cannot open: {e}"))
            }
            JobResult::Recommended(result) => {
                match &result {
                    Ok(_) => state.shell.succeeded(Topic::Guide),
                    Err(e) => state
                        .shell
                        .error(Topic::Guide, format!("cannot measure the dataset: {e}")),
                }
                state.guide.recommendation = Job::finish(result);
                self.refresh_recommendation();
            }
            JobResult::Inspected(result) => self.on_inspected(result),
            JobResult::Edited(edited) => self.on_edited(edited),
            JobResult::Doctor(event) => self.on_doctor(event),
            JobResult::DoctorDone(result) => self.on_doctor_done(result),
            JobResult::Undone {
                journal,
                before,
                result,
            } => self.on_undone(super::state::data::UndoEntry { journal, before }, result),
            JobResult::Explained(explained) => self.on_explained(explained),
            JobResult::Probed(result) => self.on_probed(result),
        }
    }

    fn on_probed(&mut self, result: Result<crate::train::cut::CutChoice, JobError>) {
        let state = &mut self.state;
        match &result {
            Ok(_) => state.shell.succeeded(Topic::Guide),
            Err(e) => state
                .shell
                .error(Topic::Guide, format!("depth probe failed: {e}")),
        }
        state.guide.probe = Job::finish(result);
    }

    fn on_dataset(&mut self, result: Result<Arc<crate::data::dataset::Dataset>, JobError>) {
        self.state.data.augment_preview = None;
        self.jobs.loading_done();
        match result {
            Ok(d) => {
                let state = &mut self.state;
                // The same images loaded again for another plan (size or split) keep their
                // measurement; the probe's choice was made for the old plan.
                let same_images = state.data.dataset.as_ref().is_some_and(|old| {
                    old.root == d.root
                        && old.classes == d.classes
                        && old.train.len() + old.val.len() == d.train.len() + d.val.len()
                });
                state.data.dataset = Some(d);
                state.data.error = None;
                state.guide.probe = Job::Idle;
                if same_images && state.guide.recommendation.done().is_some() {
                    self.refresh_recommendation();
                } else {
                    state.guide.recommendation = Job::Idle;
                    state.guide.shown = None;
                    self.apply(Command::Recommend);
                }
                // The plan may have changed again while this load ran.
                if self.dataset_needs_reload() {
                    self.reload_dataset();
                    return;
                }
                if std::mem::take(&mut self.state.data.start_when_loaded) {
                    self.apply(Command::StartTraining);
                }
            }
            Err(e) => {
                self.state.data.start_when_loaded = false;
                self.state.data.error = Some(e.to_string());
            }
        }
    }

    /// Classifies the measurement for the data training would use.
    pub(super) fn refresh_recommendation(&mut self) {
        let state = &mut self.state;
        state.guide.shown = match (&state.guide.recommendation, state.training_dataset()) {
            (Job::Done(r), Some(d)) => Some(r.reclassified(
                crate::guide::recommend::images_per_class(&d),
                state.settings.thresholds,
            )),
            _ => None,
        };
    }

    /// Adds images to the Predict panel and classifies them in the background.
    pub(super) fn add_images(&mut self, paths: Vec<PathBuf>) {
        let state = &mut self.state;
        let new: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| !state.predict.items.iter().any(|i| &i.path == p))
            .collect();
        for path in &new {
            state.predict.items.push(PredictItem {
                path: path.clone(),
                result: None,
            });
        }
        state.settings.tab = Tab::Predict;
        if let Some(predictor) = self.active_predictor() {
            self.jobs.predict(predictor, new);
        }
        self.request_explanations();
    }

    /// Classifies every shown image again (after training or opening a model).
    pub(super) fn rerun_predictions(&mut self) {
        let paths: Vec<PathBuf> = self
            .state
            .predict
            .items
            .iter()
            .map(|i| i.path.clone())
            .collect();
        for item in &mut self.state.predict.items {
            item.result = None;
        }
        if let Some(predictor) = self.active_predictor() {
            self.jobs.predict(predictor, paths);
        }
    }

    /// Files dropped onto the window: a saved model's folder opens that model, another folder
    /// becomes the training set, images go to Predict.
    fn open_dropped(&mut self, dropped: Vec<PathBuf>) {
        let (model_dirs, other): (Vec<PathBuf>, Vec<PathBuf>) = dropped
            .into_iter()
            .partition(|p| p.join(crate::train::saved::MANIFEST_FILE).is_file());
        if let Some(dir) = model_dirs.into_iter().next() {
            self.state.settings.tab = Tab::Predict;
            self.apply(Command::OpenModelFrom(dir));
        }
        if let Some(dir) = other.iter().find(|p| p.is_dir()) {
            self.state.settings.train_dir = Some(dir.clone());
            self.state.settings.tab = Tab::Data;
            self.apply(Command::LoadDataset);
        }
        let images: Vec<PathBuf> = other.into_iter().filter(|p| p.is_file()).collect();
        if !images.is_empty() {
            self.apply(Command::AddImages(images));
        }
    }
}

impl eframe::App for StudioApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.drain(ctx);
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_owned())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        if !dropped.is_empty() {
            self.open_dropped(dropped);
        }
        if self.jobs.is_loading() {
            // Loading progress is polled, not pushed: refresh a few times a second.
            ctx.request_repaint_after(std::time::Duration::from_millis(200));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.state.shell.frame_secs = frame.info().cpu_usage;
        let commands = panels::window_ui(ui, &self.state);
        for command in commands {
            self.apply(command);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, SETTINGS_KEY, &self.state.settings);
    }
}
