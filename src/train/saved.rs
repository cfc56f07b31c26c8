//! Saved models: a directory with `model.safetensors` (weights) and `model.json` (backbone,
//! cut point, class names, preprocessing, plan, final metrics, and the weights' checksum).
//!
//! The directory is written whole or not at all (see [`crate::fsutil::replace_dir_atomically`]);
//! a `model.json` that does not belong to its `model.safetensors` is refused on loading.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cut::CutChoice;
use super::metrics::ClassMetrics;
use super::plan::TrainPlan;
use crate::data::preprocess::Preprocessing;
use crate::model::{
    Backbone, HeadInit, ModelError, Network, NetworkSpec, Unit, Weights, WeightsSource,
};

pub const MANIFEST_FILE: &str = "model.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
const FORMAT: &str = "transfer-studio-model";
const FORMAT_VERSION: u32 = 1;

/// Why a model could not be saved or opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot encode the model: {0}")]
    Encode(String),
    #[error("cannot save to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{dir} is not a valid {MANIFEST_FILE}: {reason}")]
    BadManifest { dir: PathBuf, reason: String },
    #[error("{dir} is a {format:?} model; this version reads {FORMAT:?} models")]
    WrongFormat { dir: PathBuf, format: String },
    #[error("{dir} was saved by a newer version (format {version})")]
    NewerFormat { dir: PathBuf, version: u32 },
    #[error(
        "{dir}: {file} does not belong to {MANIFEST_FILE} (checksum differs); the two files come \
         from different saves"
    )]
    ChecksumMismatch { dir: PathBuf, file: String },
    #[error("{dir}: the weights do not fit the network described in {MANIFEST_FILE}: {source}")]
    WeightsDoNotFit { dir: PathBuf, source: ModelError },
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl From<candle_core::Error> for StoreError {
    fn from(e: candle_core::Error) -> Self {
        StoreError::Model(ModelError::Candle(e))
    }
}

/// A trained network with what it takes to use it.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    pub network: Arc<Network>,
    pub classes: Vec<String>,
    pub preprocessing: Preprocessing,
    pub plan: TrainPlan,
    /// The pretrained weights training started from (`None`: from scratch).
    pub pretrained: Option<PretrainedInfo>,
    /// The folder it was trained on (`None` when unknown): an int8 export calibrates on it.
    pub training_folder: Option<PathBuf>,
}

/// Which pretrained weights a model started from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainedInfo {
    pub source: WeightsSource,
    /// SHA-256 of the weights file.
    pub sha256: String,
}

/// The summary of training saved with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedMetrics {
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub val_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub train_accuracy: f64,
    pub wall_secs: f64,
    pub per_class: Vec<ClassMetrics>,
    pub confusion: Vec<Vec<usize>>,
    /// How Start of ConvNet chose its cut, when it measured it (absent in older models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_choice: Option<CutChoice>,
}

