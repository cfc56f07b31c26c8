//! Train-mode BatchNorm (+activation): one statistics pass, one affine pass, analytic backward.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::kernels;
use super::kernels::Act;
use super::reference;
use super::slices::{is_cpu_f32, storage_slice, vec_tensor, with_slice};
use super::stats::BatchStats;

#[derive(Default)]
pub(super) struct SavedStats {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    var: Vec<f32>,
    count: usize,
}

/// Train-mode BatchNorm (+activation) forward on an NHWC slice with `c` channels: the output and
/// the statistics its backward needs.
pub(super) fn bn_train_forward(
    x: &[f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    act: Act,
) -> Result<(Vec<f32>, SavedStats)> {
    if gamma.len() != c || beta.len() != c {
        bail!("BatchNorm parameters do not match {c} channels");
    }
    let stats = kernels::batch_stats(x, c);
    let inv_std: Vec<f32> = stats
        .var
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + eps).sqrt()) as f32)
        .collect();
    let (scale, shift) = kernels::bn_affine(gamma, beta, &stats.mean, &inv_std);
    let out = kernels::scale_shift(x, &scale, &shift, None, act);
    Ok((
        out,
        SavedStats {
            mean: stats.mean,
            inv_std,
            var: stats.var,
            count: stats.count,
        },
    ))
}

fn store_stats(slot: &Mutex<SavedStats>, stats: SavedStats) -> Result<()> {
    *slot
        .lock()
        .map_err(|_| candle_core::Error::Msg("BatchNorm statistics lock poisoned".into()))? = stats;
    Ok(())
}

fn batch_stats_of(slot: &Mutex<SavedStats>) -> Result<BatchStats> {
    let saved = slot
        .lock()
        .map_err(|_| candle_core::Error::Msg("BatchNorm statistics lock poisoned".into()))?;
    Ok(saved.batch_stats())
}

impl SavedStats {
    /// What the running averages take from this batch.
    pub(super) fn batch_stats(&self) -> BatchStats {
        BatchStats {
            mean: self.mean.clone(),
            var: self.var.clone(),
            count: self.count,
        }
    }

    /// Backward of the forward that saved these statistics, on slices: `x` its input, `dy`
    /// its output's gradient.
    pub(super) fn backward(
        &self,
        x: &[f32],
        dy: &[f32],
        (gamma, beta): (&[f32], &[f32]),
        act: Act,
        need_input_grad: bool,
    ) -> kernels::BnGrads {
        let (mean, inv_std) = (&self.mean, &self.inv_std);
        kernels::bn_train_backward(x, dy, gamma, beta, mean, inv_std, act, need_input_grad)
    }
}

/// Analytic backward of a train-mode BatchNorm (+activation) given its input `x` and output
/// gradient `dy`, with the statistics its forward stored.
fn bn_train_backward(
    x: &Tensor,
    dy: &Tensor,
    gamma_beta: (&[f32], &[f32]),
    saved: &Mutex<SavedStats>,
    act: Act,
    need_input_grad: bool,
) -> Result<kernels::BnGrads> {
    let saved = saved
        .lock()
        .map_err(|_| candle_core::Error::Msg("BatchNorm statistics lock poisoned".into()))?;
    with_slice(x, |xs| {
        with_slice(dy, |dys| {
            Ok(saved.backward(xs, dys, gamma_beta, act, need_input_grad))
        })
    })
}

struct BatchNormTrain {
    eps: f64,
    act: Act,
    saved: Arc<Mutex<SavedStats>>,
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let c = *l1.dims().last().unwrap_or(&0);
        let (gamma, beta) = (storage_slice(s2, l2)?, storage_slice(s3, l3)?);
        let (out, stats) =
            bn_train_forward(storage_slice(s1, l1)?, c, gamma, beta, self.eps, self.act)?;
        store_stats(&self.saved, stats)?;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gamma_values = gamma.to_vec1::<f32>()?;
        let beta_values = beta.to_vec1::<f32>()?;
        let grads = bn_train_backward(
            x,
            grad,
            (&gamma_values, &beta_values),
            &self.saved,
            self.act,
            x.track_op(),
        )?;
        let c = gamma_values.len();
        let grad_x = if x.track_op() {
            Some(vec_tensor(grads.input, x.shape(), x)?)
        } else {
            None
        };
        let grad_gamma = gamma
            .track_op()
            .then(|| vec_tensor(grads.gamma, c, gamma))
            .transpose()?;
        let grad_beta = beta
            .track_op()
            .then(|| vec_tensor(grads.beta, c, beta))
            .transpose()?;
        Ok((grad_x, grad_gamma, grad_beta))
    }
}

/// Train-mode BatchNorm over all but the last (channel) axis, then an activation,
/// in two passes, with an analytic backward. Returns the output and the batch statistics.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: Act,
) -> Result<(Tensor, BatchStats)> {
    if is_cpu_f32(x) {
        let saved = Arc::new(Mutex::new(SavedStats::default()));
        let op = BatchNormTrain {
            eps,
            act,
            saved: saved.clone(),
        };
        let y = x
            .contiguous()?
            .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
        Ok((y, batch_stats_of(&saved)?))
    } else {
        reference::batch_norm_train(x, gamma, beta, eps, act)
    }
}
