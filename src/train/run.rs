//! One run from start to end: data and network, phase 1 on cached features, phase 2
//! fine-tuning, then the best weights evaluated and reported.

use std::sync::Arc;
use std::time::Instant;

use super::ctx::{Ctx, TrainError, warn_skipped};
use super::cut::{CutChoice, ProbeFit, choose_cut};
use super::evaluate::{EVAL_BATCH, evaluate_features, evaluate_samples};
use super::events::{Phase, StopReason, TrainEvent, TrainOutcome, TrainReport};
use super::features::{FeatureSet, extract_features};
use super::fine_tune::fine_tune;
use super::head_phase::train_head;
use super::job::{DataSource, TrainJob};
use super::load::load_with_progress;
use super::plan::{Case, TrainPlan};
use super::saved::{PretrainedInfo, TrainedModel};
use super::tracker::Tracker;
use crate::data::dataset::{Dataset, SkippedFile};
use crate::data::preprocess::Preprocessing;
use crate::model::{HeadInit, Init, LoadedWeights, Network, NetworkSpec};

/// What every phase of a run shares.
struct Setup {
    plan: TrainPlan,
    /// Per-class loss weights (`None`: unweighted), from the plan and the class sizes.
    class_weights: Option<Vec<f32>>,
    pre: Preprocessing,
    dataset: Arc<Dataset>,
    network: Network,
    case: Option<Case>,
    pretrained: Option<PretrainedInfo>,
    cut_choice: Option<CutChoice>,
}

pub(super) fn run(job: TrainJob, ctx: &mut Ctx) -> Result<TrainOutcome, TrainError> {
    let started = Instant::now();
    let setup = prepare(job, ctx)?;
    let mut tracker = Tracker::default();
    let mut val_features = None;
    let head_epochs = setup.plan.head_only_epochs();
    if head_epochs > 0 {
        val_features = Some(head_only_phase(&setup, head_epochs, ctx, &mut tracker)?);
    }
    let plan = &setup.plan;
    if !plan.is_head_only() && plan.epochs > 0 && !tracker.stopped() {
        // Fine-tuning starts from the best classifier of phase 1, with the full patience.
        tracker.restore_best(&setup.network)?;
        tracker.start_phase();
        ctx.emit(TrainEvent::PhaseStarted {
            phase: Phase::FineTune,
            epochs: plan.epochs,
        })?;
        fine_tune(
            &setup.network,
            &setup.dataset,
            plan,
            &setup.pre,
            setup.class_weights.as_deref(),
            ctx,
            &mut tracker,
        )?;
        val_features = None;
    }
    finish(setup, &tracker, val_features.as_ref(), started)
}

/// Validates the plan, loads the data, builds the network and announces the run.
fn prepare(job: TrainJob, ctx: &mut Ctx) -> Result<Setup, TrainError> {
    let plan = job.plan;
    plan.validate()?;
    let device = job.device;
    // Weights first: a missing download fails at once, before minutes of decoding.
    let loaded = match plan.init {
        Init::Pretrained => Some(load_weights(&plan, &device, ctx)?),
        Init::Random => None,
    };
    let pre = match &loaded {
        Some(l) => plan.backbone.preprocessing_with(l, plan.image_size_px),
        None => plan.preprocessing(),
    };
    let dataset = match job.data {
        DataSource::Loaded(d) => d,
        DataSource::Folders { train, val } => {
            Arc::new(load_with_progress(&train, val, &plan, pre.resize_px, ctx)?)
        }
    };
    if dataset.train.is_empty() {
        return Err(TrainError::NoTrainingImages(dataset.root.clone()));
    }
    let weights = loaded.as_ref().map(|l| &l.weights);
    let mut plan = plan;
    let cut_choice = match (plan.auto_cut, weights) {
        (true, Some(weights)) => choose_cut_for(&mut plan, &dataset, weights, &pre, &device, ctx)?,
        _ => None,
    };
    let network = plan.build_network(dataset.classes.len(), weights, &device)?;
    let pretrained = loaded.map(|l| PretrainedInfo {
        source: l.source,
        sha256: l.sha256,
    });
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
    let train_counts: Vec<usize> = dataset.counts().iter().map(|c| c.train).collect();
    let class_weights = plan.class_weights.resolve(&train_counts);
    if class_weights.is_some() {
        let (largest, smallest) = (
            train_counts.iter().max().copied().unwrap_or(0),
            train_counts.iter().min().copied().unwrap_or(0),
        );
        ctx.emit(TrainEvent::Warning {
            message: format!(
                "class weights on: classes range from {smallest} to {largest} training images, \
                 so each image's loss is weighted by N / (K × its class's images)"
            ),
        })?;
    }
    if dataset.val.is_empty() {
        ctx.emit(TrainEvent::Warning {
            message: "no validation images (every class has a single image): the last epoch's \
                      weights are kept and early stopping is off"
                .into(),
        })?;
    }
    Ok(Setup {
        plan,
        class_weights,
        pre,
        dataset,
        network,
        case,
        pretrained,
        cut_choice,
    })
}

