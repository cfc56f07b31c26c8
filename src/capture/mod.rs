//! The camera: frames from a device (Linux V4L2) or a recorded stream, decoded from MJPEG or
//! YUYV, shown, recorded into a class folder, and classified live.
//!
//! Threads: `camera` reads and decodes ([`session`]), `frame-writer` saves ([`writer`]),
//! `live-predict` classifies ([`live`]). Frames pass through one-place mailboxes
//! ([`slot::LatestSlot`]), so a slow reader drops frames instead of falling behind.

mod error;
mod jpeg_tables;

pub mod frame;
pub mod live;
pub mod session;
pub mod slot;
pub mod source;
#[cfg(target_os = "linux")]
pub mod v4l2;
pub mod writer;

use std::path::Path;

pub use error::CaptureError;

pub use frame::{PixelLayout, RawFrame};
pub use session::{CaptureEvent, CaptureSession, Frame};
pub use source::{CameraInfo, FrameSource, RecordedStream};

/// Frames per second at which a recorded `.mjpeg` file is played.
pub const RECORDED_FPS: f64 = 30.0;

/// The cameras this machine has (empty where there are none, or no camera support).
pub fn list_cameras() -> Vec<CameraInfo> {
    #[cfg(target_os = "linux")]
    {
        v4l2::list_cameras()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// Why there is no camera to pick, in one line.
pub fn no_camera_reason() -> &'static str {
    if cfg!(target_os = "linux") {
        "No camera found (no video capture device under /dev); the rest of the app works without one."
    } else {
        "Camera capture is built for Linux (V4L2) in this version; the rest of the app works without it."
    }
}

/// Opens a camera by its id: a device path, or a recorded `.mjpeg` file played in a loop.
pub fn open_source(id: &str) -> Result<Box<dyn FrameSource>, CaptureError> {
    let path = Path::new(id);
    if is_recording(path) {
        return Ok(Box::new(RecordedStream::open_mjpeg_file(
            path,
            RECORDED_FPS,
        )?));
    }
    #[cfg(target_os = "linux")]
    {
        Ok(Box::new(v4l2::V4l2Camera::open(path)?))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(CaptureError::Unsupported(no_camera_reason().to_owned()))
    }
}

/// A recorded stream rather than a device: a `.mjpeg`/`.mjpg` file.
pub fn is_recording(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("mjpeg") || e.eq_ignore_ascii_case("mjpg"))
}

/// The entry for a recorded file in the camera picker.
pub fn recording_info(path: &Path) -> CameraInfo {
    CameraInfo {
        id: path.display().to_string(),
        name: format!(
            "recorded: {}",
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            )
        ),
    }
}
