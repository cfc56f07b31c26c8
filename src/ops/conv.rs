//! Dense convolutions as matrix products (1×1 directly, k×k as implicit products over
//! gathered patches), and global average pooling.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};

use super::kernels::{Act, ConvGeometry, Epilogue, Padding};
use super::{dims4, is_cpu_f32, kernels, reference, storage_slice, vec_tensor, with_slice};

/// 1×1 convolution as one matrix product: `[N·H·W, Cin] × [Cin, Cout]`. `w`: `[Cout, Cin, 1, 1]`.
pub fn conv1x1(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, h, wd, c_in) = x.dims4()?;
    let c_out = w.dim(0)?;
    let w2 = w.reshape((c_out, c_in))?;
    x.reshape((n * h * wd, c_in))?
        .matmul(&w2.t()?)?
        .reshape((n, h, wd, c_out))
}

/// Dense k×k convolution over an NHWC input and `[k²·C_in, C_out]` weights (the kernels'
/// implicit matrix products); backward keeps only the input and the weights.
struct DenseConv {
    kernel: usize,
    stride: usize,
    padding: Padding,
}

impl DenseConv {
    fn geometry(&self, l: &Layout) -> Result<ConvGeometry> {
        let (n, h, w, c) = dims4(l, "dense convolution")?;
        Ok(ConvGeometry::new(
            n,
            h,
            w,
            c,
            self.kernel,
            self.stride,
            self.padding,
        ))
    }

    /// The geometry and `C_out`, checking that the weights fit the input.
    fn shapes(&self, x: &Layout, w: &Layout) -> Result<(ConvGeometry, usize)> {
        let g = self.geometry(x)?;
        match w.dims() {
            &[patch, c_out] if patch == g.kernel * g.kernel * g.channels => Ok((g, c_out)),
            other => bail!(
                "dense convolution: weights {other:?} do not fit {} input channels",
                g.channels
            ),
        }
    }
}

impl CustomOp2 for DenseConv {
    fn name(&self) -> &'static str {
        "dense-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, c_out) = self.shapes(l1, l2)?;
        let out = kernels::dense_conv(storage_slice(s1, l1)?, storage_slice(s2, l2)?, &g, c_out);
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.out_h, g.out_w, c_out)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (g, c_out) = self.shapes(x.layout(), w.layout())?;
        dense_grads(x, w, grad, &g, c_out, x.track_op(), w.track_op())
    }
}

/// Gradients of a dense convolution's input and `[k²·C_in, C_out]` weights, where asked for.
fn dense_grads(
    x: &Tensor,
    w_mat: &Tensor,
    grad: &Tensor,
    g: &ConvGeometry,
    c_out: usize,
    need_x: bool,
    need_w: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let grad_x = kernel_grad(need_x, grad, w_mat, x, |gy, wv| {
        kernels::dense_conv_input_grad(gy, wv, g, c_out)
    })?;
    let grad_w = kernel_grad(need_w, x, grad, w_mat, |xv, gy| {
        kernels::dense_conv_weight_grad(xv, gy, g, c_out)
    })?;
    Ok((grad_x, grad_w))
}

/// Where `need`: `f` on the slices of `a` and `b`, as a tensor shaped like `like`.
fn kernel_grad(
    need: bool,
    a: &Tensor,
    b: &Tensor,
    like: &Tensor,
    f: impl FnOnce(&[f32], &[f32]) -> Vec<f32>,
) -> Result<Option<Tensor>> {
    need.then(|| {
        let values = with_slice(a, |a| with_slice(b, |b| Ok(f(a, b))))?;
        vec_tensor(values, like.shape(), like)
    })
    .transpose()
}

/// `[C_out, C_in, k, k]` filters as the kernels' `[k²·C_in, C_out]` matrix (patch order
/// `(ky, kx, c)`).
fn weight_matrix(w: &Tensor) -> Result<Tensor> {
    let (c_out, c_in, k, _) = w.dims4()?;
    w.permute((2, 3, 1, 0))?
        .reshape((k * k * c_in, c_out))?
        .contiguous()
}

