//! The camera's running parts (threads and rate meters), owned by the app; [`super::camera`]
//! drives them.

use crate::capture::CaptureSession;
use crate::capture::live::LivePredictor;
use crate::capture::slot::RateMeter;

/// The camera's running parts, owned by the app.
#[derive(Debug, Default)]
pub struct CameraRuntime {
    pub(super) session: Option<CaptureSession>,
    pub(super) live: Option<LivePredictor>,
    pub(super) frames: RateMeter,
    pub(super) saves: RateMeter,
    pub(super) predictions: RateMeter,
    pub(super) overlays: RateMeter,
    /// Recorded streams named on the command line, listed with the cameras.
    pub(super) recordings: Vec<crate::capture::CameraInfo>,
}
