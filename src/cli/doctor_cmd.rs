//! `transfer-studio doctor`: copies, leakage, likely mislabels, class health and a map of the
//! features, for a training folder (and its validation folder).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use super::args::NetworkArgs;
use super::load::load;
use crate::doctor::{DoctorEvent, DoctorOptions, Report, examine_cached};
use crate::runtime;

/// Find duplicate images, copies across the training/validation split, likely mislabels and
/// class problems; map the images' features at every cut.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    #[arg(long)]
    pub data: PathBuf,
    /// A validation folder (default: the split the training would make).
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Side (px) of the images the network sees.
    #[arg(long, default_value_t = 224)]
    pub image_size: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Suspects listed, at most (the JSON has them all).
    #[arg(long, default_value_t = 20)]
    pub show: usize,
    /// Examine again even if the folder has not changed since the last report.
    #[arg(long)]
    pub fresh: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// The whole report as JSON on standard output (maps included).
    #[arg(long)]
    pub json: bool,
}

impl DoctorArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let range = crate::train::plan::IMAGE_SIZE_RANGE_PX;
        if !range.contains(&self.image_size) {
            anyhow::bail!(
                "--image-size must be within {}–{} px",
                range.start(),
                range.end()
            );
        }
        let dataset = load(&self.data, self.val.clone())?;
        let options = DoctorOptions {
            backbone: self.network.backbone,
            weights: self.network.weights.clone(),
            image_size_px: self.image_size,
            seed: self.seed,
        };
        let tty = std::io::stderr().is_terminal();
        let started = std::time::Instant::now();
        let mut times_secs = Vec::new();
        let device = runtime::compute_device();
        let (report, cached) = examine_cached(&dataset, &options, self.fresh, &device, |event| {
            match event {
                DoctorEvent::Progress { stage, done, total } if tty => {
                    eprint!("\r\x1b[2K{stage}: {done}/{total}");
                }
                DoctorEvent::Report(_) | DoctorEvent::Map(_) => {
                    times_secs.push(started.elapsed().as_secs_f64());
                }
                DoctorEvent::Progress { .. } => {}
            }
            Ok(())
        })?;
        if cached {
            eprintln!("(the folder is unchanged since the last examination: its report)");
        } else {
            if tty {
                eprintln!();
            }
            if let (Some(report_secs), Some(map_secs), Some(all_secs)) =
                (times_secs.first(), times_secs.get(1), times_secs.last())
            {
                eprintln!(
                    "report after {report_secs:.1} s, the first map after {map_secs:.1} s, \
                     every map after {all_secs:.1} s"
                );
            }
        }
        for s in &report.skipped {
            eprintln!("skipped {}: {}", s.path.display(), s.reason);
        }
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_report(&report, self.show);
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_report(report: &Report, show: usize) {
    let path = |i: usize| report.images[i].path.display().to_string();
    let class = |c: usize| report.classes.get(c).map_or("?", String::as_str);
    println!("{}", report.summary());
    if !report.leakage.is_empty() {
        println!("\nCopies across training and validation (the validation score is flattered):");
        for leak in &report.leakage {
            println!(
                "  {} = {} ({})",
                path(leak.validation),
                path(leak.train),
                leak.kind.words()
            );
        }
    }
    if !report.duplicates.is_empty() {
        println!("\nDuplicate groups:");
        for group in &report.duplicates {
            let names: Vec<String> = group.images.iter().map(|&i| path(i)).collect();
            let labels = if group.mixed_labels {
                ", in different classes"
            } else {
                ""
            };
            println!("  {}{labels}: {}", group.kind.words(), names.join("  "));
        }
    }
    if !report.suspects.is_empty() {
        println!("\nLikely mislabels (probability of their own class, out of fold):");
        for s in report.suspects.iter().take(show) {
            println!(
                "  {:5.1} %  {}  looks like {} ({:.0} %)",
                s.self_confidence * 100.0,
                path(s.image),
                class(s.suggested),
                s.suggested_probability * 100.0
            );
        }
        if report.suspects.len() > show {
            println!(
                "  … {} more (--show N, or --json)",
                report.suspects.len() - show
            );
        }
    }
    let health = &report.health;
    println!("\nClasses (train / validation):");
    for (c, count) in health.counts.iter().enumerate() {
        println!("  {:20} {:6} {:6}", class(c), count.train, count.validation);
    }
    println!(
        "  imbalance (largest / smallest): {:.1}; probe accuracy out of fold: {:.1} %",
        health.imbalance,
        health.probe_accuracy * 100.0
    );
    for &c in &health.near_empty {
        println!(
            "  {} has fewer than {} images",
            class(c),
            crate::doctor::NEAR_EMPTY_IMAGES
        );
    }
    for pair in &health.confused {
        println!(
            "  {} and {} are confused: {} images ({:.1} %)",
            class(pair.a),
            class(pair.b),
            pair.count,
            pair.share * 100.0
        );
    }
    println!("\nNeighbours in the same class, by cut (separation grows with depth):");
    for unit in &report.cuts {
        if let Some(map) = report.map_at(*unit) {
            println!(
                "  {:8} {:5.1} %",
                unit.to_string(),
                map.neighbour_agreement * 100.0
            );
        }
    }
}
