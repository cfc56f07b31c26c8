//! EfficientNet-Lite0 in candle, as explicit layers whose names mirror the checkpoint keys
//! (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, …, `_conv_head`, `_bn1`, `_fc`), so the
//! network can be cut after any unit and frozen unit by unit.
//!
//! Tensors are NHWC. Two forward paths:
//! * [`FoldedNetwork`]: inference, BatchNorm folded into the convolutions, no gradients;
//! * [`Network::forward_train`]: training, batch statistics and gradients for trainable units.

use candle_core::{D, DType, Device, Module, Result as CandleResult, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use super::ModelError;
use super::arch::{BN_EPS, BlockSpec, HEAD_CHANNELS, STEM_CHANNELS, Unit, block_specs};
use super::weights::Weights;
use crate::ops;

/// Mixed into the seed for the new classifier, so that it does not repeat the backbone's draws.
const HEAD_SEED_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// 1×1 convolutions with at most this many input channels are recomputed in backward rather
/// than kept (the expansions of blocks 1–5: 16–40 inputs, 96–240 outputs at high resolution).
const RECOMPUTE_MAX_INPUT_CHANNELS: usize = 40;

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
    /// The last backbone unit kept; global average pooling and the classifier follow it.
    pub cut_after: Unit,
    pub num_classes: usize,
    /// Backbone units that train, counted down from the cut (0: only the classifier trains).
    pub trainable_units: usize,
    /// BatchNorm running-average momentum (PyTorch convention: weight of the new batch).
    pub bn_momentum: f64,
}

impl NetworkSpec {
    /// The ImageNet classifier: the whole pretrained network, nothing trainable.
    pub fn imagenet() -> Self {
        Self {
            cut_after: Unit::Head,
            num_classes: super::arch::IMAGENET_CLASSES,
            trainable_units: 0,
            bn_momentum: 0.1,
        }
    }

    /// Index of the first trainable unit (`cut + 1` when the whole backbone is frozen).
    pub fn first_trainable_unit(&self) -> usize {
        let kept = self.cut_after.index() + 1;
        kept - self.trainable_units.min(kept)
    }

    pub fn feature_dim(&self) -> usize {
        self.cut_after.out_channels()
    }
}

/// A parameter: a trainable `Var` or a constant.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    tensor: Tensor,
    var: Option<Var>,
}

impl Param {
    fn new(name: String, value: Tensor, trainable: bool) -> CandleResult<Self> {
        if trainable {
            let var = Var::from_tensor(&value)?;
            Ok(Self {
                name,
                tensor: var.as_tensor().clone(),
                var: Some(var),
            })
        } else {
            Ok(Self {
                name,
                tensor: value.detach(),
                var: None,
            })
        }
    }

    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    pub fn var(&self) -> Option<&Var> {
        self.var.as_ref()
    }
}

/// Where parameter values come from while building.
struct Source<'a> {
    weights: Option<&'a Weights>,
    rng: ChaCha8Rng,
    device: Device,
}

impl Source<'_> {
    fn tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        init: RandomInit,
    ) -> Result<Tensor, ModelError> {
        if let Some(w) = self.weights {
            return w.get(name, shape);
        }
        let count: usize = shape.iter().product();
        let values: Vec<f32> = match init {
            RandomInit::KaimingFanOut => {
                let fan_out = shape[0] * shape[2..].iter().product::<usize>();
                let std = (2.0 / fan_out.max(1) as f64).sqrt() as f32;
                let normal =
                    Normal::new(0.0f32, std).map_err(|e| ModelError::Init(e.to_string()))?;
                (0..count).map(|_| normal.sample(&mut self.rng)).collect()
            }
            RandomInit::Uniform(range) => {
                let uniform = Uniform::new_inclusive(-range, range)
                    .map_err(|e| ModelError::Init(e.to_string()))?;
                (0..count).map(|_| uniform.sample(&mut self.rng)).collect()
            }
            RandomInit::Constant(v) => vec![v; count],
        };
        Ok(Tensor::from_vec(values, shape, &self.device)?)
    }
}

