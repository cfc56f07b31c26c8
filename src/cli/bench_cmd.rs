//! `transfer-studio bench`: speed on synthetic input (README: Performance).

use std::process::ExitCode;

use super::args::NetworkArgs;
use crate::bench::BenchOptions;
use crate::runtime;
use crate::train::plan::IMAGE_SIZE_RANGE_PX;

/// Measure speed on synthetic input (see README: Performance).
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 224)]
    pub image_size: u32,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Leave out the full fine-tune step (the slowest workload).
    #[arg(long)]
    pub no_fine_tune: bool,
}

impl BenchArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        if self.batch_size == 0 || !IMAGE_SIZE_RANGE_PX.contains(&self.image_size) {
            anyhow::bail!(
                "--batch-size must be at least 1 and --image-size {}–{} px",
                IMAGE_SIZE_RANGE_PX.start(),
                IMAGE_SIZE_RANGE_PX.end()
            );
        }
        let options = BenchOptions {
            backbone: self.network.backbone,
            weights: self.network.source(),
            batch_size: self.batch_size,
            image_size_px: self.image_size as usize,
            repeats: self.repeats,
            skip_fine_tune: self.no_fine_tune,
        };
        let json = self.json;
        let device = runtime::compute_device();
        let r = crate::bench::run(&options, &device)?;
        if json {
            println!("{}", serde_json::to_string(&r)?);
            return Ok(ExitCode::SUCCESS);
        }
        let gb = |b: u64| b as f64 / 1e9;
        let (px, batch) = (r.image_size_px, r.batch_size);
        println!("{} threads, {}", r.threads, r.device);
        println!(
            "forward ({px} px, batch {batch}):            {:8.1} images/s, {:.0} page faults per batch",
            r.forward_images_per_sec, r.forward_page_faults_per_batch
        );
        if let (Some(rate), Some(faults)) =
            (r.fine_tune_images_per_sec, r.fine_tune_page_faults_per_step)
        {
            println!(
                "full fine-tune step ({px} px, batch {batch}): {rate:8.1} images/s, {faults:.0} page faults per step"
            );
        }
        println!(
            "head-only epoch ({} cached features):   {:8.2} ms",
            r.head_epoch_features, r.head_epoch_ms
        );
        println!(
            "feature caching ({px} px):              {:8.1} images/s",
            r.feature_caching_images_per_sec
        );
        if let Some(peak) = r.fine_tune_peak_rss_bytes {
            println!(
                "peak RSS during the fine-tune step:      {:8.2} GB",
                gb(peak)
            );
        }
        if let Some(peak) = r.fine_tune_peak_heap_bytes {
            println!(
                "peak heap in use during the fine-tune step: {:5.2} GB",
                gb(peak)
            );
        }
        println!(
            "peak RSS of the whole benchmark:        {:8.2} GB",
            gb(r.peak_rss_bytes)
        );
        Ok(ExitCode::SUCCESS)
    }
}
