//! Training on a worker thread: a [`TrainJob`] goes in, [`TrainEvent`]s come out over a
//! bounded channel, [`TrainCommand`]s (pause, resume, stop) go in over another.
//!
//! The parts: [`plan`] (what a run does), [`job`] (what crosses into the trainer), [`events`]
//! (what it reports), [`handle`] (starting the worker), the worker and what the run's parts
//! share (`ctx`: channels, errors), the run itself (`run`: loading, the two phases,
//! evaluation), [`tracker`] (early stopping and best weights), [`schedule`] (learning-rate
//! decay, shuffles, dropout), [`observer`] (reading a run to its end), and [`saved`] (the
//! saved-model format).
//!
//! This file only names the parts; they import one another directly.

mod adamw;
pub mod augment;
pub mod class_weights;
mod ctx;
pub mod cut;
pub mod evaluate;
pub mod events;
pub mod features;
mod fine_tune;
pub mod handle;
pub mod head;
mod head_phase;
pub mod job;
mod load;
mod loss;
pub mod metrics;
pub mod observer;
pub mod plan;
mod run;
pub mod saved;
pub mod schedule;
pub mod tracker;
mod worker;

pub use evaluate::{EvaluateError, evaluate_dataset, network_features, unknown_class};
pub use events::{EpochMetrics, Phase, StopReason, TrainEvent, TrainOutcome, TrainReport};
pub use fine_tune::{StepTimes, time_fine_tune_steps};
pub use handle::{TrainerHandle, spawn_training};
pub use head_phase::time_head_epochs;
pub use job::{
    BATCH_EVENT_INTERVAL_SECS, COMMAND_CHANNEL_CAPACITY, DataSource, EVENT_CHANNEL_CAPACITY,
    TrainCommand, TrainJob, Waker,
};
pub use metrics::{ClassMetrics, Evaluation, Misclassified};
pub use observer::{Observer, RunError, run_to_end};
pub use plan::{Case, PlanError, TrainPlan};
pub use saved::{SavedMetrics, StoreError, TrainedModel};
