//! The camera in the window: a capture session (its own threads) whose newest frame becomes the
//! preview texture, recording into the class folder whose button is held, and a live predictor
//! on the same frames. Nothing here waits: frames, saves and answers are drained each frame.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::app::StudioApp;
use super::command::{CameraCommand, Command};
use super::jobs::JobResult;
use super::state::shell::Topic;
use crate::capture::live::LivePredictor;
use crate::capture::writer::Written;
use crate::capture::{CaptureEvent, CaptureSession, list_cameras, open_source};
use crate::data::dataset::scan_folder;

impl StudioApp {
    pub(super) fn apply_camera_command(&mut self, command: CameraCommand) {
        match command {
            CameraCommand::List => self.list_cameras(),
            CameraCommand::Start(id) => self.start_camera(id),
            CameraCommand::Stop => self.stop_camera(),
            CameraCommand::Record(class) => self.record(class),
            CameraCommand::SetRecordFps(fps) => {
                self.state.settings.record_fps = fps.clamp(1, 30);
                if let Some(s) = &self.camera.session {
                    s.set_record_fps(self.state.settings.record_fps);
                }
            }
            CameraCommand::SetClassDraft(text) => self.state.camera.class_draft = text,
            CameraCommand::NewClass(name) => self.new_camera_class(name),
            CameraCommand::Live(on) => {
                self.state.camera.live.on = on;
                if on
                    && self.camera.session.is_none()
                    && let Some(id) = self.state.settings.camera.clone()
                {
                    self.start_camera(id);
                }
                self.restart_live();
            }
        }
    }

    /// Starts a camera by id; a recorded `.mjpeg` file joins the camera list first.
    pub fn open_camera(&mut self, source: &str) {
        let path = Path::new(source);
        if crate::capture::is_recording(path) {
            let info = crate::capture::recording_info(path);
            if !self.camera.recordings.contains(&info) {
                self.camera.recordings.push(info);
            }
        }
        self.list_cameras();
        self.start_camera(source.to_owned());
    }

    fn list_cameras(&mut self) {
        let mut cameras = self.camera.recordings.clone();
        cameras.extend(list_cameras());
        self.state.camera.cameras = cameras;
        self.state.camera.listed = true;
        self.count_class_images();
    }

    fn start_camera(&mut self, id: String) {
        self.stop_camera();
        let waker = self.waker.clone();
        let opener = id.clone();
        match CaptureSession::start(move || open_source(&opener), move || waker()) {
            Ok(session) => {
                session.set_record_fps(self.state.settings.record_fps);
                self.camera.session = Some(session);
                let camera = &mut self.state.camera;
                camera.running = Some(id.clone());
                camera.error = None;
                camera.saved = 0;
                camera.dropped = 0;
                self.state.settings.camera = Some(id);
                self.restart_live();
            }
            Err(e) => self.state.camera.error = Some(e.to_string()),
        }
    }

    fn stop_camera(&mut self) {
        self.camera.live = None;
        if let Some(s) = self.camera.session.take() {
            s.stop();
        }
        let camera = &mut self.state.camera;
        camera.running = None;
        camera.description = None;
        camera.preview = None;
        camera.frames_per_sec = 0.0;
        camera.live.top.clear();
        camera.live.overlay = None;
        if camera.recording.take().is_some() {
            self.after_recording();
        }
    }

    fn record(&mut self, class: Option<String>) {
        let Some(session) = &self.camera.session else {
            return;
        };
        let dir = match (&class, &self.state.settings.train_dir) {
            (Some(c), Some(root)) => Some(root.join(c)),
            _ => None,
        };
        session.record_into(dir);
        let was = std::mem::replace(&mut self.state.camera.recording, class);
        if was.is_some() && self.state.camera.recording.is_none() {
            self.after_recording();
        }
    }

    /// The folder changed on disk: the counts are read again and a loaded dataset reloads.
    fn after_recording(&mut self) {
        self.count_class_images();
        if self.state.data.dataset.is_some() || self.state.data.error.is_some() {
            self.apply(Command::LoadDataset);
        }
    }

    /// (Re)starts live prediction on the running camera with the model in use.
    pub(super) fn restart_live(&mut self) {
        self.camera.live = None;
        let live = &self.state.camera.live;
        let (Some(session), Some(predictor), true) =
            (&self.camera.session, self.active_predictor(), live.on)
        else {
            return;
        };
        let waker = self.waker.clone();
        self.camera.live = Some(LivePredictor::start(
            predictor,
            session.live.clone(),
            self.state.settings.show_grad_cam,
            move || waker(),
        ));
    }

    /// Grad-CAM on or off for the live view too.
    pub(super) fn live_explain(&mut self, on: bool) {
        if let Some(live) = &self.camera.live {
            live.set_explain(on);
        }
        if !on {
            self.state.camera.live.overlay = None;
        }
    }

