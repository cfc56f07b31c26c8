//! The training loop, run on the worker thread by [`super::spawn_training`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use candle_core::{D, Device, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::augment::{at_least, eval_crop, sample_rng, train_crop};
use super::features::{FeatureSet, eval_crops, extract_features as extract};
use super::head::{AdamWConfig, LinearHead};
use super::metrics::Evaluation;
use super::{
    BATCH_EVENT_INTERVAL_SECS, Case, DataSource, EpochMetrics, Phase, StopReason, TrainCommand,
    TrainEvent, TrainJob, TrainOutcome, TrainPlan, TrainReport, Waker,
};
use crate::data::dataset::{
    Dataset, DatasetError, LoadOptions, LoadProgress, Sample, SkippedFile, load_dataset,
};
use crate::data::preprocess::Preprocessing;
use crate::model::saved::TrainedModel;
use crate::model::{Init, ModelError, Network, Weights};
use crate::predict::Predictor;

/// Images per forward pass when computing features or validating.
const EVAL_BATCH: usize = 32;

#[derive(Debug, thiserror::Error)]
enum TrainError {
    #[error("stopped")]
    Cancelled,
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Plan(#[from] super::PlanError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Message(String),
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Model(ModelError::Candle(e))
    }
}

/// The worker's side of the channels.
struct Ctx {
    events: Sender<TrainEvent>,
    commands: Receiver<TrainCommand>,
    waker: Option<Waker>,
    last_batch_event: Instant,
}

impl Ctx {
    fn emit(&self, event: TrainEvent) -> Result<(), TrainError> {
        // The reader is gone (window closed): nobody wants the result any more.
        self.events.send(event).map_err(|_| TrainError::Cancelled)?;
        if let Some(wake) = &self.waker {
            wake();
        }
        Ok(())
    }

    /// Handles pending commands: returns `Cancelled` on stop; blocks while paused.
    fn poll(&mut self) -> Result<(), TrainError> {
        loop {
            match self.commands.try_recv() {
                Ok(TrainCommand::Stop) => return Err(TrainError::Cancelled),
                Ok(TrainCommand::Pause) => {
                    self.emit(TrainEvent::Paused)?;
                    loop {
                        match self.commands.recv() {
                            Ok(TrainCommand::Resume) => {
                                self.emit(TrainEvent::Resumed)?;
                                break;
                            }
                            Ok(TrainCommand::Pause) => {}
                            Ok(TrainCommand::Stop) | Err(_) => return Err(TrainError::Cancelled),
                        }
                    }
                }
                Ok(TrainCommand::Resume) => {}
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Ok(()),
            }
        }
    }

    /// Sends batch progress at most every [`BATCH_EVENT_INTERVAL_SECS`] (and on the last batch).
    fn batch_event(&mut self, event: TrainEvent, last: bool) -> Result<(), TrainError> {
        if last || self.last_batch_event.elapsed().as_secs_f64() >= BATCH_EVENT_INTERVAL_SECS {
            self.last_batch_event = Instant::now();
            self.emit(event)?;
        }
        Ok(())
    }
}

pub(super) fn run_worker(
    job: TrainJob,
    events: Sender<TrainEvent>,
    commands: Receiver<TrainCommand>,
    waker: Option<Waker>,
) {
    let mut ctx = Ctx {
        events,
        commands,
        waker,
        last_batch_event: Instant::now() - Duration::from_secs(1),
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(job, &mut ctx)));
    let last = match result {
        Ok(Ok(outcome)) => TrainEvent::Finished(Box::new(outcome)),
        Ok(Err(TrainError::Cancelled)) => TrainEvent::Cancelled,
        Ok(Err(error)) => TrainEvent::Failed {
            error: error.to_string(),
        },
        Err(panic) => TrainEvent::Failed {
            error: format!(
                "internal error: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic")
            ),
        },
    };
    let _ = ctx.emit(last);
}

