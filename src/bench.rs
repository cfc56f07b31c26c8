//! `transfer-studio bench`: the project's own speed measurements, on synthetic inputs, running
//! the same code paths as training and prediction.

use crate::stats::median;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::Serialize;

use crate::data::dataset::Sample;
use crate::model::{Backbone, ModelError, Network, Weights, WeightsSource};
use crate::train::features::{FeatureSet, extract_features};
use crate::train::{Case, TrainPlan};

/// Classes of the synthetic classification problem (fine-tune and head-only workloads).
pub const BENCH_CLASSES: usize = 10;
/// Cached feature vectors in the head-only epoch.
pub const HEAD_EPOCH_FEATURES: usize = 1000;

/// Peak resident set size of this process (since start or the last [`reset_peak_rss`]), in
/// bytes (Linux; 0 elsewhere).
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

/// Resets the kernel's peak-RSS mark to the current RSS (Linux ≥ 4.0), so that the next
/// workload's peak can be read on its own. Returns false where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
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

/// Deterministic labels `i % classes`.
fn synthetic_labels(count: usize, device: &Device) -> candle_core::Result<Tensor> {
    let labels: Vec<u32> = (0..count).map(|i| (i % BENCH_CLASSES) as u32).collect();
    Tensor::from_vec(labels, count, device)
}

/// A deterministic RGB picture (smooth gradients plus texture), `side_px` square.
fn synthetic_picture(side_px: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(side_px, side_px, |x, y| {
        let t = x.wrapping_mul(31) ^ y.wrapping_mul(17) ^ seed.wrapping_mul(2654435761);
        image::Rgb([
            (x * 255 / side_px.max(1)) as u8,
            (y * 255 / side_px.max(1)) as u8,
            (t >> 3) as u8,
        ])
    })
}

/// A workload's speed and its minor page faults per batch in steady state.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub images_per_sec: f64,
    pub page_faults_per_batch: f64,
}

/// Forward throughput in images/s through the folded (inference) network: the median of
/// `repeats` timed passes after one warm-up.
pub fn forward_images_per_sec(
    network: &Network,
    batch: usize,
    side_px: usize,
    repeats: usize,
) -> Result<Rate, ModelError> {
    let device = network.device().clone();
    let folded = network.folded()?;
    let input = synthetic_images(batch, side_px, &device)?;
    folded.features(&input)?;
    let mut rates = Vec::with_capacity(repeats);
    let faults = crate::runtime::minor_page_faults();
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let features = folded.features(&input)?;
        features.to_vec2::<f32>()?;
        rates.push(batch as f64 / start.elapsed().as_secs_f64());
    }
    Ok(Rate {
        page_faults_per_batch: (crate::runtime::minor_page_faults() - faults) as f64
            / rates.len() as f64,
        images_per_sec: median(&mut rates),
    })
}

/// The plan the fine-tune workload runs: the Fine-tune preset (every unit trainable, AdamW
/// on all parameters) at the benchmark's size.
fn fine_tune_plan(backbone: Backbone, batch: usize, side_px: usize) -> TrainPlan {
    TrainPlan {
        batch_size: batch,
        image_size_px: side_px as u32,
        ..Case::LargeSimilar.plan_for(backbone)
    }
}

/// Full fine-tune throughput in images/s (forward + backward + AdamW of the whole network,
/// batch `batch`), the median of `repeats` steps after a warm-up step.
pub fn fine_tune_images_per_sec(
    backbone: Backbone,
    weights: &Weights,
    batch: usize,
    side_px: usize,
    repeats: usize,
    device: &Device,
) -> Result<Rate, ModelError> {
    let plan = fine_tune_plan(backbone, batch, side_px);
    let network = plan.build_network(BENCH_CLASSES, Some(weights), device)?;
    let images = synthetic_images(batch, side_px, device)?;
    let labels = synthetic_labels(batch, device)?;
    let mut steps =
        crate::train::time_fine_tune_steps(&network, &plan, &images, &labels, repeats.max(1))?;
    Ok(Rate {
        images_per_sec: batch as f64 / median(&mut steps.secs),
        page_faults_per_batch: steps.page_faults as f64 / steps.secs.len().max(1) as f64,
    })
}

/// Milliseconds of one head-only epoch over [`HEAD_EPOCH_FEATURES`] cached 1280-d features
/// (batch 32, 10 classes), the median of `repeats` epochs after a warm-up epoch.
pub fn head_epoch_ms(
    backbone: Backbone,
    weights: &Weights,
    repeats: usize,
    device: &Device,
) -> Result<f64, ModelError> {
    let plan = Case::SmallSimilar.plan_for(backbone);
    let network = plan.build_network(BENCH_CLASSES, Some(weights), device)?;
    let dim = network.spec.feature_dim();
    let values: Vec<f32> = (0..HEAD_EPOCH_FEATURES * dim)
        .map(|i| ((i.wrapping_mul(2654435761) >> 9) % 600) as f32 / 100.0)
        .collect();
    let labels: Vec<usize> = (0..HEAD_EPOCH_FEATURES)
        .map(|i| i % BENCH_CLASSES)
        .collect();
    let set = FeatureSet {
        features: Tensor::from_vec(values, (HEAD_EPOCH_FEATURES, dim), device)?,
        labels: synthetic_labels(HEAD_EPOCH_FEATURES, device)?,
        label_values: labels,
        paths: Vec::new(),
    };
    let mut secs = crate::train::time_head_epochs(&network, &plan, &set, repeats.max(1))?;
    Ok(median(&mut secs) * 1e3)
}

