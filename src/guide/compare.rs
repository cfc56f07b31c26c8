//! Compare all four: the four presets trained one after the other on the same data (the
//! frozen ones on features computed once per run), each saved, with a table of validation
//! accuracy, training time and trainable parameters — and, given a held-out test folder, each
//! model's accuracy on it (validation accuracy chose each run's best epoch, so it flatters;
//! the test folder was used for nothing).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use serde::Serialize;

use crossbeam_channel::Receiver;

use crate::data::dataset::Dataset;
use crate::train::{
    Case, DataSource, EvaluateError, RunError, TrainCommand, TrainEvent, TrainJob, TrainOutcome,
    TrainPlan, evaluate_dataset, run_to_end, spawn_training,
};

/// One row of the comparison table.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub case: Case,
    pub title: String,
    pub val_accuracy: Option<f64>,
    /// Accuracy on the held-out test folder, when one was given.
    pub test_accuracy: Option<f64>,
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
            test_accuracy: None,
            train_secs: r.wall_secs,
            trainable_parameters: r.trainable_parameters,
            epochs_run: r.epochs_run,
            model_dir,
        }
    }
}

/// The recommended case counts as right when its accuracy is within this of the best's.
pub const ADVICE_MARGIN: f64 = 0.015;

/// Which accuracies the advice was judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// The validation images, which also chose each run's best epoch.
    Validation,
    /// A held-out test folder, used for nothing else.
    Test,
}

/// Whether the guide's advice held on this data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    pub basis: Basis,
    /// The case the recommendation picks for this data.
    pub recommended: Case,
    pub recommended_accuracy: Option<f64>,
    /// The case with the best validation accuracy (the earlier case on a tie).
    pub best: Case,
    pub best_accuracy: f64,
    /// The recommended case is within [`ADVICE_MARGIN`] of the best.
    pub held: bool,
    /// How far the recommended case is behind the best (0 when it is the best).
    pub shortfall: f64,
    /// Over how many seeds the accuracies were averaged (absent: one run each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seeds: Option<usize>,
}

impl Advice {
    /// Judges `recommended` against the rows: on their test accuracies when every row has one,
    /// else on validation; `None` without accuracies.
    pub fn judge(rows: &[CompareRow], recommended: Case) -> Option<Self> {
        let tested = !rows.is_empty() && rows.iter().all(|r| r.test_accuracy.is_some());
        let (basis, accuracies): (Basis, Vec<(Case, Option<f64>)>) = if tested {
            let of_row = rows.iter().map(|r| (r.case, r.test_accuracy));
            (Basis::Test, of_row.collect())
        } else {
            let of_row = rows.iter().map(|r| (r.case, r.val_accuracy));
            (Basis::Validation, of_row.collect())
        };
        Self::judge_accuracies(&accuracies, recommended, basis)
    }

    /// Judges `recommended` against each case's accuracy (measured on `basis`).
    pub fn judge_accuracies(
        accuracies: &[(Case, Option<f64>)],
        recommended: Case,
        basis: Basis,
    ) -> Option<Self> {
        let (best, best_accuracy) = accuracies
            .iter()
            .filter_map(|&(case, a)| a.map(|a| (case, a)))
            .fold(None, |best: Option<(Case, f64)>, (case, a)| match best {
                Some((_, b)) if b >= a => best,
                _ => Some((case, a)),
            })?;
        let recommended_accuracy = accuracies
            .iter()
            .find(|(case, _)| *case == recommended)
            .and_then(|(_, a)| *a);
        let shortfall =
            recommended_accuracy.map_or(best_accuracy, |a| (best_accuracy - a).max(0.0));
        Some(Self {
            basis,
            recommended,
            recommended_accuracy,
            best,
            best_accuracy,
            held: recommended_accuracy.is_some() && shortfall <= ADVICE_MARGIN + 1e-9,
            shortfall,
            seeds: None,
        })
    }

    /// The same advice, its accuracies being means over `seeds` runs.
    pub fn over_seeds(self, seeds: usize) -> Self {
        Self {
            seeds: (seeds > 1).then_some(seeds),
            ..self
        }
    }

    /// One line for the terminal and the window.
    pub fn sentence(&self) -> String {
        let opening = match (self.basis, self.seeds) {
            (Basis::Validation, None) => "The advice".to_owned(),
            (Basis::Validation, Some(n)) => format!("Averaged over {n} seeds, the advice"),
            (Basis::Test, None) => "On the held-out test images the advice".to_owned(),
            (Basis::Test, Some(n)) => {
                format!("On the held-out test images, averaged over {n} seeds, the advice")
            }
        };
        self.verdict(&opening)
    }

