//! What crosses into the trainer: the job, its commands, and the channels' sizes.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;

use super::plan::TrainPlan;
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
