//! A backbone cut after a unit, with a classifier on its pooled features, in candle.
//!
//! Tensors are NHWC. Two forward paths:
//! * [`FoldedNetwork`]: inference, BatchNorm folded into the convolutions, no gradients;
//! * [`Network::forward_train`]: training, batch statistics and gradients for trainable units.

use std::sync::Arc;

use candle_core::{D, DType, Device, Result as CandleResult, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::architecture::{BackboneUnit, FoldedUnit};
use super::backbone::Backbone;
use super::error::ModelError;
use super::layers::{Classifier, Layer, Param, ParamSource, RandomInit};
use super::unit::Unit;
use super::weights::Weights;
use crate::ops;

/// The seed stream of the new classifier, so that it does not repeat the backbone's draws.
const CLASSIFIER_STREAM: u64 = 1;

/// How the backbone's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// From the bundled ImageNet weights (or a saved model's).
    Pretrained,
    /// Re-initialised at random (Kaiming normal), for training from scratch.
    Random,
}

/// The shape of a network: where it is cut, how many classes, what trains.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSpec {
    pub backbone: Backbone,
    /// The last backbone unit kept; global average pooling and the classifier follow it.
    pub cut_after: Unit,
    pub num_classes: usize,
    /// Backbone units that train, counted down from the cut (0: only the classifier trains).
    pub trainable_units: usize,
    /// BatchNorm running-average momentum (PyTorch convention: weight of the new batch).
    pub bn_momentum: f64,
}

impl NetworkSpec {
    /// The pretrained classifier: the whole pretrained network, nothing trainable.
    pub fn pretrained(backbone: Backbone) -> Self {
        Self {
            backbone,
            cut_after: backbone.last_unit(),
            num_classes: backbone.pretrained_classes(),
            trainable_units: 0,
            bn_momentum: 0.1,
        }
    }

    /// Backbone units kept (stem through the cut).
    pub fn kept_units(&self) -> usize {
        self.backbone.index_of(self.cut_after) + 1
    }

    /// Index of the first trainable unit (`cut + 1` when the whole backbone is frozen).
    pub fn first_trainable_unit(&self) -> usize {
        let kept = self.kept_units();
        kept - self.trainable_units.min(kept)
    }

    pub fn feature_dim(&self) -> usize {
        self.backbone.info(self.cut_after).out_channels
    }
}

/// Trainable parameters by optimiser group (see [`Network::param_groups`]).
#[derive(Debug, Default)]
pub struct ParamGroups {
    pub head_decay: Vec<Var>,
    pub head_no_decay: Vec<Var>,
    pub backbone_decay: Vec<Var>,
    pub backbone_no_decay: Vec<Var>,
}

/// Whether the classifier starts from the weights given or at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadInit {
    FromWeights,
    Random,
}

/// A backbone cut after a unit, with a classifier on its pooled features.
#[derive(Debug)]
pub struct Network {
    pub spec: NetworkSpec,
    /// Units 0..=cut, in order.
    pub units: Vec<Box<dyn BackboneUnit>>,
    pub classifier: Classifier,
    device: Device,
}

