//! Network operations on NHWC tensors (`[N, H, W, C]`, channels innermost).
//!
//! On the CPU each is a custom candle op over the kernels in [`kernels`], with a hand-written
//! backward: stock candle runs depthwise convolution as one convolution per channel (O(C²)
//! backward) and train-mode BatchNorm as ~10 passes. On any other device the same functions
//! fall back to [`reference`], compositions of stock candle ops, which are also what the tests
//! compare the kernels with.

pub mod kernels;
pub mod reference;

use std::sync::{Arc, Mutex};

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, InplaceOp1, Layout, Result, Shape, Storage,
    Tensor, bail,
};

use kernels::{ConvGeometry, Epilogue};

/// Borrows a tensor's elements as a contiguous f32 slice (CPU only).
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(storage_slice(cpu, layout)?),
        _ => bail!("expected a CPU tensor"),
    }
}

fn storage_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("custom op input is not contiguous"),
    }
}

fn dims4(layout: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    match layout.dims() {
        &[n, h, w, c] => Ok((n, h, w, c)),
        other => bail!("{what}: expected an NHWC tensor, got shape {other:?}"),
    }
}

fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

fn vec_tensor(data: Vec<f32>, shape: impl Into<Shape>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(data, shape, like.device())
}

// ---------------------------------------------------------------------------------------------
// Depthwise convolution

struct DepthwiseConv {
    stride: usize,
}

impl DepthwiseConv {
    fn geometry(&self, x: &Layout, w: &Layout) -> Result<ConvGeometry> {
        let (n, h, wd, c) = dims4(x, "depthwise conv")?;
        let kernel = match w.dims() {
            &[wc, 1, k, k2] if wc == c && k == k2 => k,
            other => bail!("depthwise weights {other:?} do not match {c} channels"),
        };
        Ok(ConvGeometry::same(n, h, wd, c, kernel, self.stride))
    }
}

impl CustomOp2 for DepthwiseConv {
    fn name(&self) -> &'static str {
        "depthwise-conv-same"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l1, l2)?;
        let w = kernels::depthwise_weights_to_kkc(storage_slice(s2, l2)?, g.channels, g.kernel);
        let out = kernels::depthwise_forward(storage_slice(s1, l1)?, &w, &g, None);
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.out_h, g.out_w, g.channels)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geometry(x.layout(), w.layout())?;
        let w_kkc = with_slice(w, |w| {
            Ok(kernels::depthwise_weights_to_kkc(w, g.channels, g.kernel))
        })?;
        with_slice(grad, |gout| {
            let grad_x = if x.track_op() {
                let gx = kernels::depthwise_grad_input(gout, &w_kkc, &g);
                Some(vec_tensor(gx, x.shape(), x)?)
            } else {
                None
            };
            let grad_w = if w.track_op() {
                let gw = with_slice(x, |x| Ok(kernels::depthwise_grad_weight(gout, x, &g)))?;
                let gw = kernels::depthwise_weights_from_kkc(&gw, g.channels, g.kernel);
                Some(vec_tensor(gw, w.shape(), w)?)
            } else {
                None
            };
            Ok((grad_x, grad_w))
        })
    }
}

/// Depthwise convolution with TensorFlow "SAME" padding. `x`: NHWC, `w`: `[C, 1, k, k]`.
pub fn depthwise_conv(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    if is_cpu_f32(x) {
        x.contiguous()?
            .apply_op2(&w.contiguous()?, DepthwiseConv { stride })
    } else {
        reference::depthwise_conv(x, w, stride)
    }
}

struct DepthwiseBiasAct {
    stride: usize,
    bias: Vec<f32>,
    relu6: bool,
}

impl CustomOp2 for DepthwiseBiasAct {
    fn name(&self) -> &'static str {
        "depthwise-conv-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = DepthwiseConv {
            stride: self.stride,
        }
        .geometry(l1, l2)?;
        if self.bias.len() != g.channels {
            bail!(
                "bias has {} values for {} channels",
                self.bias.len(),
                g.channels
            );
        }
        let w = kernels::depthwise_weights_to_kkc(storage_slice(s2, l2)?, g.channels, g.kernel);
        let epilogue = Epilogue {
            bias: &self.bias,
            relu6: self.relu6,
        };
        let out = kernels::depthwise_forward(storage_slice(s1, l1)?, &w, &g, Some(epilogue));
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.out_h, g.out_w, g.channels)),
        ))
    }
}

