//! Convolution layers: with BatchNorm (Lite0, ResNet) or a bias (VGG), and their folded
//! inference form.

use std::sync::Arc;

use candle_core::{Result as CandleResult, Tensor, Var};

use super::kind::ConvKind;
use super::layer::Layer;
use super::norm::BatchNorm;
use super::param::{Param, ParamSource, RandomInit};
use super::path::ParamPath;
use crate::model::architecture::{BackboneUnit, FoldedUnit};
use crate::model::error::ModelError;
use crate::model::onnx::{OnnxGraph, Port};
use crate::ops;
use crate::ops::Act;
use crate::runtime;

/// In low-memory mode, 1×1 convolutions with at most this many input channels are recomputed in
/// backward rather than kept (in Lite0, the expansions of blocks 1–5: 16–40 inputs, 96–240
/// outputs at high resolution).
const RECOMPUTE_MAX_INPUT_CHANNELS: usize = 40;

/// Whether training recomputes a convolution in backward instead of keeping its output: only in
/// low-memory mode ([`runtime::low_memory`]), and only where that costs little for the memory its
/// output takes (depthwise: k² multiply-adds per output value; 1×1 with at most
/// [`RECOMPUTE_MAX_INPUT_CHANNELS`] inputs). Kept, they cost a Lite0 fine-tune step 2.24 → 2.58 GB
/// and make it 10 % faster (README, Performance).
fn recomputes(kind: ConvKind, c_in: usize, low_memory: bool) -> bool {
    low_memory
        && match kind {
            ConvKind::Depthwise { .. } => true,
            ConvKind::Pointwise => c_in <= RECOMPUTE_MAX_INPUT_CHANNELS,
            ConvKind::Dense { .. } => false,
        }
}

/// A bias-free convolution followed by BatchNorm and an activation.
#[derive(Debug)]
pub struct ConvBn {
    pub conv: Param,
    pub bn: BatchNorm,
    pub kind: ConvKind,
    pub act: Act,
}

/// The shape of a [`ConvBn`] and the checkpoint names of its two layers.
#[derive(Debug, Clone)]
pub struct ConvBnSpec {
    /// The convolution's checkpoint path (`….weight`).
    pub conv: ParamPath,
    /// Its BatchNorm's path (`….weight`, `….bias`, `….running_mean`, `….running_var`).
    pub bn: ParamPath,
    pub kind: ConvKind,
    pub c_in: usize,
    pub c_out: usize,
    pub act: Act,
    pub bn_eps: f64,
}

impl ConvBnSpec {
    /// The convolution `path.conv` and its BatchNorm `path.bn` (siblings under one path, as
    /// in every checkpoint the networks read).
    pub fn at(
        path: &ParamPath,
        (conv, bn): (&str, &str),
        kind: ConvKind,
        (c_in, c_out): (usize, usize),
        act: Act,
        bn_eps: f64,
    ) -> Self {
        Self {
            conv: path.pp(conv),
            bn: path.pp(bn),
            kind,
            c_in,
            c_out,
            act,
            bn_eps,
        }
    }
}

impl ConvBn {
    /// Builds the layer; parameters come from `src` in the order conv, BatchNorm.
    pub fn build(
        spec: ConvBnSpec,
        src: &mut ParamSource<'_>,
        trainable: bool,
    ) -> Result<Self, ModelError> {
        let ConvBnSpec {
            conv: conv_path,
            bn: bn_path,
            kind,
            c_in,
            c_out,
            act,
            bn_eps,
        } = spec;
        let shape = kind.weight_shape(c_in, c_out);
        let name = conv_path.tensor("weight");
        let w = src.tensor(&name, &shape, RandomInit::KaimingFanOut)?;
        Ok(Self {
            conv: Param::new(name, w, trainable)?,
            bn: BatchNorm::build(bn_path, c_out, bn_eps, src, trainable)?,
            kind,
            act,
        })
    }

    /// The convolution as fused with its BatchNorm in training, and whether backward recomputes
    /// it instead of keeping its output ([`recomputes`]).
    fn fused(&self) -> (ops::FusedConv, bool) {
        let c_in = self.conv.tensor().dim(1).unwrap_or(usize::MAX);
        let recompute = recomputes(self.kind, c_in, runtime::low_memory());
        (self.kind.fused(), recompute)
    }