/// Gradients of [`conv2d`] (CPU, f32) outside the graph, from its output gradient: the input's
/// where `need_x`, and the `[C_out, C_in, k, k]` weights'. For ops that fuse a convolution.
pub(super) fn conv2d_grads(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    stride: usize,
    padding: Padding,
    need_x: bool,
) -> Result<(Option<Tensor>, Tensor)> {
    let (c_out, c_in, k, _) = w.dims4()?;
    let (n, h, wd, _) = x.dims4()?;
    let g = ConvGeometry::new(n, h, wd, c_in, k, stride, padding);
    let w_mat = weight_matrix(w)?;
    let (grad_x, grad_w) = dense_grads(x, &w_mat, &grad.contiguous()?, &g, c_out, need_x, true)?;
    let grad_w = grad_w
        .ok_or_else(|| candle_core::Error::Msg("dense weight gradient missing".into()))?
        .reshape((k, k, c_in, c_out))?
        .permute((3, 2, 0, 1))?
        .contiguous()?;
    Ok((grad_x, grad_w))
}

/// Inference only: [`DenseConv`], then `act(y + bias [+ residual])` on each block of output
/// pixels while it is in cache.
struct DenseConvBiasAct {
    conv: DenseConv,
    bias: Vec<f32>,
    residual: Option<Tensor>,
    act: Act,
}

impl CustomOp2 for DenseConvBiasAct {
    fn name(&self) -> &'static str {
        "dense-conv-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, c_out) = self.conv.shapes(l1, l2)?;
        if self.bias.len() != c_out {
            bail!("bias has {} values for {c_out} channels", self.bias.len());
        }
        let epilogue = Epilogue {
            bias: &self.bias,
            act: self.act,
        };
        let (x, w) = (storage_slice(s1, l1)?, storage_slice(s2, l2)?);
        let out_len = g.batch * g.out_h * g.out_w * c_out;
        let out = match &self.residual {
            None => kernels::dense_conv_epilogue(x, w, &g, epilogue, None),
            Some(r) => with_slice(r, |r| {
                if r.len() != out_len {
                    bail!("residual has {} elements, expected {out_len}", r.len());
                }
                Ok(kernels::dense_conv_epilogue(x, w, &g, epilogue, Some(r)))
            })?,
        };
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.out_h, g.out_w, c_out)),
        ))
    }
}

/// Inference only (no gradients): `act(conv2d(x, w) + bias [+ residual])`, the epilogue applied
/// per block inside the convolution. Anything that needs gradients, or is off the CPU, takes
/// the composed path.
pub fn conv2d_bias_act(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: Padding,
    residual: Option<&Tensor>,
    act: Act,
) -> Result<Tensor> {
    let tracked = x.track_op() || w.track_op() || residual.is_some_and(Tensor::track_op);
    if !is_cpu_f32(x) || tracked {
        let y = conv2d(x, w, stride, padding)?;
        return super::bias_act_inplace(y, bias, residual, act);
    }
    let k = w.dim(2)?;
    let w_mat = weight_matrix(w)?;
    let op = DenseConvBiasAct {
        conv: DenseConv {
            kernel: k,
            stride,
            padding,
        },
        bias: bias.to_vec1::<f32>()?,
        residual: residual.cloned(),
        act,
    };
    x.contiguous()?.apply_op2_no_bwd(&w_mat, &op)
}

/// Dense k×k convolution with "SAME" padding. `w`: `[Cout, Cin, k, k]`.
pub fn conv_same(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    conv2d(x, w, stride, Padding::Same)
}

/// Dense k×k convolution (any padding). `w`: `[Cout, Cin, k, k]`.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: Padding) -> Result<Tensor> {
    if !is_cpu_f32(x) {
        return reference::conv2d(x, w, stride, padding);
    }
    let k = w.dim(2)?;
    let w_mat = weight_matrix(w)?;
    x.contiguous()?.apply_op2(
        &w_mat,
        DenseConv {
            kernel: k,
            stride,
            padding,
        },
    )
}

/// Global average pooling: `[N, H, W, C]` → `[N, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    x.reshape((n, h * w, c))?.mean(1)
}
