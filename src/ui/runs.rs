//! The window's reading of trainer events: a pure function of (run, event), so that what the
//! charts and the progress bar show is tested without a window.

use super::state::train::{Progress, Run, RunStatus};
use crate::train::{TrainEvent, TrainOutcome};

/// What an event asks of the app beyond the run's own record.
#[derive(Debug)]
pub enum Effect {
    None,
    /// A warning to show.
    Notice(String),
    /// The cut was chosen from the data.
    CutChosen(Box<crate::train::cut::CutChoice>),
    /// The run ended with a model.
    Finished(Box<TrainOutcome>),
    /// The run failed (the message says why).
    Failed(String),
    Cancelled,
}

/// Applies one event of the live run to its record and to the progress bar.
pub fn apply_event(run: &mut Run, progress: &mut Progress, event: TrainEvent) -> Effect {
    match event {
        TrainEvent::Downloading {
            done_bytes,
            total_bytes,
        } => {
            run.status = RunStatus::Downloading {
                done_bytes,
                total_bytes,
            };
            progress.fraction = done_bytes as f32 / total_bytes.max(1) as f32;
        }
        TrainEvent::Loading { done, total } => run.status = RunStatus::Loading { done, total },
        TrainEvent::Started { plan, .. } => {
            progress.epochs_total = plan.total_epochs();
            run.status = RunStatus::Running;
        }
        TrainEvent::ChoosingCut { done, total } | TrainEvent::CachingFeatures { done, total } => {
            run.status = RunStatus::Caching { done, total };
            progress.fraction = done as f32 / total.max(1) as f32;
        }
        TrainEvent::PhaseStarted { .. } | TrainEvent::Resumed => run.status = RunStatus::Running,
        TrainEvent::Batch {
            epoch,
            batch,
            batches,
            loss,
            images_per_sec,
            eta_secs,
            ..
        } => {
            run.status = RunStatus::Running;
            let x = (epoch - 1) as f64 + batch as f64 / batches.max(1) as f64;
            run.batch_losses.push([x, loss]);
            *progress = Progress {
                epoch,
                batch,
                batches,
                images_per_sec,
                eta_secs,
                fraction: (x / progress.epochs_total.max(1) as f64) as f32,
                ..*progress
            };
        }
        TrainEvent::Epoch(m) => run.epochs.push(m),
        TrainEvent::Paused => run.status = RunStatus::Paused,
        TrainEvent::Warning { message } => return Effect::Notice(message),
        TrainEvent::CutChosen(choice) => return Effect::CutChosen(Box::new(choice)),
        TrainEvent::Finished(outcome) => {
            run.status = RunStatus::Finished;
            run.report = Some(outcome.report.clone());
            progress.fraction = 1.0;
            return Effect::Finished(outcome);
        }
        TrainEvent::Failed { error } => {
            run.status = RunStatus::Failed(error.clone());
            return Effect::Failed(error);
        }
        TrainEvent::Cancelled => {
            run.status = RunStatus::Cancelled;
            return Effect::Cancelled;
        }
    }
    Effect::None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{Case, EpochMetrics, Phase};

    fn started(case: Case) -> TrainEvent {
        TrainEvent::Started {
            plan: case.plan(),
            case: Some(case),
            classes: vec!["a".into(), "b".into()],
            counts: Vec::new(),
            skipped: Vec::new(),
            trainable_parameters: 10,
            device: "CPU".into(),
        }
    }

    fn batch(epoch: usize, batch: usize, loss: f64) -> TrainEvent {
        TrainEvent::Batch {
            phase: Phase::FineTune,
            epoch,
            batch,
            batches: 4,
            loss,
            images_per_sec: 12.0,
            eta_secs: 3.0,
        }
    }

    #[test]
    fn batches_become_chart_points_and_progress() {
        let mut run = Run::new("r".into(), Some(Case::LargeSimilar));
        let mut progress = Progress::default();
        apply_event(&mut run, &mut progress, started(Case::LargeSimilar));
        let plan = Case::LargeSimilar.plan();
        assert_eq!(progress.epochs_total, plan.head_epochs + plan.epochs);
        apply_event(&mut run, &mut progress, batch(2, 2, 0.7));
        assert_eq!(run.batch_losses, vec![[1.5, 0.7]]);
        assert_eq!(progress.epoch, 2);
        assert!((progress.fraction - 1.5 / progress.epochs_total as f32).abs() < 1e-6);
        assert_eq!(run.status, RunStatus::Running);
    }

    #[test]
    fn pause_epoch_warning_and_end_states() {
        let mut run = Run::new("r".into(), None);
        let mut progress = Progress::default();
        apply_event(&mut run, &mut progress, TrainEvent::Paused);
        assert_eq!(run.status, RunStatus::Paused);
        let metrics = EpochMetrics {
            phase: Phase::HeadOnly,
            epoch: 1,
            train_loss: 0.5,
            train_accuracy: 0.8,
            val_loss: None,
            val_accuracy: None,
            head_lr: 1e-3,
            backbone_lr: 0.0,
            elapsed_secs: 1.0,
        };
        apply_event(&mut run, &mut progress, TrainEvent::Epoch(metrics));
        assert_eq!(run.epochs.len(), 1);
        let warning = TrainEvent::Warning {
            message: "w".into(),
        };
        assert!(matches!(
            apply_event(&mut run, &mut progress, warning),
            Effect::Notice(m) if m == "w"
        ));
        let failed = TrainEvent::Failed {
            error: "boom".into(),
        };
        assert!(matches!(
            apply_event(&mut run, &mut progress, failed),
            Effect::Failed(_)
        ));
        assert_eq!(run.status, RunStatus::Failed("boom".into()));
        apply_event(&mut run, &mut progress, TrainEvent::Cancelled);
        assert_eq!(run.status, RunStatus::Cancelled);
    }
}
