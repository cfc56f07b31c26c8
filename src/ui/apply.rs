//! The one place that carries out what panels ask for ([`Command`]). Anything slow goes to a
//! background thread; the handler only changes state and starts work.

use std::path::PathBuf;

use super::app::StudioApp;
use super::browser::{FileBrowser, PathRequest};
use super::command::{Command, THUMBNAILS_PER_CLASS};
use super::session::Session;
use super::state::shell::Topic;
use super::state::train::Trainer;
use super::state::{CELL_THUMBNAILS, Job, Run, Tab};
use crate::guide::recommend::RecommendOptions;
use crate::train::{Case, DataSource, TrainJob, TrainPlan, TrainReport};

impl StudioApp {
    /// Applies a panel's request.
    pub fn apply(&mut self, command: Command) {
        match command {
            Command::ShowTab(tab) => self.state.settings.tab = tab,
            Command::Pick(request) => self.pick(request),
            Command::BrowseTo(_)
            | Command::EditBrowser(_)
            | Command::ChooseInBrowser
            | Command::CloseBrowser => self.apply_browser_command(command),
            Command::SetTrainFolder(dir) => {
                let settings = &mut self.state.settings;
                settings.train_dir = Some(dir);
                settings.val_dir = None;
                self.apply(Command::LoadDataset);
            }
            Command::ClearValidation => {
                self.state.settings.val_dir = None;
                self.apply(Command::LoadDataset);
            }
            Command::LoadDataset => self.load_dataset(),
            Command::SetUsePercent(p) => {
                self.state.settings.use_percent = p.clamp(1, 100);
                self.refresh_recommendation();
            }
            Command::SetThresholds(t) => {
                self.state.settings.thresholds = t;
                self.refresh_recommendation();
            }
            Command::Recommend => self.recommend(),
            Command::RunProbe => self.probe(),
            Command::OpenDemo(pack) => {
                self.state.settings.val_dir = None;
                self.jobs.open_demo(pack);
            }
            Command::CompareAll => self.start_compare(),
            Command::PreviewAugmentation => {
                if let Some(dataset) = self.state.training_dataset() {
                    let plan = self.state.settings.plan.clone();
                    self.jobs.preview_augmentation(dataset, plan);
                }
            }
            Command::SelectCase(case) => {
                let backbone = self.state.settings.plan.backbone;
                self.set_plan_keeping_seed(case.plan_for(backbone));
            }
            Command::Retrain => {
                let backbone = self.state.settings.plan.backbone;
                self.set_plan_keeping_seed(Case::retrain_plan_for(backbone));
            }
            Command::SetBackbone(backbone) => {
                let case = Case::matching(&self.state.settings.plan).unwrap_or(Case::SmallSimilar);
                self.set_plan_keeping_seed(case.plan_for(backbone));
            }
            Command::SetWeights(file) => {
                let plan = &mut self.state.settings.plan;
                plan.weights = file.map(crate::model::WeightsSource::File);
            }
            Command::SetPlan(plan) => {
                self.state.settings.plan = plan;
                self.dataset_follows_plan();
            }
            Command::StartTraining => self.start_training(),
            Command::Train(c) => {
                if let Trainer::Running(session) = &self.state.train.trainer {
                    session.send(c);
                }
            }
            Command::ClearRuns => {
                if !self.is_training() {
                    let state = &mut self.state;
                    state.train.runs.clear();
                    state.results.run = None;
                }
            }
            Command::SaveModelTo(_)
            | Command::OpenModelFrom(_)
            | Command::ExportTo(_)
            | Command::SetExportPrecision(_)
            | Command::AddImages(_)
            | Command::ClearImages
            | Command::ShowCell { .. }
            | Command::ShowRunResults(_)
            | Command::DismissError(_) => self.apply_model_command(command),
            Command::SetDevice(choice) => self.set_device(choice),
            Command::SetClassDraft(_)
            | Command::NewClass(_)
            | Command::RenameClass { .. }
            | Command::DeleteClass(_)
            | Command::SelectImage { .. }
            | Command::ClearSelection
            | Command::MoveSelected(_)
            | Command::RemoveSelected
            | Command::UndoEdit
            | Command::SelectImages { .. }
            | Command::MoveImages { .. }
            | Command::RemoveImages(_) => self.apply_edit_command(command),
            Command::Doctor(command) => self.apply_doctor_command(command),
            Command::Camera(command) => self.apply_camera_command(command),
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
                let state = &self.state;
                match &state.model.trained {
                    Some(model) => self.jobs.save_model(
                        model.clone(),
                        state.model.report.as_ref().map(TrainReport::saved_metrics),
                        dir,
                    ),
                    None => self
                        .state
                        .shell
                        .error(Topic::Model, "nothing trained to save yet"),
                }
            }
            Command::OpenModelFrom(dir) => self.jobs.open_model(dir, self.device.clone()),
            Command::SetExportPrecision(p) => self.state.settings.export_precision = p,
            Command::ExportTo(path) => match &self.state.model.trained {
                Some(model) => {
                    let metrics = self
                        .state
                        .model
                        .report
                        .as_ref()
                        .map(TrainReport::saved_metrics);
                    let format = crate::export::Format::of_path(&path).label();
                    let precision = self.state.settings.export_precision.name();
                    self.state.shell.notices.push(format!(
                        "exporting to {} ({precision} {format}), then checking the file…",
                        path.display()
                    ));
                    let export = super::jobs::ModelExport {
                        model: model.clone(),
                        metrics,
                        path,
                        precision: self.state.settings.export_precision,
                        data: self.state.data.dataset.clone(),
                    };
                    self.jobs.export_model(export);
                }
                None => self
                    .state
                    .shell
                    .error(Topic::Model, "nothing trained or opened to export yet"),
            },
            Command::AddImages(paths) => self.add_images(paths),
            Command::ClearImages => self.state.predict.items.clear(),
            Command::ShowCell { truth, predicted } => self.show_cell(truth, predicted),
            Command::ShowRunResults(run) => {
                let state = &mut self.state;
                state.results.run = run;
                state.results.selected_cell = None;
                self.queue_mistake_thumbnails();
                self.request_explanations();
            }
            Command::DismissError(i) => {
                let errors = &mut self.state.shell.errors;
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
        let settings = &mut self.state.settings;
        let weights = (plan.backbone == settings.plan.backbone)
            .then(|| settings.plan.weights.clone())
            .flatten();
        settings.plan = TrainPlan {
            seed: settings.plan.seed,
            weights,
            ..plan
        };
        self.dataset_follows_plan();
    }

    /// Reloads the training folder when the plan needs it loaded otherwise (another resize
    /// side, split fraction or seed), so that the window trains on the pixels and the split
    /// the command line would use. The dataset shown stays until the new one arrives.
    pub(super) fn dataset_follows_plan(&mut self) {
        if self.dataset_needs_reload() && !self.jobs.is_loading() {
            self.reload_dataset();
        }
    }

    /// Loads the training folder anew (another folder, or the first load).
    fn load_dataset(&mut self) {
        let data = &mut self.state.data;
        data.dataset = None;
        data.start_when_loaded = false;
        // Edits of another folder cannot be undone into this one.
        data.undo.clear();
        data.selection.clear();
        self.reload_dataset();
    }

    /// Loads the training folder as the plan needs it; what is shown stays until it arrives.
    pub(super) fn reload_dataset(&mut self) {
        let Some(root) = self.state.settings.train_dir.clone() else {
            return;
        };
        let options = self.state.load_options();
        self.state.data.error = None;
        self.jobs.load_dataset(root, options, THUMBNAILS_PER_CLASS);
    }

    fn recommend(&mut self) {
        let state = &self.state;
        if let Some(d) = state.data.dataset.clone() {
            let options = RecommendOptions {
                thresholds: state.settings.thresholds,
                ..RecommendOptions::default()
            };
            self.state.guide.recommendation = Job::Running;
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
                self.state.shell.succeeded(Topic::Network);
                let moved = !device.same_device(&self.device);
                self.state.settings.device = choice;
                self.state.shell.device_label = crate::runtime::describe_device(&device);
                self.device = device;
                if moved {
                    self.imagenet = crate::predict::Predictor::imagenet(&self.device)
                        .ok()
                        .map(std::sync::Arc::new);
                    self.model_changed();
                }
            }
            Err(e) => self.state.shell.error(
                Topic::Network,
                format!("cannot use {}: {e}", choice.title()),
            ),
        }
    }

