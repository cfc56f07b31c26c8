//! BatchNorm with learnable affine parameters and running statistics.

use candle_core::{Result as CandleResult, Tensor, Var};

use super::param::{Param, ParamSource, RandomInit};
use super::path::ParamPath;
use crate::model::error::ModelError;
use crate::ops;

/// BatchNorm with learnable affine parameters and running statistics.
#[derive(Debug)]
pub struct BatchNorm {
    pub weight: Param,
    pub bias: Param,
    running_mean: Var,
    running_var: Var,
    path: ParamPath,
    pub(super) eps: f64,
}

impl BatchNorm {
    pub(super) fn build(
        path: ParamPath,
        channels: usize,
        eps: f64,
        src: &mut ParamSource<'_>,
        trainable: bool,
    ) -> Result<Self, ModelError> {
        let shape = [channels];
        let weight = src.tensor(&path.tensor("weight"), &shape, RandomInit::Constant(1.0))?;
        let bias = src.tensor(&path.tensor("bias"), &shape, RandomInit::Constant(0.0))?;
        let mean = src.tensor(
            &path.tensor("running_mean"),
            &shape,
            RandomInit::Constant(0.0),
        )?;
        let var = src.tensor(
            &path.tensor("running_var"),
            &shape,
            RandomInit::Constant(1.0),
        )?;
        Ok(Self {
            weight: Param::new_no_decay(path.tensor("weight"), weight, trainable)?,
            bias: Param::new_no_decay(path.tensor("bias"), bias, trainable)?,
            running_mean: Var::from_tensor(&mean)?,
            running_var: Var::from_tensor(&var)?,
            path,
            eps,
        })
    }

    /// Eval-mode BatchNorm as `(scale, shift)`.
    pub(super) fn folded(&self) -> CandleResult<(Tensor, Tensor)> {
        let scale = self
            .weight
            .tensor()
            .detach()
            .div(&(self.running_var.as_tensor().detach() + self.eps)?.sqrt()?)?;
        let shift =
            (self.bias.tensor().detach() - self.running_mean.as_tensor().detach().mul(&scale)?)?;
        Ok((scale, shift))
    }

    /// Moves the running averages towards one training batch's statistics.
    pub(super) fn update_running_stats(
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

    pub(super) fn tensors(&self) -> Vec<(String, Tensor)> {
        vec![
            (self.weight.name.clone(), self.weight.tensor().detach()),
            (self.bias.name.clone(), self.bias.tensor().detach()),
            (
                self.path.tensor("running_mean"),
                self.running_mean.as_tensor().detach(),
            ),
            (
                self.path.tensor("running_var"),
                self.running_var.as_tensor().detach(),
            ),
        ]
    }
}