impl Network {
    /// Builds the network. `weights` gives the backbone (and, with [`HeadInit::FromWeights`],
    /// the classifier); `None` initialises the backbone at random. Random values come from
    /// `seed`, so the same seed builds the same network.
    pub fn build(
        spec: NetworkSpec,
        weights: Option<&Weights>,
        head: HeadInit,
        seed: u64,
        device: &Device,
    ) -> Result<Self, ModelError> {
        if spec.num_classes == 0 {
            return Err(ModelError::NoClasses);
        }
        if !spec.backbone.has_unit(spec.cut_after) {
            return Err(spec.backbone.missing_unit(spec.cut_after));
        }
        let first_trainable = spec.first_trainable_unit();
        let mut src = ParamSource::new(weights, ChaCha8Rng::seed_from_u64(seed), device);
        let units = spec.backbone.units()[..spec.kept_units()]
            .iter()
            .enumerate()
            .map(|(i, info)| {
                spec.backbone
                    .build_unit(info.unit, &mut src, i >= first_trainable)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let classifier = Self::build_classifier(&spec, weights, head, seed, device)?;
        Ok(Self {
            spec,
            units,
            classifier,
            device: device.clone(),
        })
    }

    fn build_classifier(
        spec: &NetworkSpec,
        weights: Option<&Weights>,
        head: HeadInit,
        seed: u64,
        device: &Device,
    ) -> Result<Classifier, ModelError> {
        let (w_name, b_name) = spec.backbone.classifier_names();
        let features = spec.feature_dim();
        let w_shape = [spec.num_classes, features];
        let (w, b) = match (head, weights) {
            (HeadInit::FromWeights, Some(weights)) => (
                weights.get(w_name, &w_shape)?,
                weights.get(b_name, &[spec.num_classes])?,
            ),
            (HeadInit::FromWeights, None) => {
                return Err(ModelError::MissingTensor(w_name.into()));
            }
            (HeadInit::Random, _) => {
                // PyTorch's `nn.Linear` default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight
                // and bias. (torchvision's EfficientNet uses 1/sqrt(classes), sized for 1000
                // classes: with a handful it starts with logits in the tens.)
                let range = 1.0 / (features as f32).sqrt();
                let rng = ChaCha8Rng::seed_from_u64(crate::seed::mix(seed, CLASSIFIER_STREAM));
                let mut fresh = ParamSource::new(None, rng, device);
                (
                    fresh.tensor(w_name, &w_shape, RandomInit::Uniform(range))?,
                    fresh.tensor(b_name, &[spec.num_classes], RandomInit::Uniform(range))?,
                )
            }
        };
        Ok(Classifier {
            weight: Param::new(w_name.into(), w, true)?,
            bias: Param::new_no_decay(b_name.into(), b, true)?,
        })
    }

    /// The pretrained classifier of `backbone`, from its pretrained weights.
    pub fn pretrained(backbone: Backbone, device: &Device) -> Result<Self, ModelError> {
        Self::pretrained_from(backbone, &backbone.pretrained_weights(device)?, device)
    }

    /// The whole pretrained network of `backbone` with its classifier, from `weights`.
    pub fn pretrained_from(
        backbone: Backbone,
        weights: &Weights,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Self::build(
            NetworkSpec::pretrained(backbone),
            Some(weights),
            HeadInit::FromWeights,
            0,
            device,
        )
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn layers(&self) -> impl Iterator<Item = &dyn Layer> {
        self.units.iter().flat_map(|u| u.layers())
    }

    /// Trainable parameters grouped for the optimisers: weight decay applies to convolution
    /// and linear weights, not to BatchNorm parameters or biases.
    pub fn param_groups(&self) -> ParamGroups {
        let mut groups = ParamGroups::default();
        for param in self.layers().flat_map(|l| l.params()) {
            let group = if param.decay {
                &mut groups.backbone_decay
            } else {
                &mut groups.backbone_no_decay
            };
            group.extend(param.var().cloned());
        }
        groups
            .head_decay
            .extend(self.classifier.weight.var().cloned());
        groups
            .head_no_decay
            .extend(self.classifier.bias.var().cloned());
        groups
    }

    /// Every variable the run changes: trainable parameters and BatchNorm running
    /// statistics, in a fixed order (for keeping and restoring the best weights).
    pub fn state_vars(&self) -> Vec<Var> {
        let mut vars = Vec::new();
        for layer in self.layers() {
            vars.extend(layer.params().into_iter().filter_map(|p| p.var().cloned()));
            vars.extend(layer.running_stats().into_iter().cloned());
        }
        vars.extend(self.classifier.vars());
        vars
    }

    /// Every parameter with its name, and whether it is trainable.
    pub fn params(&self) -> Vec<(&Param, bool)> {
        self.layers()
            .flat_map(|l| l.params())
            .chain([&self.classifier.weight, &self.classifier.bias])
            .map(|p| (p, p.var().is_some()))
            .collect()
    }

    /// Number of trainable values (classifier included).
    pub fn trainable_parameter_count(&self) -> usize {
        self.params()
            .into_iter()
            .filter(|(_, trainable)| *trainable)
            .map(|(p, _)| p.tensor().elem_count())
            .sum()
    }

    /// All tensors to save: parameters and BatchNorm running statistics, by checkpoint name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self.layers().flat_map(|l| l.tensors()).collect();
        for p in [&self.classifier.weight, &self.classifier.bias] {
            out.push((p.name.clone(), p.tensor().detach()));
        }
        out
    }

    /// An inference copy of units `0..=cut` with BatchNorm folded in (current values).
    pub fn folded(&self) -> CandleResult<FoldedNetwork> {
        self.folded_units(self.units.len())
    }

    /// An inference copy of the first `count` units only.
    pub fn folded_units(&self, count: usize) -> CandleResult<FoldedNetwork> {
        Ok(FoldedNetwork {
            units: self
                .units
                .iter()
                .take(count)
                .map(|u| u.fold())
                .collect::<CandleResult<_>>()?,
        })
    }

    /// Train-mode forward through the trainable units, from the (detached) output of the
    /// frozen ones, to pooled features. BatchNorm uses batch statistics and updates its
    /// running averages.
    pub fn forward_train(&self, frozen_output: &Tensor) -> CandleResult<Tensor> {
        let mut h = frozen_output.detach();
        for unit in &self.units[self.spec.first_trainable_unit()..] {
            h = unit.forward_train(&h, self.spec.bn_momentum)?;
        }
        pooled(&h)
    }
}

/// Inference network with BatchNorm folded into the convolutions; no gradients.
#[derive(Debug, Clone)]
pub struct FoldedNetwork {
    units: Vec<Arc<dyn FoldedUnit>>,
}

impl FoldedNetwork {
    pub fn unit_count(&self) -> usize {
        self.units.len()
    }

    /// Runs units `start..end` on `x` (NHWC, the output of unit `start - 1` or the image).
    pub fn forward_units(&self, x: &Tensor, start: usize, end: usize) -> CandleResult<Tensor> {
        let mut h = x.detach();
        for unit in &self.units[start.min(self.units.len())..end.min(self.units.len())] {
            h = unit.forward(&h)?;
        }
        Ok(h)
    }

    /// Units `start..` and the pooling, keeping the autograd graph of `x` (Grad-CAM: the
    /// gradient of a class score with respect to a feature map).
    pub fn pooled_from_unit(&self, x: &Tensor, start: usize) -> CandleResult<Tensor> {
        let mut h = x.clone();
        for unit in self.units.iter().skip(start) {
            h = unit.forward(&h)?;
        }
        pooled(&h)
    }

    /// Adds every unit, then the pooling, to an ONNX graph.
    pub fn export_onnx(
        &self,
        g: &mut super::onnx::OnnxGraph,
        x: &super::onnx::Port,
    ) -> Result<super::onnx::Port, ModelError> {
        let mut h = x.clone();
        for unit in &self.units {
            h = unit.export_onnx(g, &h)?;
        }
        Ok(g.pooled(h))
    }

    /// All units, then global average pooling: `[N, H, W, 3]` → `[N, features]`.
    pub fn features(&self, images: &Tensor) -> CandleResult<Tensor> {
        let h = self.forward_units(images, 0, self.units.len())?;
        pooled(&h)
    }

    /// Pooled features after every unit up to `last` (inclusive), from one pass: the depth
    /// probe's input.
    pub fn features_at_each_unit(&self, images: &Tensor, last: usize) -> CandleResult<Vec<Tensor>> {
        let mut h = images.detach();
        let mut out = Vec::new();
        for unit in self.units.iter().take(last + 1) {
            h = unit.forward(&h)?;
            out.push(pooled(&h)?);
        }
        Ok(out)
    }

    /// Pooled features after each unit in `indices`, in that order, from one pass.
    pub fn features_at_units(
        &self,
        images: &Tensor,
        indices: &[usize],
    ) -> CandleResult<Vec<Tensor>> {
        let last = indices.iter().copied().max().unwrap_or(0);
        let all = self.features_at_each_unit(images, last)?;
        Ok(indices
            .iter()
            .filter_map(|&i| all.get(i).cloned())
            .collect())
    }

    /// Per-channel sums of the outputs and of their squares after each unit in `units`
    /// (indices, ascending), over batch and positions, with the number of positions summed:
    /// the similarity score's raw statistics.
    pub fn channel_sums_at_units(
        &self,
        images: &Tensor,
        units: &[usize],
    ) -> CandleResult<Vec<ChannelSums>> {
        let last = units.iter().copied().max().unwrap_or(0);
        let mut h = images.detach();
        let mut out = Vec::with_capacity(units.len());
        for (index, unit) in self.units.iter().enumerate().take(last + 1) {
            h = unit.forward(&h)?;
            if units.contains(&index) {
                let c = h.dim(D::Minus1)?;
                let flat = h.reshape(((), c))?;
                out.push(ChannelSums {
                    sum: flat.sum(0)?.to_vec1()?,
                    sum_sq: flat.sqr()?.sum(0)?.to_vec1()?,
                    count: flat.dim(0)?,
                });
            }
        }
        Ok(out)
    }
}

/// Per-channel sums over all positions of a batch (see
/// [`FoldedNetwork::channel_sums_at_units`]).
#[derive(Debug, Clone, Default)]
pub struct ChannelSums {
    pub sum: Vec<f32>,
    pub sum_sq: Vec<f32>,
    pub count: usize,
}

/// The features a unit's output gives the classifier: a convolutional map is averaged over
/// its positions; the output of a fully connected unit is taken as it is.
fn pooled(h: &Tensor) -> CandleResult<Tensor> {
    if h.rank() == 4 {
        ops::global_avg_pool(h)
    } else {
        Ok(h.clone())
    }
}

/// Softmax over the last axis in f32.
pub fn softmax(logits: &Tensor) -> CandleResult<Tensor> {
    candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?)
}