fn load_with_progress(
    train: &std::path::Path,
    val: Option<PathBuf>,
    plan: &TrainPlan,
    short_side_px: u32,
    ctx: &mut Ctx,
) -> Result<Dataset, TrainError> {
    let options = LoadOptions {
        val_dir: val,
        val_fraction: plan.val_fraction,
        seed: plan.seed,
        cache_short_side_px: short_side_px,
        ..LoadOptions::default()
    };
    let progress = Arc::new(LoadProgress::default());
    let loader_progress = progress.clone();
    let train = train.to_owned();
    let loader = std::thread::Builder::new()
        .name("dataset-loader".into())
        .spawn(move || load_dataset(&train, &options, &loader_progress))
        .map_err(|e| TrainError::Message(format!("cannot start the loader thread: {e}")))?;
    while !loader.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if let Err(e) = ctx.poll() {
            progress.cancel.store(true, Ordering::Relaxed);
            let _ = loader.join();
            return Err(e);
        }
        ctx.emit(TrainEvent::Loading {
            done: progress.done.load(Ordering::Relaxed),
            total: progress.total.load(Ordering::Relaxed),
        })?;
    }
    loader
        .join()
        .map_err(|_| TrainError::Message("the dataset loader crashed".into()))?
        .map_err(TrainError::from)
}

/// Best weights so far and the early-stopping count.
struct Tracker {
    best: Option<Best>,
    epochs_since_best: usize,
    epoch: usize,
    history: Vec<EpochMetrics>,
    stop: StopReason,
    /// Images and seconds spent in training steps (for the throughput figure).
    images: usize,
    train_secs: f64,
}

struct Best {
    epoch: usize,
    accuracy: Option<f64>,
    loss: Option<f64>,
    values: Vec<Tensor>,
}

impl Tracker {
    /// Records an epoch; keeps a copy of the weights if it is the best so far. Returns
    /// whether training should stop early (only counted when `early_stopping`).
    fn end_epoch(
        &mut self,
        network: &Network,
        metrics: EpochMetrics,
        patience: usize,
        early_stopping: bool,
    ) -> Result<bool, TrainError> {
        let better = match (&self.best, metrics.val_accuracy, metrics.val_loss) {
            (None, _, _) => true,
            (Some(best), Some(acc), Some(loss)) => {
                let best_acc = best.accuracy.unwrap_or(-1.0);
                acc > best_acc || (acc == best_acc && loss < best.loss.unwrap_or(f64::INFINITY))
            }
            // No validation images: the latest weights are the best we know.
            _ => true,
        };
        if better {
            self.best = Some(Best {
                epoch: metrics.epoch,
                accuracy: metrics.val_accuracy,
                loss: metrics.val_loss,
                values: network
                    .state_vars()
                    .iter()
                    .map(|v| v.as_tensor().copy())
                    .collect::<candle_core::Result<_>>()?,
            });
            self.epochs_since_best = 0;
        } else {
            self.epochs_since_best += 1;
        }
        self.history.push(metrics);
        if early_stopping && patience > 0 && self.epochs_since_best >= patience {
            self.stop = StopReason::EarlyStopped { epoch: self.epoch };
            return Ok(true);
        }
        Ok(false)
    }

    fn restore_best(&self, network: &Network) -> Result<(), TrainError> {
        if let Some(best) = &self.best {
            for (var, value) in network.state_vars().iter().zip(&best.values) {
                var.set(value)?;
            }
        }
        Ok(())
    }

    fn stopped(&self) -> bool {
        !matches!(self.stop, StopReason::Completed)
    }
}

/// AdamW groups with their base learning rates.
struct Optimizers {
    groups: Vec<(AdamW, f64)>,
}

impl Optimizers {
    /// The AdamW groups of the fine-tuning phase: head and backbone, each with and without
    /// weight decay, the backbone at `head_lr × backbone_lr_mult` (left out when that is 0).
    /// Shared by [`fine_tune`] and [`time_fine_tune_steps`] so that the benchmark times the
    /// same step.
    fn fine_tune(network: &Network, plan: &TrainPlan) -> Result<Self, TrainError> {
        let (head_lr, weight_decay) = (plan.head_lr, plan.weight_decay);
        let backbone_lr = plan.head_lr * plan.backbone_lr_mult;
        let g = network.param_groups();
        let params = |lr: f64, decay: f64| ParamsAdamW {
            lr,
            weight_decay: decay,
            ..ParamsAdamW::default()
        };
        let mut groups = vec![
            (
                AdamW::new(g.head_decay, params(head_lr, weight_decay))?,
                head_lr,
            ),
            (AdamW::new(g.head_no_decay, params(head_lr, 0.0))?, head_lr),
        ];
        if backbone_lr > 0.0 {
            groups.push((
                AdamW::new(g.backbone_decay, params(backbone_lr, weight_decay))?,
                backbone_lr,
            ));
            groups.push((
                AdamW::new(g.backbone_no_decay, params(backbone_lr, 0.0))?,
                backbone_lr,
            ));
        }
        Ok(Self { groups })
    }