    pub fn forward_train(&self, x: &Tensor, momentum: f64) -> CandleResult<Tensor> {
        let (y, stats) = ops::conv_bn_train(x, &self.block_layer())?;
        self.bn.update_running_stats(stats, x.device(), momentum)?;
        Ok(y)
    }

    fn block_layer(&self) -> ops::BlockLayer<'_> {
        let (conv, recompute) = self.fused();
        ops::BlockLayer {
            weight: self.conv.tensor(),
            gamma: self.bn.weight.tensor(),
            beta: self.bn.bias.tensor(),
            conv,
            recompute,
            eps: self.bn.eps,
            act: self.act,
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
            act: self.act,
        })
    }
}

/// `act(chain(x) + shortcut(x))` in training mode as one graph node ([`ops::train_block`]):
/// the shortcut is `projection(x)`, or `x` where `identity`, or nothing. Updates every layer's
/// running statistics.
pub fn train_block(
    x: &Tensor,
    chain: &[&ConvBn],
    projection: Option<&ConvBn>,
    identity: bool,
    act: Act,
    momentum: f64,
) -> CandleResult<Tensor> {
    let layers: Vec<ops::BlockLayer<'_>> = chain.iter().map(|l| l.block_layer()).collect();
    let shortcut = match (projection, identity) {
        (Some(p), _) => ops::Shortcut::Projection(p.block_layer()),
        (None, true) => ops::Shortcut::Identity,
        (None, false) => ops::Shortcut::None,
    };
    let (y, stats) = ops::train_block(x, &layers, shortcut, act)?;
    for (layer, stats) in chain.iter().chain(projection.as_ref()).zip(stats) {
        layer.bn.update_running_stats(stats, x.device(), momentum)?;
    }
    Ok(y)
}

impl Layer for ConvBn {
    fn params(&self) -> Vec<&Param> {
        vec![&self.conv, &self.bn.weight, &self.bn.bias]
    }

    fn running_stats(&self) -> Vec<&Var> {
        self.bn.running_stats().to_vec()
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![self.conv.named()];
        out.extend(self.bn.tensors());
        out
    }

    fn batch_norm(&self) -> Option<&BatchNorm> {
        Some(&self.bn)
    }
}

/// A convolution with a bias and an activation, no BatchNorm (VGG).
#[derive(Debug)]
pub struct ConvBias {
    pub conv: Param,
    pub bias: Param,
    pub kind: ConvKind,
    pub act: Act,
}

impl ConvBias {
    /// Builds `path.weight` and `path.bias`.
    pub fn build(
        path: &ParamPath,
        kind: ConvKind,
        (c_in, c_out): (usize, usize),
        act: Act,
        src: &mut ParamSource<'_>,
        trainable: bool,
    ) -> Result<Self, ModelError> {
        let (w_name, b_name) = (path.tensor("weight"), path.tensor("bias"));
        let w = src.tensor(
            &w_name,
            &kind.weight_shape(c_in, c_out),
            RandomInit::KaimingFanOut,
        )?;
        let b = src.tensor(&b_name, &[c_out], RandomInit::Constant(0.0))?;
        Ok(Self {
            conv: Param::new(w_name, w, trainable)?,
            bias: Param::new_no_decay(b_name, b, trainable)?,
            kind,
            act,
        })
    }

    /// One graph node that keeps only its output (see [`ops::conv_bias_act`]), 2×2 max pooled
    /// where `pool`.
    pub fn forward_train(&self, x: &Tensor, pool: bool) -> CandleResult<Tensor> {
        let (w, b) = (self.conv.tensor(), self.bias.tensor());
        ops::conv_bias_act(x, w, b, self.kind.fused(), self.act, pool)
    }

    pub fn fold(&self) -> FoldedConv {
        FoldedConv {
            weight: self.conv.tensor().detach(),
            bias: self.bias.tensor().detach(),
            kind: self.kind,
            act: self.act,
        }
    }
}

impl Layer for ConvBias {
    fn params(&self) -> Vec<&Param> {
        vec![&self.conv, &self.bias]
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        vec![self.conv.named(), self.bias.named()]
    }
}

