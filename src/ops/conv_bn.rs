//! Convolution then train-mode BatchNorm as one graph node: backward gets no gradient for the
//! convolution's output from candle (each graph edge costs a zeroed tensor and an add), and
//! cheap convolutions are recomputed there instead of kept.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::batch_norm::{
    BatchStats, SavedStats, batch_norm_train, batch_stats_of, bn_train_backward, bn_train_forward,
    store_stats,
};
use super::conv::{conv1x1, conv1x1_grads, conv2d, conv2d_grads};
use super::depthwise::{depthwise_backward, depthwise_conv};
use super::kernels::{Act, ConvGeometry, Padding};
use super::{is_cpu_f32, kernels, storage_slice, vec_tensor, with_slice};

/// The convolution of [`conv_bn_train`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusedConv {
    /// 1×1, as a matrix product.
    Pointwise,
    /// Depthwise k×k with "SAME" padding.
    Depthwise { stride: usize },
    /// Dense k×k.
    Dense { stride: usize, padding: Padding },
}

impl FusedConv {
    pub(super) fn stride(self) -> usize {
        match self {
            Self::Pointwise => 1,
            Self::Depthwise { stride } | Self::Dense { stride, .. } => stride,
        }
    }

    fn apply(self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        match self {
            Self::Pointwise => conv1x1(x, w),
            Self::Depthwise { stride } => depthwise_conv(x, w, stride),
            Self::Dense { stride, padding } => conv2d(x, w, stride, padding),
        }
    }

    /// Gradients of the convolution's input and weights, given its output gradient.
    fn backward(
        self,
        x: &Tensor,
        w: &Tensor,
        grad_out: &Tensor,
        need_input_grad: bool,
    ) -> Result<(Option<Tensor>, Tensor)> {
        match self {
            Self::Pointwise => conv1x1_grads(x, w, grad_out, need_input_grad),
            Self::Depthwise { stride } => {
                let (grad_x, grad_w) =
                    depthwise_backward(x, w, grad_out, stride, need_input_grad, true)?;
                let grad_w = grad_w.ok_or_else(|| {
                    candle_core::Error::Msg("depthwise weight gradient missing".into())
                })?;
                Ok((grad_x, grad_w))
            }
            Self::Dense { stride, padding } => {
                conv2d_grads(x, w, grad_out, stride, padding, need_input_grad)
            }
        }
    }
}

/// NHWC dimensions.
pub(super) type Dims = (usize, usize, usize, usize);

impl FusedConv {
    /// The convolution on slices (CPU): `x` with dimensions `d`, `w` in the checkpoint layout
    /// (`[C_out, C_in, k, k]`, depthwise `[C, 1, k, k]`) with `kernel` and `c_out`.
    pub(super) fn forward_slices(
        self,
        x: &[f32],
        d: Dims,
        w: &[f32],
        kernel: usize,
        c_out: usize,
    ) -> (Vec<f32>, Dims) {
        let (n, h, wd, c_in) = d;
        match self {
            Self::Pointwise => (kernels::pointwise(x, w, c_in, c_out), (n, h, wd, c_out)),
            Self::Depthwise { stride } => {
                let g = ConvGeometry::same(n, h, wd, c_in, kernel, stride);
                let kkc = kernels::depthwise_weights_to_kkc(w, c_in, kernel);
                let out = kernels::depthwise_forward(x, &kkc, &g, None);
                (out, (n, g.out_h, g.out_w, c_in))
            }
            Self::Dense { stride, padding } => {
                let g = ConvGeometry::new(n, h, wd, c_in, kernel, stride, padding);
                let m = kernels::filters_to_matrix(w, c_out, c_in, kernel * kernel);
                (
                    kernels::dense_conv(x, &m, &g, c_out),
                    (n, g.out_h, g.out_w, c_out),
                )
            }
        }
    }

    /// Gradients of [`Self::forward_slices`] from its output gradient `gy`: the input's where
    /// `need_x`, and the weights' (checkpoint layout).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_slices(
        self,
        x: &[f32],
        d: Dims,
        w: &[f32],
        kernel: usize,
        c_out: usize,
        gy: &[f32],
        need_x: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>) {
        let (n, h, wd, c_in) = d;
        match self {
            Self::Pointwise => (
                need_x.then(|| kernels::pointwise_input_grad(gy, w, c_in, c_out)),
                kernels::pointwise_weight_grad(x, gy, c_in, c_out),
            ),
            Self::Depthwise { stride } => {
                let g = ConvGeometry::same(n, h, wd, c_in, kernel, stride);
                let kkc = kernels::depthwise_weights_to_kkc(w, c_in, kernel);
                let gw = kernels::depthwise_grad_weight(gy, x, &g);
                (
                    need_x.then(|| kernels::depthwise_grad_input(gy, &kkc, &g)),
                    kernels::depthwise_weights_from_kkc(&gw, c_in, kernel),
                )
            }
            Self::Dense { stride, padding } => {
                let g = ConvGeometry::new(n, h, wd, c_in, kernel, stride, padding);
                let taps = kernel * kernel;
                let gx = need_x.then(|| {
                    let m = kernels::filters_to_matrix(w, c_out, c_in, taps);
                    kernels::dense_conv_input_grad(gy, &m, &g, c_out)
                });
                let gm = kernels::dense_conv_weight_grad(x, gy, &g, c_out);
                (gx, kernels::matrix_to_filters(&gm, c_out, c_in, taps))
            }
        }
    }
}

