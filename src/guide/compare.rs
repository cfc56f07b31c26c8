//! Compare all four: the four presets trained one after the other on the same data (the
//! frozen ones on features computed once per run), each saved, with a table of validation
//! accuracy, training time and trainable parameters.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use serde::Serialize;

use crossbeam_channel::Receiver;

use crate::data::dataset::Dataset;
use crate::train::{
    Case, DataSource, RunError, SavedMetrics, TrainCommand, TrainEvent, TrainJob, TrainOutcome,
    TrainPlan, run_to_end, spawn_training,
};

/// One row of the comparison table.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub case: Case,
    pub title: String,
    pub val_accuracy: Option<f64>,
    pub train_secs: f64,
    pub trainable_parameters: usize,
    pub epochs_run: usize,
    /// Where the model was saved, if it was.
    pub model_dir: Option<PathBuf>,
}

impl CompareRow {
    pub fn from_outcome(case: Case, outcome: &TrainOutcome, model_dir: Option<PathBuf>) -> Self {
        let r = &outcome.report;
        Self {
            case,
            title: case.title().to_string(),
            val_accuracy: r.best_val_accuracy,
            train_secs: r.wall_secs,
            trainable_parameters: r.trainable_parameters,
            epochs_run: r.epochs_run,
            model_dir,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{case}: {source}")]
    Failed { case: Case, source: RunError },
    #[error("stopped")]
    Cancelled,
    #[error("cannot start the trainer: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("cannot save {case}: {source}")]
    Save {
        case: Case,
        source: crate::train::StoreError,
    },
}

/// Trains the four presets on `dataset` in turn, each with the plan `plan_of(case)` gives
/// (`Case::plan` for the presets as they are on the default backbone). `on_event(case, event)` sees every trainer event (to
/// draw or print progress); each model is saved to `out/<case>` when `out` is given. Commands
/// on `control` go to the run in progress (a stop ends the comparison).
pub fn compare_all(
    dataset: Arc<Dataset>,
    device: &Device,
    out: Option<&Path>,
    plan_of: impl Fn(Case) -> TrainPlan,
    mut on_event: impl FnMut(Case, &TrainEvent),
    control: Option<&Receiver<TrainCommand>>,
) -> Result<Vec<CompareRow>, CompareError> {
    let mut rows = Vec::with_capacity(Case::ALL.len());
    for case in Case::ALL {
        let job = TrainJob {
            data: DataSource::Loaded(dataset.clone()),
            plan: plan_of(case),
            device: device.clone(),
        };
        let handle = spawn_training(job, None)?;
        let outcome = match run_to_end(handle, &mut |e: &TrainEvent| on_event(case, e), control) {
            Ok(outcome) => outcome,
            Err(RunError::Cancelled) => return Err(CompareError::Cancelled),
            Err(source) => return Err(CompareError::Failed { case, source }),
        };
        let model_dir = match out {
            Some(dir) => Some(save(case, &outcome, dir)?),
            None => None,
        };
        rows.push(CompareRow::from_outcome(case, &outcome, model_dir));
    }
    Ok(rows)
}

fn save(case: Case, outcome: &TrainOutcome, dir: &Path) -> Result<PathBuf, CompareError> {
    let target = dir.join(case.to_string());
    outcome
        .model
        .save(&target, Some(SavedMetrics::from_report(&outcome.report)))
        .map_err(|source| CompareError::Save { case, source })?;
    Ok(target)
}