/// Inference only: depthwise conv with BatchNorm folded into `w` and `bias`, then ReLU6, in
/// one pass. No gradients.
pub fn depthwise_conv_bias_act(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    stride: usize,
    relu6: bool,
) -> Result<Tensor> {
    if is_cpu_f32(x) {
        let bias = bias.to_vec1::<f32>()?;
        x.contiguous()?.apply_op2_no_bwd(
            &w.contiguous()?,
            &DepthwiseBiasAct {
                stride,
                bias,
                relu6,
            },
        )
    } else {
        let y = reference::depthwise_conv(x, w, stride)?.broadcast_add(bias)?;
        if relu6 { reference::relu6(&y) } else { Ok(y) }
    }
}

// ---------------------------------------------------------------------------------------------
// BatchNorm, train mode

/// Batch statistics a train-mode BatchNorm saw, for the running averages.
#[derive(Debug, Clone)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub count: usize,
}

#[derive(Default)]
struct SavedStats {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    var: Vec<f32>,
    count: usize,
}

/// Train-mode BatchNorm (+ReLU6) forward on an NHWC slice with `c` channels: the output and
/// the statistics its backward needs.
fn bn_train_forward(
    x: &[f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    relu6: bool,
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
    let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
    let shift: Vec<f32> = (0..c).map(|i| beta[i] - stats.mean[i] * scale[i]).collect();
    let out = kernels::scale_shift(x, &scale, &shift, None, relu6);
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
    Ok(BatchStats {
        mean: saved.mean.clone(),
        var: saved.var.clone(),
        count: saved.count,
    })
}

/// Analytic backward of a train-mode BatchNorm (+ReLU6) given its input `x`, output `y` and
/// output gradient `dy`, with the statistics its forward stored.
fn bn_train_backward(
    x: &Tensor,
    y: &Tensor,
    dy: &Tensor,
    gamma: &[f32],
    saved: &Mutex<SavedStats>,
    relu6: bool,
    need_input_grad: bool,
) -> Result<kernels::BnGrads> {
    let saved = saved
        .lock()
        .map_err(|_| candle_core::Error::Msg("BatchNorm statistics lock poisoned".into()))?;
    with_slice(x, |xs| {
        with_slice(y, |ys| {
            with_slice(dy, |dys| {
                Ok(kernels::bn_train_backward(
                    xs,
                    ys,
                    dys,
                    gamma,
                    &saved.mean,
                    &saved.inv_std,
                    relu6,
                    need_input_grad,
                ))
            })
        })
    })
}

struct BatchNormTrain {
    eps: f64,
    relu6: bool,
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
            bn_train_forward(storage_slice(s1, l1)?, c, gamma, beta, self.eps, self.relu6)?;
        store_stats(&self.saved, stats)?;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gamma_values = gamma.to_vec1::<f32>()?;
        let grads = bn_train_backward(
            x,
            res,
            grad,
            &gamma_values,
            &self.saved,
            self.relu6,
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

/// Train-mode BatchNorm over all but the last (channel) axis, optionally followed by ReLU6,
/// in two passes, with an analytic backward. Returns the output and the batch statistics.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu6: bool,
) -> Result<(Tensor, BatchStats)> {
    if is_cpu_f32(x) {
        let saved = Arc::new(Mutex::new(SavedStats::default()));
        let op = BatchNormTrain {
            eps,
            relu6,
            saved: saved.clone(),
        };
        let y = x
            .contiguous()?
            .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
        Ok((y, batch_stats_of(&saved)?))
    } else {
        reference::batch_norm_train(x, gamma, beta, eps, relu6)
    }
}

// ---------------------------------------------------------------------------------------------
// Convolution + train-mode BatchNorm, the convolution recomputed in backward

/// A convolution whose output [`conv_bn_train`] recomputes in backward instead of keeping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecomputedConv {
    /// 1×1, as a matrix product.
    Pointwise,
    /// Depthwise k×k with "SAME" padding.
    Depthwise { stride: usize },
}

impl RecomputedConv {
    fn apply(self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        match self {
            Self::Pointwise => conv1x1(x, w),
            Self::Depthwise { stride } => depthwise_conv(x, w, stride),
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
            Self::Pointwise => {
                let (n, h, wd, c_in) = x.dims4()?;
                let c_out = w.dim(0)?;
                let rows = n * h * wd;
                let g = grad_out.reshape((rows, c_out))?;
                let grad_x = need_input_grad
                    .then(|| g.matmul(&w.reshape((c_out, c_in))?)?.reshape(x.shape()))
                    .transpose()?;
                let grad_w = g
                    .t()?
                    .matmul(&x.reshape((rows, c_in))?)?
                    .reshape(w.shape())?;
                Ok((grad_x, grad_w))
            }
            Self::Depthwise { stride } => {
                let g = DepthwiseConv { stride }.geometry(x.layout(), w.layout())?;
                let w_kkc = with_slice(w, |w| {
                    Ok(kernels::depthwise_weights_to_kkc(w, g.channels, g.kernel))
                })?;
                with_slice(grad_out, |gout| {
                    let grad_x = need_input_grad
                        .then(|| {
                            let gx = kernels::depthwise_grad_input(gout, &w_kkc, &g);
                            vec_tensor(gx, x.shape(), x)
                        })
                        .transpose()?;
                    let gw = with_slice(x, |x| Ok(kernels::depthwise_grad_weight(gout, x, &g)))?;
                    let gw = kernels::depthwise_weights_from_kkc(&gw, g.channels, g.kernel);
                    Ok((grad_x, vec_tensor(gw, w.shape(), w)?))
                })
            }
        }
    }
}

/// Convolution then train-mode BatchNorm (+ReLU6). Arguments: the convolution's input, its
/// weights and `[gamma; beta]` stacked as `[2, C]` (custom ops take at most three tensors).
struct ConvBnTrain {
    conv: RecomputedConv,
    eps: f64,
    relu6: bool,
    /// The convolution's output, computed outside the graph and handed to `cpu_fwd`, which
    /// drops it: the graph never holds it.
    conv_out: Mutex<Option<Tensor>>,
    saved: Arc<Mutex<SavedStats>>,
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
        let conv_out = self
            .conv_out
            .lock()
            .map_err(|_| candle_core::Error::Msg("convolution output lock poisoned".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("convolution output missing".into()))?;
        let c = conv_out.dim(3)?;
        let gamma_beta = storage_slice(s3, l3)?;
        if gamma_beta.len() != 2 * c {
            bail!("BatchNorm parameters do not match {c} channels");
        }
        let (gamma, beta) = gamma_beta.split_at(c);
        let (out, stats) = with_slice(&conv_out, |x| {
            bn_train_forward(x, c, gamma, beta, self.eps, self.relu6)
        })?;
        store_stats(&self.saved, stats)?;
        Ok((CpuStorage::F32(out), conv_out.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        gamma_beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (need_x, need_w, need_gamma_beta) = (x.track_op(), w.track_op(), gamma_beta.track_op());
        let (x, w) = (x.detach(), w.detach());
        let conv_out = self.conv.apply(&x, &w)?;
        let c = conv_out.dim(3)?;
        let gamma_values = gamma_beta
            .narrow(0, 0, 1)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let grads = bn_train_backward(
            &conv_out,
            res,
            grad,
            &gamma_values,
            &self.saved,
            self.relu6,
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

/// Convolution then train-mode BatchNorm (+ReLU6), keeping only the convolution's *input* for
/// backward and recomputing its output there. Saves one activation-sized tensor per layer (a
/// third of the live memory of a fine-tune step in the early, wide layers) for the cost of
/// running the convolution twice: worth it where the convolution is cheap for its output size
/// (depthwise, and 1×1 with few input channels). Returns the output and the batch statistics.
#[allow(clippy::too_many_arguments)]
pub fn conv_bn_train(
    x: &Tensor,
    w: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    conv: RecomputedConv,
    eps: f64,
    relu6: bool,
) -> Result<(Tensor, BatchStats)> {
    if !is_cpu_f32(x) {
        return batch_norm_train(&conv.apply(x, w)?, gamma, beta, eps, relu6);
    }
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let conv_out = conv.apply(&x.detach(), &w.detach())?;
    let saved = Arc::new(Mutex::new(SavedStats::default()));
    let op = ConvBnTrain {
        conv,
        eps,
        relu6,
        conv_out: Mutex::new(Some(conv_out)),
        saved: saved.clone(),
    };
    let gamma_beta = Tensor::stack(&[gamma, beta], 0)?;
    let y = x.apply_op3(&w, &gamma_beta, op)?;
    Ok((y, batch_stats_of(&saved)?))
}

// ---------------------------------------------------------------------------------------------
// Eval-mode BatchNorm folded into scale/shift

struct ScaleShift {
    scale: Vec<f32>,
    shift: Vec<f32>,
    relu6: bool,
}

impl ScaleShift {
    fn check(&self, layout: &Layout) -> Result<()> {
        if layout.dims().last() != Some(&self.scale.len()) {
            bail!(
                "scale/shift have {} channels, input is {:?}",
                self.scale.len(),
                layout.dims()
            );
        }
        Ok(())
    }

    fn grad_input(&self, res: &Tensor, grad: &Tensor, with_scale: bool) -> Result<Tensor> {
        let masked = if self.relu6 {
            with_slice(res, |y| {
                with_slice(grad, |dy| Ok(kernels::relu6_backward(y, dy)))
            })?
        } else {
            grad.flatten_all()?.to_vec1::<f32>()?
        };
        let out = if with_scale {
            let zeros = vec![0f32; self.scale.len()];
            kernels::scale_shift(&masked, &self.scale, &zeros, None, false)
        } else {
            masked
        };
        vec_tensor(out, res.shape(), res)
    }
}

impl CustomOp1 for ScaleShift {
    fn name(&self) -> &'static str {
        "scale-shift-act"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.check(l)?;
        let out = kernels::scale_shift(
            storage_slice(s, l)?,
            &self.scale,
            &self.shift,
            None,
            self.relu6,
        );
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        self.grad_input(res, grad, true).map(Some)
    }
}

impl CustomOp2 for ScaleShift {
    fn name(&self) -> &'static str {
        "scale-shift-residual-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.check(l1)?;
        if l1.dims() != l2.dims() {
            bail!("residual {:?} does not match {:?}", l2.dims(), l1.dims());
        }
        let out = kernels::scale_shift(
            storage_slice(s1, l1)?,
            &self.scale,
            &self.shift,
            Some(storage_slice(s2, l2)?),
            self.relu6,
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        residual: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_x = x
            .track_op()
            .then(|| self.grad_input(res, grad, true))
            .transpose()?;
        let grad_r = residual
            .track_op()
            .then(|| self.grad_input(res, grad, false))
            .transpose()?;
        Ok((grad_x, grad_r))
    }
}

/// `act(x * scale + shift [+ residual])` per channel: eval-mode BatchNorm (with
/// `scale = gamma / sqrt(var + eps)`, `shift = beta - mean * scale`) in one pass. The scale
/// and shift are constants (no gradient); the gradient flows to `x` and `residual`.
pub fn scale_shift_act(
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    residual: Option<&Tensor>,
    relu6: bool,
) -> Result<Tensor> {
    if is_cpu_f32(x) {
        let op = ScaleShift {
            scale: scale.to_vec1::<f32>()?,
            shift: shift.to_vec1::<f32>()?,
            relu6,
        };
        match residual {
            None => x.contiguous()?.apply_op1(op),
            Some(r) => x.contiguous()?.apply_op2(&r.contiguous()?, op),
        }
    } else {
        reference::scale_shift_act(x, &scale.detach(), &shift.detach(), residual, relu6)
    }
}

// ---------------------------------------------------------------------------------------------
// In-place epilogue for inference

struct BiasAct {
    bias: Vec<f32>,
    residual: Option<Tensor>,
    relu6: bool,
}

impl InplaceOp1 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act-inplace"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(data) = storage else {
            bail!("bias-act expects f32");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("bias-act input is not contiguous");
        };
        let data = &mut data[start..end];
        if data.len() % self.bias.len().max(1) != 0 {
            bail!(
                "bias of {} values does not divide {} elements",
                self.bias.len(),
                data.len()
            );
        }
        match &self.residual {
            None => kernels::bias_act_in_place(data, &self.bias, None, self.relu6),
            Some(r) => with_slice(r, |r| {
                if r.len() != data.len() {
                    bail!("residual has {} elements, expected {}", r.len(), data.len());
                }
                kernels::bias_act_in_place(data, &self.bias, Some(r), self.relu6);
                Ok(())
            })?,
        }
        Ok(())
    }
}

/// Inference only: `act(x + bias [+ residual])` per channel, in place on `x` when `x` is a
/// fresh CPU tensor that nothing else references (a convolution's output). No gradients.
pub fn bias_act_inplace(
    x: Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    relu6: bool,
) -> Result<Tensor> {
    if is_cpu_f32(&x) && x.is_contiguous() && !x.track_op() {
        x.inplace_op1(&BiasAct {
            bias: bias.to_vec1::<f32>()?,
            residual: residual.cloned(),
            relu6,
        })?;
        Ok(x)
    } else {
        let ones = bias.ones_like()?;
        scale_shift_act(&x, &ones, bias, residual, relu6)
    }
}

// ---------------------------------------------------------------------------------------------
// ReLU6

struct Relu6;

impl CustomOp1 for Relu6 {
    fn name(&self) -> &'static str {
        "relu6"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = kernels::relu6(storage_slice(s, l)?);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = with_slice(res, |y| {
            with_slice(grad, |dy| Ok(kernels::relu6_backward(y, dy)))
        })?;
        Ok(Some(vec_tensor(g, res.shape(), res)?))
    }
}

/// `min(max(x, 0), 6)` in one pass (stock candle's `clamp` takes two, plus two masks back).
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(x) {
        x.contiguous()?.apply_op1(Relu6)
    } else {
        reference::relu6(x)
    }
}

