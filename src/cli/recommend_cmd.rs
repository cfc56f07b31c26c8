//! `transfer-studio recommend`: where a dataset sits on the guide's grid.

use std::path::PathBuf;
use std::process::ExitCode;

use super::load::load;
use crate::guide::recommend::{RecommendOptions, Thresholds, recommend};
use crate::runtime;

/// Place a dataset on the guide's grid: size, similarity to ImageNet, suggested case.
#[derive(Debug, clap::Args)]
pub struct RecommendArgs {
    #[arg(long)]
    pub data: PathBuf,
    /// Images per class from which a dataset counts as large.
    #[arg(long, default_value_t = 200)]
    pub large_from: usize,
    /// Similarity score (0-1) from which a dataset counts as similar.
    #[arg(long, default_value_t = 0.45)]
    pub similar_from: f64,
    /// Images measured (spread over the classes).
    #[arg(long, default_value_t = 192)]
    pub max_images: usize,
    #[arg(long)]
    pub json: bool,
}

impl RecommendArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let thresholds = Thresholds {
            large_images_per_class: self.large_from,
            similar_min_score: self.similar_from,
        };
        let json = self.json;
        let dataset = load(&self.data, None)?;
        let options = RecommendOptions {
            thresholds,
            max_images: self.max_images.max(1),
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
}
