//! Weights from the Hugging Face hub: `model.safetensors` and `config.json` of a model
//! repository, in the standard cache shared with Python's `huggingface_hub`
//! (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`; `HF_ENDPOINT` picks the server).
//!
//! A file already in the cache is used without any network call. A missing one is downloaded
//! by `hf-hub` into a temporary file and renamed into place (so a killed download never leaves
//! a file that passes as complete); the bytes are checked against the blob's sha256 name.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{HubError, ModelError};
use crate::data::preprocess::Preprocessing;

/// The weights file a repository holds.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// timm's description of the weights (preprocessing).
pub const CONFIG_FILE: &str = "config.json";

/// Where the hub's files are kept and fetched from.
#[derive(Debug, Clone)]
pub struct Hub {
    cache_dir: PathBuf,
    endpoint: Option<String>,
}

/// The files of one repository, on disk.
#[derive(Debug, Clone)]
pub struct HubFiles {
    pub weights: PathBuf,
    /// `config.json`, when there is one (read after the weights are checked).
    pub config: Option<PathBuf>,
    /// The sha256 the weights must have (the blob's name, for files stored with Git LFS).
    pub expected_sha256: Option<String>,
}

/// The share of the resized image a centre crop may keep (timm's `crop_pct`).
const CROP_PCT: std::ops::RangeInclusive<f64> = 0.25..=1.0;

/// The part of timm's `config.json` that says how images were preprocessed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HubConfig {
    #[serde(default)]
    pub input_size: Option<Vec<u32>>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    #[serde(default)]
    pub crop_pct: Option<f64>,
    #[serde(default)]
    pub interpolation: Option<String>,
}

#[derive(Deserialize)]
struct ConfigFile {
    pretrained_cfg: Option<HubConfig>,
}

impl HubConfig {
    /// Parses `config.json`; `None` when it names no preprocessing. Values a network cannot
    /// use (a zero standard deviation, a crop of 10⁻³⁰⁰) are errors, not surprises later.
    pub fn parse(text: &str) -> Result<Option<HubConfig>, String> {
        let config = serde_json::from_str::<ConfigFile>(text)
            .map_err(|e| e.to_string())?
            .pretrained_cfg;
        if let Some(c) = &config {
            if c.crop_pct.is_some_and(|p| !CROP_PCT.contains(&p)) {
                return Err("crop_pct must be between 0.25 and 1".into());
            }
            c.preprocessing(crate::data::preprocess::PRETRAINED_IMAGE_SIZE_PX)
                .validate()?;
        }
        Ok(config)
    }

    /// Preprocessing for crops of `image_size_px`: timm's resize side is
    /// `floor(size / crop_pct)`, then the centre crop.
    pub fn preprocessing(&self, image_size_px: u32) -> Preprocessing {
        let crop_pct = self
            .crop_pct
            .filter(|c| CROP_PCT.contains(c))
            .unwrap_or(0.875);
        let size = image_size_px.max(1);
        Preprocessing {
            image_size_px: size,
            resize_px: ((f64::from(size) / crop_pct).floor() as u32).max(size),
            mean: self.mean,
            std: self.std,
        }
    }
}

impl Hub {
    /// The cache and server the environment names (`HF_HOME`, `HF_ENDPOINT`).
    pub fn from_env() -> Result<Hub, ModelError> {
        let cache_dir = match std::env::var_os("HF_HOME") {
            Some(home) => PathBuf::from(home).join("hub"),
            None => std::env::home_dir()
                .map(|h| h.join(".cache").join("huggingface").join("hub"))
                .ok_or_else(|| {
                    ModelError::Hub(Box::new(HubError {
                        repo: String::new(),
                        file: WEIGHTS_FILE.into(),
                        cache: PathBuf::from("$HF_HOME/hub"),
                        reason: "neither HF_HOME nor a home directory is set".into(),
                    }))
                })?,
        };
        Ok(Hub {
            cache_dir,
            endpoint: std::env::var("HF_ENDPOINT").ok(),
        })
    }

    /// A hub over an explicit cache directory (tests pre-fill one).
    pub fn with_cache(cache_dir: PathBuf, endpoint: Option<String>) -> Hub {
        Hub {
            cache_dir,
            endpoint,
        }
    }

    fn cached(&self, repo: &str, file: &str) -> Option<PathBuf> {
        hf_hub::Cache::new(self.cache_dir.clone())
            .model(repo.to_owned())
            .get(file)
    }