#[derive(Debug, Clone, Copy)]
enum RandomInit {
    KaimingFanOut,
    Uniform(f32),
    Constant(f32),
}

/// BatchNorm with learnable affine parameters and running statistics.
#[derive(Debug)]
pub struct BatchNorm {
    pub weight: Param,
    pub bias: Param,
    running_mean: Var,
    running_var: Var,
    prefix: String,
}

impl BatchNorm {
    fn build(
        prefix: String,
        channels: usize,
        src: &mut Source<'_>,
        trainable: bool,
    ) -> Result<Self, ModelError> {
        let shape = [channels];
        let weight = src.tensor(
            &format!("{prefix}.weight"),
            &shape,
            RandomInit::Constant(1.0),
        )?;
        let bias = src.tensor(&format!("{prefix}.bias"), &shape, RandomInit::Constant(0.0))?;
        let mean = src.tensor(
            &format!("{prefix}.running_mean"),
            &shape,
            RandomInit::Constant(0.0),
        )?;
        let var = src.tensor(
            &format!("{prefix}.running_var"),
            &shape,
            RandomInit::Constant(1.0),
        )?;
        Ok(Self {
            weight: Param::new(format!("{prefix}.weight"), weight, trainable)?,
            bias: Param::new(format!("{prefix}.bias"), bias, trainable)?,
            running_mean: Var::from_tensor(&mean)?,
            running_var: Var::from_tensor(&var)?,
            prefix,
        })
    }

    /// Eval-mode BatchNorm as `(scale, shift)`.
    fn folded(&self) -> CandleResult<(Tensor, Tensor)> {
        let scale = self
            .weight
            .tensor()
            .detach()
            .div(&(self.running_var.as_tensor().detach() + BN_EPS)?.sqrt()?)?;
        let shift =
            (self.bias.tensor().detach() - self.running_mean.as_tensor().detach().mul(&scale)?)?;
        Ok((scale, shift))
    }

    /// Train mode: normalise with batch statistics and update the running averages.
    fn train(&self, x: &Tensor, relu6: bool, momentum: f64) -> CandleResult<Tensor> {
        let (y, stats) =
            ops::batch_norm_train(x, self.weight.tensor(), self.bias.tensor(), BN_EPS, relu6)?;
        self.update_running_stats(stats, x.device(), momentum)?;
        Ok(y)
    }

    /// Train mode after a convolution that backward recomputes (see [`ops::conv_bn_train`]).
    fn train_after(
        &self,
        x: &Tensor,
        conv_weight: &Tensor,
        conv: ops::RecomputedConv,
        relu6: bool,
        momentum: f64,
    ) -> CandleResult<Tensor> {
        let (y, stats) = ops::conv_bn_train(
            x,
            conv_weight,
            self.weight.tensor(),
            self.bias.tensor(),
            conv,
            BN_EPS,
            relu6,
        )?;
        self.update_running_stats(stats, x.device(), momentum)?;
        Ok(y)
    }

    fn update_running_stats(
        &self,
        stats: ops::BatchStats,
        device: &candle_core::Device,
        momentum: f64,
    ) -> CandleResult<()> {
        let mean = Tensor::from_vec(stats.mean, stats.var.len(), device)?;
        // Running variance is unbiased, as in PyTorch.
        let unbias = stats.count as f64 / (stats.count.max(2) - 1) as f64;
        let var = (Tensor::from_vec(stats.var, mean.dims(), device)? * unbias)?;
        let old_mean = self.running_mean.as_tensor().detach();
        let old_var = self.running_var.as_tensor().detach();
        self.running_mean
            .set(&((old_mean * (1.0 - momentum))? + (mean * momentum)?)?)?;
        self.running_var
            .set(&((old_var * (1.0 - momentum))? + (var * momentum)?)?)
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        vec![
            (self.weight.name.clone(), self.weight.tensor().detach()),
            (self.bias.name.clone(), self.bias.tensor().detach()),
            (
                format!("{}.running_mean", self.prefix),
                self.running_mean.as_tensor().detach(),
            ),
            (
                format!("{}.running_var", self.prefix),
                self.running_var.as_tensor().detach(),
            ),
        ]
    }
}

