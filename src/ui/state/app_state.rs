//! What the window shows: [`AppState`], owned by the app, read (never written) by panels. One
//! part per panel; [`Settings`] is the part that persists between launches.

use std::sync::Arc;

use super::camera::CameraState;
use super::data::DataState;
use super::doctor::DoctorState;
use super::guide::GuideState;
use super::inspect::InspectState;
use super::model::ModelState;
use super::predict::PredictState;
use super::results::ResultsState;
use super::settings::{DataChoice, Settings};
use super::shell::ShellState;
use super::train::{Run, RunStatus, TrainState};
use crate::data::dataset::{Dataset, LoadOptions};
use crate::model::Unit;
use crate::train::{Case, TrainReport};

/// Everything the panels read. Only the app changes it, in [`crate::ui::StudioApp::apply`] and
/// when results arrive.
#[derive(Debug, Default)]
pub struct AppState {
    /// Persisted between launches.
    pub settings: Settings,
    pub shell: ShellState,
    pub data: DataState,
    /// The dataset doctor (on the Data tab).
    pub doctor: DoctorState,
    pub guide: GuideState,
    pub train: TrainState,
    pub model: ModelState,
    pub results: ResultsState,
    pub predict: PredictState,
    /// The Inspect view: an image's activation maps at two units.
    pub inspect: InspectState,
    /// The camera: preview, recording into class folders, live prediction.
    pub camera: CameraState,
}

impl AppState {
    /// The dataset as training will use it (with the size slider applied).
    pub fn training_dataset(&self) -> Option<Arc<Dataset>> {
        let dataset = self.data.dataset.as_ref()?;
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
        match self.results.run {
            Some(i) => self.train.runs.get(i).and_then(|r| r.report.as_ref()),
            None => self.model.report.as_ref(),
        }
    }

    /// The four runs of the last finished Compare all four, in the guide's order (the last
    /// four runs, one per case, each with its results), with their indices.
    pub fn last_comparison(&self) -> Option<Vec<(usize, &Run)>> {
        let n = self.train.runs.len();
        if self.train.is_running() || n < Case::ALL.len() {
            return None;
        }
        let last: Vec<(usize, &Run)> = self
            .train
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
        let (model, data) = (self.model.trained.as_ref()?, self.model.data.as_ref()?);
        if *data != self.data_choice() {
            Some("the training data changed since")
        } else if model.plan.as_chosen() != self.settings.plan.as_chosen() {
            Some("the plan changed since")
        } else {
            None
        }
    }

    /// How the training folder is loaded for the plan chosen: the cache at the plan's resize
    /// side (the command line's size: never enlarged from a smaller copy) and its split.
    pub fn load_options(&self) -> LoadOptions {
        let plan = &self.settings.plan;
        plan.load_options(
            self.settings.val_dir.clone(),
            plan.preprocessing().resize_px,
        )
    }

    /// The data a run trains on, as chosen now.
    pub fn data_choice(&self) -> DataChoice {
        let settings = &self.settings;
        DataChoice {
            train_dir: settings.train_dir.clone(),
            val_dir: settings.val_dir.clone(),
            use_percent: settings.use_percent,
            revision: self.data.revision,
        }
    }

    /// Which cut point and trainable units the block strip shows.
    pub fn plan_units(&self) -> (Unit, usize) {
        let plan = &self.settings.plan;
        (plan.cut_after, plan.effective_trainable_units())
    }
}