// ---------------------------------------------------------------------------------------------
// Dense convolutions as matrix products

/// 1×1 convolution as one matrix product: `[N·H·W, Cin] × [Cin, Cout]`. `w`: `[Cout, Cin, 1, 1]`.
pub fn conv1x1(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, h, wd, c_in) = x.dims4()?;
    let c_out = w.dim(0)?;
    let w2 = w.reshape((c_out, c_in))?;
    x.reshape((n * h * wd, c_in))?
        .matmul(&w2.t()?)?
        .reshape((n, h, wd, c_out))
}

struct Im2Col {
    kernel: usize,
    stride: usize,
}

impl Im2Col {
    fn geometry(&self, l: &Layout) -> Result<ConvGeometry> {
        let (n, h, w, c) = dims4(l, "im2col")?;
        Ok(ConvGeometry::same(n, h, w, c, self.kernel, self.stride))
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col-same"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l)?;
        let cols = kernels::im2col(storage_slice(s, l)?, &g);
        let patch = g.kernel * g.kernel * g.channels;
        Ok((
            CpuStorage::F32(cols),
            Shape::from((g.batch * g.out_h * g.out_w, patch)),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let g = self.geometry(x.layout())?;
        let gx = with_slice(grad, |gc| Ok(kernels::col2im(gc, &g)))?;
        Ok(Some(vec_tensor(gx, x.shape(), x)?))
    }
}

/// Dense k×k convolution with "SAME" padding as patches × weights. `w`: `[Cout, Cin, k, k]`.
pub fn conv_same(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (c_out, c_in, k, _) = w.dims4()?;
    if !is_cpu_f32(x) {
        return reference::conv_same(x, w, stride);
    }
    let n = x.dim(0)?;
    let cols = x.contiguous()?.apply_op1(Im2Col { kernel: k, stride })?;
    let (out_h, _, _) = kernels::same_padding(x.dim(1)?, k, stride);
    let (out_w, _, _) = kernels::same_padding(x.dim(2)?, k, stride);
    // [Cout, Cin, k, k] -> [k, k, Cin, Cout] to match the patch order (ky, kx, c).
    let w_mat = w.permute((2, 3, 1, 0))?.reshape((k * k * c_in, c_out))?;
    cols.matmul(&w_mat)?.reshape((n, out_h, out_w, c_out))
}

/// Global average pooling: `[N, H, W, C]` → `[N, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    x.reshape((n, h * w, c))?.mean(1)
}
