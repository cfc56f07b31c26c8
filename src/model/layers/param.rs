//! Parameters and where their values come from while a network is built.

use candle_core::{Device, Result as CandleResult, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::model::error::ModelError;
use crate::model::weights::Weights;

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

    /// A copy with its current value as a constant (no `Var`: nothing trains it).
    pub fn constant(&self) -> Self {
        Self {
            var: None,
            tensor: self.tensor.detach(),
            ..self.clone()
        }
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
