//! Classifying images: the ImageNet head of the bundled network, or a trained model's head.

use std::path::{Path, PathBuf};

use candle_core::{Device, Module, Tensor};
use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::decode::decode_rgb;
use crate::data::preprocess::{PRETRAINED_IMAGE_SIZE_PX, Preprocessing};
use crate::model::{
    Backbone, FoldedNetwork, ModelError, Network, Unit, WeightsSource, imagenet_labels, softmax,
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
    /// The network and where it is cut (what `inspect` and `explain` can look at).
    network: Backbone,
    cut_after: Unit,
    fc_weight: Tensor,
    fc_bias: Tensor,
    labels: Vec<String>,
    preprocessing: Preprocessing,
}

impl Predictor {
    /// The bundled ImageNet classifier (the default backbone's pretrained head).
    pub fn imagenet(device: &Device) -> Result<Self, ModelError> {
        let backbone = Backbone::default();
        Self::pretrained(backbone, &backbone.weights_or_default(None), device)
    }

    /// A backbone's pretrained ImageNet classifier, its weights from `source`.
    pub fn pretrained(
        backbone: Backbone,
        source: &WeightsSource,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let loaded = backbone.load_weights(source, device)?;
        let network = Network::pretrained_from(backbone, &loaded.weights, device)?;
        Self::from_network(
            &network,
            imagenet_labels().to_vec(),
            backbone.preprocessing_with(&loaded, PRETRAINED_IMAGE_SIZE_PX),
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
            network: network.spec.backbone,
            cut_after: network.spec.cut_after,
            fc_weight: network.classifier.weight.tensor().detach(),
            fc_bias: network.classifier.bias.tensor().detach(),
            labels,
            preprocessing,
        })
    }

    /// The network the predictor runs.
    pub fn network(&self) -> Backbone {
        self.network
    }

    /// The last backbone unit kept (pooling and the classifier follow it).
    pub fn cut_after(&self) -> Unit {
        self.cut_after
    }

    /// The backbone in inference form.
    pub fn folded(&self) -> &FoldedNetwork {
        &self.backbone
    }

    /// The classifier's weight `[classes, features]` and bias `[classes]`.
    pub fn classifier(&self) -> (&Tensor, &Tensor) {
        (&self.fc_weight, &self.fc_bias)
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn preprocessing(&self) -> &Preprocessing {
        &self.preprocessing
    }

    /// The network's input for evaluation crops (`image_size_px` squares), on its device.
    pub fn input_tensor(&self, crops: &[RgbImage]) -> Result<Tensor, ModelError> {
        Ok(self
            .preprocessing
            .batch_tensor(crops, self.fc_weight.device())?)
    }

    /// Class probabilities for already preprocessed crops (`image_size_px` squares).
    pub fn probabilities(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, ModelError> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let logits = self.logits(&self.input_tensor(crops)?)?;
        Ok(softmax(&logits)?.to_vec2::<f32>()?)
    }

    /// Logits for an NHWC batch of normalised images.
    pub fn logits(&self, input: &Tensor) -> Result<Tensor, ModelError> {
        self.logits_of_features(&self.backbone.features(input)?)
    }

    /// The classifier's logits for pooled features `[N, features]` (gradients kept).
    pub fn logits_of_features(&self, features: &Tensor) -> Result<Tensor, ModelError> {
        Ok(
            candle_nn::Linear::new(self.fc_weight.clone(), Some(self.fc_bias.clone()))
                .forward(features)?,
        )
    }

    /// The whole classifier as an ONNX graph: input `image` (float32 NCHW RGB in [0, 1],
    /// already resized and cropped, dynamic batch), normalisation inside, outputs
    /// `probabilities` and `logits` `[N, K]`.
    pub fn onnx_graph(&self) -> Result<onnx_protobuf::GraphProto, ModelError> {
        use crate::model::onnx::{OnnxGraph, Port};
        let pre = &self.preprocessing;
        let side = pre.image_size_px as usize;
        let mut g = OnnxGraph::default();
        let mean = g.constant_values("mean", pre.mean.to_vec(), vec![1, 3, 1, 1]);
        let std = g.constant_values("std", pre.std.to_vec(), vec![1, 3, 1, 1]);
        let centred = g.node("Sub", &["image", &mean], Vec::new());
        let normalised = g.node("Div", &[&centred, &std], Vec::new());
        let input = Port {
            name: normalised,
            channels: 3,
            spatial: Some((side, side)),
        };
        let features = self.backbone.export_onnx(&mut g, &input)?;
        let logits = g.linear(
            &features,
            &self.fc_weight,
            &self.fc_bias,
            crate::model::layers::Act::None,
        )?;
        let probs = g.node(
            "Softmax",
            &[&logits.name],
            vec![onnx_protobuf::AttributeProto {
                name: "axis".into(),
                type_: onnx_protobuf::attribute_proto::AttributeType::INT.into(),
                i: -1,
                ..Default::default()
            }],
        );
        for (from, to) in [(&probs, "probabilities"), (&logits.name, "logits")] {
            g.nodes.push(onnx_protobuf::NodeProto {
                op_type: "Identity".into(),
                name: format!("{to}_output"),
                input: vec![from.clone()],
                output: vec![to.into()],
                ..Default::default()
            });
        }
        let classes = self.labels.len();
        Ok(onnx_protobuf::GraphProto {
            name: "transfer-studio".into(),
            node: g.nodes,
            initializer: g.initializers,
            input: vec![onnx_value(
                "image",
                &[None, Some(3), Some(side), Some(side)],
            )],
            output: vec![
                onnx_value("probabilities", &[None, Some(classes)]),
                onnx_value("logits", &[None, Some(classes)]),
            ],
            ..Default::default()
        })
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

/// A float32 graph input or output; `None` dimensions are the batch, named `batch`.
fn onnx_value(name: &str, dims: &[Option<usize>]) -> onnx_protobuf::ValueInfoProto {
    use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
    use onnx_protobuf::{TensorShapeProto, TypeProto, type_proto};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => dimension::Value::DimValue(*n as i64),
                None => dimension::Value::DimParam("batch".into()),
            }),
            ..Default::default()
        })
        .collect();
    onnx_protobuf::ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: onnx_protobuf::tensor_proto::DataType::FLOAT as i32,
                shape: Some(TensorShapeProto {
                    dim,
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}
