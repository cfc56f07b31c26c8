//! The window under egui_kittest: a harness, and waiting for background work.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use transfer_studio::train::TrainPlan;
use transfer_studio::ui::{AppState, Command, RunStatus, StudioApp};

use crate::common;

pub fn harness() -> Harness<'static, StudioApp> {
    common::init();
    Harness::builder()
        .with_size(egui::vec2(1200.0, 900.0))
        .build_eframe(|cc| StudioApp::new(&cc.egui_ctx, None))
}

/// Steps frames until `done` holds (workers keep requesting repaints, so `run` would not
/// settle).
pub fn step_until(
    h: &mut Harness<'static, StudioApp>,
    what: &str,
    done: impl Fn(&AppState) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done(h.state().state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

/// A window with `plan` selected (when given) and `dir` loaded as its training data.
pub fn loaded(plan: Option<TrainPlan>, dir: &std::path::Path) -> Harness<'static, StudioApp> {
    let mut h = harness();
    if let Some(plan) = plan {
        h.state_mut().apply(Command::SetPlan(plan));
    }
    h.state_mut().apply(Command::SetTrainFolder(dir.to_owned()));
    step_until(&mut h, "the dataset and its measurement", |app| {
        app.data.dataset.is_some() && !app.guide.recommendation.is_running()
    });
    h
}

/// Trains on `dir` with the selected plan and waits for the run to end.
pub fn train_on(h: &mut Harness<'static, StudioApp>, dir: &std::path::Path, classes: usize) {
    h.state_mut().apply(Command::SetTrainFolder(dir.to_owned()));
    step_until(h, "the dataset", |app| {
        app.data
            .dataset
            .as_ref()
            .is_some_and(|d| d.classes.len() == classes)
            && !app.guide.recommendation.is_running()
    });
    let runs = h.state().state().train.runs.len();
    h.state_mut().apply(Command::StartTraining);
    step_until(h, "training", |app| {
        app.train.runs.len() == runs + 1
            && app
                .train
                .runs
                .last()
                .is_some_and(|r| matches!(r.status, RunStatus::Finished | RunStatus::Failed(_)))
    });
}
