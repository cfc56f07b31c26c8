//! The layers backbones are made of: parameters, BatchNorm, convolutions (with BatchNorm or a
//! bias) and linear layers, in training form and with BatchNorm folded for inference.

mod conv;
mod linear;
mod norm;

use candle_core::{Device, Result as CandleResult, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

pub use conv::{ConvBias, ConvBn, ConvBnSpec, ConvKind, FoldedConv, train_block};
pub use linear::{Classifier, Linear};
pub use norm::BatchNorm;

use super::ModelError;
use super::weights::Weights;

/// The activation after a layer (the kernels apply it in the pass that writes the layer's
/// output).
pub use crate::ops::Act;

/// What the network needs of every layer: its parameters, its other state, its saved form.
pub trait Layer: std::fmt::Debug + Send + Sync {
    fn params(&self) -> Vec<&Param>;
    /// State that training changes besides the parameters (BatchNorm running statistics).
    fn running_stats(&self) -> Vec<&Var> {
        Vec::new()
    }
    /// Every tensor to save, by checkpoint name.
    fn tensors(&self) -> Vec<(String, Tensor)>;
    /// The layer's BatchNorm, if it has one.
    fn batch_norm(&self) -> Option<&BatchNorm> {
        None
    }
}

/// A parameter: a trainable `Var` or a constant.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    tensor: Tensor,
    var: Option<Var>,
    /// Whether AdamW's weight decay applies (weights of convolutions and linear layers; not
    /// biases or BatchNorm parameters).
    pub decay: bool,
}

impl Param {
    /// A weight (decayed when trained).
    pub fn new(name: String, value: Tensor, trainable: bool) -> CandleResult<Self> {
        Self::with_decay(name, value, trainable, true)
    }

    /// A bias or BatchNorm parameter (never decayed).
    pub fn new_no_decay(name: String, value: Tensor, trainable: bool) -> CandleResult<Self> {
        Self::with_decay(name, value, trainable, false)
    }

    fn with_decay(name: String, value: Tensor, trainable: bool, decay: bool) -> CandleResult<Self> {
        let (tensor, var) = if trainable {
            let var = Var::from_tensor(&value)?;
            (var.as_tensor().clone(), Some(var))
        } else {
            (value.detach(), None)
        };
        Ok(Self {
            name,
            tensor,
            var,
            decay,
        })
    }

    /// The saved form: name and current value.
    pub fn named(&self) -> (String, Tensor) {
        (self.name.clone(), self.tensor.detach())
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
