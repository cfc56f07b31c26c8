//! Compare all four over several seeds. On small data one run of each case is a sample: the
//! seed changes the validation split, the shuffles, dropout, the new classifier's start and
//! the folds that choose Start of ConvNet's cut, and on 16 images a class that moves accuracies
//! by several points. Run with several seeds, each
//! case gets a mean and a spread, the advice is judged on the means, and the gap between the
//! recommended case and the best is set against the seeds' spread, so a classroom sees whether
//! a difference is real.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use crossbeam_channel::Receiver;
use serde::Serialize;

use super::compare::{Advice, Basis, CompareError, CompareRow, compare_all};
use crate::data::dataset::Dataset;
use crate::stats::mean;
use crate::train::{Case, TrainCommand, TrainEvent, TrainPlan};

/// Mean and spread of one accuracy over the seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    /// Sample standard deviation (0 for a single seed).
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let m = mean(values);
        let sd = if values.len() > 1 {
            let ss: f64 = values.iter().map(|v| (v - m).powi(2)).sum();
            (ss / (values.len() - 1) as f64).sqrt()
        } else {
            0.0
        };
        let (min, max) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        Some(Self {
            mean: m,
            sd,
            min,
            max,
        })
    }

    /// "81.3 ± 2.1 %" (percent).
    pub fn percent(&self) -> String {
        format!("{:.1} ± {:.1} %", self.mean * 100.0, self.sd * 100.0)
    }
}

/// One case over all seeds.
#[derive(Debug, Clone, Serialize)]
pub struct CaseSummary {
    pub case: Case,
    pub title: String,
    pub val_accuracy: Option<Spread>,
    /// On the held-out test folder, when one was given.
    pub test_accuracy: Option<Spread>,
    pub train_secs_mean: f64,
    pub trainable_parameters: usize,
}

/// The comparison of every seed, each case summarised over them, and the advice judged on the
/// means.
#[derive(Debug, Clone, Serialize)]
pub struct SeededComparison {
    pub seeds: Vec<u64>,
    /// Each seed's four rows.
    pub runs: Vec<SeedRows>,
    pub summary: Vec<CaseSummary>,
    pub advice: Option<Advice>,
    /// Whether the gap between the recommended case and the best is larger than twice its
    /// standard error over the seeds (`None` with one seed, or where the recommended case is
    /// among the best).
    pub gap_is_real: Option<bool>,
}

/// The rows of one seed.
#[derive(Debug, Clone, Serialize)]
pub struct SeedRows {
    pub seed: u64,
    pub rows: Vec<CompareRow>,
}

/// Each case's accuracies over the seeds' rows.
pub fn summarise(runs: &[SeedRows]) -> Vec<CaseSummary> {
    Case::ALL
        .iter()
        .filter_map(|&case| {
            let rows: Vec<&CompareRow> = runs
                .iter()
                .filter_map(|r| r.rows.iter().find(|row| row.case == case))
                .collect();
            let first = rows.first()?;
            let of = |pick: fn(&CompareRow) -> Option<f64>| {
                let values: Vec<f64> = rows.iter().filter_map(|r| pick(r)).collect();
                (values.len() == rows.len())
                    .then(|| Spread::of(&values))
                    .flatten()
            };
            Some(CaseSummary {
                case,
                title: case.title().to_owned(),
                val_accuracy: of(|r| r.val_accuracy),
                test_accuracy: of(|r| r.test_accuracy),
                train_secs_mean: mean(&rows.iter().map(|r| r.train_secs).collect::<Vec<_>>()),
                trainable_parameters: first.trainable_parameters,
            })
        })
        .collect()
}

impl SeededComparison {
    /// Summarises `runs` and judges `recommended` on the mean accuracies: test accuracies when
    /// every case has them, else validation.
    pub fn new(runs: Vec<SeedRows>, recommended: Case) -> Self {
        let summary = summarise(&runs);
        let tested = !summary.is_empty() && summary.iter().all(|s| s.test_accuracy.is_some());
        let (basis, spread_of): (Basis, fn(&CaseSummary) -> Option<Spread>) = if tested {
            (Basis::Test, |s| s.test_accuracy)
        } else {
            (Basis::Validation, |s| s.val_accuracy)
        };
        let means: Vec<(Case, Option<f64>)> = summary
            .iter()
            .map(|s| (s.case, spread_of(s).map(|a| a.mean)))
            .collect();
        let seeds = runs.len();
        let advice =
            Advice::judge_accuracies(&means, recommended, basis).map(|a| a.over_seeds(seeds));
        let gap_is_real = advice.as_ref().and_then(|a| {
            let spread = |case: Case| summary.iter().find(|s| s.case == case).and_then(spread_of);
            let (best, rec) = (spread(a.best)?, spread(a.recommended)?);
            let n = seeds as f64;
            let standard_error = (best.sd.powi(2) / n + rec.sd.powi(2) / n).sqrt();
            (seeds > 1 && a.shortfall > f64::EPSILON)
                .then_some(best.mean - rec.mean > 2.0 * standard_error)
        });
        Self {
            seeds: runs.iter().map(|r| r.seed).collect(),
            runs,
            summary,
            advice,
            gap_is_real,
        }
    }

