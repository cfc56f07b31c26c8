//! Reading a run to its end: every event goes to an [`Observer`] (a terminal bar, JSON lines,
//! compare-all-four's relay), the last one decides the result. The CLI and compare-all-four
//! use [`run_to_end`]; the window drains the same events without blocking.

use crossbeam_channel::{Receiver, select};

use super::events::{TrainEvent, TrainOutcome};
use super::handle::TrainerHandle;
use super::job::TrainCommand;

/// Renders a run's events as they come.
pub trait Observer {
    fn on_event(&mut self, event: &TrainEvent);
}

impl<F: FnMut(&TrainEvent)> Observer for F {
    fn on_event(&mut self, event: &TrainEvent) {
        self(event);
    }
}

/// How a run ended without a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Failed(String),
    #[error("stopped")]
    Cancelled,
    #[error("the trainer ended without a result")]
    NoResult,
}

/// Shows every event of the run to `observer` and returns its outcome. Commands arriving on
/// `control` (pause, resume, stop) are passed on to the worker meanwhile.
pub fn run_to_end(
    handle: TrainerHandle,
    observer: &mut impl Observer,
    control: Option<&Receiver<TrainCommand>>,
) -> Result<TrainOutcome, RunError> {
    let mut control = control.cloned().unwrap_or_else(crossbeam_channel::never);
    let mut result = Err(RunError::NoResult);
    loop {
        select! {
            recv(handle.events) -> event => {
                let Ok(event) = event else { break };
                observer.on_event(&event);
                match event {
                    TrainEvent::Finished(outcome) => result = Ok(*outcome),
                    TrainEvent::Failed { error } => result = Err(RunError::Failed(error)),
                    TrainEvent::Cancelled => result = Err(RunError::Cancelled),
                    _ => {}
                }
            }
            recv(control) -> command => match command {
                Ok(command) => handle.send(command),
                // Whoever controlled the run is gone: stop it, once.
                Err(_) => {
                    handle.send(TrainCommand::Stop);
                    control = crossbeam_channel::never();
                }
            },
        }
    }
    handle.join();
    result
}
