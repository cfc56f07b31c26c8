//! Dense convolutions as matrix products (1×1 directly, k×k as implicit products over
//! gathered patches), and global average pooling.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};

use super::kernels;
use super::kernels::{Act, ConvGeometry, Epilogue, Padding};
use super::reference;
use super::slices::{dims4, is_cpu_f32, storage_slice, vec_tensor, with_slice};

/// 1×1 convolution as one matrix product: `[N·H·W, Cin] × [Cin, Cout]`. `w`: `[Cout, Cin, 1, 1]`.
pub fn conv1x1(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !is_cpu_f32(x) {
        let (n, h, wd, c_in) = x.dims4()?;
        let c_out = w.dim(0)?;
        let w2 = w.reshape((c_out, c_in))?;
        return x
            .reshape((n * h * wd, c_in))?
            .matmul(&w2.t()?)?
            .reshape((n, h, wd, c_out));
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, PointwiseConv)
}

/// [`conv1x1`] on the CPU: candle's matmul zeroes its output before writing it.
struct PointwiseConv;

impl CustomOp2 for PointwiseConv {
    fn name(&self) -> &'static str {
        "pointwise-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, h, w, c_in) = dims4(l1, "1×1 convolution")?;
        let c_out = match l2.dims() {
            &[c_out, c, 1, 1] if c == c_in => c_out,
            other => bail!("1×1 convolution: weights {other:?} do not fit {c_in} input channels"),
        };
        let out = kernels::pointwise(storage_slice(s1, l1)?, storage_slice(s2, l2)?, c_in, c_out);
        Ok((CpuStorage::F32(out), Shape::from((n, h, w, c_out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (grad_x, grad_w) = conv1x1_grads(x, w, grad, x.track_op())?;
        Ok((grad_x, w.track_op().then_some(grad_w)))
    }
}

/// Inference only: [`PointwiseConv`], then `act(y + bias [+ residual])` on each block of rows
/// while it is in cache.
struct PointwiseBiasAct {
    bias: Vec<f32>,
    residual: Option<Tensor>,
    act: Act,
}

impl CustomOp2 for PointwiseBiasAct {
    fn name(&self) -> &'static str {
        "pointwise-conv-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, h, w, c_in) = dims4(l1, "1×1 convolution")?;
        let c_out = self.bias.len();
        if l2.dims() != [c_out, c_in, 1, 1] {
            bail!(
                "1×1 convolution: weights {:?} do not fit {c_in} input channels and {c_out} biases",
                l2.dims()
            );
        }
        let epilogue = Epilogue {
            bias: &self.bias,
            act: self.act,
        };
        let (x, wv) = (storage_slice(s1, l1)?, storage_slice(s2, l2)?);
        let out_len = n * h * w * c_out;
        let out = with_residual(self.residual.as_ref(), out_len, |r| {
            kernels::pointwise_epilogue(x, wv, c_in, epilogue, r)
        })?;
        Ok((CpuStorage::F32(out), Shape::from((n, h, w, c_out))))
    }
}

/// `f` on the residual's elements, if there is a residual, checked to be `out_len` long.
fn with_residual(
    residual: Option<&Tensor>,
    out_len: usize,
    f: impl FnOnce(Option<&[f32]>) -> Vec<f32>,
) -> Result<Vec<f32>> {
    match residual {
        None => Ok(f(None)),
        Some(r) => with_slice(r, |r| {
            if r.len() != out_len {
                bail!("residual has {} elements, expected {out_len}", r.len());
            }
            Ok(f(Some(r)))
        }),
    }
}

/// Inference only (no gradients): `act(conv1x1(x, w) + bias [+ residual])`, the epilogue
/// applied per block of rows inside the product. Anything that needs gradients, or is off the
/// CPU, takes the composed path.
pub fn conv1x1_bias_act(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    act: Act,
) -> Result<Tensor> {
    let tracked = x.track_op() || w.track_op() || residual.is_some_and(Tensor::track_op);
    if !is_cpu_f32(x) || tracked {
        let y = conv1x1(x, w)?;
        return super::affine::bias_act_inplace(y, bias, residual, act);
    }
    let op = PointwiseBiasAct {
        bias: bias.to_vec1::<f32>()?,
        residual: residual.cloned(),
        act,
    };
    x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &op)
}

/// Gradients of [`conv1x1`] (CPU, f32): the input's where `need_x`, and the `[C_out, C_in, 1, 1]`
/// weights'.
fn conv1x1_grads(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    need_x: bool,
) -> Result<(Option<Tensor>, Tensor)> {
    let (c_out, c_in) = (w.dim(0)?, w.dim(1)?);
    let grad_x = kernel_grad(need_x, grad, w, x, |gy, wv| {
        kernels::pointwise_input_grad(gy, wv, c_in, c_out)
    })?;
    let grad_w = kernel_grad(true, x, grad, w, |xv, gy| {
        kernels::pointwise_weight_grad(xv, gy, c_in, c_out)
    })?
    .ok_or_else(|| candle_core::Error::Msg("1×1 weight gradient missing".into()))?;
    Ok((grad_x, grad_w))
}

/// Dense k×k convolution over an NHWC input and `[C_out, C_in, k, k]` filters, which each call
/// turns into the kernels' `[k²·C_in, C_out]` matrix; backward keeps only the input and the
/// filters.
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

