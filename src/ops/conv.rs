//! Dense convolutions as matrix products (1×1 directly, k×k through im2col), and global
//! average pooling.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::kernels::{ConvGeometry, Padding};
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

struct Im2Col {
    kernel: usize,
    stride: usize,
    padding: Padding,
}

impl Im2Col {
    fn geometry(&self, l: &Layout) -> Result<ConvGeometry> {
        let (n, h, w, c) = dims4(l, "im2col")?;
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
    conv2d(x, w, stride, Padding::Same)
}

/// Dense k×k convolution (any padding) as patches × weights. `w`: `[Cout, Cin, k, k]`.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: Padding) -> Result<Tensor> {
    let (c_out, c_in, k, _) = w.dims4()?;
    if !is_cpu_f32(x) {
        return reference::conv2d(x, w, stride, padding);
    }
    let (n, h, wd, c) = x.dims4()?;
    let g = ConvGeometry::new(n, h, wd, c, k, stride, padding);
    let cols = x.contiguous()?.apply_op1(Im2Col {
        kernel: k,
        stride,
        padding,
    })?;
    // [Cout, Cin, k, k] -> [k, k, Cin, Cout] to match the patch order (ky, kx, c).
    let w_mat = w.permute((2, 3, 1, 0))?.reshape((k * k * c_in, c_out))?;
    cols.matmul(&w_mat)?.reshape((n, g.out_h, g.out_w, c_out))
}

/// Global average pooling: `[N, H, W, C]` → `[N, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    x.reshape((n, h * w, c))?.mean(1)
}