    /// The advice and, with several seeds, whether the gap to the best stands out of their
    /// spread.
    pub fn sentence(&self) -> Option<String> {
        let advice = self.advice.as_ref()?;
        let mut line = advice.sentence();
        match self.gap_is_real {
            Some(true) => line.push_str(" The gap is larger than the seeds' spread: it is real."),
            Some(false) => line.push_str(
                " The gap is within the seeds' spread: on this data the two cannot be told apart.",
            ),
            None => {}
        }
        Some(line)
    }
}

/// [`compare_all`] once per seed (`plan_of(case, seed)` gives each plan), on the dataset split
/// again with that seed (unless validation is a folder of its own); with several seeds each
/// seed's models go to `out/seed-N`, with one to `out` itself. `on_event(seed, case, event)`
/// sees every trainer event.
#[allow(clippy::too_many_arguments)]
pub fn compare_seeds(
    dataset: Arc<Dataset>,
    test: Option<&Dataset>,
    device: &Device,
    out: Option<&Path>,
    seeds: &[u64],
    plan_of: impl Fn(Case, u64) -> TrainPlan,
    mut on_event: impl FnMut(u64, Case, &TrainEvent),
    control: Option<&Receiver<TrainCommand>>,
) -> Result<Vec<SeedRows>, CompareError> {
    let mut runs = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        let dir = match out {
            Some(o) if seeds.len() > 1 => Some(o.join(format!("seed-{seed}"))),
            other => other.map(Path::to_path_buf),
        };
        let split = dataset.resplit(seed).map(Arc::new);
        let rows = compare_all(
            split.unwrap_or_else(|| dataset.clone()),
            test,
            device,
            dir.as_deref(),
            |case| plan_of(case, seed),
            |case, event| on_event(seed, case, event),
            control,
        )?;
        runs.push(SeedRows { seed, rows });
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case: Case, val: f64, test: f64) -> CompareRow {
        CompareRow {
            case,
            title: case.title().into(),
            val_accuracy: Some(val),
            test_accuracy: Some(test),
            train_secs: 1.0,
            trainable_parameters: 10,
            epochs_run: 1,
            model_dir: None,
        }
    }

    fn seed(seed: u64, end: f64, fine_tune: f64) -> SeedRows {
        SeedRows {
            seed,
            rows: vec![
                row(Case::SmallSimilar, 0.9, end),
                row(Case::LargeSimilar, 0.9, fine_tune),
            ],
        }
    }

    #[test]
    fn a_spread_has_the_sample_deviation_and_the_range() {
        let s = Spread::of(&[0.8, 0.9, 1.0]).expect("values");
        assert!((s.mean - 0.9).abs() < 1e-12);
        assert!((s.sd - 0.1).abs() < 1e-12);
        assert_eq!((s.min, s.max), (0.8, 1.0));
        assert_eq!(s.percent(), "90.0 ± 10.0 %");
        assert_eq!(Spread::of(&[0.5]).expect("one").sd, 0.0);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn the_advice_is_judged_on_the_means_and_the_gap_against_the_spread() {
        // Fine-tune is ahead on average by 3 points, but the seeds scatter by 6: no real gap.
        let noisy = SeededComparison::new(
            vec![
                seed(0, 0.80, 0.90),
                seed(1, 0.86, 0.80),
                seed(2, 0.80, 0.85),
            ],
            Case::SmallSimilar,
        );
        let advice = noisy.advice.as_ref().expect("advice");
        assert_eq!(advice.basis, Basis::Test);
        assert_eq!(advice.best, Case::LargeSimilar);
        assert!((advice.shortfall - 0.03).abs() < 1e-9, "{advice:?}");
        assert!(!advice.held);
        assert_eq!(noisy.gap_is_real, Some(false));
        let line = noisy.sentence().expect("sentence");
        assert!(line.contains("averaged over 3 seeds"), "{line}");
        assert!(line.contains("cannot be told apart"), "{line}");
        // The same means, every seed alike: the gap is real.
        let steady = SeededComparison::new(
            vec![
                seed(0, 0.82, 0.85),
                seed(1, 0.82, 0.85),
                seed(2, 0.82, 0.85),
            ],
            Case::SmallSimilar,
        );
        assert_eq!(steady.gap_is_real, Some(true));
        assert_eq!(steady.summary.len(), 2);
        assert_eq!(steady.summary[0].test_accuracy.expect("test").sd, 0.0);
    }
}
