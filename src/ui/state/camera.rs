//! The camera's state in the window: the devices, the running one's preview, recording into
//! class folders with a count per class, and live prediction.

use std::collections::BTreeMap;

use crate::capture::CameraInfo;
use crate::predict::ClassProb;

/// What the Camera section (Data) and live prediction (Predict) show.
#[derive(Default)]
pub struct CameraState {
    /// The cameras found (and recorded streams given on the command line).
    pub cameras: Vec<CameraInfo>,
    /// The camera list has been read at least once.
    pub listed: bool,
    /// The id of the source running, if any.
    pub running: Option<String>,
    /// The running source's format in words, once it has started.
    pub description: Option<String>,
    pub preview: Option<egui::TextureHandle>,
    /// The class being recorded into while the button is held.
    pub recording: Option<String>,
    /// Images in each class folder of the training folder (counted on disk, then per save).
    pub counts: BTreeMap<String, usize>,
    /// Frames saved since the camera started.
    pub saved: usize,
    /// Frames not saved because the disk could not keep up.
    pub dropped: u64,
    pub frames_per_sec: f64,
    pub saved_per_sec: f64,
    pub error: Option<String>,
    /// The new class name being typed.
    pub class_draft: String,
    pub live: LiveState,
}

/// Live prediction on the camera (Predict).
#[derive(Default)]
pub struct LiveState {
    pub on: bool,
    pub top: Vec<ClassProb>,
    pub overlay: Option<egui::TextureHandle>,
    pub predictions_per_sec: f64,
    pub overlays_per_sec: f64,
    pub error: Option<String>,
}

impl std::fmt::Debug for CameraState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraState")
            .field("cameras", &self.cameras)
            .field("running", &self.running)
            .field("recording", &self.recording)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveState")
            .field("on", &self.on)
            .field("top", &self.top)
            .finish_non_exhaustive()
    }
}
