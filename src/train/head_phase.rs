//! Phase 1: only the classifier trains, on features computed once (the fused head of
//! [`super::head`]: milliseconds per epoch).

use std::time::Instant;

use rand_chacha::ChaCha8Rng;

use super::augment::{DROPOUT_STREAM, sample_rng};
use super::ctx::{Ctx, TrainError};
use super::events::{EpochMetrics, Phase, TrainEvent};
use super::features::FeatureSet;
use super::head::{AdamWConfig, LinearHead};
use super::loss::batch_stats;
use super::plan::TrainPlan;
use super::schedule::{cosine_factor, dropout_mask, shuffled};
use super::tracker::Tracker;
use crate::model::{ModelError, Network};

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

/// Optimisation steps taken and planned in a phase (for the cosine decay).
#[derive(Debug, Clone, Copy)]
struct Steps {
    done: usize,
    total: usize,
}

/// What one epoch of the head did.
#[derive(Debug, Default)]
struct HeadEpoch {
    loss_sum: f64,
    correct: usize,
    /// The batch (from 1) whose loss was not finite; the epoch ended there.
    diverged_at: Option<usize>,
}

/// One epoch over the cached features: shuffle, batches through dropout, fused AdamW steps
/// with cosine decay. `after_batch(batch, loss)` follows each step.
fn head_epoch<E>(
    head: &mut LinearHead,
    host: &HostFeatures,
    plan: &TrainPlan,
    epoch: usize,
    steps: &mut Steps,
    mut after_batch: impl FnMut(usize, f64, Steps) -> Result<(), E>,
) -> Result<HeadEpoch, E> {
    let order = shuffled(host.labels.len(), plan.seed, epoch);
    let mut rng = sample_rng(plan.seed, epoch, DROPOUT_STREAM);
    let mut out = HeadEpoch::default();
    for (b, chunk) in order.chunks(plan.batch_size).enumerate() {
        head.set_learning_rate(plan.head_lr * cosine_factor(steps.done, steps.total));
        steps.done += 1;
        let (x, y) = host.batch(chunk, plan.dropout, &mut rng);
        let Some((loss, hits)) = head.step(&x, &y) else {
            out.diverged_at = Some(b + 1);
            return Ok(out);
        };
        out.loss_sum += loss * chunk.len() as f64;
        out.correct += hits;
        after_batch(b, loss, *steps)?;
    }
    Ok(out)
}

/// Validation loss and accuracy of the network's classifier on cached features.
fn validate(network: &Network, val: &FeatureSet) -> Result<(Option<f64>, Option<f64>), TrainError> {
    if val.is_empty() {
        return Ok((None, None));
    }
    let logits = network.classifier.forward(&val.features)?;
    let loss = candle_nn::loss::cross_entropy(&logits, &val.labels)?;
    let (l, hits) = batch_stats(&logits, &val.labels, &loss)?;
    Ok((Some(l), Some(hits as f64 / val.len() as f64)))
}

/// Trains the classifier for `epochs` on cached features, reporting each batch and epoch.
#[allow(clippy::too_many_arguments)]
pub(super) fn train_head(
    network: &Network,
    train: &FeatureSet,
    val: &FeatureSet,
    epochs: usize,
    plan: &TrainPlan,
    early_stopping: bool,
    class_weights: Option<&[f32]>,
    ctx: &mut Ctx,
    tracker: &mut Tracker,
) -> Result<(), TrainError> {
    let mut head = LinearHead::from_classifier(
        &network.classifier,
        AdamWConfig::new(plan.head_lr, plan.weight_decay),
    )?
    .with_class_weights(class_weights.map(<[f32]>::to_vec));
    let host = HostFeatures::new(train)?;
    let batches = train.len().div_ceil(plan.batch_size);
    let mut steps = Steps {
        done: 0,
        total: epochs * batches,
    };
    let phase_start = Instant::now();
    for _ in 0..epochs {
        ctx.poll()?;
        let epoch = tracker.next_epoch();
        let result = head_epoch(&mut head, &host, plan, epoch, &mut steps, |b, loss, s| {
            let elapsed = phase_start.elapsed().as_secs_f64();
            let event = TrainEvent::Batch {
                phase: Phase::HeadOnly,
                epoch,
                batch: b + 1,
                batches,
                loss,
                images_per_sec: (s.done * plan.batch_size) as f64 / elapsed.max(1e-9),
                eta_secs: elapsed / s.done as f64 * (s.total - s.done) as f64,
            };
            ctx.batch_event(event, b + 1 == batches)
        })?;
        head.write_to(&network.classifier, network.device())?;
        if let Some(batch) = result.diverged_at {
            tracker.diverged(epoch, batch);
            return Ok(());
        }
        let (val_loss, val_accuracy) = validate(network, val)?;
        let metrics = EpochMetrics {
            phase: Phase::HeadOnly,
            epoch,
            train_loss: result.loss_sum / train.len().max(1) as f64,
            train_accuracy: result.correct as f64 / train.len().max(1) as f64,
            val_loss,
            val_accuracy,
            head_lr: head.learning_rate(),
            backbone_lr: 0.0,
            elapsed_secs: phase_start.elapsed().as_secs_f64(),
        };
        ctx.emit(TrainEvent::Epoch(metrics.clone()))?;
        let early = early_stopping && !val.is_empty();
        if tracker.end_epoch(network, metrics, plan.patience, early)? {
            break;
        }
    }
    Ok(())
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
    let mut steps = Steps {
        done: 0,
        total: (epochs + 1) * train.len().div_ceil(plan.batch_size),
    };
    let mut secs = Vec::with_capacity(epochs);
    for epoch in 0..=epochs {
        let start = Instant::now();
        head_epoch(&mut head, &host, plan, epoch, &mut steps, |_, _, _| {
            Ok::<(), ModelError>(())
        })?;
        head.write_to(&network.classifier, network.device())?;
        if epoch > 0 {
            secs.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(secs)
}
