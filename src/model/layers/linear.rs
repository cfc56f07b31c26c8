//! Linear layers: the classifier on pooled features, and fully connected backbone layers.

use candle_core::{Module, Result as CandleResult, Tensor, Var};

use super::layer::Layer;
use super::param::{Param, ParamSource, RandomInit};
use super::path::ParamPath;
use crate::model::error::ModelError;
use crate::ops::Act;

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

/// A fully connected layer inside a backbone (VGG's fc6 and fc7), with its activation.
#[derive(Debug)]
pub struct Linear {
    pub weight: Param,
    pub bias: Param,
    pub act: Act,
}

impl Linear {
    /// Builds `path.weight` `[out, in]` and `path.bias` `[out]`.
    pub fn build(
        path: &ParamPath,
        c_in: usize,
        c_out: usize,
        act: Act,
        src: &mut ParamSource<'_>,
        trainable: bool,
    ) -> Result<Self, ModelError> {
        let range = 1.0 / (c_in as f32).sqrt();
        let (w_name, b_name) = (path.tensor("weight"), path.tensor("bias"));
        let w = src.tensor(&w_name, &[c_out, c_in], RandomInit::Uniform(range))?;
        let b = src.tensor(&b_name, &[c_out], RandomInit::Uniform(range))?;
        Ok(Self {
            weight: Param::new(w_name, w, trainable)?,
            bias: Param::new_no_decay(b_name, b, trainable)?,
            act,
        })
    }

    pub fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        let y = candle_nn::Linear::new(
            self.weight.tensor().clone(),
            Some(self.bias.tensor().clone()),
        )
        .forward(x)?;
        crate::ops::activate(&y, self.act)
    }

    /// A copy with constant (detached) values, for inference.
    pub fn frozen(&self) -> Linear {
        let constant = |p: &Param| p.constant();
        Linear {
            weight: constant(&self.weight),
            bias: constant(&self.bias),
            act: self.act,
        }
    }
}

impl Linear {
    /// Adds the layer to an ONNX graph.
    pub fn export_onnx(
        &self,
        g: &mut crate::model::onnx::OnnxGraph,
        x: &crate::model::onnx::Port,
    ) -> Result<crate::model::onnx::Port, ModelError> {
        g.linear(x, self.weight.tensor(), self.bias.tensor(), self.act)
    }
}

impl Layer for Linear {
    fn params(&self) -> Vec<&Param> {
        vec![&self.weight, &self.bias]
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        vec![self.weight.named(), self.bias.named()]
    }
}
