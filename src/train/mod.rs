//! Training on a worker thread: a [`TrainJob`] goes in, [`TrainEvent`]s come out over a
//! bounded channel, [`TrainCommand`]s (pause, resume, stop) go in over another.
//!
//! The parts: [`plan`] (what a run does), [`events`] (what it reports), the worker and its
//! channels, the run itself (loading, the two phases, evaluation), [`tracker`] (early stopping
//! and best weights), [`schedule`] (learning-rate decay, shuffles, dropout), [`observer`]
//! (reading a run to its end), and [`saved`] (the saved-model format).

mod adamw;
pub mod augment;
pub mod cut;
pub mod evaluate;
pub mod events;
pub mod features;
mod fine_tune;
pub mod head;
mod head_phase;
pub mod metrics;
pub mod observer;
pub mod plan;
mod run;
pub mod saved;
pub mod schedule;
pub mod tracker;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::Device;
use crossbeam_channel::{Receiver, Sender, bounded};

pub use evaluate::{EvaluateError, evaluate_dataset, network_features, unknown_class};
pub use events::{EpochMetrics, Phase, StopReason, TrainEvent, TrainOutcome, TrainReport};
pub use fine_tune::time_fine_tune_steps;
pub use head_phase::time_head_epochs;
pub use metrics::{ClassMetrics, Evaluation, Misclassified};
pub use observer::{Observer, RunError, run_to_end};
pub use plan::{Case, PlanError, TrainPlan};
pub use saved::{SavedMetrics, StoreError, TrainedModel};

use crate::data::dataset::Dataset;

/// Events buffered between the worker and the reader before the worker waits.
pub const EVENT_CHANNEL_CAPACITY: usize = 256;
/// Commands buffered for the worker (it polls between batches).
pub const COMMAND_CHANNEL_CAPACITY: usize = 16;
/// Batch progress is reported at most this often (head-only epochs take milliseconds).
pub const BATCH_EVENT_INTERVAL_SECS: f64 = 0.1;

/// Where the images come from.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// Folders to load (and validate) on the worker thread.
    Folders {
        train: PathBuf,
        val: Option<PathBuf>,
    },
    /// A dataset already loaded (by the window), shared.
    Loaded(Arc<Dataset>),
}

/// A training run to start.
#[derive(Debug, Clone)]
pub struct TrainJob {
    pub data: DataSource,
    pub plan: TrainPlan,
    pub device: Device,
}

/// Commands to a running trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainCommand {
    Pause,
    Resume,
    Stop,
}

/// Called after each event is sent (the window passes its `request_repaint`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A running trainer: send it commands, read its events.
#[derive(Debug)]
pub struct TrainerHandle {
    pub commands: Sender<TrainCommand>,
    pub events: Receiver<TrainEvent>,
    thread: Option<JoinHandle<()>>,
}

impl TrainerHandle {
    pub fn send(&self, command: TrainCommand) {
        // The worker may have finished already; then there is nothing to command.
        let _ = self.commands.send(command);
    }

    /// Waits for the worker thread to end.
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a training run on a named worker thread.
pub fn spawn_training(job: TrainJob, waker: Option<Waker>) -> std::io::Result<TrainerHandle> {
    let (event_tx, event_rx) = bounded(EVENT_CHANNEL_CAPACITY);
    let (command_tx, command_rx) = bounded(COMMAND_CHANNEL_CAPACITY);
    let thread = std::thread::Builder::new()
        .name("trainer".into())
        .spawn(move || worker::run_worker(job, event_tx, command_rx, waker))?;
    Ok(TrainerHandle {
        commands: command_tx,
        events: event_rx,
        thread: Some(thread),
    })
}
