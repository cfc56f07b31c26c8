//! The worker thread: runs the job and sends the one event that ends every run, whatever
//! happened (a panic included).

use crossbeam_channel::{Receiver, Sender};

use super::ctx::{Ctx, TrainError};
use super::events::TrainEvent;
use super::job::{TrainCommand, TrainJob, Waker};

pub(super) fn run_worker(
    job: TrainJob,
    events: Sender<TrainEvent>,
    commands: Receiver<TrainCommand>,
    waker: Option<Waker>,
) {
    let mut ctx = Ctx::new(events, commands, waker);
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
