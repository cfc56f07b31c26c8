//! `transfer-studio compare`: the four presets trained on the same data, side by side.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::args::NetworkArgs;
use super::load::{load, load_test};
use crate::guide::compare::{Advice, CompareRow};
use crate::guide::recommend::{RecommendOptions, Recommendation, recommend};
use crate::guide::seeds::{SeedRows, SeededComparison, Spread, compare_seeds};
use crate::runtime;
use crate::train::{Case, TrainEvent, TrainPlan, unknown_class};

/// Train the four presets on the same data and compare them.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// A held-out test folder (classes as in --data), used for nothing else: every model
    /// is evaluated on it and the advice is judged on it (validation chose each run's best
    /// epoch, so its accuracy flatters).
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Directory for the four models and compare.json.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub quick: QuickArgs,
    /// Compare with this many seeds (--seed, --seed + 1, …): each case's mean and spread, the
    /// advice judged on the means, and whether the gap to the best is larger than the spread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub seeds: u64,
    #[arg(long)]
    pub json: bool,
}

/// Options that shorten every preset of a comparison alike (a quick demonstration in class).
#[derive(Debug, Clone, clap::Args)]
pub struct QuickArgs {
    /// Input size of every preset (default: the network's own).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// At most this many epochs in each preset's main phase.
    #[arg(long)]
    pub max_epochs: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
}

impl QuickArgs {
    fn apply(&self, mut plan: TrainPlan) -> TrainPlan {
        if let Some(size) = self.image_size {
            plan.image_size_px = size;
        }
        if let Some(max) = self.max_epochs {
            plan.epochs = plan.epochs.min(max.max(1));
            plan.head_epochs = plan.head_epochs.min(max);
        }
        if let Some(seed) = self.seed {
            plan.seed = seed;
        }
        plan
    }
}