    /// The geometry and `C_out`, checking that the filters fit the input.
    fn shapes(&self, x: &Layout, w: &Layout) -> Result<(ConvGeometry, usize)> {
        let g = self.geometry(x)?;
        match w.dims() {
            &[c_out, c_in, k, k2] if c_in == g.channels && k == g.kernel && k2 == k => {
                Ok((g, c_out))
            }
            other => bail!(
                "dense convolution: filters {other:?} do not fit {} input channels",
                g.channels
            ),
        }
    }

    /// The convolution's output on the slices of the input and the filters.
    fn run<'a>(
        &self,
        x: &Layout,
        s1: &'a CpuStorage,
        w: &Layout,
        s2: &CpuStorage,
    ) -> Result<Conv<'a>> {
        let (g, c_out) = self.shapes(x, w)?;
        let w_mat = matrix_of(storage_slice(s2, w)?, c_out, &g);
        Ok(Conv {
            x: storage_slice(s1, x)?,
            w_mat,
            g,
            c_out,
        })
    }
}

/// A dense convolution's input, its filters as the kernels' matrix, and its shapes.
struct Conv<'a> {
    x: &'a [f32],
    w_mat: Vec<f32>,
    g: ConvGeometry,
    c_out: usize,
}

impl Conv<'_> {
    fn output_shape(&self) -> Shape {
        Shape::from((self.g.batch, self.g.out_h, self.g.out_w, self.c_out))
    }
}

fn matrix_of(filters: &[f32], c_out: usize, g: &ConvGeometry) -> Vec<f32> {
    kernels::filters_to_matrix(filters, c_out, g.channels, g.kernel * g.kernel)
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
        let conv = self.run(l1, s1, l2, s2)?;
        let out = kernels::dense_conv(conv.x, &conv.w_mat, &conv.g, conv.c_out);
        Ok((CpuStorage::F32(out), conv.output_shape()))
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

/// Gradients of a dense convolution's input and `[C_out, C_in, k, k]` filters, where asked for.
fn dense_grads(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    g: &ConvGeometry,
    c_out: usize,
    need_x: bool,
    need_w: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let grad_x = kernel_grad(need_x, grad, w, x, |gy, w| {
        kernels::dense_conv_input_grad(gy, &matrix_of(w, c_out, g), g, c_out)
    })?;
    let grad_w = kernel_grad(need_w, x, grad, w, |xv, gy| {
        let m = kernels::dense_conv_weight_grad(xv, gy, g, c_out);
        kernels::matrix_to_filters(&m, c_out, g.channels, g.kernel * g.kernel)
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
        let conv = self.conv.run(l1, s1, l2, s2)?;
        let (x, w, g, c_out) = (conv.x, &conv.w_mat, &conv.g, conv.c_out);
        if self.bias.len() != c_out {
            bail!("bias has {} values for {c_out} channels", self.bias.len());
        }
        let epilogue = Epilogue {
            bias: &self.bias,
            act: self.act,
        };
        let out_len = g.batch * g.out_h * g.out_w * c_out;
        let out = with_residual(self.residual.as_ref(), out_len, |r| {
            kernels::dense_conv_epilogue(x, w, g, epilogue, r)
        })?;
        Ok((CpuStorage::F32(out), conv.output_shape()))
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
        return super::affine::bias_act_inplace(y, bias, residual, act);
    }
    let k = w.dim(2)?;
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
    x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &op)
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
    x.contiguous()?.apply_op2(
        &w.contiguous()?,
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
