//! A convolution with a bias and an activation (VGG's layers), optionally followed by 2×2 max
//! pooling, that trains as one graph node. Composed of separate ops, candle's graph keeps the
//! convolution's output, the biased sum, the activation's output and the pooled map: up to
//! four tensors per layer (VGG16's fine-tune step peaked at 10.8 GB against PyTorch eager's
//! 6.6). This keeps only the node's output, which is also the next layer's input: the
//! activation's mask comes from it, and a pooling layer recomputes its convolution in backward.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::affine::activate;
use super::conv_bn::{Dims, FusedConv};
use super::kernels::{self, Act, ConvGeometry, Epilogue, Padding};
use super::pool::max_pool_2x2;
use super::slices::{dims4, is_cpu_f32, storage_slice, vec_tensor, with_slice};

/// `act(conv(x, w) + bias)`, then 2×2 max pooling where `pool`, with gradients for `x`, `w`
/// and `bias`, as one graph node on the CPU (elsewhere the convolution, a broadcast add, the
/// activation and the pooling). `act`'s derivative must follow from its output, as every
/// [`Act`]'s does.
pub fn conv_bias_act(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    conv: FusedConv,
    act: Act,
    pool: bool,
) -> Result<Tensor> {
    if !is_cpu_f32(x) {
        let y = activate(&conv.apply(x, w)?.broadcast_add(bias)?, act)?;
        return if pool { max_pool_2x2(&y) } else { Ok(y) };
    }
    let op = ConvBiasAct { conv, act, pool };
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &bias.contiguous()?, op)
}

struct ConvBiasAct {
    conv: FusedConv,
    act: Act,
    pool: bool,
}

/// The slices [`ConvBiasAct`] reads: input (with its dimensions), filters (with their kernel
/// size and output channels) and bias.
struct Args<'a> {
    x: &'a [f32],
    d: Dims,
    w: &'a [f32],
    filters: (usize, usize),
    bias: &'a [f32],
}

/// 2×2 windows at stride 2 over a map of dimensions `d` (floor mode).
fn pool_geometry((n, h, w, c): Dims) -> ConvGeometry {
    ConvGeometry::new(n, h, w, c, 2, 2, Padding::Symmetric(0))
}

impl ConvBiasAct {
    /// The kernel size and output channels of filters with dimensions `w` over input `d`.
    fn filters(&self, d: Dims, w: &[usize]) -> Result<(usize, usize)> {
        if let [c_out, c, k, k2] = *w {
            let fits = self.conv.filter_channels(d.3, c_out) == Some(c)
                && k == k2
                && (self.conv != FusedConv::Pointwise || k == 1);
            if fits {
                return Ok((k, c_out));
            }
        }
        bail!(
            "convolution: filters {w:?} do not fit {} input channels",
            d.3
        )
    }

    /// `act(conv + bias)`, not pooled.
    fn activations(&self, a: &Args<'_>) -> (Vec<f32>, Dims) {
        let epilogue = Epilogue {
            bias: a.bias,
            act: self.act,
        };
        self.conv
            .forward_slices(a.x, a.d, a.w, a.filters, Some(epilogue))
    }

    /// The gradient before the activation from `dy`, the gradient of the node's output `out`:
    /// the activation's mask comes from its output, which a pooling node recomputes (it keeps
    /// only the pooled map), routing each pooled gradient to its window's maximum.
    fn pre_activation_grad(&self, a: &Args<'_>, out: &[f32], dy: &[f32]) -> Vec<f32> {
        if !self.pool {
            return match self.act {
                Act::None => dy.to_vec(),
                act => kernels::activation_backward(out, dy, act),
            };
        }
        let (y, dims) = self.activations(a);
        let mut g = kernels::max_pool_backward(&y, out, dy, &pool_geometry(dims));
        kernels::activation_backward_in_place(&y, &mut g, self.act);
        g
    }
}

impl CustomOp3 for ConvBiasAct {
    fn name(&self) -> &'static str {
        "conv-bias-act"
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
        let d = dims4(l1, "convolution")?;
        let filters = self.filters(d, l2.dims())?;
        let args = Args {
            x: storage_slice(s1, l1)?,
            d,
            w: storage_slice(s2, l2)?,
            filters,
            bias: storage_slice(s3, l3)?,
        };
        if args.bias.len() != filters.1 {
            bail!(
                "convolution: {} biases for {} channels",
                args.bias.len(),
                filters.1
            );
        }
        let (y, dims) = self.activations(&args);
        if !self.pool {
            return Ok((CpuStorage::F32(y), Shape::from(dims)));
        }
        let g = pool_geometry(dims);
        let pooled = kernels::max_pool(&y, &g);
        let shape = Shape::from((g.batch, g.out_h, g.out_w, g.channels));
        Ok((CpuStorage::F32(pooled), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = x.dims4()?;
        let filters = self.filters(d, w.dims())?;
        let (need_x, need_w) = (x.track_op(), w.track_op());
        let (gx, gw, gb) = with_slice(x, |x| {
            with_slice(w, |w| {
                with_slice(bias, |b| {
                    with_slice(res, |out| {
                        with_slice(grad, |dy| {
                            let a = Args {
                                x,
                                d,
                                w,
                                filters,
                                bias: b,
                            };
                            let g = self.pre_activation_grad(&a, out, dy);
                            let gb = kernels::column_sums(&g, filters.1);
                            let (gx, gw) = (need_x || need_w)
                                .then(|| {
                                    let (k, c_out) = filters;
                                    self.conv.backward_slices(x, d, w, k, c_out, &g, need_x)
                                })
                                .unzip();
                            Ok((gx.flatten(), gw, gb))
                        })
                    })
                })
            })
        })?;
        let grad_x = gx.map(|g| vec_tensor(g, x.shape(), x)).transpose()?;
        let grad_w = gw
            .filter(|_| need_w)
            .map(|g| vec_tensor(g, w.shape(), w))
            .transpose()?;
        let grad_b = bias
            .track_op()
            .then(|| vec_tensor(gb, bias.shape(), bias))
            .transpose()?;
        Ok((grad_x, grad_w, grad_b))
    }
}
