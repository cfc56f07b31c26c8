//! Inference epilogues: eval-mode BatchNorm folded into scale/shift, bias (+residual) and
//! ReLU6 in place, and ReLU6 on its own.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, InplaceOp1, Layout, Result, Shape, Tensor, bail,
};

use super::{is_cpu_f32, kernels, reference, storage_slice, vec_tensor, with_slice};

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
