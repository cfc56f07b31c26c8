//! Starting a run on its worker thread, and the handle that talks to it.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::events::TrainEvent;
use super::job::{COMMAND_CHANNEL_CAPACITY, EVENT_CHANNEL_CAPACITY, TrainCommand, TrainJob, Waker};
use super::worker;

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
