//! `transfer-studio probe`: linear-probe accuracy at several depths of the pretrained network.

use std::path::PathBuf;
use std::process::ExitCode;

use super::args::NetworkArgs;
use super::load::load;
use crate::guide::probe::{ProbeOptions, depth_probe};
use crate::runtime;

/// Linear-probe accuracy at several depths of the pretrained network.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Training epochs of each linear probe (default: as the presets train their classifier,
    /// with dropout 0.2 on raw pooled features).
    #[arg(long, default_value_t = crate::train::cut::ProbeFit::default().epochs)]
    pub epochs: usize,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[arg(long)]
    pub json: bool,
}

impl ProbeArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let (network, json) = (&self.network, self.json);
        let dataset = load(&self.data, self.val.clone())?;
        let options = ProbeOptions {
            backbone: network.backbone,
            weights: network.weights.clone(),
            epochs: self.epochs.max(1),
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
}
