//! Phase 2: trainable backbone units and the classifier train together, on batches decoded
//! (and augmented) per step.

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::optim::ParamsAdamW;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::adamw::AdamW;
use super::augment::{DROPOUT_STREAM, at_least, sample_rng, train_crop};
use super::ctx::{Ctx, TrainError, warn_skipped};
use super::evaluate::evaluate_samples;
use super::events::{EpochMetrics, Phase, TrainEvent};
use super::loss::{batch_stats, cross_entropy};
use super::plan::TrainPlan;
use super::schedule::{cosine_factor, dropout, shuffled};
use super::tracker::Tracker;
use crate::data::dataset::{Dataset, Sample, SkippedFile};
use crate::data::preprocess::Preprocessing;
use crate::model::{ModelError, Network};

/// AdamW groups with their base learning rates.
struct Optimizers {
    groups: Vec<(AdamW, f64)>,
}

impl Optimizers {
    /// The AdamW groups of the fine-tuning phase: head and backbone, each with and without
    /// weight decay, the backbone at `head_lr × backbone_lr_mult` (left out when that is 0).
    /// Shared by [`fine_tune`] and [`time_fine_tune_steps`] so that the benchmark times the
    /// same step.
    fn fine_tune(network: &Network, plan: &TrainPlan) -> candle_core::Result<Self> {
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

    fn step(&mut self, grads: &candle_core::backprop::GradStore) -> candle_core::Result<()> {
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

/// One optimisation step through the classifier: dropout on `features`, logits, loss,
/// backward, optimiser step. Returns the batch's loss and correct predictions, or `None` when
/// the loss is not finite (nothing is updated then).
fn classifier_step(
    network: &Network,
    features: &Tensor,
    labels: &Tensor,
    class_weights: Option<&Tensor>,
    dropout_p: f64,
    rng: &mut ChaCha8Rng,
    optim: &mut Optimizers,
) -> candle_core::Result<Option<(f64, usize)>> {
    let logits = network
        .classifier
        .forward(&dropout(features, dropout_p, rng)?)?;
    let loss = cross_entropy(&logits, labels, class_weights)?;
    let (loss_value, hits) = batch_stats(&logits, labels, &loss)?;
    if !loss_value.is_finite() {
        return Ok(None);
    }
    optim.step(&loss.backward()?)?;
    Ok(Some((loss_value, hits)))
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
                    pre.eval_crop(&img)
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

/// What one fine-tuning epoch did.
#[derive(Debug, Default)]
struct EpochTotals {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    skipped: Vec<SkippedFile>,
}

/// The state a fine-tuning phase carries from batch to batch.
struct FineTune<'a> {
    network: &'a Network,
    dataset: &'a Dataset,
    plan: &'a TrainPlan,
    pre: &'a Preprocessing,
    frozen: crate::model::FoldedNetwork,
    optim: Optimizers,
    batches: usize,
    step: usize,
    total_steps: usize,
    phase_start: Instant,
    val_secs: f64,
    class_weights: Option<Tensor>,
}

impl FineTune<'_> {
    /// One epoch of batches. `Ok(None)`: the loss stopped being finite (recorded in `tracker`).
    fn epoch(
        &mut self,
        epoch: usize,
        epoch_in_phase: usize,
        ctx: &mut Ctx,
        tracker: &mut Tracker,
    ) -> Result<Option<EpochTotals>, TrainError> {
        let (network, plan) = (self.network, self.plan);
        let device = network.device().clone();
        let first_trainable = network.spec.first_trainable_unit();
        let order = shuffled(self.dataset.train.len(), plan.seed, epoch);
        let mut rng = sample_rng(plan.seed, epoch, DROPOUT_STREAM);
        let mut totals = EpochTotals::default();
        let chunks: Vec<&[usize]> = order.chunks(plan.batch_size).collect();
        let (dataset, pre) = (self.dataset, self.pre);
        // The next batches are read and cropped on a helper thread while this one computes.
        let prepare = |b: usize| {
            let samples: Vec<&Sample> = chunks[b].iter().map(|&i| &dataset.train[i]).collect();
            training_batch(&samples, chunks[b], pre, plan, epoch, &device)
        };
        let finished = crate::data::prefetch::prefetched(chunks.len(), prepare, |batches| {
            // A step's time runs from the end of the previous one: waiting for data counts.
            let mut step_start = Instant::now();
            for (b, batch) in batches.enumerate() {
                ctx.poll()?;
                self.optim.set_progress(self.step, self.total_steps);
                self.step += 1;
                let (images, labels, skipped) = batch?;
                totals.skipped.extend(skipped);
                let count = labels.dim(0)?;
                if count == 0 {
                    continue;
                }
                let x = self.frozen.forward_units(&images, 0, first_trainable)?;
                let features = network.forward_train(&x)?;
                let step = classifier_step(
                    network,
                    &features,
                    &labels,
                    self.class_weights.as_ref(),
                    plan.dropout,
                    &mut rng,
                    &mut self.optim,
                )?;
                let Some((loss_value, hits)) = step else {
                    tracker.diverged(epoch, b + 1);
                    return Ok(false);
                };
                totals.loss_sum += loss_value * count as f64;
                totals.correct += hits;
                totals.seen += count;
                let step_secs = step_start.elapsed().as_secs_f64();
                step_start = Instant::now();
                tracker.images += count;
                tracker.train_secs += step_secs;
                let remaining_images = (self.total_steps - self.step) * plan.batch_size;
                let remaining_val = (plan.epochs - epoch_in_phase) as f64 * self.val_secs.max(0.0)
                    / (epoch_in_phase.max(1)) as f64;
                let event = TrainEvent::Batch {
                    phase: Phase::FineTune,
                    epoch,
                    batch: b + 1,
                    batches: self.batches,
                    loss: loss_value,
                    images_per_sec: count as f64 / step_secs.max(1e-9),
                    eta_secs: remaining_images as f64 / tracker.images_per_sec().max(1e-9)
                        + remaining_val,
                };
                ctx.batch_event(event, b + 1 == self.batches)?;
            }
            Ok::<bool, TrainError>(true)
        })?;
        if !finished {
            return Ok(None);
        }
        Ok(Some(totals))
    }

    /// Validates, reports the epoch and records it. Returns whether to stop early.
    fn end_epoch(
        &mut self,
        epoch: usize,
        totals: EpochTotals,
        ctx: &mut Ctx,
        tracker: &mut Tracker,
    ) -> Result<bool, TrainError> {
        warn_skipped(ctx, &totals.skipped)?;
        let dataset = self.dataset;
        let val_start = Instant::now();
        let (val_loss, val_accuracy) = if dataset.val.is_empty() {
            (None, None)
        } else {
            let eval = evaluate_samples(self.network, &dataset.val, &dataset.classes, self.pre)?;
            (Some(eval.loss), Some(eval.accuracy))
        };
        self.val_secs += val_start.elapsed().as_secs_f64();
        let (head_lr, backbone_lr) = self.optim.rates();
        let metrics = EpochMetrics {
            phase: Phase::FineTune,
            epoch,
            train_loss: totals.loss_sum / totals.seen.max(1) as f64,
            train_accuracy: totals.correct as f64 / totals.seen.max(1) as f64,
            val_loss,
            val_accuracy,
            head_lr,
            backbone_lr,
            elapsed_secs: self.phase_start.elapsed().as_secs_f64(),
        };
        ctx.emit(TrainEvent::Epoch(metrics.clone()))?;
        let early = !dataset.val.is_empty();
        Ok(tracker.end_epoch(self.network, metrics, self.plan.patience, early)?)
    }
}

/// Fine-tunes the trainable units and the classifier for `plan.epochs`.
pub(super) fn fine_tune(
    network: &Network,
    dataset: &Dataset,
    plan: &TrainPlan,
    pre: &Preprocessing,
    class_weights: Option<&[f32]>,
    ctx: &mut Ctx,
    tracker: &mut Tracker,
) -> Result<(), TrainError> {
    let batches = dataset.train.len().div_ceil(plan.batch_size);
    let mut phase = FineTune {
        network,
        dataset,
        plan,
        pre,
        frozen: network.folded_units(network.spec.first_trainable_unit())?,
        optim: Optimizers::fine_tune(network, plan)?,
        batches,
        step: 0,
        total_steps: plan.epochs * batches,
        phase_start: Instant::now(),
        val_secs: 0.0,
        class_weights: class_weights
            .map(|w| Tensor::from_slice(w, w.len(), network.device()))
            .transpose()?,
    };
    for epoch_in_phase in 0..plan.epochs {
        ctx.poll()?;
        let epoch = tracker.next_epoch();
        let Some(totals) = phase.epoch(epoch, epoch_in_phase, ctx, tracker)? else {
            return Ok(());
        };
        if phase.end_epoch(epoch, totals, ctx, tracker)? {
            break;
        }
    }
    Ok(())
}

/// The seconds of each timed fine-tune step, and the minor page faults of all of them.
#[derive(Debug, Clone)]
pub struct StepTimes {
    pub secs: Vec<f64>,
    pub page_faults: u64,
}

/// Times `steps` full fine-tuning steps (every unit in train mode, classifier with dropout,
/// cross-entropy, backward, AdamW on all groups) exactly as [`fine_tune`] runs them, after
/// one untimed warm-up step.
pub fn time_fine_tune_steps(
    network: &Network,
    plan: &TrainPlan,
    images: &Tensor,
    labels: &Tensor,
    steps: usize,
) -> Result<StepTimes, ModelError> {
    let mut optim = Optimizers::fine_tune(network, plan)?;
    let first_trainable = network.spec.first_trainable_unit();
    let frozen = network.folded_units(first_trainable)?;
    let mut rng = sample_rng(plan.seed, 0, 0);
    let mut secs = Vec::with_capacity(steps);
    let mut faults_after_warm_up = 0;
    for i in 0..=steps {
        if i == 1 {
            faults_after_warm_up = crate::runtime::minor_page_faults();
        }
        let start = Instant::now();
        let x = frozen.forward_units(images, 0, first_trainable)?;
        let features = network.forward_train(&x)?;
        classifier_step(
            network,
            &features,
            labels,
            None,
            plan.dropout,
            &mut rng,
            &mut optim,
        )?;
        if i > 0 {
            secs.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(StepTimes {
        secs,
        page_faults: crate::runtime::minor_page_faults().saturating_sub(faults_after_warm_up),
    })
}