    /// Downloads `file`; progress goes to `progress` when given, else to a terminal bar.
    fn download(
        &self,
        repo: &str,
        file: &str,
        progress: Option<&mut DownloadProgress<'_>>,
    ) -> Result<PathBuf, ModelError> {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let cache = hf_hub::Cache::new(self.cache_dir.clone());
        let mut builder = hf_hub::api::sync::ApiBuilder::from_cache(cache)
            .with_progress(terminal && progress.is_none());
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let api = builder.build().map_err(|e| self.error(repo, file, e))?;
        let repo_api = api.model(repo.to_owned());
        let result = match progress {
            Some(report) => repo_api.download_with_progress(
                file,
                Reporter {
                    report,
                    done: 0,
                    total: 0,
                },
            ),
            None => repo_api.download(file),
        };
        result.map_err(|e| self.error(repo, file, e))
    }

    fn error(&self, repo: &str, file: &str, reason: impl std::fmt::Display) -> ModelError {
        ModelError::Hub(Box::new(HubError {
            repo: repo.into(),
            file: file.into(),
            cache: self.cache_dir.clone(),
            reason: reason.to_string(),
        }))
    }

    /// The repository's weights (and its `config.json` when cached, or downloaded along);
    /// a download reports `(bytes done, bytes total)` to `progress`.
    pub fn fetch(
        &self,
        repo: &str,
        progress: Option<&mut DownloadProgress<'_>>,
    ) -> Result<HubFiles, ModelError> {
        let (weights, downloaded) = match self.cached(repo, WEIGHTS_FILE) {
            Some(path) => (path, false),
            None => (self.download(repo, WEIGHTS_FILE, progress)?, true),
        };
        let config = match self.cached(repo, CONFIG_FILE) {
            Some(path) => Some(path),
            // Only alongside a download: a cached model makes no network call at all.
            None if downloaded => self.download(repo, CONFIG_FILE, None).ok(),
            None => None,
        };
        Ok(HubFiles {
            expected_sha256: blob_sha256(&weights),
            weights,
            config,
        })
    }
}

/// Reads a `config.json`.
pub fn read_config(path: &Path) -> Result<Option<HubConfig>, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_owned(),
        source,
    })?;
    HubConfig::parse(&text).map_err(|reason| ModelError::BadConfig {
        path: path.to_owned(),
        reason,
    })
}

/// The sha256 a cached file must have: its blob's name, when that is one (files stored with
/// Git LFS are named by their sha256; small ones by a git hash, which says nothing here).
fn blob_sha256(pointer: &Path) -> Option<String> {
    let blob = std::fs::canonicalize(pointer).ok()?;
    let name = blob.file_name()?.to_str()?;
    (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())).then(|| name.to_owned())
}

/// Removes a damaged cached file (its blob and the snapshot's link to it), so that the next
/// fetch downloads it again instead of failing on it forever.
pub fn evict(pointer: &Path) {
    if let Ok(blob) = std::fs::canonicalize(pointer) {
        let _ = std::fs::remove_file(blob);
    }
    let _ = std::fs::remove_file(pointer);
}

/// Fetches `repo` with the environment's hub.
pub fn fetch(
    repo: &str,
    progress: Option<&mut DownloadProgress<'_>>,
) -> Result<HubFiles, ModelError> {
    Hub::from_env()?.fetch(repo, progress)
}

/// Told `(bytes done, bytes total)` while a file downloads.
pub type DownloadProgress<'a> = dyn FnMut(u64, u64) + 'a;

/// hf-hub's progress interface, forwarding to a [`DownloadProgress`].
struct Reporter<'a, 'b> {
    report: &'a mut DownloadProgress<'b>,
    done: u64,
    total: u64,
}

impl hf_hub::api::Progress for Reporter<'_, '_> {
    fn init(&mut self, size: usize, _filename: &str) {
        self.total = size as u64;
        (self.report)(0, self.total);
    }

    fn update(&mut self, size: usize) {
        self.done += size as u64;
        (self.report)(self.done, self.total);
    }

    fn finish(&mut self) {
        (self.report)(self.total, self.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timm_config_gives_the_preprocessing() {
        let text = r#"{"architecture": "resnet18", "num_classes": 1000,
            "pretrained_cfg": {"input_size": [3, 224, 224], "interpolation": "bilinear",
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "crop_pct": 0.875}}"#;
        let config = HubConfig::parse(text).expect("json").expect("cfg");
        let pre = config.preprocessing(224);
        assert_eq!((pre.image_size_px, pre.resize_px), (224, 256));
        assert_eq!(pre.mean, [0.485, 0.456, 0.406]);
        assert_eq!(config.preprocessing(160).resize_px, 182);
        assert_eq!(HubConfig::parse("{}").expect("json"), None);
        assert!(HubConfig::parse("not json").is_err());
    }
}