    fn probe(&mut self) {
        let state = &self.state;
        if let Some(d) = state.training_dataset()
            && !state.guide.probe.is_running()
        {
            let plan = state.settings.plan.clone();
            self.state.guide.probe = Job::Running;
            self.jobs.probe(d, plan, self.device.clone());
        }
    }

    fn show_cell(&mut self, truth: usize, predicted: usize) {
        self.state.results.selected_cell = Some((truth, predicted));
        let state = &self.state;
        if let Some(eval) = state.shown_report().and_then(|r| r.evaluation.as_ref()) {
            let paths: Vec<PathBuf> = eval
                .predictions
                .iter()
                .filter(|(p, t, pr)| {
                    *t == truth && *pr == predicted && !state.shell.thumbnails.contains_key(p)
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
        // A reload for this plan is under way, or needed: train on what it brings, not on
        // the copy loaded for another plan.
        let reloading = self.jobs.is_loading() && self.state.data.dataset.is_some();
        if reloading || self.dataset_needs_reload() {
            self.state.data.start_when_loaded = true;
            self.state.shell.notices.push(
                "loading the images again for this plan's image size and split; training \
                 starts when they are in"
                    .into(),
            );
            self.dataset_follows_plan();
            return;
        }
        let Some(dataset) = self.state.training_dataset() else {
            self.state
                .shell
                .error(Topic::Training, "choose a training folder first (Data)");
            return;
        };
        let plan = self.state.settings.plan.clone();
        if let Err(e) = plan.validate() {
            self.state.shell.error(Topic::Training, e.to_string());
            return;
        }
        let case = Case::matching(&plan);
        let label = format!(
            "{} #{}",
            case.map_or("custom", Case::title),
            self.state.train.runs.len() + 1
        );
        let job = TrainJob {
            data: DataSource::Loaded(dataset),
            plan,
            device: self.device.clone(),
        };
        match Session::single(job, self.waker.clone()) {
            Ok(session) => self.started(session, Run::new(label, case)),
            Err(e) => self
                .state
                .shell
                .error(Topic::Training, format!("cannot start training: {e}")),
        }
    }

    /// Compare-all-four: the presets in turn, the first run shown at once.
    fn start_compare(&mut self) {
        if self.is_training() {
            return;
        }
        let Some(dataset) = self.state.training_dataset() else {
            return;
        };
        let current = self.state.settings.plan.clone();
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
                let label = format!("{} #{}", first.title(), self.state.train.runs.len() + 1);
                self.state.train.compare_queue = Case::ALL[1..].to_vec();
                self.state.settings.plan = first_plan;
                self.started(session, Run::new(label, Some(first)));
            }
            Err(e) => self
                .state
                .shell
                .error(Topic::Training, format!("cannot start training: {e}")),
        }
    }

    fn started(&mut self, session: Session, run: Run) {
        let state = &mut self.state;
        state.train.trainer = Trainer::Running(session);
        state.train.progress = Default::default();
        state.train.data = Some(state.data_choice());
        state.train.runs.push(run);
        state.settings.tab = Tab::Train;
    }

    /// Whether the loaded dataset was loaded for another plan (size or split).
    pub(super) fn dataset_needs_reload(&self) -> bool {
        let options = self.state.load_options();
        self.state
            .data
            .dataset
            .as_ref()
            .is_some_and(|d| !d.loaded_with(&options))
    }
}

impl StudioApp {
    /// Asks the desktop for a path, or opens the in-window browser once the desktop's dialog
    /// has failed to open.
    fn pick(&mut self, request: PathRequest) {
        if self.state.shell.native_dialog_failed {
            self.open_browser(request);
        } else {
            self.jobs.pick(request);
        }
    }

