//! The worker thread's side: its channels (events out, commands in), pause and stop, and the
//! one event that ends every run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::plan::{PlanError, TrainPlan};
use super::{BATCH_EVENT_INTERVAL_SECS, TrainCommand, TrainEvent, TrainJob, Waker};
use crate::data::dataset::{Dataset, DatasetError, LoadOptions, LoadProgress, load_dataset};
use crate::model::ModelError;

/// Why a run ended without a model.
#[derive(Debug, thiserror::Error)]
pub(super) enum TrainError {
    #[error("stopped")]
    Cancelled,
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{} has no training images", .0.display())]
    NoTrainingImages(PathBuf),
    #[error(
        "the loss became NaN or infinite at epoch {epoch}, batch {batch}, before any epoch \
         completed: try a lower learning rate"
    )]
    DivergedAtOnce { epoch: usize, batch: usize },
    #[error("no epoch completed")]
    NoEpoch,
    #[error("cannot start the loader thread: {0}")]
    LoaderThread(std::io::Error),
    #[error("the dataset loader crashed")]
    LoaderCrashed,
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Model(ModelError::Candle(e))
    }
}

/// The worker's side of the channels.
pub(super) struct Ctx {
    events: Sender<TrainEvent>,
    commands: Receiver<TrainCommand>,
    waker: Option<Waker>,
    last_batch_event: Instant,
}

impl Ctx {
    pub(super) fn emit(&self, event: TrainEvent) -> Result<(), TrainError> {
        // The reader is gone (window closed): nobody wants the result any more.
        self.events.send(event).map_err(|_| TrainError::Cancelled)?;
        if let Some(wake) = &self.waker {
            wake();
        }
        Ok(())
    }

    /// Handles pending commands: returns `Cancelled` on stop; blocks while paused.
    pub(super) fn poll(&mut self) -> Result<(), TrainError> {
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
    pub(super) fn batch_event(&mut self, event: TrainEvent, last: bool) -> Result<(), TrainError> {
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
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        super::run::run(job, &mut ctx)
    }));
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

/// Loads the dataset on a thread of its own, reporting progress and answering commands.
pub(super) fn load_with_progress(
    train: &Path,
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
        .map_err(TrainError::LoaderThread)?;
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
    let dataset = loader
        .join()
        .map_err(|_| TrainError::LoaderCrashed)?
        .map_err(TrainError::from)?;
    // The final count, also when loading took less than one poll.
    ctx.emit(TrainEvent::Loading {
        done: progress.done.load(Ordering::Relaxed),
        total: progress.total.load(Ordering::Relaxed),
    })?;
    Ok(dataset)
}
