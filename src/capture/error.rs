//! Why the camera could not be used.

use std::path::PathBuf;

/// Why the camera could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("the camera stopped: {0}")]
    Device(String),
    #[error("a frame could not be read: {0}")]
    BadFrame(String),
    #[error("{0}")]
    Unsupported(String),
}
