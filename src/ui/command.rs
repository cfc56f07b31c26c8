//! What panels ask for, and the one place that carries it out. Anything slow goes to a
//! background thread; the handler only changes state and starts work.

use std::path::PathBuf;

use super::app::StudioApp;
use super::browser::{BrowserEdit, FileBrowser, PathRequest};
use super::session::Session;
use super::state::{CELL_THUMBNAILS, Run, Tab};
use crate::data::dataset::LoadOptions;
use crate::guide::recommend::{RecommendOptions, Thresholds};
use crate::model::Backbone;
use crate::train::{Case, DataSource, SavedMetrics, TrainCommand, TrainJob, TrainPlan};

/// Dataset thumbnails decoded per class for the Data panel.
pub const THUMBNAILS_PER_CLASS: usize = 6;

/// What panels ask for; applied by [`StudioApp::apply`] after layout.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    ShowTab(Tab),
    /// Asks for a path (the desktop's dialog, or the in-window browser where it cannot open),
    /// then acts on the answer: loads a folder, opens or saves a model, adds images, exports.
    Pick(PathRequest),
    /// The in-window browser: show this folder.
    BrowseTo(PathBuf),
    /// The in-window browser: an edit of its typed path, new name or picked files.
    EditBrowser(BrowserEdit),
    /// The in-window browser: answer with what it shows, or close it.
    ChooseInBrowser,
    CloseBrowser,
    /// Uses this folder as the training data (and the split for validation), and loads it.
    SetTrainFolder(PathBuf),
    ClearValidation,
    LoadDataset,
    SetUsePercent(u32),
    SelectCase(Case),
    /// Switches the network, keeping the selected case (its preset on the new network).
    SetBackbone(Backbone),
    Retrain,
    SetPlan(TrainPlan),
    StartTraining,
    Train(TrainCommand),
    ClearRuns,
    /// Saves the trained model into this folder (in the background).
    SaveModelTo(PathBuf),
    /// Opens the saved model in this folder (in the background).
    OpenModelFrom(PathBuf),
    /// Exports the trained model to this ONNX file (in the background).
    ExportOnnxTo(PathBuf),
    /// Adds these images to Predict and classifies them.
    AddImages(Vec<PathBuf>),
    ClearImages,
    ShowCell {
        truth: usize,
        predicted: usize,
    },
    /// Results shows this run's results (`None`: the current model's).
    ShowRunResults(Option<usize>),
    DismissError(usize),
    /// Trains the four presets one after the other on the current data.
    CompareAll,
    SetThresholds(Thresholds),
    /// Measures the dataset's place on the grid again.
    Recommend,
    RunProbe,
    /// Shows what augmentation does to a few training images.
    PreviewAugmentation,
    /// Writes out a bundled demo pack (once) and loads it as the training folder.
    OpenDemo(crate::data::demo::DemoPack),
    /// The Inspect view looks at this image.
    InspectImage(PathBuf),
    /// The Inspect view shows this unit on one side (0: left).
    InspectUnit {
        side: usize,
        unit: crate::model::Unit,
    },
    /// A click on the Inspect view's unit strip sets this side from now on.
    InspectSide(usize),
    /// Predict and the mistakes gallery show Grad-CAM overlays (or stop showing them).
    ShowGradCam(bool),
    /// Trains and predicts on this device from now on (not while training).
    SetDevice(crate::runtime::DeviceChoice),
}