/// What kind of convolution a [`ConvBn`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// Dense k×k with "SAME" padding (the stem).
    Dense { kernel: usize, stride: usize },
    /// Depthwise k×k with "SAME" padding.
    Depthwise { kernel: usize, stride: usize },
    /// 1×1.
    Pointwise,
}

/// A bias-free convolution followed by BatchNorm and, optionally, ReLU6.
#[derive(Debug)]
pub struct ConvBn {
    pub conv: Param,
    pub bn: BatchNorm,
    pub kind: ConvKind,
    pub relu6: bool,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn build(
        conv_name: String,
        bn_name: String,
        kind: ConvKind,
        c_in: usize,
        c_out: usize,
        relu6: bool,
        src: &mut Source<'_>,
        trainable: bool,
    ) -> Result<Self, ModelError> {
        let shape = match kind {
            ConvKind::Dense { kernel, .. } => vec![c_out, c_in, kernel, kernel],
            ConvKind::Depthwise { kernel, .. } => vec![c_out, 1, kernel, kernel],
            ConvKind::Pointwise => vec![c_out, c_in, 1, 1],
        };
        let name = format!("{conv_name}.weight");
        let w = src.tensor(&name, &shape, RandomInit::KaimingFanOut)?;
        Ok(Self {
            conv: Param::new(name, w, trainable)?,
            bn: BatchNorm::build(bn_name, c_out, src, trainable)?,
            kind,
            relu6,
        })
    }

    fn conv(&self, x: &Tensor, w: &Tensor) -> CandleResult<Tensor> {
        match self.kind {
            ConvKind::Dense { stride, .. } => ops::conv_same(x, w, stride),
            ConvKind::Depthwise { stride, .. } => ops::depthwise_conv(x, w, stride),
            ConvKind::Pointwise => ops::conv1x1(x, w),
        }
    }

    /// Whether backward recomputes this convolution instead of keeping its output: where the
    /// convolution costs little for the memory its output takes (depthwise: k² multiply-adds
    /// per output value; 1×1 with at most [`RECOMPUTE_MAX_INPUT_CHANNELS`] inputs). At 224 px
    /// and batch 32 this took a fine-tune step's peak RSS from 3.2 to 2.3 GB, and the step got
    /// no slower (fewer fresh pages to fault in pays for the second convolution).
    fn recomputed(&self) -> Option<ops::RecomputedConv> {
        match self.kind {
            ConvKind::Depthwise { stride, .. } => Some(ops::RecomputedConv::Depthwise { stride }),
            ConvKind::Pointwise
                if self.conv.tensor().dim(1).ok()? <= RECOMPUTE_MAX_INPUT_CHANNELS =>
            {
                Some(ops::RecomputedConv::Pointwise)
            }
            ConvKind::Pointwise | ConvKind::Dense { .. } => None,
        }
    }

    fn forward_train(&self, x: &Tensor, momentum: f64) -> CandleResult<Tensor> {
        match self.recomputed() {
            Some(conv) => self
                .bn
                .train_after(x, self.conv.tensor(), conv, self.relu6, momentum),
            None => {
                let y = self.conv(x, self.conv.tensor())?;
                self.bn.train(&y, self.relu6, momentum)
            }
        }
    }

    fn fold(&self) -> CandleResult<FoldedConv> {
        let (scale, shift) = self.bn.folded()?;
        let w = self.conv.tensor().detach();
        let weight = w.broadcast_mul(&scale.reshape((scale.dim(0)?, 1, 1, 1))?)?;
        Ok(FoldedConv {
            weight,
            bias: shift,
            kind: self.kind,
            relu6: self.relu6,
        })
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(self.conv.name.clone(), self.conv.tensor().detach())];
        out.extend(self.bn.tensors());
        out
    }

    fn params(&self) -> [&Param; 3] {
        [&self.conv, &self.bn.weight, &self.bn.bias]
    }
}

