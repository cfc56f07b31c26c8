//! Loading the training folder inside a run: on a thread of its own, with progress events, and
//! stopped by the run's commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ctx::{Ctx, TrainError};
use super::events::TrainEvent;
use super::plan::TrainPlan;
use crate::data::dataset::{Dataset, LoadProgress, load_dataset};

/// Loads the dataset on a thread of its own, reporting progress and answering commands.
pub(super) fn load_with_progress(
    train: &Path,
    val: Option<PathBuf>,
    plan: &TrainPlan,
    short_side_px: u32,
    ctx: &mut Ctx,
) -> Result<Dataset, TrainError> {
    let options = plan.load_options(val, short_side_px);
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