    fn new_camera_class(&mut self, name: String) {
        let name = name.trim().to_owned();
        if self.state.data.dataset.is_some() {
            // The loaded dataset's own edit: undo and the dataset follow.
            self.apply(Command::NewClass(name));
            self.state.camera.class_draft.clear();
            return;
        }
        let Some(root) = self.state.settings.train_dir.clone() else {
            self.state.camera.error = Some("choose a training folder first".into());
            return;
        };
        self.state.camera.class_draft.clear();
        self.jobs.run("camera-class", move |tx| {
            let folders = crate::data::edit::Folders {
                train: &root,
                val: None,
            };
            let result = crate::data::edit::new_class(folders, &name)
                .map(|_| ())
                .map_err(|e| e.to_string());
            super::jobs::Jobs::send(tx, JobResult::CameraClassMade(result));
            super::jobs::Jobs::send(tx, JobResult::CameraCounts(count_images(&root)));
        });
    }

    pub(super) fn count_class_images(&mut self) {
        if let Some(root) = self.state.settings.train_dir.clone() {
            self.jobs.run("camera-counts", move |tx| {
                super::jobs::Jobs::send(tx, JobResult::CameraCounts(count_images(&root)));
            });
        }
    }

    pub(super) fn on_camera_job(&mut self, result: JobResult) {
        match result {
            JobResult::CameraCounts(Ok(counts)) => self.state.camera.counts = counts,
            JobResult::CameraCounts(Err(e)) | JobResult::CameraClassMade(Err(e)) => {
                self.state.shell.error(Topic::Data, e);
            }
            _ => {}
        }
    }

    /// Takes the newest frame, the session's events and the newest live answer. Every frame.
    pub(super) fn drain_camera(&mut self, ctx: &egui::Context) {
        let Some(session) = &self.camera.session else {
            return;
        };
        let now = Instant::now();
        let events: Vec<CaptureEvent> = session.events.try_iter().collect();
        if let Some(frame) = session.preview.take() {
            self.camera.frames.tick(now);
            let image = super::jobs::to_color_image(&frame.image);
            set_texture(ctx, &mut self.state.camera.preview, "camera-preview", image);
        }
        let answer = self.camera.live.as_ref().and_then(|l| l.answers.take());
        for event in events {
            self.on_capture_event(event, now);
        }
        if let Some(answer) = answer {
            self.camera.predictions.tick(now);
            let live = &mut self.state.camera.live;
            live.top = answer.top;
            live.error = answer.error;
            if let Some(overlay) = answer.overlay {
                self.camera.overlays.tick(now);
                let image = super::jobs::to_color_image(&overlay);
                set_texture(ctx, &mut live.overlay, "camera-overlay", image);
            }
        }
        let camera = &mut self.state.camera;
        camera.frames_per_sec = self.camera.frames.per_sec();
        camera.saved_per_sec = self.camera.saves.per_sec();
        camera.live.predictions_per_sec = self.camera.predictions.per_sec();
        camera.live.overlays_per_sec = self.camera.overlays.per_sec();
    }

    fn on_capture_event(&mut self, event: CaptureEvent, now: Instant) {
        let camera = &mut self.state.camera;
        match event {
            CaptureEvent::Started(description) => camera.description = Some(description),
            CaptureEvent::Written(Written::Saved(path)) => {
                self.camera.saves.tick(now);
                camera.saved += 1;
                if let Some(class) = class_of(&path) {
                    *camera.counts.entry(class).or_default() += 1;
                }
            }
            CaptureEvent::Written(Written::Failed { message, .. }) => {
                // One line, not one per frame: recording stops.
                if camera.error.as_deref() != Some(message.as_str()) {
                    camera.error = Some(message);
                }
                self.record(None);
            }
            CaptureEvent::Dropped(n) => camera.dropped = n,
            CaptureEvent::BadFrame(e) => camera.error = Some(e),
            CaptureEvent::Ended(reason) => {
                let reason = reason.unwrap_or_else(|| "the stream ended".into());
                self.stop_camera();
                self.state.camera.error = Some(reason);
            }
        }
    }
}

fn class_of(path: &Path) -> Option<String> {
    Some(path.parent()?.file_name()?.to_string_lossy().into_owned())
}

fn set_texture(
    ctx: &egui::Context,
    slot: &mut Option<egui::TextureHandle>,
    name: &str,
    image: egui::ColorImage,
) {
    match slot {
        Some(texture) => texture.set(image, egui::TextureOptions::LINEAR),
        None => *slot = Some(ctx.load_texture(name, image, egui::TextureOptions::LINEAR)),
    }
}

/// Image files in each class folder of `root`, counted as loading the dataset counts them.
pub fn count_images(root: &Path) -> Result<BTreeMap<String, usize>, String> {
    let scan = scan_folder(root).map_err(|e| e.to_string())?;
    Ok(scan
        .classes
        .into_iter()
        .map(|(class, files)| (class, files.len()))
        .collect())
}
