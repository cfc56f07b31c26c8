//! The layers backbones are made of: parameters, BatchNorm, convolution + BatchNorm(+ReLU6)
//! and the linear classifier, in training form and with BatchNorm folded for inference.

use std::sync::Arc;

use candle_core::{Device, Module, Result as CandleResult, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use super::ModelError;
use super::backbone::{BackboneUnit, FoldedUnit};
use super::weights::Weights;
use crate::ops;

/// 1×1 convolutions with at most this many input channels are recomputed in backward rather
/// than kept (in Lite0, the expansions of blocks 1–5: 16–40 inputs, 96–240 outputs at high
/// resolution).
const RECOMPUTE_MAX_INPUT_CHANNELS: usize = 40;

/// A parameter: a trainable `Var` or a constant.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    tensor: Tensor,
    var: Option<Var>,
}

impl Param {
    pub fn new(name: String, value: Tensor, trainable: bool) -> CandleResult<Self> {
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

/// Where parameter values come from while building: the weights given, or seeded random
/// draws (in build order, so the same seed builds the same network).
#[derive(Debug)]
pub struct ParamSource<'a> {
    weights: Option<&'a Weights>,
    rng: ChaCha8Rng,
    device: Device,
}

impl<'a> ParamSource<'a> {
    pub fn new(weights: Option<&'a Weights>, rng: ChaCha8Rng, device: &Device) -> Self {
        Self {
            weights,
            rng,
            device: device.clone(),
        }
    }

    /// The tensor `name` of `shape`, from the weights or drawn by `init`.
    pub fn tensor(
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
                    Normal::new(0.0f32, std).map_err(|e| ModelError::RandomInit(e.to_string()))?;
                (0..count).map(|_| normal.sample(&mut self.rng)).collect()
            }
            RandomInit::Uniform(range) => {
                let uniform = Uniform::new_inclusive(-range, range)
                    .map_err(|e| ModelError::RandomInit(e.to_string()))?;
                (0..count).map(|_| uniform.sample(&mut self.rng)).collect()
            }
            RandomInit::Constant(v) => vec![v; count],
        };
        Ok(Tensor::from_vec(values, shape, &self.device)?)
    }
}

/// How a parameter is drawn when no weights are given.
#[derive(Debug, Clone, Copy)]
pub enum RandomInit {
    /// Kaiming normal, fan-out mode (convolutions).
    KaimingFanOut,
    /// U(-r, r).
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
    eps: f64,
}

impl BatchNorm {
    fn build(
        prefix: String,
        channels: usize,
        eps: f64,
        src: &mut ParamSource<'_>,
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
            eps,
        })
    }

    /// Eval-mode BatchNorm as `(scale, shift)`.
    fn folded(&self) -> CandleResult<(Tensor, Tensor)> {
        let scale = self
            .weight
            .tensor()
            .detach()
            .div(&(self.running_var.as_tensor().detach() + self.eps)?.sqrt()?)?;
        let shift =
            (self.bias.tensor().detach() - self.running_mean.as_tensor().detach().mul(&scale)?)?;
        Ok((scale, shift))
    }

    /// Train mode: normalise with batch statistics and update the running averages.
    fn train(&self, x: &Tensor, relu6: bool, momentum: f64) -> CandleResult<Tensor> {
        let (y, stats) =
            ops::batch_norm_train(x, self.weight.tensor(), self.bias.tensor(), self.eps, relu6)?;
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
            self.eps,
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

    /// The running statistics (state that training changes besides the parameters).
    pub fn running_stats(&self) -> [&Var; 2] {
        [&self.running_mean, &self.running_var]
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

/// The shape of a [`ConvBn`] and the checkpoint names of its two layers.
#[derive(Debug, Clone)]
pub struct ConvBnSpec {
    pub conv_name: String,
    pub bn_name: String,
    pub kind: ConvKind,
    pub c_in: usize,
    pub c_out: usize,
    pub relu6: bool,
    pub bn_eps: f64,
}

impl ConvBn {
    /// Builds the layer; parameters come from `src` in the order conv, BatchNorm.
    pub fn build(
        spec: ConvBnSpec,
        src: &mut ParamSource<'_>,
        trainable: bool,
    ) -> Result<Self, ModelError> {
        let ConvBnSpec {
            conv_name,
            bn_name,
            kind,
            c_in,
            c_out,
            relu6,
            bn_eps,
        } = spec;
        let shape = match kind {
            ConvKind::Dense { kernel, .. } => vec![c_out, c_in, kernel, kernel],
            ConvKind::Depthwise { kernel, .. } => vec![c_out, 1, kernel, kernel],
            ConvKind::Pointwise => vec![c_out, c_in, 1, 1],
        };
        let name = format!("{conv_name}.weight");
        let w = src.tensor(&name, &shape, RandomInit::KaimingFanOut)?;
        Ok(Self {
            conv: Param::new(name, w, trainable)?,
            bn: BatchNorm::build(bn_name, c_out, bn_eps, src, trainable)?,
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
    /// per output value; 1×1 with at most [`RECOMPUTE_MAX_INPUT_CHANNELS`] inputs). Fewer
    /// fresh pages to fault in pays for the second convolution (README, Performance).
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

    pub fn forward_train(&self, x: &Tensor, momentum: f64) -> CandleResult<Tensor> {
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

    pub fn fold(&self) -> CandleResult<FoldedConv> {
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

    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(self.conv.name.clone(), self.conv.tensor().detach())];
        out.extend(self.bn.tensors());
        out
    }

    pub fn params(&self) -> [&Param; 3] {
        [&self.conv, &self.bn.weight, &self.bn.bias]
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

/// A convolution with its BatchNorm folded into weight and bias.
#[derive(Debug, Clone)]
pub struct FoldedConv {
    weight: Tensor,
    bias: Tensor,
    kind: ConvKind,
    relu6: bool,
}

impl FoldedConv {
    /// The folded convolution, its bias, `residual` added (if any), then ReLU6 (if any).
    pub fn forward(&self, x: &Tensor, residual: Option<&Tensor>) -> CandleResult<Tensor> {
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

/// A lone convolution is a unit too (Lite0's stem and head).
impl BackboneUnit for ConvBn {
    fn forward_train(&self, x: &Tensor, bn_momentum: f64) -> CandleResult<Tensor> {
        ConvBn::forward_train(self, x, bn_momentum)
    }

    fn fold(&self) -> CandleResult<Arc<dyn FoldedUnit>> {
        Ok(Arc::new(ConvBn::fold(self)?))
    }

    fn layers(&self) -> Vec<&ConvBn> {
        vec![self]
    }
}

impl FoldedUnit for FoldedConv {
    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        FoldedConv::forward(self, x, None)
    }
}