/// One MBConv block: optional 1×1 expansion, depthwise conv, 1×1 projection, identity skip.
#[derive(Debug)]
pub struct MbConvBlock {
    pub spec: BlockSpec,
    pub expand: Option<ConvBn>,
    pub depthwise: ConvBn,
    pub project: ConvBn,
}

impl MbConvBlock {
    fn build(spec: BlockSpec, src: &mut Source<'_>, trainable: bool) -> Result<Self, ModelError> {
        let p = format!("_blocks.{}", spec.index);
        let mid = spec.expanded_channels();
        let expand = (spec.expand_ratio != 1)
            .then(|| {
                ConvBn::build(
                    format!("{p}._expand_conv"),
                    format!("{p}._bn0"),
                    ConvKind::Pointwise,
                    spec.in_channels,
                    mid,
                    true,
                    src,
                    trainable,
                )
            })
            .transpose()?;
        let depthwise = ConvBn::build(
            format!("{p}._depthwise_conv"),
            format!("{p}._bn1"),
            ConvKind::Depthwise {
                kernel: spec.kernel,
                stride: spec.stride,
            },
            mid,
            mid,
            true,
            src,
            trainable,
        )?;
        let project = ConvBn::build(
            format!("{p}._project_conv"),
            format!("{p}._bn2"),
            ConvKind::Pointwise,
            mid,
            spec.out_channels,
            false,
            src,
            trainable,
        )?;
        Ok(Self {
            spec,
            expand,
            depthwise,
            project,
        })
    }

    fn layers(&self) -> impl Iterator<Item = &ConvBn> {
        self.expand.iter().chain([&self.depthwise, &self.project])
    }

    fn forward_train(&self, x: &Tensor, momentum: f64) -> CandleResult<Tensor> {
        let mut h = x.clone();
        if let Some(expand) = &self.expand {
            h = expand.forward_train(&h, momentum)?;
        }
        h = self.depthwise.forward_train(&h, momentum)?;
        h = self.project.forward_train(&h, momentum)?;
        if self.spec.has_skip() { h + x } else { Ok(h) }
    }
}

/// One backbone unit.
#[derive(Debug)]
pub enum UnitLayers {
    Stem(ConvBn),
    Block(Box<MbConvBlock>),
    Head(ConvBn),
}

impl UnitLayers {
    fn layers(&self) -> Vec<&ConvBn> {
        match self {
            UnitLayers::Stem(c) | UnitLayers::Head(c) => vec![c],
            UnitLayers::Block(b) => b.layers().collect(),
        }
    }

    fn forward_train(&self, x: &Tensor, momentum: f64) -> CandleResult<Tensor> {
        match self {
            UnitLayers::Stem(c) | UnitLayers::Head(c) => c.forward_train(x, momentum),
            UnitLayers::Block(b) => b.forward_train(x, momentum),
        }
    }

    fn fold(&self) -> CandleResult<FoldedUnit> {
        Ok(match self {
            UnitLayers::Stem(c) | UnitLayers::Head(c) => FoldedUnit::Single(c.fold()?),
            UnitLayers::Block(b) => FoldedUnit::Block {
                expand: b.expand.as_ref().map(ConvBn::fold).transpose()?,
                depthwise: b.depthwise.fold()?,
                project: b.project.fold()?,
                skip: b.spec.has_skip(),
            },
        })
    }
}

/// The classifier on pooled features: `_fc`, a linear layer.
#[derive(Debug)]
pub struct Classifier {
    pub weight: Param,
    pub bias: Param,
}

impl Classifier {
    pub fn forward(&self, features: &Tensor) -> CandleResult<Tensor> {
        candle_nn::Linear::new(
            self.weight.tensor().clone(),
            Some(self.bias.tensor().clone()),
        )
        .forward(features)
    }