impl StudioApp {
    /// Applies a panel's request.
    pub fn apply(&mut self, command: Command) {
        match command {
            Command::ShowTab(tab) => self.state_mut().settings.tab = tab,
            Command::Pick(request) => self.pick(request),
            Command::BrowseTo(_)
            | Command::EditBrowser(_)
            | Command::ChooseInBrowser
            | Command::CloseBrowser => self.apply_browser_command(command),
            Command::SetTrainFolder(dir) => {
                let settings = &mut self.state_mut().settings;
                settings.train_dir = Some(dir);
                settings.val_dir = None;
                self.apply(Command::LoadDataset);
            }
            Command::ClearValidation => {
                self.state_mut().settings.val_dir = None;
                self.apply(Command::LoadDataset);
            }
            Command::LoadDataset => self.load_dataset(),
            Command::SetUsePercent(p) => {
                self.state_mut().settings.use_percent = p.clamp(1, 100);
                self.refresh_recommendation();
            }
            Command::SetThresholds(t) => {
                self.state_mut().settings.thresholds = t;
                self.refresh_recommendation();
            }
            Command::Recommend => self.recommend(),
            Command::RunProbe => self.probe(),
            Command::OpenDemo(pack) => {
                self.state_mut().settings.val_dir = None;
                self.jobs.open_demo(pack);
            }
            Command::CompareAll => self.start_compare(),
            Command::PreviewAugmentation => {
                if let Some(dataset) = self.state().training_dataset() {
                    let plan = self.state().settings.plan.clone();
                    self.jobs.preview_augmentation(dataset, plan);
                }
            }
            Command::SelectCase(case) => {
                let backbone = self.state().settings.plan.backbone;
                self.set_plan_keeping_seed(case.plan_for(backbone));
            }
            Command::Retrain => {
                let backbone = self.state().settings.plan.backbone;
                self.set_plan_keeping_seed(Case::retrain_plan_for(backbone));
            }
            Command::SetBackbone(backbone) => {
                let case =
                    Case::matching(&self.state().settings.plan).unwrap_or(Case::SmallSimilar);
                self.set_plan_keeping_seed(case.plan_for(backbone));
            }
            Command::SetPlan(plan) => self.state_mut().settings.plan = plan,
            Command::StartTraining => self.start_training(),
            Command::Train(c) => {
                if let Some(session) = &self.session {
                    session.send(c);
                }
            }
            Command::ClearRuns => {
                if !self.is_training() {
                    let state = self.state_mut();
                    state.runs.clear();
                    state.results_run = None;
                }
            }
            Command::SaveModelTo(_)
            | Command::OpenModelFrom(_)
            | Command::ExportOnnxTo(_)
            | Command::AddImages(_)
            | Command::ClearImages
            | Command::ShowCell { .. }
            | Command::ShowRunResults(_)
            | Command::DismissError(_) => self.apply_model_command(command),
            Command::SetDevice(choice) => self.set_device(choice),
            Command::InspectImage(_)
            | Command::InspectUnit { .. }
            | Command::InspectSide(_)
            | Command::ShowGradCam(_) => self.apply_inspect_command(command),
        }
    }

    /// The commands about models, images and results.
    fn apply_model_command(&mut self, command: Command) {
        match command {
            Command::SaveModelTo(dir) => {
                let state = self.state();
                match &state.trained {
                    Some(model) => self.jobs.save_model(
                        model.clone(),
                        state.trained_report.as_ref().map(SavedMetrics::from_report),
                        dir,
                    ),
                    None => self
                        .state_mut()
                        .errors
                        .push("nothing trained to save yet".into()),
                }
            }
            Command::OpenModelFrom(dir) => self.jobs.open_model(dir, self.device.clone()),
            Command::ExportOnnxTo(path) => match &self.state().trained {
                Some(model) => {
                    let metrics = self
                        .state()
                        .trained_report
                        .as_ref()
                        .map(SavedMetrics::from_report);
                    self.jobs.export_onnx(model.clone(), metrics, path);
                }
                None => self
                    .state_mut()
                    .errors
                    .push("nothing trained or opened to export yet".into()),
            },
            Command::AddImages(paths) => self.add_images(paths),
            Command::ClearImages => self.state_mut().predictions.clear(),
            Command::ShowCell { truth, predicted } => self.show_cell(truth, predicted),
            Command::ShowRunResults(run) => {
                let state = self.state_mut();
                state.results_run = run;
                state.selected_cell = None;
                self.queue_mistake_thumbnails();
                self.request_explanations();
            }
            Command::DismissError(i) => {
                let errors = &mut self.state_mut().errors;
                if i < errors.len() {
                    errors.remove(i);
                }
            }
            // The others are [`Self::apply`]'s own.
            _ => {}
        }
    }