/// A convolution with its BatchNorm folded into weight and bias.
#[derive(Debug, Clone)]
pub struct FoldedConv {
    weight: Tensor,
    bias: Tensor,
    kind: ConvKind,
    act: Act,
}

impl FoldedConv {
    /// Adds the convolution (and `residual`, and the activation) to an ONNX graph.
    pub fn export_onnx(
        &self,
        g: &mut OnnxGraph,
        x: &Port,
        residual: Option<&Port>,
    ) -> Result<Port, ModelError> {
        g.conv(x, &self.weight, &self.bias, self.kind, residual, self.act)
    }

    pub fn kind(&self) -> ConvKind {
        self.kind
    }

    /// Its folded weights, bias and activation, for ops that run several layers at once.
    pub fn tensors(&self) -> ops::FoldedTensors<'_> {
        ops::FoldedTensors {
            weight: &self.weight,
            bias: &self.bias,
            act: self.act,
        }
    }

    /// The same convolution with another activation after it.
    pub fn with_act(self, act: Act) -> Self {
        Self { act, ..self }
    }

    /// The folded convolution, its bias, `residual` added (if any), then the activation.
    pub fn forward(&self, x: &Tensor, residual: Option<&Tensor>) -> CandleResult<Tensor> {
        match self.kind {
            ConvKind::Depthwise { stride, .. } if residual.is_none() => {
                ops::depthwise_conv_bias_act(x, &self.weight, &self.bias, stride, self.act)
            }
            ConvKind::Dense {
                stride, padding, ..
            } => ops::conv2d_bias_act(
                x,
                &self.weight,
                &self.bias,
                stride,
                padding,
                residual,
                self.act,
            ),
            ConvKind::Pointwise => {
                ops::conv1x1_bias_act(x, &self.weight, &self.bias, residual, self.act)
            }
            kind => {
                let y = kind.fused().apply(x, &self.weight)?;
                ops::bias_act_inplace(y, &self.bias, residual, self.act)
            }
        }
    }
}

/// A lone convolution is a unit too (Lite0's stem and head, VGG's convolutions).
impl BackboneUnit for ConvBn {
    fn forward_train(&self, x: &Tensor, bn_momentum: f64) -> CandleResult<Tensor> {
        ConvBn::forward_train(self, x, bn_momentum)
    }

    fn fold(&self) -> CandleResult<Arc<dyn FoldedUnit>> {
        Ok(Arc::new(ConvBn::fold(self)?))
    }

    fn layers(&self) -> Vec<&dyn Layer> {
        vec![self]
    }
}

impl FoldedUnit for FoldedConv {
    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        FoldedConv::forward(self, x, None)
    }

    fn export_onnx(&self, g: &mut OnnxGraph, x: &Port) -> Result<Port, ModelError> {
        FoldedConv::export_onnx(self, g, x, None)
    }
}

impl BackboneUnit for ConvBias {
    fn forward_train(&self, x: &Tensor, _bn_momentum: f64) -> CandleResult<Tensor> {
        ConvBias::forward_train(self, x, false)
    }

    fn fold(&self) -> CandleResult<Arc<dyn FoldedUnit>> {
        Ok(Arc::new(ConvBias::fold(self)))
    }

    fn layers(&self) -> Vec<&dyn Layer> {
        vec![self]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Padding;

    #[test]
    fn only_low_memory_mode_recomputes_and_only_cheap_convolutions() {
        let depthwise = ConvKind::Depthwise {
            kernel: 3,
            stride: 1,
        };
        let dense = ConvKind::Dense {
            kernel: 3,
            stride: 1,
            padding: Padding::Symmetric(1),
        };
        for (kind, c_in) in [(depthwise, 96), (ConvKind::Pointwise, 16), (dense, 16)] {
            assert!(!recomputes(kind, c_in, false), "{kind:?}");
        }
        assert!(recomputes(depthwise, 1152, true));
        assert!(recomputes(
            ConvKind::Pointwise,
            RECOMPUTE_MAX_INPUT_CHANNELS,
            true
        ));
        assert!(!recomputes(
            ConvKind::Pointwise,
            RECOMPUTE_MAX_INPUT_CHANNELS + 1,
            true
        ));
        assert!(!recomputes(dense, 16, true));
    }
}