impl CompareArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let (network, quick, json) = (&self.network, &self.quick, self.json);
        let plan_of = |case: Case| {
            quick.apply(TrainPlan {
                weights: network.weights.clone(),
                ..case.plan_for(network.backbone)
            })
        };
        for case in Case::ALL {
            plan_of(case).validate()?;
        }
        let out = self.out.as_path();
        let dataset = Arc::new(load(&self.data, self.val.clone())?);
        let test = match &self.test {
            Some(dir) => Some(load_test(dir)?),
            None => None,
        };
        // Refused before minutes of training, not after the first model.
        if let Some(unknown) = test
            .as_ref()
            .and_then(|t| unknown_class(&t.classes, &dataset.classes))
        {
            anyhow::bail!(
                "the test folder has a class {unknown:?} that the training data does not have"
            );
        }
        let device = runtime::compute_device();
        let recommendation = recommend(&dataset, &RecommendOptions::default(), &device, |_, _| {})
            .context("measuring the data for the recommendation")?;
        let first = quick.seed.unwrap_or(0);
        let seeds: Vec<u64> = (first..first.saturating_add(self.seeds)).collect();
        let several = seeds.len() > 1;
        let runs = compare_seeds(
            dataset,
            test.as_ref(),
            &device,
            Some(out),
            &seeds,
            |case, seed| TrainPlan {
                seed,
                ..plan_of(case)
            },
            |seed, case, event| report_event(seed, case, event, several, json),
            None,
        )?;
        if several {
            self.finish_seeded(runs, recommendation)
        } else {
            // One seed: the table and compare.json as they have always been.
            let rows = runs.into_iter().next().map(|r| r.rows).unwrap_or_default();
            self.finish_single(rows, recommendation)
        }
    }

    fn finish_single(
        &self,
        rows: Vec<CompareRow>,
        recommendation: Recommendation,
    ) -> anyhow::Result<ExitCode> {
        let advice = Advice::judge(&rows, recommendation.case);
        let table = serde_json::json!({
            "rows": rows,
            "recommendation": recommendation,
            "advice": advice,
        });
        self.write_table(&table)?;
        if self.json {
            println!(
                "{}",
                serde_json::json!({"event": "compared", "rows": rows, "advice": advice})
            );
        } else {
            print_table(&rows, recommendation.case);
            if let Some(advice) = &advice {
                println!("{}", advice.sentence());
            }
            println!("models and compare.json in {}", self.out.display());
        }
        Ok(ExitCode::SUCCESS)
    }

    fn finish_seeded(
        &self,
        runs: Vec<SeedRows>,
        recommendation: Recommendation,
    ) -> anyhow::Result<ExitCode> {
        let compared = SeededComparison::new(runs, recommendation.case);
        let table = serde_json::json!({
            "seeds": compared.seeds,
            "runs": compared.runs,
            "summary": compared.summary,
            "recommendation": recommendation,
            "advice": compared.advice,
            "gap_is_real": compared.gap_is_real,
        });
        self.write_table(&table)?;
        if self.json {
            println!(
                "{}",
                serde_json::json!({
                    "event": "compared",
                    "seeds": compared.seeds,
                    "summary": compared.summary,
                    "advice": compared.advice,
                    "gap_is_real": compared.gap_is_real,
                })
            );
        } else {
            print_summary(&compared, recommendation.case);
            if let Some(line) = compared.sentence() {
                println!("{line}");
            }
            println!(
                "models (one folder per seed) and compare.json in {}",
                self.out.display()
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    fn write_table(&self, table: &serde_json::Value) -> anyhow::Result<()> {
        let path = self.out.join("compare.json");
        crate::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(table)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Progress on the terminal (or epochs as JSON lines); the seed is named when there are several.
fn report_event(seed: u64, case: Case, event: &TrainEvent, several: bool, json: bool) {
    let tag = if several {
        format!("{case} (seed {seed})")
    } else {
        case.to_string()
    };
    match event {
        TrainEvent::Epoch(m) if json => {
            let mut line =
                serde_json::json!({"case": case.to_string(), "event": "epoch", "metrics": m});
            if several {
                line["seed"] = seed.into();
            }
            println!("{line}");
        }
        TrainEvent::Epoch(m) => eprintln!(
            "{tag}: epoch {} val accuracy {}",
            m.epoch,
            m.val_accuracy
                .map_or_else(|| "-".into(), |a| format!("{:.1} %", a * 100.0))
        ),
        TrainEvent::Started { .. } if !json => eprintln!("{tag}: training {}", case.title()),
        _ => {}
    }
}

/// Each case's mean ± standard deviation over the seeds (and the range of test accuracy).
fn print_summary(compared: &SeededComparison, recommended: Case) {
    let tested = compared.summary.iter().any(|s| s.test_accuracy.is_some());
    let text = |s: Option<Spread>| s.map_or_else(|| "-".into(), |s| s.percent());
    println!(
        "{} seeds: {}",
        compared.seeds.len(),
        compared
            .seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:16} {:32} {:>15} {:>15} {:>13} {:>8}",
        "case",
        "",
        "val acc",
        if tested { "test acc" } else { "" },
        if tested { "test range" } else { "" },
        "time"
    );
    for s in &compared.summary {
        let title = if s.case == recommended {
            format!("{} (recommended)", s.title)
        } else {
            s.title.clone()
        };
        let range = s.test_accuracy.map_or_else(String::new, |t| {
            format!("{:.1}–{:.1}", t.min * 100.0, t.max * 100.0)
        });
        println!(
            "{:16} {:32} {:>15} {:>15} {:>13} {:>7.1}s",
            s.case.to_string(),
            title,
            text(s.val_accuracy),
            if tested {
                text(s.test_accuracy)
            } else {
                String::new()
            },
            range,
            s.train_secs_mean
        );
    }
}

fn print_table(rows: &[CompareRow], recommended: Case) {
    let tested = rows.iter().any(|r| r.test_accuracy.is_some());
    let pct = |a: Option<f64>| a.map_or_else(|| "-".into(), |a| format!("{:.1} %", a * 100.0));
    println!(
        "{:16} {:26} {:>9} {:>9} {:>9} {:>12}",
        "case",
        "",
        "val acc",
        if tested { "test acc" } else { "" },
        "time",
        "trainable"
    );
    for r in rows {
        let title = if r.case == recommended {
            format!("{} (recommended)", r.title)
        } else {
            r.title.clone()
        };
        println!(
            "{:16} {:26} {:>9} {:>9} {:>8.1}s {:>12}",
            r.case.to_string(),
            title,
            pct(r.val_accuracy),
            if tested {
                pct(r.test_accuracy)
            } else {
                String::new()
            },
            r.train_secs,
            r.trainable_parameters
        );
    }
}