    pub fn vars(&self) -> Vec<Var> {
        [&self.weight, &self.bias]
            .into_iter()
            .filter_map(|p| p.var().cloned())
            .collect()
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

/// EfficientNet-Lite0 cut after a unit, with a classifier on its pooled features.
#[derive(Debug)]
pub struct Network {
    pub spec: NetworkSpec,
    /// Units 0..=cut, in order.
    pub units: Vec<UnitLayers>,
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
            return Err(ModelError::Init(
                "a classifier needs at least one class".into(),
            ));
        }
        let first_trainable = spec.first_trainable_unit();
        let mut src = Source {
            weights,
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
        };
        let specs = block_specs();
        let mut units = Vec::with_capacity(spec.cut_after.index() + 1);
        for unit in Unit::all().take(spec.cut_after.index() + 1) {
            let trainable = unit.index() >= first_trainable;
            units.push(match unit {
                Unit::Stem => UnitLayers::Stem(ConvBn::build(
                    "_conv_stem".into(),
                    "_bn0".into(),
                    ConvKind::Dense {
                        kernel: 3,
                        stride: 2,
                    },
                    3,
                    STEM_CHANNELS,
                    true,
                    &mut src,
                    trainable,
                )?),
                Unit::Block(b) => {
                    UnitLayers::Block(Box::new(MbConvBlock::build(specs[b], &mut src, trainable)?))
                }
                Unit::Head => UnitLayers::Head(ConvBn::build(
                    "_conv_head".into(),
                    "_bn1".into(),
                    ConvKind::Pointwise,
                    specs[specs.len() - 1].out_channels,
                    HEAD_CHANNELS,
                    true,
                    &mut src,
                    trainable,
                )?),
            });
        }
        let features = spec.feature_dim();
        let w_shape = [spec.num_classes, features];
        let (w, b) = match (head, weights) {
            (HeadInit::FromWeights, Some(weights)) => (
                weights.get("_fc.weight", &w_shape)?,
                weights.get("_fc.bias", &[spec.num_classes])?,
            ),
            (HeadInit::FromWeights, None) => {
                return Err(ModelError::MissingTensor("_fc.weight".into()));
            }
            (HeadInit::Random, _) => {
                // PyTorch's `nn.Linear` default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight
                // and bias. (torchvision's EfficientNet uses 1/sqrt(classes), sized for 1000
                // classes: with a handful it starts with logits in the tens.)
                let range = 1.0 / (features as f32).sqrt();
                let mut fresh = Source {
                    weights: None,
                    rng: ChaCha8Rng::seed_from_u64(seed ^ HEAD_SEED_SALT),
                    device: device.clone(),
                };
                (
                    fresh.tensor("_fc.weight", &w_shape, RandomInit::Uniform(range))?,
                    fresh.tensor("_fc.bias", &[spec.num_classes], RandomInit::Uniform(range))?,
                )
            }
        };
        let classifier = Classifier {
            weight: Param::new("_fc.weight".into(), w, true)?,
            bias: Param::new("_fc.bias".into(), b, true)?,
        };
        Ok(Self {
            spec,
            units,
            classifier,
            device: device.clone(),
        })
    }

