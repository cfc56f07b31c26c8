//! `transfer-studio import-weights`: a PyTorch checkpoint converted into safetensors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::checkpoint::{self, FloatStorage};

/// Convert a PyTorch checkpoint (.pth, zip or legacy format) into safetensors.
#[derive(Debug, clap::Args)]
pub struct ImportWeightsArgs {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Store float tensors as f16 (half the size).
    #[arg(long)]
    pub f16: bool,
}

impl ImportWeightsArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let (input, output) = (&self.input, &self.output);
        let storage = if self.f16 {
            FloatStorage::F16
        } else {
            FloatStorage::Keep
        };
        let summary = checkpoint::import_weights(input, output, storage)
            .with_context(|| format!("importing {}", input.display()))?;
        println!(
            "{}: {:?} format, {} tensors ({} values) written to {}; \
         {} BatchNorm step counters dropped",
            input.display(),
            summary.format,
            summary.tensors,
            summary.parameters,
            output.display(),
            summary.dropped_counters
        );
        if !summary.skipped_entries.is_empty() {
            println!(
                "not tensors, not imported: {}",
                summary.skipped_entries.join(", ")
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
