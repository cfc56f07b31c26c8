//! The training the window runs, on a thread of its own: one plan, or compare-all-four (the
//! same [`compare_all`] the CLI uses). Its events reach the window over a bounded channel,
//! tagged with the preset they belong to; commands go the other way.

use std::sync::Arc;

use candle_core::Device;
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::data::dataset::Dataset;
use crate::guide::compare::compare_all;
use crate::train::{
    COMMAND_CHANNEL_CAPACITY, Case, EVENT_CHANNEL_CAPACITY, TrainCommand, TrainEvent, TrainJob,
    TrainPlan, Waker, run_to_end, spawn_training,
};

/// What the session thread reports.
#[derive(Debug)]
pub enum SessionEvent {
    /// An event of the run of `case` (`None`: a plan that is no preset).
    Train {
        case: Option<Case>,
        event: Box<TrainEvent>,
    },
    /// Nothing more will come.
    Ended,
}

/// A running session: send it commands, drain its events.
#[derive(Debug)]
pub struct Session {
    commands: Sender<TrainCommand>,
    events: Receiver<SessionEvent>,
}

impl Session {
    /// Trains one job.
    pub fn single(job: TrainJob, waker: Waker) -> std::io::Result<Self> {
        let case = Case::matching(&job.plan);
        Self::spawn(waker, move |control, relay| {
            let handle = match spawn_training(job, None) {
                Ok(handle) => handle,
                Err(e) => {
                    relay(case, &failed(format!("cannot start the trainer: {e}")));
                    return;
                }
            };
            // The result arrives as the last event; the relay has shown it.
            let _ = run_to_end(handle, &mut |e: &TrainEvent| relay(case, e), Some(control));
        })
    }

    /// Trains the four presets in turn on `dataset`, each as `plan_of` says.
    pub fn compare(
        dataset: Arc<Dataset>,
        device: Device,
        plan_of: impl Fn(Case) -> TrainPlan + Send + 'static,
        waker: Waker,
    ) -> std::io::Result<Self> {
        Self::spawn(waker, move |control, relay| {
            let result = compare_all(
                dataset,
                None,
                &device,
                None,
                plan_of,
                |case, e| relay(Some(case), e),
                Some(control),
            );
            // A failure or a stop was already relayed as the run's last event.
            let _ = result;
        })
    }

    fn spawn(
        waker: Waker,
        work: impl FnOnce(&Receiver<TrainCommand>, &dyn Fn(Option<Case>, &TrainEvent)) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (command_tx, command_rx) = bounded(COMMAND_CHANNEL_CAPACITY);
        let (event_tx, event_rx) = bounded(EVENT_CHANNEL_CAPACITY);
        std::thread::Builder::new()
            .name("training-session".into())
            .spawn(move || {
                let relay = |case: Option<Case>, event: &TrainEvent| {
                    let event = Box::new(event.clone());
                    // The window is gone if nobody receives; the stop follows from that.
                    let _ = event_tx.send(SessionEvent::Train { case, event });
                    waker();
                };
                work(&command_rx, &relay);
                let _ = event_tx.send(SessionEvent::Ended);
                waker();
            })?;
        Ok(Self {
            commands: command_tx,
            events: event_rx,
        })
    }

    pub fn send(&self, command: TrainCommand) {
        // The session may have ended already; then there is nothing to command.
        let _ = self.commands.send(command);
    }

    /// The events that have arrived, without waiting.
    pub fn drain(&self) -> Vec<SessionEvent> {
        self.events.try_iter().collect()
    }
}

fn failed(error: String) -> TrainEvent {
    TrainEvent::Failed { error }
}