    pub(super) fn open_browser(&mut self, request: PathRequest) {
        let settings = &self.state.settings;
        let near = match request {
            PathRequest::ValidationFolder => {
                settings.val_dir.as_ref().or(settings.train_dir.as_ref())
            }
            _ => settings.train_dir.as_ref(),
        };
        let dir = super::browser::start_dir(near.map(PathBuf::as_path));
        self.state.shell.browser = Some(FileBrowser::new(request, dir.clone()));
        self.jobs.list_dir(dir, request);
    }

    /// Acts on a dialog's answer.
    pub(super) fn apply_picked(&mut self, request: PathRequest, mut paths: Vec<PathBuf>) {
        let Some(first) = paths.first().cloned() else {
            return;
        };
        match request {
            PathRequest::TrainFolder | PathRequest::ValidationFolder => {
                let settings = &mut self.state.settings;
                if request == PathRequest::TrainFolder {
                    settings.train_dir = Some(first);
                } else {
                    settings.val_dir = Some(first);
                }
                self.apply(Command::LoadDataset);
            }
            PathRequest::OpenModel => self.apply(Command::OpenModelFrom(first)),
            PathRequest::SaveModel => self.apply(Command::SaveModelTo(first)),
            PathRequest::ExportFile => self.apply(Command::ExportTo(first)),
            PathRequest::Images => {
                paths.sort();
                self.apply(Command::AddImages(paths));
            }
            PathRequest::Weights => self.apply(Command::SetWeights(Some(first))),
        }
    }

    fn apply_browser_command(&mut self, command: Command) {
        let Some(browser) = self.state.shell.browser.as_mut() else {
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
                    self.state.shell.browser = None;
                    self.apply_picked(request, paths);
                }
            }
            _ => self.state.shell.browser = None,
        }
    }
}
