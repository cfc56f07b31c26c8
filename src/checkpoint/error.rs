//! Why a checkpoint could not be read or written.

use std::path::PathBuf;

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a PyTorch checkpoint: {0}")]
    NotACheckpoint(String),
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    #[error(
        "refusing to load: the checkpoint's pickle references `{0}`, which is not one of the \
         torch tensor/storage constructors this reader accepts (nothing from the file was executed)"
    )]
    ForbiddenGlobal(String),
    #[error("the checkpoint holds no tensors")]
    NoTensors,
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}
