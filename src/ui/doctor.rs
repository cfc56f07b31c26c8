//! The dataset doctor in the window: the examination runs on a job thread and reports as it
//! goes (progress, the report, then one map per cut); an unchanged folder's report comes from
//! the cache at once. Fixes go through the same on-disk editing as the rest of the window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::app::StudioApp;
use super::command::DoctorCommand;
use super::jobs::{JobResult, Jobs};
use crate::doctor::{DoctorError, DoctorEvent, DoctorOptions, Stage, examine_cached};

impl StudioApp {
    pub(super) fn apply_doctor_command(&mut self, command: DoctorCommand) {
        match command {
            DoctorCommand::Examine => self.examine(),
            DoctorCommand::Stop => {
                if let Some(cancel) = &self.state.doctor.cancel {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
            DoctorCommand::ShowCut(unit) => self.state.doctor.cut = Some(unit),
            DoctorCommand::Thumbnails(paths) => {
                let (shell, doctor) = (&self.state.shell, &mut self.state.doctor);
                let new: Vec<_> = paths
                    .into_iter()
                    .filter(|p| !shell.thumbnails.contains_key(p))
                    .filter(|p| doctor.thumbnails_asked.insert(p.clone()))
                    .collect();
                if !new.is_empty() {
                    self.jobs.thumbnails(new);
                }
            }
        }
    }

    fn examine(&mut self) {
        let Some(dataset) = self.state.data.dataset.clone() else {
            return;
        };
        if self.state.doctor.is_running() {
            return;
        }
        let plan = &self.state.settings.plan;
        let options = DoctorOptions {
            backbone: plan.backbone,
            weights: plan.weights.clone(),
            image_size_px: plan.image_size_px,
            seed: plan.seed,
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let doctor = &mut self.state.doctor;
        doctor.progress = Some((Stage::Reading, 0, dataset.train.len() + dataset.val.len()));
        doctor.cancel = Some(cancel.clone());
        doctor.error = None;
        doctor.report = None;
        doctor.examined = Some((dataset.root.clone(), self.state.data.revision));
        let (waker, device) = (self.jobs.waker(), self.device.clone());
        self.jobs.run("doctor", move |tx| {
            let result = examine_cached(&dataset, &options, false, &device, |event| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(DoctorError::Cancelled);
                }
                Jobs::send(tx, JobResult::Doctor(event));
                waker();
                Ok(())
            });
            // A stop asked for is not a failure.
            let done = match result {
                Ok(_) | Err(DoctorError::Cancelled) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            Jobs::send(tx, JobResult::DoctorDone(done));
        });
    }

    pub(super) fn on_doctor(&mut self, event: DoctorEvent) {
        let doctor = &mut self.state.doctor;
        match event {
            DoctorEvent::Progress { stage, done, total } => {
                if doctor.is_running() {
                    doctor.progress = Some((stage, done, total));
                }
            }
            // The panel asks for the thumbnails it shows.
            DoctorEvent::Report(report) => doctor.report = Some(*report),
            DoctorEvent::Map(map) => {
                if let Some(report) = &mut doctor.report {
                    report.maps.push(map);
                }
            }
        }
    }

    pub(super) fn on_doctor_done(&mut self, result: Result<(), String>) {
        let doctor = &mut self.state.doctor;
        doctor.progress = None;
        doctor.cancel = None;
        doctor.error = result.err();
    }
}
