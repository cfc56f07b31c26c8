//! `transfer-studio bench`: the project's own speed measurements, on synthetic inputs.

use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::model::{ModelError, Network};

/// Peak resident set size of this process so far, in bytes (Linux; 0 elsewhere).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Deterministic input in [-1, 1), NHWC.
pub fn synthetic_images(
    batch: usize,
    side_px: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let n = batch * side_px * side_px * 3;
    let data: Vec<f32> = (0..n)
        .map(|i| ((i.wrapping_mul(2654435761) >> 7) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    Tensor::from_vec(data, (batch, side_px, side_px, 3), device)
}

/// Forward throughput in images/s: the median of `repeats` timed passes after one warm-up.
pub fn forward_images_per_sec(
    network: &Network,
    batch: usize,
    side_px: usize,
    repeats: usize,
) -> Result<f64, ModelError> {
    let device = network.device().clone();
    let folded = network.folded()?;
    let input = synthetic_images(batch, side_px, &device)?;
    folded.features(&input)?;
    let mut rates = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let features = folded.features(&input)?;
        features.to_vec2::<f32>()?;
        rates.push(batch as f64 / start.elapsed().as_secs_f64());
    }
    Ok(median(&mut rates))
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// What `bench --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub image_size_px: usize,
    pub batch_size: usize,
    pub threads: usize,
    pub forward_images_per_sec: f64,
    pub peak_rss_bytes: u64,
}
