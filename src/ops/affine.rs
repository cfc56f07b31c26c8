//! Inference epilogues: eval-mode BatchNorm folded into scale/shift, bias (+residual) and
//! activation in place, and an activation on its own.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, InplaceOp1, Layout, Result, Shape, Tensor, bail,
};

use super::kernels;
use super::kernels::Act;
use super::reference;
use super::slices::{is_cpu_f32, storage_slice, vec_tensor, with_slice};

struct ScaleShift {
    scale: Vec<f32>,
    shift: Vec<f32>,
    act: Act,
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
        let masked = if self.act != Act::None {
            with_slice(res, |y| {
                with_slice(grad, |dy| Ok(kernels::activation_backward(y, dy, self.act)))
            })?
        } else {
            grad.flatten_all()?.to_vec1::<f32>()?
        };
        let out = if with_scale {
            let zeros = vec![0f32; self.scale.len()];
            kernels::scale_shift(&masked, &self.scale, &zeros, None, Act::None)
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
            self.act,
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
            self.act,
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
    act: Act,
) -> Result<Tensor> {
    if is_cpu_f32(x) {
        let op = ScaleShift {
            scale: scale.to_vec1::<f32>()?,
            shift: shift.to_vec1::<f32>()?,
            act,
        };
        match residual {
            None => x.contiguous()?.apply_op1(op),
            Some(r) => x.contiguous()?.apply_op2(&r.contiguous()?, op),
        }
    } else {
        reference::scale_shift_act(x, &scale.detach(), &shift.detach(), residual, act)
    }
}

struct BiasAct {
    bias: Vec<f32>,
    residual: Option<Tensor>,
    act: Act,
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
            None => kernels::bias_act_in_place(data, &self.bias, None, self.act),
            Some(r) => with_slice(r, |r| {
                if r.len() != data.len() {
                    bail!("residual has {} elements, expected {}", r.len(), data.len());
                }
                kernels::bias_act_in_place(data, &self.bias, Some(r), self.act);
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
    act: Act,
) -> Result<Tensor> {
    if is_cpu_f32(&x) && x.is_contiguous() && !x.track_op() {
        x.inplace_op1(&BiasAct {
            bias: bias.to_vec1::<f32>()?,
            residual: residual.cloned(),
            act,
        })?;
        Ok(x)
    } else {
        let ones = bias.ones_like()?;
        scale_shift_act(&x, &ones, bias, residual, act)
    }
}

/// An activation on its own, with its own backward.
struct Activation(Act);

impl CustomOp1 for Activation {
    fn name(&self) -> &'static str {
        "activation"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = kernels::activate(storage_slice(s, l)?, self.0);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = with_slice(res, |y| {
            with_slice(grad, |dy| Ok(kernels::activation_backward(y, dy, self.0)))
        })?;
        Ok(Some(vec_tensor(g, res.shape(), res)?))
    }
}

/// The activation in one pass, and one back (stock candle's ReLU6 `clamp` takes two passes,
/// plus two masks back; its ReLU five passes back).
pub fn activate(x: &Tensor, act: Act) -> Result<Tensor> {
    match act {
        Act::None => Ok(x.clone()),
        _ if is_cpu_f32(x) => x.contiguous()?.apply_op1(Activation(act)),
        _ => reference::activate(x.clone(), act),
    }
}

/// `act(a + b)` with its own backward: the sum that closes a residual block.
struct AddAct(Act);

impl CustomOp2 for AddAct {
    fn name(&self) -> &'static str {
        "add-activation"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            bail!("cannot add {:?} to {:?}", l2.dims(), l1.dims());
        }
        let out = kernels::add_activate(storage_slice(s1, l1)?, storage_slice(s2, l2)?, self.0);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = with_slice(res, |y| {
            with_slice(grad, |dy| Ok(kernels::activation_backward(y, dy, self.0)))
        })?;
        let g = vec_tensor(g, res.shape(), res)?;
        Ok((a.track_op().then(|| g.clone()), b.track_op().then_some(g)))
    }
}

/// `act(a + b)` in one pass, and one back.
pub fn add_activate(a: &Tensor, b: &Tensor, act: Act) -> Result<Tensor> {
    if is_cpu_f32(a) {
        a.contiguous()?.apply_op2(&b.contiguous()?, AddAct(act))
    } else {
        reference::activate((a + b)?, act)
    }
}
