//! Where pretrained weights come from: the bundled file, a checkpoint on disk (`.safetensors`,
//! or `.pth`/`.pt` through the pickle-safe importer), or a Hugging Face hub repository
//! (`hf:ORG/REPO`, see [`super::hub`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ModelError;
use super::hub::{self, HubConfig};
use super::weights::Weights;

/// A place to load pretrained weights from; written as `bundled`, `hf:ORG/REPO` or a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum WeightsSource {
    /// Shipped inside the binary (Lite0).
    Bundled,
    File(PathBuf),
    /// A Hugging Face hub model repository, `ORG/REPO`.
    Hub(String),
}

impl fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightsSource::Bundled => write!(f, "bundled"),
            WeightsSource::File(path) => write!(f, "{}", path.display()),
            WeightsSource::Hub(repo) => write!(f, "hf:{repo}"),
        }
    }
}

impl std::str::FromStr for WeightsSource {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "bundled" {
            return Ok(WeightsSource::Bundled);
        }
        if let Some(repo) = s.strip_prefix("hf:") {
            let parts: Vec<&str> = repo.split('/').collect();
            if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                return Err(ModelError::BadWeightsSource(format!(
                    "{s:?}: a hub repository is hf:ORG/REPO"
                )));
            }
            return Ok(WeightsSource::Hub(repo.to_owned()));
        }
        if s.is_empty() {
            return Err(ModelError::BadWeightsSource("an empty path".into()));
        }
        Ok(WeightsSource::File(PathBuf::from(s)))
    }
}

impl TryFrom<String> for WeightsSource {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<WeightsSource> for String {
    fn from(source: WeightsSource) -> Self {
        source.to_string()
    }
}

/// Weights as loaded, with where they came from.
#[derive(Debug, Clone)]
pub struct LoadedWeights {
    pub weights: Weights,
    pub source: WeightsSource,
    /// SHA-256 of the weights file's bytes.
    pub sha256: String,
    /// The preprocessing the hub's `config.json` names, if there was one.
    pub config: Option<HubConfig>,
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_owned(),
        source,
    })
}

/// A `.pth`/`.pt` checkpoint's float tensors (integer counters are left out).
fn from_checkpoint(path: &Path, device: &Device) -> Result<Weights, ModelError> {
    let bad = |reason: String| ModelError::BadWeightsFile {
        path: path.to_owned(),
        reason,
    };
    let checkpoint = crate::checkpoint::read_checkpoint(path).map_err(|e| bad(e.to_string()))?;
    let mut tensors = HashMap::new();
    for raw in &checkpoint.tensors {
        if let Some(values) = raw.to_f32() {
            let tensor = Tensor::from_vec(values, raw.shape.clone(), device)?;
            tensors.insert(raw.name.clone(), tensor.to_dtype(DType::F32)?);
        }
    }
    Ok(Weights::from_tensors(tensors))
}

/// Loads `source` (raw; the backbone's renaming comes after); `bundled` holds the network's
/// bundled safetensors bytes where `source` is [`WeightsSource::Bundled`].
pub(super) fn load_raw(
    bundled: Option<&'static [u8]>,
    source: &WeightsSource,
    device: &Device,
    progress: Option<&mut hub::DownloadProgress<'_>>,
) -> Result<LoadedWeights, ModelError> {
    let (weights, sha256, config) = match source {
        WeightsSource::Bundled => {
            let bytes =
                bundled.ok_or_else(|| ModelError::NoBundledWeights("this network".into()))?;
            (
                Weights::from_safetensors_bytes(bytes, device)?,
                sha256_hex(bytes),
                None,
            )
        }
        WeightsSource::File(path) => {
            let bytes = read(path)?;
            let sha = sha256_hex(&bytes);
            let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
            let weights = if is_safetensors {
                Weights::from_safetensors_bytes(&bytes, device).map_err(|e| {
                    ModelError::BadWeightsFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?
            } else {
                from_checkpoint(path, device)?
            };
            (weights, sha, None)
        }
        WeightsSource::Hub(repo) => {
            let files = hub::fetch(repo, progress)?;
            let bytes = read(&files.weights)?;
            let sha = sha256_hex(&bytes);
            if let Some(expected) = &files.expected_sha256
                && sha != *expected
            {
                // Both came from the same (damaged) download.
                hub::evict(&files.weights);
                if let Some(config) = &files.config {
                    hub::evict(config);
                }
                return Err(ModelError::Corrupt {
                    path: files.weights.clone(),
                    expected: expected.clone(),
                });
            }
            let weights = Weights::from_safetensors_bytes(&bytes, device).map_err(|e| {
                ModelError::BadWeightsFile {
                    path: files.weights.clone(),
                    reason: e.to_string(),
                }
            })?;
            let config = match &files.config {
                // A damaged config.json (a download cut short) leaves the cache, as the
                // weights do, so that the next run fetches it again.
                Some(path) => hub::read_config(path).map_err(|e| {
                    hub::evict(path);
                    match e {
                        ModelError::BadConfig { path, reason } => ModelError::BadConfig {
                            path,
                            reason: format!("{reason}; removed from the cache, run again"),
                        },
                        other => other,
                    }
                })?,
                None => None,
            };
            (weights, sha, config)
        }
    };
    Ok(LoadedWeights {
        weights,
        source: source.clone(),
        sha256,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_round_trip_through_text() {
        for text in ["bundled", "hf:timm/resnet18.tv_in1k", "/tmp/w.pth"] {
            let source: WeightsSource = text.parse().expect("valid");
            assert_eq!(source.to_string(), text);
        }
        assert!("hf:justone".parse::<WeightsSource>().is_err());
        assert!("hf:a/b/c".parse::<WeightsSource>().is_err());
    }
}