    /// Takes `plan`, keeping the seed and the chosen weights (for the same network).
    fn set_plan_keeping_seed(&mut self, plan: TrainPlan) {
        let settings = &mut self.state_mut().settings;
        let weights = (plan.backbone == settings.plan.backbone)
            .then(|| settings.plan.weights.clone())
            .flatten();
        settings.plan = TrainPlan {
            seed: settings.plan.seed,
            weights,
            ..plan
        };
    }

    fn load_dataset(&mut self) {
        let settings = &self.state().settings;
        let Some(root) = settings.train_dir.clone() else {
            return;
        };
        let plan = &settings.plan;
        let options = LoadOptions {
            val_dir: settings.val_dir.clone(),
            val_fraction: plan.val_fraction,
            seed: plan.seed,
            cache_short_side_px: plan.preprocessing().resize_px,
            ..LoadOptions::default()
        };
        let state = self.state_mut();
        state.dataset = None;
        state.data_error = None;
        self.jobs.load_dataset(root, options, THUMBNAILS_PER_CLASS);
    }

    fn recommend(&mut self) {
        let state = self.state();
        if let Some(d) = state.dataset.clone() {
            let options = RecommendOptions {
                thresholds: state.settings.thresholds,
                ..RecommendOptions::default()
            };
            self.state_mut().recommending = true;
            self.jobs.recommend(d, options, self.device.clone());
        }
    }

    /// Switches the compute device; the bundled classifier moves with it. A device that
    /// cannot be used is an error in the window, and the current one stays.
    fn set_device(&mut self, choice: crate::runtime::DeviceChoice) {
        if self.is_training() {
            return;
        }
        match crate::runtime::device_for(choice) {
            Ok(device) => {
                let moved = !device.same_device(&self.device);
                self.state_mut().settings.device = choice;
                self.state_mut().device_label = crate::runtime::describe_device(&device);
                self.device = device;
                if moved {
                    self.imagenet = crate::predict::Predictor::imagenet(&self.device)
                        .ok()
                        .map(std::sync::Arc::new);
                    self.model_changed();
                }
            }
            Err(e) => self
                .state_mut()
                .errors
                .push(format!("cannot use {}: {e}", choice.title())),
        }
    }

    fn probe(&mut self) {
        let state = self.state();
        if let Some(d) = state.training_dataset()
            && !state.probing
        {
            let plan = state.settings.plan.clone();
            let state = self.state_mut();
            state.probing = true;
            state.probe = None;
            self.jobs.probe(d, plan, self.device.clone());
        }
    }

    fn show_cell(&mut self, truth: usize, predicted: usize) {
        self.state_mut().selected_cell = Some((truth, predicted));
        let state = self.state();
        if let Some(eval) = state.shown_report().and_then(|r| r.evaluation.as_ref()) {
            let paths: Vec<PathBuf> = eval
                .predictions
                .iter()
                .filter(|(p, t, pr)| {
                    *t == truth && *pr == predicted && !state.thumbnails.contains_key(p)
                })
                .take(CELL_THUMBNAILS)
                .map(|(p, _, _)| p.clone())
                .collect();
            self.jobs.thumbnails(paths);
        }
    }

    fn start_training(&mut self) {
        if self.is_training() {
            return;
        }
        let Some(dataset) = self.state().training_dataset() else {
            self.state_mut()
                .errors
                .push("choose a training folder first (Data)".into());
            return;
        };
        let plan = self.state().settings.plan.clone();
        if let Err(e) = plan.validate() {
            self.state_mut().errors.push(e.to_string());
            return;
        }
        let case = Case::matching(&plan);
        let label = format!(
            "{} #{}",
            case.map_or("custom", Case::title),
            self.state().runs.len() + 1
        );
        let job = TrainJob {
            data: DataSource::Loaded(dataset),
            plan,
            device: self.device.clone(),
        };
        match Session::single(job, self.waker.clone()) {
            Ok(session) => self.started(session, Run::new(label, case)),
            Err(e) => self
                .state_mut()
                .errors
                .push(format!("cannot start training: {e}")),
        }
    }

