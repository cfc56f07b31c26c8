//! `transfer-studio compare`: the four presets trained on the same data, side by side.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::args::NetworkArgs;
use super::load::{load, load_test};
use crate::guide::compare::{Advice, CompareRow, compare_all};
use crate::guide::recommend::{RecommendOptions, recommend};
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
        let rows = compare_all(
            dataset,
            test.as_ref(),
            &device,
            Some(out),
            plan_of,
            |case, event| match event {
                TrainEvent::Epoch(m) if json => {
                    let line = serde_json::json!({"case": case.to_string(), "event": "epoch", "metrics": m});
                    println!("{line}");
                }
                TrainEvent::Epoch(m) => eprintln!(
                    "{case}: epoch {} val accuracy {}",
                    m.epoch,
                    m.val_accuracy
                        .map_or_else(|| "-".into(), |a| format!("{:.1} %", a * 100.0))
                ),
                TrainEvent::Started { .. } if !json => {
                    eprintln!("{case}: training {}", case.title())
                }
                _ => {}
            },
            None,
        )?;
        let advice = Advice::judge(&rows, recommendation.case);
        let table = serde_json::json!({
            "rows": rows,
            "recommendation": recommendation,
            "advice": advice,
        });
        let table_path = out.join("compare.json");
        crate::fsutil::write_atomic(&table_path, &serde_json::to_vec_pretty(&table)?)
            .with_context(|| format!("writing {}", table_path.display()))?;
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "compared", "rows": rows, "advice": advice})
            );
        } else {
            print_table(&rows, recommendation.case);
            if let Some(advice) = &advice {
                println!("{}", advice.sentence());
            }
            println!("models and compare.json in {}", out.display());
        }
        Ok(ExitCode::SUCCESS)
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