/// Chooses the plan's cut from the training images (see [`super::cut`]) and announces it; too
/// few images per class to cross-validate keep the plan's fallback, with a warning.
fn choose_cut_for(
    plan: &mut TrainPlan,
    dataset: &Dataset,
    weights: &crate::model::Weights,
    pre: &Preprocessing,
    device: &candle_core::Device,
    ctx: &mut Ctx,
) -> Result<Option<CutChoice>, TrainError> {
    // Only the backbone runs: the classifier is a placeholder (the weights may have none).
    let spec = NetworkSpec {
        num_classes: 1,
        ..NetworkSpec::pretrained(plan.backbone)
    };
    let folded = Network::build(spec, Some(weights), HeadInit::Random, 0, device)?.folded()?;
    // The probe trains as this run's classifier will.
    let fit = ProbeFit {
        epochs: plan.head_only_epochs(),
        lr: plan.head_lr,
        dropout: plan.dropout,
        seed: plan.seed,
    };
    let choice = choose_cut(
        &dataset.train,
        dataset.classes.len(),
        plan.backbone,
        &folded,
        pre,
        device,
        &fit,
        |done, total| {
            ctx.poll()?;
            ctx.batch_event(TrainEvent::ChoosingCut { done, total }, done >= total)
        },
    )?;
    match &choice {
        Some(choice) => {
            plan.cut_after = choice.chosen;
            plan.trainable_units = plan.trainable_units.min(plan.kept_units());
            ctx.emit(TrainEvent::CutChosen(choice.clone()))?;
        }
        None => ctx.emit(TrainEvent::Warning {
            message: format!(
                "too few images per class to cross-validate the cut: cutting after {}",
                plan.cut_after
            ),
        })?,
    }
    Ok(choice)
}

/// The plan's pretrained weights, a download's progress reported as events (a stop request
/// is honoured after the download).
fn load_weights(
    plan: &TrainPlan,
    device: &candle_core::Device,
    ctx: &mut Ctx,
) -> Result<LoadedWeights, TrainError> {
    let mut report = |done_bytes: u64, total_bytes: u64| {
        let event = TrainEvent::Downloading {
            done_bytes,
            total_bytes,
        };
        // A closed window ends the run at the next check; nothing to do here.
        let _ = ctx.batch_event(event, done_bytes == total_bytes);
    };
    let source = plan.weights_source();
    let loaded = plan
        .backbone
        .load_weights_reporting(&source, device, Some(&mut report))?;
    ctx.poll()?;
    Ok(loaded)
}

/// Caches the frozen network's features once, then trains the classifier on them. Returns the
/// validation features (for the final evaluation when nothing else trains).
fn head_only_phase(
    setup: &Setup,
    epochs: usize,
    ctx: &mut Ctx,
    tracker: &mut Tracker,
) -> Result<FeatureSet, TrainError> {
    let Setup {
        plan,
        pre,
        dataset,
        network,
        ..
    } = setup;
    let folded = network.folded()?;
    let total = dataset.train.len() + dataset.val.len();
    let caching_started = Instant::now();
    let extract = |samples, offset: usize, ctx: &mut Ctx| {
        extract_features(
            samples,
            pre,
            EVAL_BATCH,
            network.device(),
            |x| folded.features(x),
            |done, _| {
                ctx.poll()?;
                let done = offset + done;
                ctx.batch_event(TrainEvent::CachingFeatures { done, total }, done == total)
            },
        )
    };
    let (train_set, skipped_train) = extract(&dataset.train, 0, ctx)?;
    let (val_set, skipped_val) = extract(&dataset.val, dataset.train.len(), ctx)?;
    tracker.images += total;
    tracker.train_secs += caching_started.elapsed().as_secs_f64();
    let skipped: Vec<SkippedFile> = skipped_train.into_iter().chain(skipped_val).collect();
    warn_skipped(ctx, &skipped)?;
    ctx.emit(TrainEvent::PhaseStarted {
        phase: Phase::HeadOnly,
        epochs,
    })?;
    let early_stopping = plan.is_head_only();
    train_head(
        network,
        &train_set,
        &val_set,
        epochs,
        &plan.head_phase_plan(),
        early_stopping,
        setup.class_weights.as_deref(),
        ctx,
        tracker,
    )?;
    Ok(val_set)
}

/// Restores the best weights, evaluates them and builds the report.
fn finish(
    setup: Setup,
    tracker: &Tracker,
    val_features: Option<&FeatureSet>,
    started: Instant,
) -> Result<TrainOutcome, TrainError> {
    let Setup {
        plan,
        pre,
        dataset,
        network,
        case,
        pretrained,
        cut_choice,
        ..
    } = setup;
    let Some(best) = tracker.best() else {
        return Err(match tracker.stop {
            StopReason::NonFiniteLoss { epoch, batch } => {
                TrainError::DivergedAtOnce { epoch, batch }
            }
            _ => TrainError::NoEpoch,
        });
    };
    tracker.restore_best(&network)?;
    let network = Arc::new(network);
    let evaluation = if dataset.val.is_empty() {
        None
    } else {
        Some(match val_features {
            Some(features) => evaluate_features(&network, features, &dataset.classes)?,
            None => evaluate_samples(&network, &dataset.val, &dataset.classes, &pre)?,
        })
    };
    let report = TrainReport {
        case,
        plan: plan.clone(),
        classes: dataset.classes.clone(),
        epochs_run: tracker.history.len(),
        best_epoch: best.epoch,
        best_val_accuracy: best.accuracy,
        best_val_loss: best.loss,
        final_train_accuracy: tracker.history.last().map_or(0.0, |m| m.train_accuracy),
        trainable_parameters: network.trainable_parameter_count(),
        wall_secs: started.elapsed().as_secs_f64(),
        images_per_sec: tracker.images_per_sec(),
        stop_reason: tracker.stop.clone(),
        evaluation,
        cut_choice,
    };
    let model = TrainedModel {
        network,
        classes: dataset.classes.clone(),
        preprocessing: pre,
        plan,
        pretrained,
        // Absolute, so that an export from another directory finds it.
        training_folder: Some(std::fs::canonicalize(&dataset.root).unwrap_or(dataset.root.clone())),
    };
    Ok(TrainOutcome { report, model })
}
