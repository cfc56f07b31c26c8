//! Depthwise convolution with "SAME" padding: training (hand-written backward) and inference
//! (BatchNorm folded, bias and activation in the same pass).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};

use super::kernels;
use super::kernels::{Act, ConvGeometry, Epilogue};
use super::reference;
use super::slices::{dims4, is_cpu_f32, storage_slice, vec_tensor, with_slice};

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
        depthwise_backward(x, w, grad, self.stride, x.track_op(), w.track_op())
    }
}

/// Gradients of a depthwise convolution's input and weights (each only when asked for),
/// given its output gradient.
fn depthwise_backward(
    x: &Tensor,
    w: &Tensor,
    grad_out: &Tensor,
    stride: usize,
    need_input: bool,
    need_weights: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let g = DepthwiseConv { stride }.geometry(x.layout(), w.layout())?;
    let w_kkc = with_slice(w, |w| {
        Ok(kernels::depthwise_weights_to_kkc(w, g.channels, g.kernel))
    })?;
    with_slice(grad_out, |gout| {
        let grad_x = need_input
            .then(|| {
                let gx = kernels::depthwise_grad_input(gout, &w_kkc, &g);
                vec_tensor(gx, x.shape(), x)
            })
            .transpose()?;
        let grad_w = need_weights
            .then(|| {
                let gw = with_slice(x, |x| Ok(kernels::depthwise_grad_weight(gout, x, &g)))?;
                let gw = kernels::depthwise_weights_from_kkc(&gw, g.channels, g.kernel);
                vec_tensor(gw, w.shape(), w)
            })
            .transpose()?;
        Ok((grad_x, grad_w))
    })
}

/// Depthwise convolution with TensorFlow "SAME" padding. `x`: NHWC, `w`: `[C, 1, k, k]`.
pub fn depthwise_conv(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    if is_cpu_f32(x) {
        x.contiguous()?
            .apply_op2(&w.contiguous()?, DepthwiseConv { stride })
    } else {
        reference::depthwise_shifted(x, w, stride)
    }
}

struct DepthwiseBiasAct {
    stride: usize,
    bias: Vec<f32>,
    act: Act,
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
            act: self.act,
        };
        let out = kernels::depthwise_forward(storage_slice(s1, l1)?, &w, &g, Some(epilogue));
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.out_h, g.out_w, g.channels)),
        ))
    }
}

/// Inference only: depthwise conv with BatchNorm folded into `w` and `bias`, then the activation, in
/// one pass. No gradients.
pub fn depthwise_conv_bias_act(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    stride: usize,
    act: Act,
) -> Result<Tensor> {
    if is_cpu_f32(x) {
        let bias = bias.to_vec1::<f32>()?;
        x.contiguous()?
            .apply_op2_no_bwd(&w.contiguous()?, &DepthwiseBiasAct { stride, bias, act })
    } else {
        let y = reference::depthwise_shifted(x, w, stride)?.broadcast_add(bias)?;
        reference::activate(y, act)
    }
}
