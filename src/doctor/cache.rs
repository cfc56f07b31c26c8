//! Reports kept on disk until the folder changes: the key is a digest of the options and of
//! every image's path, class, side, size and modification time, so an added, removed, moved or
//! edited file (or other options) gives a new key. Stored as JSON under the user's cache
//! folder, written atomically; an unreadable entry is treated as missing.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::types::{DoctorOptions, sides};
use crate::data::dataset::Dataset;

/// Where reports are kept: `$XDG_CACHE_HOME/transfer-studio/doctor` (or `~/.cache/…`).
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("transfer-studio").join("doctor"))
}

/// The key of `dataset` examined with `options` (reads each file's metadata).
pub(super) fn fingerprint(dataset: &Dataset, options: &DoctorOptions) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(options).unwrap_or_default());
    hasher.update(serde_json::to_vec(&dataset.classes).unwrap_or_default());
    for (sample, side) in sides(dataset) {
        let meta = std::fs::metadata(&sample.path).ok();
        let modified_ns = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let line = format!(
            "{}\0{}\0{:?}\0{}\0{modified_ns}\n",
            sample.path.display(),
            sample.label,
            side,
            meta.map_or(0, |m| m.len()),
        );
        hasher.update(line.as_bytes());
    }
    format!("{:x}", hasher.finalize())
}

/// What is stored under `key`, when it can be read.
pub(super) fn load<T: serde::de::DeserializeOwned>(key: &str) -> Option<T> {
    let bytes = std::fs::read(cache_dir()?.join(format!("{key}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Stores `value` under `key` (best effort: a cache that cannot be written only costs a later
/// examination).
pub(super) fn store<T: serde::Serialize>(key: &str, value: &T) {
    let Some(dir) = cache_dir() else {
        return;
    };
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    if let Ok(bytes) = serde_json::to_vec(value) {
        let _ = crate::fsutil::write_atomic(&dir.join(format!("{key}.json")), &bytes);
    }
}