/// Feature caching in images/s, as the frozen cases run it before head-only training:
/// centre crop and normalise images held in memory (already shrunk to the resize side), then
/// the folded network up to its pooled features. `count` images, after a warm-up batch.
pub fn feature_caching_images_per_sec(
    network: &Network,
    batch: usize,
    side_px: usize,
    count: usize,
) -> Result<f64, ModelError> {
    let pre = network.spec.backbone.preprocessing(side_px as u32);
    let samples: Vec<Sample> = (0..count.max(1))
        .map(|i| {
            Sample::in_memory(
                PathBuf::from(format!("synthetic-{i}")),
                i % BENCH_CLASSES,
                synthetic_picture(pre.resize_px, i as u32),
            )
        })
        .collect();
    let folded = network.folded()?;
    let run = |samples: &[Sample]| {
        extract_features::<ModelError>(
            samples,
            &pre,
            batch,
            network.device(),
            |x| folded.features(x),
            |_, _| Ok(()),
        )
    };
    run(&samples[..batch.min(samples.len())])?;
    let start = Instant::now();
    let (set, _) = run(&samples)?;
    Ok(set.len() as f64 / start.elapsed().as_secs_f64())
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub backbone: Backbone,
    pub weights: WeightsSource,
    pub batch_size: usize,
    pub image_size_px: usize,
    /// Timed repetitions per measurement (the median is reported).
    pub repeats: usize,
    pub skip_fine_tune: bool,
}

/// What `bench --json` prints (rates in images/s; `null` for a workload not run).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub image_size_px: usize,
    pub batch_size: usize,
    pub threads: usize,
    pub device: String,
    pub forward_images_per_sec: f64,
    /// Minor page faults per forward batch in steady state (fresh pages the kernel zeroes).
    pub forward_page_faults_per_batch: f64,
    pub fine_tune_images_per_sec: Option<f64>,
    /// Minor page faults per fine-tune step in steady state.
    pub fine_tune_page_faults_per_step: Option<f64>,
    pub head_epoch_ms: f64,
    pub head_epoch_features: usize,
    pub feature_caching_images_per_sec: f64,
    /// Peak RSS while the fine-tune workload ran (the mark is reset before it).
    pub fine_tune_peak_rss_bytes: Option<u64>,
    /// The most heap bytes in use at once while the fine-tune workload ran: the RSS less what
    /// the allocator keeps mapped for reuse (`None` without the binary's counting allocator).
    pub fine_tune_peak_heap_bytes: Option<u64>,
    /// Peak RSS of the whole benchmark.
    pub peak_rss_bytes: u64,
}

/// Runs every workload in turn.
pub fn run(options: &BenchOptions, device: &Device) -> Result<BenchReport, ModelError> {
    let BenchOptions {
        backbone,
        batch_size,
        image_size_px,
        repeats,
        skip_fine_tune,
        ..
    } = *options;
    let weights = backbone.load_weights(&options.weights, device)?.weights;
    let imagenet = Network::pretrained_from(backbone, &weights, device)?;
    let forward = forward_images_per_sec(&imagenet, batch_size, image_size_px, repeats)?;
    let caching =
        feature_caching_images_per_sec(&imagenet, batch_size, image_size_px, 2 * batch_size)?;
    drop(imagenet);
    let head_ms = head_epoch_ms(backbone, &weights, repeats.max(5), device)?;
    let mut peak = peak_rss_bytes();
    let (fine_tune, fine_tune_peak, fine_tune_heap) = if skip_fine_tune {
        (None, None, None)
    } else {
        let reset = reset_peak_rss();
        crate::heap::reset_peak();
        let rate = fine_tune_images_per_sec(
            backbone,
            &weights,
            batch_size,
            image_size_px,
            repeats,
            device,
        )?;
        let ft_peak = peak_rss_bytes();
        peak = peak.max(ft_peak);
        let heap_peak = crate::heap::peak_bytes();
        (Some(rate), reset.then_some(ft_peak), heap_peak)
    };
    let fine_tune_rate = fine_tune.map(|r: Rate| r.images_per_sec);
    Ok(BenchReport {
        image_size_px,
        batch_size,
        threads: rayon::current_num_threads(),
        device: crate::runtime::describe_device(device),
        forward_images_per_sec: forward.images_per_sec,
        forward_page_faults_per_batch: forward.page_faults_per_batch,
        fine_tune_images_per_sec: fine_tune_rate,
        fine_tune_page_faults_per_step: fine_tune.map(|r| r.page_faults_per_batch),
        head_epoch_ms: head_ms,
        head_epoch_features: HEAD_EPOCH_FEATURES,
        feature_caching_images_per_sec: caching,
        fine_tune_peak_rss_bytes: fine_tune_peak,
        fine_tune_peak_heap_bytes: fine_tune_heap,
        peak_rss_bytes: peak.max(peak_rss_bytes()),
    })
}
