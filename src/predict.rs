//! Classifying images: the ImageNet head of the bundled network, or a trained model's head.

use std::path::{Path, PathBuf};

use candle_core::{Device, Module, Tensor};
use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::decode::decode_rgb;
use crate::data::preprocess::{PRETRAINED_IMAGE_SIZE_PX, Preprocessing};
use crate::model::{
    Backbone, FoldedNetwork, HeadInit, ModelError, Network, NetworkSpec, WeightsSource,
    imagenet_labels, softmax,
};

/// Images per forward pass when classifying files.
pub const DEFAULT_BATCH_SIZE: usize = 16;

/// One class and its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassProb {
    pub index: usize,
    pub label: String,
    pub prob: f32,
}

/// A network ready for inference: BatchNorm folded, classifier attached, labels and
/// preprocessing known.
#[derive(Debug, Clone)]
pub struct Predictor {
    backbone: FoldedNetwork,
    fc_weight: Tensor,
    fc_bias: Tensor,
    labels: Vec<String>,
    preprocessing: Preprocessing,
}

impl Predictor {
    /// The bundled ImageNet classifier (the default backbone's pretrained head).
    pub fn imagenet(device: &Device) -> Result<Self, ModelError> {
        let backbone = Backbone::default();
        Self::pretrained(backbone, &backbone.default_weights(), device)
    }

    /// A backbone's pretrained ImageNet classifier, its weights from `source`.
    pub fn pretrained(
        backbone: Backbone,
        source: &WeightsSource,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let loaded = backbone.load_weights(source, device)?;
        let network = Network::build(
            NetworkSpec::pretrained(backbone),
            Some(&loaded.weights),
            HeadInit::FromWeights,
            0,
            device,
        )?;
        Self::from_network(
            &network,
            imagenet_labels().to_vec(),
            loaded.preprocessing(backbone, PRETRAINED_IMAGE_SIZE_PX),
        )
    }

    /// Wraps a network (its current weights) for inference.
    pub fn from_network(
        network: &Network,
        labels: Vec<String>,
        preprocessing: Preprocessing,
    ) -> Result<Self, ModelError> {
        if labels.len() != network.spec.num_classes {
            return Err(ModelError::LabelCount {
                labels: labels.len(),
                classes: network.spec.num_classes,
            });
        }
        Ok(Self {
            backbone: network.folded()?,
            fc_weight: network.classifier.weight.tensor().detach(),
            fc_bias: network.classifier.bias.tensor().detach(),
            labels,
            preprocessing,
        })
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn preprocessing(&self) -> &Preprocessing {
        &self.preprocessing
    }

    /// Class probabilities for already preprocessed crops (`image_size_px` squares).
    pub fn probabilities(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, ModelError> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let input = self
            .preprocessing
            .batch_tensor(crops, self.fc_weight.device())?;
        let logits = self.logits(&input)?;
        Ok(softmax(&logits)?.to_vec2::<f32>()?)
    }

    /// Logits for an NHWC batch of normalised images.
    pub fn logits(&self, input: &Tensor) -> Result<Tensor, ModelError> {
        let features = self.backbone.features(input)?;
        Ok(
            candle_nn::Linear::new(self.fc_weight.clone(), Some(self.fc_bias.clone()))
                .forward(&features)?,
        )
    }

    /// The `k` most probable classes, most probable first.
    pub fn top_k(&self, probs: &[f32], k: usize) -> Vec<ClassProb> {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        order
            .into_iter()
            .take(k)
            .map(|index| ClassProb {
                index,
                label: self.labels[index].clone(),
                prob: probs[index],
            })
            .collect()
    }

    /// Top-k classes for whole images (resized and cropped here).
    pub fn classify_images(
        &self,
        images: &[RgbImage],
        k: usize,
    ) -> Result<Vec<Vec<ClassProb>>, ModelError> {
        let crops: Vec<RgbImage> = images
            .par_iter()
            .map(|img| self.preprocessing.eval_crop(img))
            .collect();
        Ok(self
            .probabilities(&crops)?
            .iter()
            .map(|p| self.top_k(p, k))
            .collect())
    }
}

/// The outcome for one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FilePrediction {
    Classified { image: PathBuf, top: Vec<ClassProb> },
    Failed { image: PathBuf, error: String },
}

impl FilePrediction {
    pub fn path(&self) -> &Path {
        match self {
            Self::Classified { image, .. } | Self::Failed { image, .. } => image,
        }
    }
}

/// Decodes and classifies files in batches (decoding in parallel). A file that can't be read
/// is reported in its entry; the others are still classified.
pub fn classify_files(
    predictor: &Predictor,
    paths: &[PathBuf],
    k: usize,
    batch_size: usize,
) -> Vec<FilePrediction> {
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch_size.max(1)) {
        let decoded: Vec<Result<RgbImage, String>> = chunk
            .par_iter()
            .map(|p| {
                decode_rgb(p)
                    .map(|img| predictor.preprocessing.eval_crop(&img))
                    .map_err(|e| e.to_string())
            })
            .collect();
        let crops: Vec<RgbImage> = decoded
            .iter()
            .filter_map(|d| d.as_ref().ok().cloned())
            .collect();
        let mut probs = match predictor.probabilities(&crops) {
            Ok(p) => p.into_iter(),
            Err(e) => {
                let message = format!("inference failed: {e}");
                out.extend(chunk.iter().map(|p| FilePrediction::Failed {
                    image: p.clone(),
                    error: message.clone(),
                }));
                continue;
            }
        };
        for (path, result) in chunk.iter().zip(decoded) {
            out.push(match result {
                Ok(_) => match probs.next() {
                    Some(p) => FilePrediction::Classified {
                        image: path.clone(),
                        top: predictor.top_k(&p, k),
                    },
                    None => FilePrediction::Failed {
                        image: path.clone(),
                        error: "no output for this image".into(),
                    },
                },
                Err(error) => FilePrediction::Failed {
                    image: path.clone(),
                    error,
                },
            });
        }
    }
    out
}