    /// Cosine decay from the base rate to zero over `total` steps.
    fn set_progress(&mut self, step: usize, total: usize) {
        let factor = cosine_factor(step, total);
        for (opt, base) in &mut self.groups {
            opt.set_learning_rate(*base * factor);
        }
    }

    fn step(&mut self, grads: &candle_core::backprop::GradStore) -> Result<(), TrainError> {
        for (opt, _) in &mut self.groups {
            opt.step(grads)?;
        }
        Ok(())
    }

    fn rates(&self) -> (f64, f64) {
        let head = self.groups.first().map_or(0.0, |(o, _)| o.learning_rate());
        let backbone = self.groups.get(2).map_or(0.0, |(o, _)| o.learning_rate());
        (head, backbone)
    }
}

/// An inverted-dropout mask (`0` or `1/(1-p)` per element), seeded, or `None` for `p <= 0`.
/// It comes from one bulk fill of random words by a fast generator seeded from `rng`
/// (per-element `random_bool` on ChaCha was half of a head-only epoch).
fn dropout_mask(len: usize, p: f64, rng: &mut ChaCha8Rng) -> Option<Vec<f32>> {
    if p <= 0.0 {
        return None;
    }
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    // P(word < threshold) = keep, for words uniform over 0..2^32.
    let threshold = (keep * 4_294_967_296.0) as u64;
    let mut words = vec![0u32; len];
    let mut fast = rand::rngs::SmallRng::seed_from_u64(rand::RngCore::next_u64(rng));
    rand::Rng::fill(&mut fast, &mut words[..]);
    Some(
        words
            .iter()
            .map(|&w| if u64::from(w) < threshold { scale } else { 0.0 })
            .collect(),
    )
}

/// Inverted dropout with a seeded mask (candle's own dropout is not seedable).
fn dropout(x: &Tensor, p: f64, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
    match dropout_mask(x.elem_count(), p, rng) {
        None => Ok(x.clone()),
        Some(mask) => x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?),
    }
}