    /// The verdict after `opening` ("The advice" and how it was judged).
    fn verdict(&self, opening: &str) -> String {
        let pct = |a: f64| format!("{:.1} %", a * 100.0);
        let recommended = self
            .recommended_accuracy
            .map_or_else(|| "no accuracy".to_owned(), pct);
        if self.recommended == self.best || self.shortfall <= f64::EPSILON {
            format!(
                "{opening} held: the recommended case, {}, was among the best ({recommended}).",
                self.recommended.title()
            )
        } else if self.held {
            format!(
                "{opening} held: the recommended case, {} ({recommended}), is within {:.1} \
                 points of the best, {} ({}).",
                self.recommended.title(),
                ADVICE_MARGIN * 100.0,
                self.best.title(),
                pct(self.best_accuracy)
            )
        } else {
            format!(
                "{opening} did not hold: the recommended case, {} ({recommended}), is {:.1} \
                 points behind the best, {} ({}).",
                self.recommended.title(),
                self.shortfall * 100.0,
                self.best.title(),
                pct(self.best_accuracy)
            )
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
    #[error("{case} on the test images: {source}")]
    Test { case: Case, source: EvaluateError },
    #[error("cannot save {case}: {source}")]
    Save {
        case: Case,
        source: crate::train::StoreError,
    },
}

/// Trains the four presets on `dataset` in turn, each with the plan `plan_of(case)` gives
/// (`Case::plan` for the presets as they are on the default backbone). `on_event(case, event)` sees every trainer event (to
/// draw or print progress); each model is saved to `out/<case>` when `out` is given and
/// evaluated on `test` when that is given. Commands on `control` go to the run in progress (a
/// stop ends the comparison).
pub fn compare_all(
    dataset: Arc<Dataset>,
    test: Option<&Dataset>,
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
        let mut row = CompareRow::from_outcome(case, &outcome, model_dir);
        if let Some(test) = test {
            let evaluation = evaluate_dataset(&outcome.model, test)
                .map_err(|source| CompareError::Test { case, source })?;
            row.test_accuracy = Some(evaluation.accuracy);
        }
        rows.push(row);
    }
    Ok(rows)
}

fn save(case: Case, outcome: &TrainOutcome, dir: &Path) -> Result<PathBuf, CompareError> {
    let target = dir.join(case.to_string());
    outcome
        .model
        .save(&target, Some(outcome.report.saved_metrics()))
        .map_err(|source| CompareError::Save { case, source })?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case: Case, accuracy: f64) -> CompareRow {
        CompareRow {
            case,
            title: case.title().into(),
            val_accuracy: Some(accuracy),
            test_accuracy: None,
            train_secs: 1.0,
            trainable_parameters: 1,
            epochs_run: 1,
            model_dir: None,
        }
    }

    #[test]
    fn the_advice_holds_within_one_and_a_half_points_of_the_best() {
        let rows = [
            row(Case::SmallSimilar, 0.811),
            row(Case::SmallDifferent, 0.738),
            row(Case::LargeSimilar, 0.80),
            row(Case::LargeDifferent, 0.80),
        ];
        let missed = Advice::judge(&rows, Case::SmallDifferent).expect("advice");
        assert_eq!(missed.best, Case::SmallSimilar);
        assert!(!missed.held);
        assert!((missed.shortfall - 0.073).abs() < 1e-9);
        assert!(
            missed.sentence().contains("7.3 points behind"),
            "{}",
            missed.sentence()
        );
        let close = Advice::judge(&rows, Case::LargeSimilar).expect("advice");
        assert!(close.held, "{close:?}");
        assert!(
            Advice::judge(&rows, Case::SmallSimilar)
                .expect("advice")
                .held
        );
        // A tie goes to the earlier case.
        let tied = [row(Case::SmallSimilar, 0.9), row(Case::LargeSimilar, 0.9)];
        assert_eq!(
            Advice::judge(&tied, Case::LargeSimilar)
                .expect("advice")
                .best,
            Case::SmallSimilar
        );
    }

    #[test]
    fn with_test_accuracies_the_advice_is_judged_on_them() {
        let tested = |case, val, test| CompareRow {
            test_accuracy: Some(test),
            ..row(case, val)
        };
        // Validation says End of ConvNet; the held-out test images say Fine-tune.
        let rows = [
            tested(Case::SmallSimilar, 0.95, 0.80),
            tested(Case::LargeSimilar, 0.90, 0.86),
        ];
        let advice = Advice::judge(&rows, Case::SmallSimilar).expect("advice");
        assert_eq!(advice.basis, Basis::Test);
        assert_eq!(advice.best, Case::LargeSimilar);
        assert!(!advice.held);
        assert!(
            advice
                .sentence()
                .starts_with("On the held-out test images the advice did not hold"),
            "{}",
            advice.sentence()
        );
        // A row without a test accuracy: judged on validation, as before.
        let mixed = [rows[0].clone(), row(Case::LargeSimilar, 0.90)];
        let advice = Advice::judge(&mixed, Case::SmallSimilar).expect("advice");
        assert_eq!(advice.basis, Basis::Validation);
        assert!(advice.held);
    }
}