    /// The ImageNet classifier from the bundled weights.
    pub fn imagenet(device: &Device) -> Result<Self, ModelError> {
        let weights = Weights::bundled(device)?;
        Self::build(
            NetworkSpec::imagenet(),
            Some(&weights),
            HeadInit::FromWeights,
            0,
            device,
        )
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Trainable backbone parameters (for the backbone optimiser).
    pub fn backbone_vars(&self) -> Vec<Var> {
        self.units
            .iter()
            .flat_map(UnitLayers::layers)
            .flat_map(ConvBn::params)
            .filter_map(|p| p.var().cloned())
            .collect()
    }

    /// Trainable parameters grouped for the optimisers: weight decay applies to convolution
    /// and classifier weights, not to BatchNorm parameters or biases.
    pub fn param_groups(&self) -> ParamGroups {
        let mut groups = ParamGroups::default();
        for layer in self.units.iter().flat_map(UnitLayers::layers) {
            groups.backbone_decay.extend(layer.conv.var().cloned());
            groups
                .backbone_no_decay
                .extend(layer.bn.weight.var().cloned());
            groups
                .backbone_no_decay
                .extend(layer.bn.bias.var().cloned());
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
        for layer in self.units.iter().flat_map(UnitLayers::layers) {
            vars.extend(layer.params().into_iter().filter_map(|p| p.var().cloned()));
            vars.push(layer.bn.running_mean.clone());
            vars.push(layer.bn.running_var.clone());
        }
        vars.extend(self.classifier.vars());
        vars
    }

    /// Every parameter with its name, and whether it is trainable.
    pub fn params(&self) -> Vec<(&Param, bool)> {
        self.units
            .iter()
            .flat_map(UnitLayers::layers)
            .flat_map(ConvBn::params)
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
        let mut out: Vec<(String, Tensor)> = self
            .units
            .iter()
            .flat_map(UnitLayers::layers)
            .flat_map(ConvBn::tensors)
            .collect();
        out.push((
            "_fc.weight".into(),
            self.classifier.weight.tensor().detach(),
        ));
        out.push(("_fc.bias".into(), self.classifier.bias.tensor().detach()));
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
                .map(UnitLayers::fold)
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
        ops::global_avg_pool(&h)
    }
}

/// A convolution with its BatchNorm folded into weight and bias.
#[derive(Debug, Clone)]
pub struct FoldedConv {
    weight: Tensor,
    bias: Tensor,
    kind: ConvKind,
    relu6: bool,
}

impl FoldedConv {
    fn forward(&self, x: &Tensor, residual: Option<&Tensor>) -> CandleResult<Tensor> {
        match self.kind {
            ConvKind::Depthwise { stride, .. } => {
                ops::depthwise_conv_bias_act(x, &self.weight, &self.bias, stride, self.relu6)
            }
            ConvKind::Dense { stride, .. } => {
                let y = ops::conv_same(x, &self.weight, stride)?;
                ops::bias_act_inplace(y, &self.bias, residual, self.relu6)
            }
            ConvKind::Pointwise => {
                let y = ops::conv1x1(x, &self.weight)?;
                ops::bias_act_inplace(y, &self.bias, residual, self.relu6)
            }
        }
    }
}

/// One unit, folded.
#[derive(Debug, Clone)]
pub enum FoldedUnit {
    Single(FoldedConv),
    Block {
        expand: Option<FoldedConv>,
        depthwise: FoldedConv,
        project: FoldedConv,
        skip: bool,
    },
}

impl FoldedUnit {
    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        match self {
            FoldedUnit::Single(c) => c.forward(x, None),
            FoldedUnit::Block {
                expand,
                depthwise,
                project,
                skip,
            } => {
                let h = match expand {
                    Some(e) => e.forward(x, None)?,
                    None => x.clone(),
                };
                let h = depthwise.forward(&h, None)?;
                project.forward(&h, skip.then_some(x))
            }
        }
    }
}

/// Inference network with BatchNorm folded into the convolutions; no gradients.
#[derive(Debug, Clone)]
pub struct FoldedNetwork {
    units: Vec<FoldedUnit>,
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

    /// All units, then global average pooling: `[N, H, W, 3]` → `[N, features]`.
    pub fn features(&self, images: &Tensor) -> CandleResult<Tensor> {
        let h = self.forward_units(images, 0, self.units.len())?;
        ops::global_avg_pool(&h)
    }

    /// Pooled features after every unit up to `last` (inclusive), from one pass: the depth
    /// probe's input.
    pub fn features_at_each_unit(&self, images: &Tensor, last: usize) -> CandleResult<Vec<Tensor>> {
        let mut h = images.detach();
        let mut out = Vec::new();
        for unit in self.units.iter().take(last + 1) {
            h = unit.forward(&h)?;
            out.push(ops::global_avg_pool(&h)?);
        }
        Ok(out)
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

/// Softmax over the last axis in f32.
pub fn softmax(logits: &Tensor) -> CandleResult<Tensor> {
    candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?)
}