/// Cosine decay factor from 1 to 0 over `total` steps.
fn cosine_factor(step: usize, total: usize) -> f64 {
    let t = step as f64 / total.max(1) as f64;
    0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

/// Loss value and number of correct predictions of a batch.
fn batch_stats(
    logits: &Tensor,
    labels: &Tensor,
    loss: &Tensor,
) -> Result<(f64, usize), TrainError> {
    let loss = f64::from(loss.to_scalar::<f32>()?);
    let predicted: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    let truth: Vec<u32> = labels.to_vec1()?;
    Ok((
        loss,
        predicted.iter().zip(&truth).filter(|(p, t)| p == t).count(),
    ))
}

/// One optimisation step through the classifier: dropout on `features`, logits, loss,
/// backward, optimiser step. Returns the batch's loss and correct predictions, or `None` when
/// the loss is not finite (nothing is updated then).
fn classifier_step(
    network: &Network,
    features: &Tensor,
    labels: &Tensor,
    dropout_p: f64,
    rng: &mut ChaCha8Rng,
    optim: &mut Optimizers,
) -> Result<Option<(f64, usize)>, TrainError> {
    let logits = network
        .classifier
        .forward(&dropout(features, dropout_p, rng)?)?;
    let loss = candle_nn::loss::cross_entropy(&logits, labels)?;
    let (loss_value, hits) = batch_stats(&logits, labels, &loss)?;
    if !loss_value.is_finite() {
        return Ok(None);
    }
    optim.step(&loss.backward()?)?;
    Ok(Some((loss_value, hits)))
}

fn shuffled(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    order.shuffle(&mut rng);
    order
}

fn run(job: TrainJob, ctx: &mut Ctx) -> Result<TrainOutcome, TrainError> {
    let started = Instant::now();
    let plan = job.plan;
    plan.validate()?;
    let pre = Preprocessing::for_size(plan.image_size_px);
    let device = job.device;
    let dataset = match job.data {
        DataSource::Loaded(d) => d,
        DataSource::Folders { train, val } => {
            Arc::new(load_with_progress(&train, val, &plan, pre.resize_px, ctx)?)
        }
    };
    if dataset.train.is_empty() {
        return Err(TrainError::Message(format!(
            "{} has no training images",
            dataset.root.display()
        )));
    }
    let weights = match plan.init {
        Init::Pretrained => Some(Weights::bundled(&device)?),
        Init::Random => None,
    };
    let network = plan.build_network(dataset.classes.len(), weights.as_ref(), &device)?;
    drop(weights);
    let case = Case::matching(&plan);
    ctx.emit(TrainEvent::Started {
        plan: plan.clone(),
        case,
        classes: dataset.classes.clone(),
        counts: dataset.counts(),
        skipped: dataset.skipped.clone(),
        trainable_parameters: network.trainable_parameter_count(),
        device: crate::runtime::describe_device(&device),
    })?;
    if dataset.val.is_empty() {
        ctx.emit(TrainEvent::Warning {
            message: "no validation images (every class has a single image): the last epoch's \
                      weights are kept and early stopping is off"
                .into(),
        })?;
    }

    let mut tracker = Tracker {
        best: None,
        epochs_since_best: 0,
        epoch: 0,
        history: Vec::new(),
        stop: StopReason::Completed,
        images: 0,
        train_secs: 0.0,
    };
    let head_epochs = if plan.is_head_only() {
        plan.epochs
    } else if plan.has_head_phase() {
        plan.head_epochs
    } else {
        0
    };
    let mut val_features = None;
    if head_epochs > 0 {
        let folded = network.folded()?;
        let total = dataset.train.len() + dataset.val.len();
        let caching_started = Instant::now();
        let mut report = |done: usize| {
            ctx.poll()?;
            ctx.batch_event(TrainEvent::CachingFeatures { done, total }, done == total)
        };
        let (train_set, skipped_train) = extract(
            &dataset.train,
            &pre,
            EVAL_BATCH,
            &device,
            |x| folded.features(x),
            |done, _| report(done),
        )?;
        let offset = dataset.train.len();
        let (val_set, skipped_val) = extract(
            &dataset.val,
            &pre,
            EVAL_BATCH,
            &device,
            |x| folded.features(x),
            |done, _| report(offset + done),
        )?;
        tracker.images += total;
        tracker.train_secs += caching_started.elapsed().as_secs_f64();
        warn_skipped(
            ctx,
            &skipped_train
                .into_iter()
                .chain(skipped_val)
                .collect::<Vec<_>>(),
        )?;
        ctx.emit(TrainEvent::PhaseStarted {
            phase: Phase::HeadOnly,
            epochs: head_epochs,
        })?;
        train_head(
            &network,
            &train_set,
            &val_set,
            head_epochs,
            &plan,
            plan.is_head_only(),
            ctx,
            &mut tracker,
        )?;
        val_features = Some(val_set);
    }
    if !plan.is_head_only() && plan.epochs > 0 && !tracker.stopped() {
        // Fine-tuning starts from the best classifier of phase 1.
        tracker.restore_best(&network)?;
        ctx.emit(TrainEvent::PhaseStarted {
            phase: Phase::FineTune,
            epochs: plan.epochs,
        })?;
        fine_tune(&network, &dataset, &plan, &pre, ctx, &mut tracker)?;
        val_features = None;
    }
    if tracker.best.is_none() {
        return Err(TrainError::Message(match tracker.stop {
            StopReason::NonFiniteLoss { epoch, batch } => format!(
                "the loss became NaN or infinite at epoch {epoch}, batch {batch}, before any \
                 epoch completed: try a lower learning rate"
            ),
            _ => "no epoch completed".into(),
        }));
    }
    tracker.restore_best(&network)?;
    let network = Arc::new(network);
    let evaluation = if dataset.val.is_empty() {
        None
    } else {
        Some(match &val_features {
            Some(features) => evaluate_features(&network, features, &dataset.classes)?,
            None => evaluate_samples(&network, &dataset.val, &dataset.classes, &pre)?,
        })
    };
    let best = tracker.best.as_ref();
    let report = TrainReport {
        case,
        plan: plan.clone(),
        classes: dataset.classes.clone(),
        epochs_run: tracker.history.len(),
        best_epoch: best.map_or(0, |b| b.epoch),
        best_val_accuracy: best.and_then(|b| b.accuracy),
        best_val_loss: best.and_then(|b| b.loss),
        final_train_accuracy: tracker.history.last().map_or(0.0, |m| m.train_accuracy),
        trainable_parameters: network.trainable_parameter_count(),
        wall_secs: started.elapsed().as_secs_f64(),
        images_per_sec: tracker.images as f64 / tracker.train_secs.max(1e-9),
        stop_reason: describe_stop(&tracker.stop),
        evaluation,
    };
    let model = TrainedModel {
        network,
        classes: dataset.classes.clone(),
        preprocessing: pre,
        plan,
    };
    Ok(TrainOutcome { report, model })
}

fn describe_stop(stop: &StopReason) -> String {
    match stop {
        StopReason::Completed => "completed all epochs".into(),
        StopReason::EarlyStopped { epoch } => {
            format!("stopped early after epoch {epoch}: validation stopped improving")
        }
        StopReason::NonFiniteLoss { epoch, batch } => format!(
            "stopped at epoch {epoch}, batch {batch}: the loss became NaN or infinite; the best \
             weights before it are kept (try a lower learning rate)"
        ),
    }
}

fn warn_skipped(ctx: &Ctx, skipped: &[SkippedFile]) -> Result<(), TrainError> {
    if !skipped.is_empty() {
        let names: Vec<String> = skipped
            .iter()
            .take(5)
            .map(|s| format!("{} ({})", s.path.display(), s.reason))
            .collect();
        ctx.emit(TrainEvent::Warning {
            message: format!(
                "{} images could not be read any more and were left out: {}",
                skipped.len(),
                names.join("; ")
            ),
        })?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn train_head(
    network: &Network,
    train: &FeatureSet,
    val: &FeatureSet,
    epochs: usize,
    plan: &TrainPlan,
    early_stopping: bool,
    ctx: &mut Ctx,
    tracker: &mut Tracker,
) -> Result<(), TrainError> {
    let mut head = LinearHead::from_classifier(
        &network.classifier,
        AdamWConfig::new(plan.head_lr, plan.weight_decay),
    )?;
    let host = HostFeatures::new(train)?;
    let batches = train.len().div_ceil(plan.batch_size);
    let total_steps = epochs * batches;
    let phase_start = Instant::now();
    let mut step = 0;
    for _ in 0..epochs {
        ctx.poll()?;
        tracker.epoch += 1;
        let epoch = tracker.epoch;
        let order = shuffled(train.len(), plan.seed, epoch);
        let mut rng = sample_rng(plan.seed, epoch, usize::MAX);
        let (mut loss_sum, mut correct) = (0.0, 0);
        for (b, chunk) in order.chunks(plan.batch_size).enumerate() {
            head.set_learning_rate(plan.head_lr * cosine_factor(step, total_steps));
            step += 1;
            let (x, y) = host.batch(chunk, plan.dropout, &mut rng);
            let Some((loss_value, hits)) = head.step(&x, &y) else {
                head.write_to(&network.classifier, network.device())?;
                tracker.stop = StopReason::NonFiniteLoss {
                    epoch,
                    batch: b + 1,
                };
                return Ok(());
            };
            loss_sum += loss_value * chunk.len() as f64;
            correct += hits;
            let elapsed = phase_start.elapsed().as_secs_f64();
            let rate = (step * plan.batch_size) as f64 / elapsed.max(1e-9);
            ctx.batch_event(
                TrainEvent::Batch {
                    phase: Phase::HeadOnly,
                    epoch,
                    batch: b + 1,
                    batches,
                    loss: loss_value,
                    images_per_sec: rate,
                    eta_secs: elapsed / step as f64 * (total_steps - step) as f64,
                },
                b + 1 == batches,
            )?;
        }
        head.write_to(&network.classifier, network.device())?;
        let (val_loss, val_accuracy) = if val.is_empty() {
            (None, None)
        } else {
            let logits = network.classifier.forward(&val.features)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &val.labels)?;
            let (l, hits) = batch_stats(&logits, &val.labels, &loss)?;
            (Some(l), Some(hits as f64 / val.len() as f64))
        };
        let head_lr = head.learning_rate();
        let metrics = EpochMetrics {
            phase: Phase::HeadOnly,
            epoch,
            train_loss: loss_sum / train.len().max(1) as f64,
            train_accuracy: correct as f64 / train.len().max(1) as f64,
            val_loss,
            val_accuracy,
            head_lr,
            backbone_lr: 0.0,
            elapsed_secs: phase_start.elapsed().as_secs_f64(),
        };
        ctx.emit(TrainEvent::Epoch(metrics.clone()))?;
        if tracker.end_epoch(
            network,
            metrics,
            plan.patience,
            early_stopping && !val.is_empty(),
        )? {
            break;
        }
    }
    Ok(())
}

/// Training crops of a batch (augmented or not), in parallel; unreadable samples dropped.
fn training_batch(
    samples: &[&Sample],
    indices: &[usize],
    pre: &Preprocessing,
    plan: &TrainPlan,
    epoch: usize,
    device: &Device,
) -> Result<(Tensor, Tensor, Vec<SkippedFile>), TrainError> {
    let crops: Vec<(usize, Result<image::RgbImage, String>)> = samples
        .par_iter()
        .zip(indices)
        .map(|(s, &index)| {
            let result = s.image(pre.resize_px).map(|img| {
                let img = at_least(&img, pre.resize_px);
                if plan.augment {
                    train_crop(
                        &img,
                        pre.image_size_px,
                        &mut sample_rng(plan.seed, epoch, index),
                    )
                } else {
                    eval_crop(&img, pre)
                }
            });
            (s.label, result)
        })
        .collect();
    let mut images = Vec::with_capacity(crops.len());
    let mut labels = Vec::with_capacity(crops.len());
    let mut skipped = Vec::new();
    for ((label, crop), sample) in crops.into_iter().zip(samples) {
        match crop {
            Ok(img) => {
                images.push(img);
                labels.push(label as u32);
            }
            Err(reason) => skipped.push(SkippedFile {
                path: sample.path.clone(),
                reason,
            }),
        }
    }
    let n = labels.len();
    Ok((
        pre.batch_tensor(&images, device)?,
        Tensor::from_vec(labels, n, device)?,
        skipped,
    ))
}

fn fine_tune(
    network: &Network,
    dataset: &Dataset,
    plan: &TrainPlan,
    pre: &Preprocessing,
    ctx: &mut Ctx,
    tracker: &mut Tracker,
) -> Result<(), TrainError> {
    let device = network.device().clone();
    let first_trainable = network.spec.first_trainable_unit();
    let frozen = network.folded_units(first_trainable)?;
    let mut optim = Optimizers::fine_tune(network, plan)?;
    let n = dataset.train.len();
    let batches = n.div_ceil(plan.batch_size);
    let total_steps = plan.epochs * batches;
    let mut step = 0;
    let phase_start = Instant::now();
    let mut val_secs = 0.0f64;
    for epoch_in_phase in 0..plan.epochs {
        ctx.poll()?;
        tracker.epoch += 1;
        let epoch = tracker.epoch;
        let order = shuffled(n, plan.seed, epoch);
        let mut rng = sample_rng(plan.seed, epoch, usize::MAX);
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0, 0);
        let mut late_skipped = Vec::new();
        for (b, chunk) in order.chunks(plan.batch_size).enumerate() {
            ctx.poll()?;
            let step_start = Instant::now();
            optim.set_progress(step, total_steps);
            step += 1;
            let samples: Vec<&Sample> = chunk.iter().map(|&i| &dataset.train[i]).collect();
            let (images, labels, skipped) =
                training_batch(&samples, chunk, pre, plan, epoch, &device)?;
            late_skipped.extend(skipped);
            if labels.dim(0)? == 0 {
                continue;
            }
            let x = frozen.forward_units(&images, 0, first_trainable)?;
            let features = network.forward_train(&x)?;
            let Some((loss_value, hits)) = classifier_step(
                network,
                &features,
                &labels,
                plan.dropout,
                &mut rng,
                &mut optim,
            )?
            else {
                tracker.stop = StopReason::NonFiniteLoss {
                    epoch,
                    batch: b + 1,
                };
                return Ok(());
            };
            let count = labels.dim(0)?;
            loss_sum += loss_value * count as f64;
            correct += hits;
            seen += count;
            let step_secs = step_start.elapsed().as_secs_f64();
            tracker.images += count;
            tracker.train_secs += step_secs;
            let rate = tracker.images as f64 / tracker.train_secs.max(1e-9);
            let remaining_images = (total_steps - step) * plan.batch_size;
            let remaining_val = (plan.epochs - epoch_in_phase) as f64 * val_secs.max(0.0)
                / (epoch_in_phase.max(1)) as f64;
            ctx.batch_event(
                TrainEvent::Batch {
                    phase: Phase::FineTune,
                    epoch,
                    batch: b + 1,
                    batches,
                    loss: loss_value,
                    images_per_sec: count as f64 / step_secs.max(1e-9),
                    eta_secs: remaining_images as f64 / rate.max(1e-9) + remaining_val,
                },
                b + 1 == batches,
            )?;
        }
        warn_skipped(ctx, &late_skipped)?;
        let val_start = Instant::now();
        let (val_loss, val_accuracy) = if dataset.val.is_empty() {
            (None, None)
        } else {
            let eval = evaluate_samples(network, &dataset.val, &dataset.classes, pre)?;
            (Some(eval.loss), Some(eval.accuracy))
        };
        val_secs += val_start.elapsed().as_secs_f64();
        let (head_lr, backbone_lr) = optim.rates();
        let metrics = EpochMetrics {
            phase: Phase::FineTune,
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_accuracy,
            head_lr,
            backbone_lr,
            elapsed_secs: phase_start.elapsed().as_secs_f64(),
        };
        ctx.emit(TrainEvent::Epoch(metrics.clone()))?;
        if tracker.end_epoch(network, metrics, plan.patience, !dataset.val.is_empty())? {
            break;
        }
    }
    Ok(())
}

fn evaluate_features(
    network: &Network,
    features: &FeatureSet,
    classes: &[String],
) -> Result<Evaluation, TrainError> {
    let logits = network.classifier.forward(&features.features)?;
    let probs: Vec<Vec<f32>> = crate::model::network::softmax(&logits)?.to_vec2()?;
    let rows = features
        .paths
        .iter()
        .zip(&features.label_values)
        .zip(probs)
        .map(|((p, &l), pr)| (p.clone(), l, pr))
        .collect();
    Ok(Evaluation::from_probabilities(classes, rows))
}

/// Evaluates a network (current weights, inference mode) on samples.
fn evaluate_samples(
    network: &Network,
    samples: &[Sample],
    classes: &[String],
    pre: &Preprocessing,
) -> Result<Evaluation, TrainError> {
    let predictor = Predictor::from_network(network, classes.to_vec(), pre.clone())?;
    let mut rows = Vec::with_capacity(samples.len());
    for group in samples.chunks(EVAL_BATCH) {
        let crops = eval_crops(group, pre);
        let (good, kept): (Vec<_>, Vec<_>) = group
            .iter()
            .zip(crops)
            .filter_map(|(s, c)| c.ok().map(|c| (c, s)))
            .unzip();
        for (probs, sample) in predictor.probabilities(&good)?.into_iter().zip(kept) {
            rows.push((sample.path.clone(), sample.label, probs));
        }
    }
    Ok(Evaluation::from_probabilities(classes, rows))
}

/// Evaluates a trained model on every image of a dataset (train and validation splits
/// together, classes matched by name).
pub fn evaluate_dataset(model: &TrainedModel, dataset: &Dataset) -> Result<Evaluation, ModelError> {
    let mapping: Vec<Option<usize>> = dataset
        .classes
        .iter()
        .map(|c| model.classes.iter().position(|m| m == c))
        .collect();
    if let Some(unknown) = dataset
        .classes
        .iter()
        .zip(&mapping)
        .find(|(_, m)| m.is_none())
    {
        return Err(ModelError::Mismatch(format!(
            "the data has a class {:?} the model was not trained on (model classes: {})",
            unknown.0,
            model.classes.join(", ")
        )));
    }
    let samples: Vec<Sample> = dataset
        .train
        .iter()
        .chain(&dataset.val)
        .map(|s| {
            let mut s = s.clone();
            s.label = mapping[s.label].unwrap_or(0);
            s
        })
        .collect();
    evaluate_samples(
        &model.network,
        &samples,
        &model.classes,
        &model.preprocessing,
    )
    .map_err(|e| match e {
        TrainError::Model(m) => m,
        other => ModelError::Init(other.to_string()),
    })
}

/// Pooled features of `samples` from a network's kept units (inference mode).
pub fn network_features(
    network: &Network,
    samples: &[Sample],
    pre: &Preprocessing,
) -> Result<FeatureSet, ModelError> {
    let folded = network.folded()?;
    let (set, _) = extract::<ModelError>(
        samples,
        pre,
        EVAL_BATCH,
        network.device(),
        |x| folded.features(x),
        |_, _| Ok(()),
    )?;
    Ok(set)
}

/// Times `steps` full fine-tuning steps (every unit in train mode, classifier with dropout,
/// cross-entropy, backward, AdamW on all groups) exactly as [`fine_tune`] runs them, after
/// one untimed warm-up step. Returns the seconds of each timed step.
pub fn time_fine_tune_steps(
    network: &Network,
    plan: &TrainPlan,
    images: &Tensor,
    labels: &Tensor,
    steps: usize,
) -> Result<Vec<f64>, ModelError> {
    let mut optim =
        Optimizers::fine_tune(network, plan).map_err(|e| ModelError::Init(e.to_string()))?;
    let first_trainable = network.spec.first_trainable_unit();
    let frozen = network.folded_units(first_trainable)?;
    let mut rng = sample_rng(plan.seed, 0, 0);
    let mut secs = Vec::with_capacity(steps);
    for i in 0..=steps {
        let start = Instant::now();
        let x = frozen.forward_units(images, 0, first_trainable)?;
        let features = network.forward_train(&x)?;
        classifier_step(
            network,
            &features,
            labels,
            plan.dropout,
            &mut rng,
            &mut optim,
        )
        .map_err(|e| ModelError::Init(e.to_string()))?;
        if i > 0 {
            secs.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(secs)
}

/// Times `epochs` head-only epochs over cached features (batches of `plan.batch_size`,
/// shuffled, dropout, AdamW) exactly as [`train_head`] runs them, after one untimed warm-up
/// epoch. Returns the seconds of each timed epoch.
pub fn time_head_epochs(
    network: &Network,
    plan: &TrainPlan,
    train: &FeatureSet,
    epochs: usize,
) -> Result<Vec<f64>, ModelError> {
    let mut head = LinearHead::from_classifier(
        &network.classifier,
        AdamWConfig::new(plan.head_lr, plan.weight_decay),
    )?;
    let host = HostFeatures::new(train)?;
    let total_steps = (epochs + 1) * train.len().div_ceil(plan.batch_size);
    let mut step = 0;
    let mut secs = Vec::with_capacity(epochs);
    for epoch in 0..=epochs {
        let start = Instant::now();
        let order = shuffled(train.len(), plan.seed, epoch);
        let mut rng = sample_rng(plan.seed, epoch, usize::MAX);
        for chunk in order.chunks(plan.batch_size) {
            head.set_learning_rate(plan.head_lr * cosine_factor(step, total_steps));
            step += 1;
            let (x, y) = host.batch(chunk, plan.dropout, &mut rng);
            head.step(&x, &y);
        }
        head.write_to(&network.classifier, network.device())?;
        if epoch > 0 {
            secs.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(secs)
}

/// Cached features copied to the host once, for the fused head.
struct HostFeatures {
    values: Vec<f32>,
    labels: Vec<usize>,
    dim: usize,
}

impl HostFeatures {
    fn new(set: &FeatureSet) -> candle_core::Result<Self> {
        Ok(Self {
            values: set.features.flatten_all()?.to_vec1()?,
            labels: set.label_values.clone(),
            dim: set.dim(),
        })
    }

    /// The rows `chunk` (through dropout) and their labels.
    fn batch(&self, chunk: &[usize], p: f64, rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<usize>) {
        let mut x = Vec::with_capacity(chunk.len() * self.dim);
        for &i in chunk {
            x.extend_from_slice(&self.values[i * self.dim..(i + 1) * self.dim]);
        }
        if let Some(mask) = dropout_mask(x.len(), p, rng) {
            x.iter_mut().zip(mask).for_each(|(v, m)| *v *= m);
        }
        (x, chunk.iter().map(|&i| self.labels[i]).collect())
    }
}