    /// Compare-all-four: the presets in turn, the first run shown at once.
    fn start_compare(&mut self) {
        if self.is_training() {
            return;
        }
        let Some(dataset) = self.state().training_dataset() else {
            return;
        };
        let current = self.state().settings.plan.clone();
        let plan_of = {
            let current = current.clone();
            move |case: Case| TrainPlan {
                seed: current.seed,
                weights: current.weights.clone(),
                ..case.plan_for(current.backbone)
            }
        };
        let first_plan = plan_of(Case::ALL[0]);
        match Session::compare(dataset, self.device.clone(), plan_of, self.waker.clone()) {
            Ok(session) => {
                let first = Case::ALL[0];
                let label = format!("{} #{}", first.title(), self.state().runs.len() + 1);
                self.state_mut().compare_queue = Case::ALL[1..].to_vec();
                self.state_mut().settings.plan = first_plan;
                self.started(session, Run::new(label, Some(first)));
            }
            Err(e) => self
                .state_mut()
                .errors
                .push(format!("cannot start training: {e}")),
        }
    }

    fn started(&mut self, session: Session, run: Run) {
        self.session = Some(session);
        let state = self.state_mut();
        state.training = true;
        state.progress = Default::default();
        state.training_data = Some(state.settings.data_choice());
        state.runs.push(run);
        state.settings.tab = Tab::Train;
    }
}

impl StudioApp {
    /// Asks the desktop for a path, or opens the in-window browser once the desktop's dialog
    /// has failed to open.
    fn pick(&mut self, request: PathRequest) {
        if self.state().native_dialog_failed {
            self.open_browser(request);
        } else {
            self.jobs.pick(request);
        }
    }

    pub(super) fn open_browser(&mut self, request: PathRequest) {
        let settings = &self.state().settings;
        let near = match request {
            PathRequest::ValidationFolder => {
                settings.val_dir.as_ref().or(settings.train_dir.as_ref())
            }
            _ => settings.train_dir.as_ref(),
        };
        let dir = super::browser::start_dir(near.map(PathBuf::as_path));
        self.state_mut().browser = Some(FileBrowser::new(request, dir.clone()));
        self.jobs.list_dir(dir, request);
    }

    /// Acts on a dialog's answer.
    pub(super) fn apply_picked(&mut self, request: PathRequest, mut paths: Vec<PathBuf>) {
        let Some(first) = paths.first().cloned() else {
            return;
        };
        match request {
            PathRequest::TrainFolder | PathRequest::ValidationFolder => {
                let settings = &mut self.state_mut().settings;
                if request == PathRequest::TrainFolder {
                    settings.train_dir = Some(first);
                } else {
                    settings.val_dir = Some(first);
                }
                self.apply(Command::LoadDataset);
            }
            PathRequest::OpenModel => self.apply(Command::OpenModelFrom(first)),
            PathRequest::SaveModel => self.apply(Command::SaveModelTo(first)),
            PathRequest::OnnxFile => self.apply(Command::ExportOnnxTo(first)),
            PathRequest::Images => {
                paths.sort();
                self.apply(Command::AddImages(paths));
            }
        }
    }

    fn apply_browser_command(&mut self, command: Command) {
        let Some(browser) = self.state_mut().browser.as_mut() else {
            return;
        };
        match command {
            Command::BrowseTo(dir) => {
                browser.go_to(dir.clone());
                let request = browser.request;
                self.jobs.list_dir(dir, request);
            }
            Command::EditBrowser(edit) => browser.edit(edit),
            Command::ChooseInBrowser => {
                if let Some(paths) = browser.chosen() {
                    let request = browser.request;
                    self.state_mut().browser = None;
                    self.apply_picked(request, paths);
                }
            }
            _ => self.state_mut().browser = None,
        }
    }
}
