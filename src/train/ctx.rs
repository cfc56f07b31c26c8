//! What every part of a run shares: the worker's side of the channels (events out, commands
//! in, pause and stop) and why a run can end without a model.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::events::TrainEvent;
use super::job::{BATCH_EVENT_INTERVAL_SECS, TrainCommand, Waker};
use super::plan::PlanError;
use crate::data::dataset::{DatasetError, SkippedFile};
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
    pub(super) fn new(
        events: Sender<TrainEvent>,
        commands: Receiver<TrainCommand>,
        waker: Option<Waker>,
    ) -> Self {
        Self {
            events,
            commands,
            waker,
            last_batch_event: Instant::now() - Duration::from_secs(1),
        }
    }

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

/// One warning naming (up to five of) the images that could not be read any more.
pub(super) fn warn_skipped(ctx: &Ctx, skipped: &[SkippedFile]) -> Result<(), TrainError> {
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