/// `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub backbone: Backbone,
    /// The pretrained weights training started from (absent in older models and from scratch).
    #[serde(default)]
    pub pretrained: Option<PretrainedInfo>,
    /// The training folder (absent in older models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_folder: Option<PathBuf>,
    pub cut_after: Unit,
    pub class_names: Vec<String>,
    pub preprocessing: Preprocessing,
    pub plan: TrainPlan,
    pub metrics: Option<SavedMetrics>,
    pub weights_file: String,
    pub weights_sha256: String,
    pub tensor_count: usize,
    pub created_with: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn safetensors_bytes(network: &Network) -> Result<(Vec<u8>, usize), StoreError> {
    let mut named = Vec::new();
    for (name, tensor) in network.named_tensors() {
        let values: Vec<f32> = tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        named.push((name, tensor.dims().to_vec(), bytes));
    }
    let views = named
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| StoreError::Encode(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = views.len();
    let bytes = safetensors::tensor::serialize(views, None)
        .map_err(|e| StoreError::Encode(e.to_string()))?;
    Ok((bytes, count))
}

fn is_saved_model_dir(dir: &Path) -> bool {
    dir.join(MANIFEST_FILE).is_file()
        || std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

impl TrainedModel {
    /// Writes the model directory atomically. An existing saved model there is replaced; any
    /// other existing folder is left alone and reported.
    pub fn save(&self, dir: &Path, metrics: Option<SavedMetrics>) -> Result<(), StoreError> {
        let (weights, tensor_count) = safetensors_bytes(&self.network)?;
        let manifest = Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            backbone: self.network.spec.backbone,
            pretrained: self.pretrained.clone(),
            training_folder: self.training_folder.clone(),
            cut_after: self.network.spec.cut_after,
            class_names: self.classes.clone(),
            preprocessing: self.preprocessing.clone(),
            plan: self.plan.clone(),
            metrics,
            weights_file: WEIGHTS_FILE.into(),
            weights_sha256: sha256_hex(&weights),
            tensor_count,
            created_with: format!("transfer-studio {}", env!("CARGO_PKG_VERSION")),
        };
        let json =
            serde_json::to_vec_pretty(&manifest).map_err(|e| StoreError::Encode(e.to_string()))?;
        crate::fsutil::replace_dir_atomically(dir, is_saved_model_dir, |staging| {
            crate::fsutil::write_synced(&staging.join(WEIGHTS_FILE), &weights)?;
            crate::fsutil::write_synced(&staging.join(MANIFEST_FILE), &json)
        })
        .map_err(|source| StoreError::Write {
            path: dir.to_owned(),
            source,
        })
    }

    /// Loads a saved model directory for inference.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, Manifest), StoreError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| StoreError::Read { path, source })
        };
        let manifest = parse_manifest(dir, &read(MANIFEST_FILE)?)?;
        let weights = read(&manifest.weights_file)?;
        Self::from_parts(dir, manifest, &weights, device)
    }

    /// A model from the bytes of its two files (`dir` names it in messages).
    pub fn from_bytes(
        dir: &Path,
        manifest: &[u8],
        bytes: &[u8],
        device: &Device,
    ) -> Result<(Self, Manifest), StoreError> {
        Self::from_parts(dir, parse_manifest(dir, manifest)?, bytes, device)
    }

    /// A model from its checked manifest and the bytes of its weights.
    fn from_parts(
        dir: &Path,
        manifest: Manifest,
        bytes: &[u8],
        device: &Device,
    ) -> Result<(Self, Manifest), StoreError> {
        if sha256_hex(bytes) != manifest.weights_sha256 {
            return Err(StoreError::ChecksumMismatch {
                dir: dir.to_owned(),
                file: manifest.weights_file,
            });
        }
        let weights = Weights::from_safetensors_bytes(bytes, device)?;
        let spec = NetworkSpec {
            backbone: manifest.backbone,
            cut_after: manifest.cut_after,
            num_classes: manifest.class_names.len(),
            trainable_units: 0,
            bn_momentum: manifest.plan.bn_momentum,
        };
        let network = Network::build(spec, Some(&weights), HeadInit::FromWeights, 0, device)
            .map_err(|source| StoreError::WeightsDoNotFit {
                dir: dir.to_owned(),
                source,
            })?;
        let model = TrainedModel {
            network: Arc::new(network),
            classes: manifest.class_names.clone(),
            preprocessing: manifest.preprocessing.clone(),
            plan: manifest.plan.clone(),
            pretrained: manifest.pretrained.clone(),
            training_folder: manifest.training_folder.clone(),
        };
        Ok((model, manifest))
    }
}

/// Reads and checks `model.json`: its format and version, a weights file inside the folder, and
/// preprocessing and classes that a network can use.
fn parse_manifest(dir: &Path, bytes: &[u8]) -> Result<Manifest, StoreError> {
    let bad = |reason: String| StoreError::BadManifest {
        dir: dir.to_owned(),
        reason,
    };
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(StoreError::WrongFormat {
            dir: dir.to_owned(),
            format: manifest.format,
        });
    }
    if manifest.version > FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            dir: dir.to_owned(),
            version: manifest.version,
        });
    }
    // Only a plain name beside model.json: never a path out of the folder (or /dev/zero).
    let name = Path::new(&manifest.weights_file);
    if name.components().count() != 1 || name.file_name().is_none() {
        return Err(bad(format!(
            "weights file {:?} is not a file name inside the folder",
            manifest.weights_file
        )));
    }
    if manifest.class_names.len() < 2 {
        return Err(bad("a classifier needs at least two classes".into()));
    }
    manifest.preprocessing.validate().map_err(bad)?;
    Ok(manifest)
}

/// Copies every tensor of a network (to compare weights before and after training).
pub fn tensor_values(network: &Network) -> Result<HashMap<String, Vec<f32>>, ModelError> {
    network
        .named_tensors()
        .into_iter()
        .map(|(name, t)| Ok((name, t.flatten_all()?.to_vec1::<f32>()?)))
        .collect()
}
