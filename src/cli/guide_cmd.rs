//! `recommend`, `compare` and `probe`: the guide's measurements on the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::NetworkArgs;
use crate::data::dataset::{Dataset, LoadOptions, LoadProgress, load_dataset};
use crate::guide::compare::{Advice, CompareRow, compare_all};
use crate::guide::probe::{ProbeOptions, depth_probe};
use crate::guide::recommend::{RecommendOptions, Thresholds, recommend};
use crate::runtime;
use crate::train::{Case, TrainEvent, TrainPlan, unknown_class};

/// A folder of test images: every image is evaluated (no validation split).
fn load_test(dir: &Path) -> anyhow::Result<Dataset> {
    let options = LoadOptions {
        val_fraction: 0.0,
        ..LoadOptions::default()
    };
    load_with(dir, &options)
        .with_context(|| format!("loading the test images in {}", dir.display()))
}

fn load(data: &Path, val: Option<PathBuf>) -> anyhow::Result<Dataset> {
    let options = LoadOptions {
        val_dir: val,
        ..LoadOptions::default()
    };
    load_with(data, &options).with_context(|| format!("loading {}", data.display()))
}

/// Loads a folder, reporting each skipped file in one line.
fn load_with(dir: &Path, options: &LoadOptions) -> anyhow::Result<Dataset> {
    let dataset = load_dataset(dir, options, &LoadProgress::default())?;
    for s in &dataset.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    Ok(dataset)
}

pub fn recommend_command(
    data: &Path,
    thresholds: Thresholds,
    max_images: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let dataset = load(data, None)?;
    let options = RecommendOptions {
        thresholds,
        max_images: max_images.max(1),
        ..RecommendOptions::default()
    };
    let r = recommend(&dataset, &options, &runtime::compute_device(), |_, _| {})?;
    if json {
        let doc = serde_json::json!({
            "images_per_class": r.images_per_class,
            "size": r.size,
            "similarity_score": r.similarity_score,
            "similarity": r.similarity,
            "divergence": r.divergence,
            "case": r.case,
            "thresholds": r.thresholds,
            "images_measured": r.images_measured,
            "layers": r.layers,
            "measured": r.measured,
            "rule": r.rule,
            "explanation": r.explanation,
        });
        println!("{}", serde_json::to_string(&doc)?);
    } else {
        println!(
            "{} images per class → {:?} (large from {})",
            r.images_per_class, r.size, thresholds.large_images_per_class
        );
        println!(
            "similarity score {:.3} (divergence {:.3}) → {:?} (similar from {:.2}; {} images measured)",
            r.similarity_score,
            r.divergence,
            r.similarity,
            thresholds.similar_min_score,
            r.images_measured
        );
        for l in &r.layers {
            println!("  block {:2}: divergence {:.3}", l.block, l.divergence);
        }
        println!("case: {} ({})", r.case.title(), r.case);
        println!("measured:");
        for fact in &r.measured {
            println!("  {fact}");
        }
        println!("rule: {}", r.rule);
    }
    Ok(ExitCode::SUCCESS)
}

/// Options that shorten every preset of a comparison alike (a quick demonstration in class).
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Input size of every preset (default: the network's own).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// At most this many epochs in each preset's main phase.
    #[arg(long)]
    pub max_epochs: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
}

impl CompareArgs {
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

/// Where `compare` reads and writes.
pub struct CompareFolders<'a> {
    pub data: &'a Path,
    pub val: Option<PathBuf>,
    pub test: Option<&'a Path>,
    pub out: &'a Path,
}

pub fn compare_command(
    folders: &CompareFolders<'_>,
    network: &NetworkArgs,
    quick: &CompareArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let plan_of = |case: Case| {
        quick.apply(TrainPlan {
            weights: network.weights.clone(),
            ..case.plan_for(network.backbone)
        })
    };
    for case in Case::ALL {
        plan_of(case).validate()?;
    }
    let out = folders.out;
    let dataset = Arc::new(load(folders.data, folders.val.clone())?);
    let test = match folders.test {
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
                let line =
                    serde_json::json!({"case": case.to_string(), "event": "epoch", "metrics": m});
                println!("{line}");
            }
            TrainEvent::Epoch(m) => eprintln!(
                "{case}: epoch {} val accuracy {}",
                m.epoch,
                m.val_accuracy
                    .map_or_else(|| "-".into(), |a| format!("{:.1} %", a * 100.0))
            ),
            TrainEvent::Started { .. } if !json => eprintln!("{case}: training {}", case.title()),
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

pub fn probe_command(
    data: &Path,
    val: Option<PathBuf>,
    epochs: usize,
    network: &NetworkArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let dataset = load(data, val)?;
    let options = ProbeOptions {
        backbone: network.backbone,
        weights: network.weights.clone(),
        epochs: epochs.max(1),
        ..ProbeOptions::default()
    };
    let points = depth_probe(&dataset, &options, &runtime::compute_device(), |_, _| {})?;
    if json {
        println!("{}", serde_json::to_string(&points)?);
    } else {
        println!(
            "{:8} {:>8} {:>10} {:>10}",
            "cut", "features", "train", "val"
        );
        for p in &points {
            println!(
                "{:8} {:>8} {:>9.1}% {:>10}",
                p.unit,
                p.features,
                p.train_accuracy * 100.0,
                p.val_accuracy
                    .map_or_else(|| "-".into(), |a| format!("{:.1}%", a * 100.0))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