/// Convolution then train-mode BatchNorm (+activation). Arguments: the convolution's input, its
/// weights and `[gamma; beta]` stacked as `[2, C]` (custom ops take at most three tensors).
struct ConvBnTrain {
    conv: FusedConv,
    eps: f64,
    act: Act,
    /// The convolution's output, computed outside the graph and handed to `cpu_fwd`, which
    /// drops it when backward recomputes it (the graph never holds it then).
    conv_out: Mutex<Option<Tensor>>,
    recompute: bool,
    saved: Arc<Mutex<SavedStats>>,
}

impl ConvBnTrain {
    /// The convolution's output, given up when `take`.
    fn conv_out(&self, take: bool) -> Result<Tensor> {
        let mut slot = self
            .conv_out
            .lock()
            .map_err(|_| candle_core::Error::Msg("convolution output lock poisoned".into()))?;
        match take {
            true => slot.take(),
            false => slot.clone(),
        }
        .ok_or_else(|| candle_core::Error::Msg("convolution output missing".into()))
    }
}

impl CustomOp3 for ConvBnTrain {
    fn name(&self) -> &'static str {
        "conv-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let conv_out = self.conv_out(self.recompute)?;
        let c = conv_out.dim(3)?;
        let gamma_beta = storage_slice(s3, l3)?;
        if gamma_beta.len() != 2 * c {
            bail!("BatchNorm parameters do not match {c} channels");
        }
        let (gamma, beta) = gamma_beta.split_at(c);
        let (out, stats) = with_slice(&conv_out, |x| {
            bn_train_forward(x, c, gamma, beta, self.eps, self.act)
        })?;
        store_stats(&self.saved, stats)?;
        Ok((CpuStorage::F32(out), conv_out.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        gamma_beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (need_x, need_w, need_gamma_beta) = (x.track_op(), w.track_op(), gamma_beta.track_op());
        let (x, w) = (x.detach(), w.detach());
        let conv_out = match self.recompute {
            true => self.conv.apply(&x, &w)?,
            false => self.conv_out(false)?,
        };
        let c = conv_out.dim(3)?;
        let gamma_beta_values = gamma_beta.flatten_all()?.to_vec1::<f32>()?;
        let grads = bn_train_backward(
            &conv_out,
            grad,
            gamma_beta_values.split_at(c),
            &self.saved,
            self.act,
            true,
        )?;
        let grad_conv_out = vec_tensor(grads.input, conv_out.shape(), &conv_out)?;
        let (grad_x, grad_w) = if need_x || need_w {
            let (gx, gw) = self.conv.backward(&x, &w, &grad_conv_out, need_x)?;
            (gx, need_w.then_some(gw))
        } else {
            (None, None)
        };
        let grad_gamma_beta = need_gamma_beta
            .then(|| {
                let mut both = grads.gamma;
                both.extend(grads.beta);
                vec_tensor(both, (2, c), gamma_beta)
            })
            .transpose()?;
        Ok((grad_x, grad_w, grad_gamma_beta))
    }
}

/// Convolution then train-mode BatchNorm (+activation) as one op. With `recompute`, backward
/// keeps only the convolution's *input* and recomputes its output: that saves one
/// activation-sized tensor per layer (a third of the live memory of a fine-tune step in the
/// early, wide layers) for the cost of running the convolution twice, worth it where the
/// convolution is cheap for its output size (depthwise, and 1×1 with few input channels).
/// Returns the output and the batch statistics.
#[allow(clippy::too_many_arguments)]
pub fn conv_bn_train(
    x: &Tensor,
    w: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    conv: FusedConv,
    recompute: bool,
    eps: f64,
    act: Act,
) -> Result<(Tensor, BatchStats)> {
    if !is_cpu_f32(x) {
        return batch_norm_train(&conv.apply(x, w)?, gamma, beta, eps, act);
    }
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let conv_out = conv.apply(&x.detach(), &w.detach())?;
    let saved = Arc::new(Mutex::new(SavedStats::default()));
    let op = ConvBnTrain {
        conv,
        eps,
        act,
        conv_out: Mutex::new(Some(conv_out)),
        recompute,
        saved: saved.clone(),
    };
    let gamma_beta = Tensor::stack(&[gamma, beta], 0)?;
    let y = x.apply_op3(&w, &gamma_beta, op)?;
    Ok((y, batch_stats_of(&saved)?))
}
