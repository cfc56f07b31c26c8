//! Early stopping and the best weights: which epoch is best so far (validation accuracy, ties
//! to the lower loss), how long since, and a copy of the weights it had.

use candle_core::Tensor;

use super::events::{EpochMetrics, StopReason};
use crate::model::Network;

/// The best epoch's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BestScore {
    pub epoch: usize,
    pub accuracy: Option<f64>,
    pub loss: Option<f64>,
}

/// Decides which epoch is best and when to stop: no network needed.
#[derive(Debug, Clone, Default)]
pub struct EarlyStopping {
    best: Option<BestScore>,
    epochs_since_best: usize,
}

impl EarlyStopping {
    /// Records an epoch; returns whether it is the best so far. Without validation scores
    /// the latest epoch is the best we know.
    pub fn observe(&mut self, epoch: usize, accuracy: Option<f64>, loss: Option<f64>) -> bool {
        let better = match (&self.best, accuracy, loss) {
            (None, _, _) => true,
            (Some(best), Some(acc), Some(loss)) => {
                let best_acc = best.accuracy.unwrap_or(-1.0);
                acc > best_acc || (acc == best_acc && loss < best.loss.unwrap_or(f64::INFINITY))
            }
            _ => true,
        };
        if better {
            self.best = Some(BestScore {
                epoch,
                accuracy,
                loss,
            });
            self.epochs_since_best = 0;
        } else {
            self.epochs_since_best += 1;
        }
        better
    }

    /// Whether `patience` epochs have passed without a better one (0: never).
    pub fn should_stop(&self, patience: usize) -> bool {
        patience > 0 && self.epochs_since_best >= patience
    }

    pub fn best(&self) -> Option<BestScore> {
        self.best
    }

    /// A new phase starts: its epochs get the full patience (the best so far stays best).
    pub fn restart_patience(&mut self) {
        self.epochs_since_best = 0;
    }
}

/// A run's progress across phases: epochs, history, the best weights, why it stopped, and
/// the images and seconds spent in training steps (for the throughput figure).
#[derive(Debug)]
pub struct Tracker {
    early: EarlyStopping,
    best_values: Vec<Tensor>,
    pub epoch: usize,
    pub history: Vec<EpochMetrics>,
    pub stop: StopReason,
    pub images: usize,
    pub train_secs: f64,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            early: EarlyStopping::default(),
            best_values: Vec::new(),
            epoch: 0,
            history: Vec::new(),
            stop: StopReason::Completed,
            images: 0,
            train_secs: 0.0,
        }
    }
}

impl Tracker {
    /// Fine-tuning starts: it gets the full patience, whatever the classifier-only epochs
    /// before it did.
    pub fn start_phase(&mut self) {
        self.early.restart_patience();
    }

    /// Starts the next epoch and returns its number (from 1, across phases).
    pub fn next_epoch(&mut self) -> usize {
        self.epoch += 1;
        self.epoch
    }

    /// Records an epoch; keeps a copy of the weights if it is the best so far. Returns
    /// whether training should stop early (only counted when `early_stopping`).
    pub fn end_epoch(
        &mut self,
        network: &Network,
        metrics: EpochMetrics,
        patience: usize,
        early_stopping: bool,
    ) -> candle_core::Result<bool> {
        if self
            .early
            .observe(metrics.epoch, metrics.val_accuracy, metrics.val_loss)
        {
            self.best_values = network
                .state_vars()
                .iter()
                .map(|v| v.as_tensor().copy())
                .collect::<candle_core::Result<_>>()?;
        }
        self.history.push(metrics);
        if early_stopping && self.early.should_stop(patience) {
            self.stop = StopReason::EarlyStopped { epoch: self.epoch };
            return Ok(true);
        }
        Ok(false)
    }

    /// Puts the best epoch's weights back (nothing before the first epoch ends).
    pub fn restore_best(&self, network: &Network) -> candle_core::Result<()> {
        if self.early.best().is_some() {
            for (var, value) in network.state_vars().iter().zip(&self.best_values) {
                var.set(value)?;
            }
        }
        Ok(())
    }

    pub fn best(&self) -> Option<BestScore> {
        self.early.best()
    }

    pub fn stopped(&self) -> bool {
        !self.stop.is_completed()
    }

    /// Records a non-finite loss: the run stops, keeping the best weights before it.
    pub fn diverged(&mut self, epoch: usize, batch: usize) {
        self.stop = StopReason::NonFiniteLoss { epoch, batch };
    }

    /// Mean training throughput so far.
    pub fn images_per_sec(&self) -> f64 {
        self.images as f64 / self.train_secs.max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_epoch_is_the_most_accurate_with_ties_to_the_lower_loss() {
        let mut e = EarlyStopping::default();
        assert!(e.observe(1, Some(0.5), Some(1.0)));
        assert!(e.observe(2, Some(0.6), Some(1.2)));
        assert!(!e.observe(3, Some(0.6), Some(1.3)));
        assert!(e.observe(4, Some(0.6), Some(1.1)));
        assert!(!e.observe(5, Some(0.4), Some(0.1)));
        assert_eq!(e.best().map(|b| b.epoch), Some(4));
    }

    #[test]
    fn patience_counts_epochs_without_improvement() {
        let mut e = EarlyStopping::default();
        e.observe(1, Some(0.9), Some(0.1));
        e.observe(2, Some(0.8), Some(0.2));
        assert!(!e.should_stop(2));
        e.observe(3, Some(0.8), Some(0.2));
        assert!(e.should_stop(2));
        assert!(!e.should_stop(0), "patience 0 never stops");
        e.observe(4, Some(0.95), Some(0.3));
        assert!(!e.should_stop(2));
    }

    #[test]
    fn a_new_phase_gets_the_full_patience_and_keeps_the_best() {
        let mut e = EarlyStopping::default();
        e.observe(1, Some(0.9), Some(0.1));
        for epoch in 2..=4 {
            e.observe(epoch, Some(0.8), Some(0.2));
        }
        assert!(e.should_stop(3));
        e.restart_patience();
        assert!(!e.should_stop(3));
        e.observe(5, Some(0.85), Some(0.2));
        assert!(!e.should_stop(3));
        assert_eq!(e.best().map(|b| b.epoch), Some(1));
    }

    #[test]
    fn without_validation_the_latest_epoch_is_best() {
        let mut e = EarlyStopping::default();
        for epoch in 1..=3 {
            assert!(e.observe(epoch, None, None));
        }
        assert_eq!(e.best().map(|b| b.epoch), Some(3));
        assert!(!e.should_stop(1));
    }
}
