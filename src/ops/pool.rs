//! Pooling for the torchvision networks on NHWC tensors: max pooling as a CPU kernel with its
//! own backward (composed from candle ops, 9 strided copies and 8 maxima for ResNet's stem,
//! it cost 14 % of a ResNet-18 fine-tune step), and the compositions of candle ops, which
//! run on any other device and are what the tests check the kernel against.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::kernels::{self, ConvGeometry, Padding};
use super::slices::{dims4, is_cpu_f32, storage_slice, vec_tensor, with_slice};

/// Max pooling, `kernel × kernel` windows at `stride` with `pad` pixels of padding that never
/// win (PyTorch's `MaxPool2d`, floor mode).
struct MaxPool {
    kernel: usize,
    stride: usize,
    pad: usize,
}

impl MaxPool {
    fn geometry(&self, l: &Layout) -> Result<ConvGeometry> {
        let (n, h, w, c) = dims4(l, "max pooling")?;
        Ok(ConvGeometry::new(
            n,
            h,
            w,
            c,
            self.kernel,
            self.stride,
            Padding::Symmetric(self.pad),
        ))
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l)?;
        let out = kernels::max_pool(storage_slice(s, l)?, &g);
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.out_h, g.out_w, g.channels)),
        ))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let g = self.geometry(x.layout())?;
        let gx = with_slice(x, |xv| {
            with_slice(res, |y| {
                with_slice(grad, |dy| Ok(kernels::max_pool_backward(xv, y, dy, &g)))
            })
        })?;
        Ok(Some(vec_tensor(gx, x.shape(), x)?))
    }
}

fn max_pool(x: &Tensor, kernel: usize, stride: usize, pad: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool {
        kernel,
        stride,
        pad,
    })
}

/// Rows `offset, offset + 2, …` (`count` of them) along `dim`: a stride-2 subsample.
fn every_other(x: &Tensor, dim: usize, offset: usize, count: usize) -> Result<Tensor> {
    let taken = x.narrow(dim, offset, 2 * count)?;
    let mut shape = taken.dims().to_vec();
    shape[dim] = count;
    shape.insert(dim + 1, 2);
    taken
        .reshape(shape)?
        .narrow(dim + 1, 0, 1)?
        .squeeze(dim + 1)
}

/// Max pooling, 2×2 windows at stride 2 (VGG); an odd last row or column is dropped, as
/// PyTorch's floor mode does.
pub fn max_pool_2x2(x: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(x) {
        max_pool(x, 2, 2, 0)
    } else {
        max_pool_2x2_composed(x)
    }
}

/// Max pooling, 3×3 windows at stride 2 with one pixel of padding (ResNet's stem).
pub fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(x) {
        max_pool(x, 3, 2, 1)
    } else {
        max_pool_3x3_s2_composed(x)
    }
}

/// [`max_pool_2x2`] from candle ops.
fn max_pool_2x2_composed(x: &Tensor) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (oh, ow) = (h / 2, w / 2);
    x.narrow(1, 0, 2 * oh)?
        .narrow(2, 0, 2 * ow)?
        .reshape((n, oh, 2, ow, 2, c))?
        .max(4)?
        .max(2)
}

/// [`max_pool_3x3_s2`] from candle ops. The input must be non-negative (it follows a ReLU), so
/// zero padding equals PyTorch's -∞ padding.
fn max_pool_3x3_s2_composed(x: &Tensor) -> Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    let (oh, ow) = ((h + 2 - 3) / 2 + 1, (w + 2 - 3) / 2 + 1);
    // Enough zero padding that every window's rows `2i + dy` (dy < 3) exist.
    let padded =
        x.pad_with_zeros(1, 1, 2 * oh + 2 - h - 1)?
            .pad_with_zeros(2, 1, 2 * ow + 2 - w - 1)?;
    let mut out: Option<Tensor> = None;
    for dy in 0..3 {
        let rows = every_other(&padded, 1, dy, oh)?;
        for dx in 0..3 {
            let window = every_other(&rows, 2, dx, ow)?;
            out = Some(match out {
                None => window,
                Some(m) => m.maximum(&window)?,
            });
        }
    }
    out.ok_or_else(|| candle_core::Error::Msg("empty pooling window".into()))
}

/// Adaptive average pooling to `out_h × out_w` cells, PyTorch's windows: cell `i` averages
/// rows `floor(i·H/out) .. ceil((i+1)·H/out)`.
pub fn adaptive_avg_pool(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    if h == out_h && w == out_w {
        return Ok(x.clone());
    }
    let window = |i: usize, size: usize, out: usize| {
        let start = i * size / out;
        let end = ((i + 1) * size).div_ceil(out);
        (start, end - start)
    };
    let mut rows = Vec::with_capacity(out_h);
    for i in 0..out_h {
        let (y0, hy) = window(i, h, out_h);
        let band = x.narrow(1, y0, hy)?;
        let mut cells = Vec::with_capacity(out_w);
        for j in 0..out_w {
            let (x0, wx) = window(j, w, out_w);
            cells.push(band.narrow(2, x0, wx)?.mean_keepdim(1)?.mean_keepdim(2)?);
        }
        rows.push(Tensor::cat(&cells, 2)?);
    }
    Tensor::cat(&rows, 1)
}

/// NHWC → the `[N, C·H·W]` vector PyTorch's `flatten` makes of the NCHW map (the order fully
/// connected layers after a convolution were trained with).
pub fn flatten_nchw(x: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    x.permute((0, 3, 1, 2))?.contiguous()?.reshape((n, ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn grid(n: usize, h: usize, w: usize, c: usize) -> Tensor {
        let values: Vec<f32> = (0..n * h * w * c).map(|i| ((i * 37) % 23) as f32).collect();
        Tensor::from_vec(values, (n, h, w, c), &Device::Cpu).expect("tensor")
    }

    /// The NCHW reference of candle's own pooling.
    fn nchw(x: &Tensor) -> Tensor {
        x.permute((0, 3, 1, 2))
            .expect("permute")
            .contiguous()
            .expect("contiguous")
    }

    type Pool = fn(&Tensor) -> Result<Tensor>;

    #[test]
    fn the_kernels_match_the_compositions_forward_and_backward() {
        let pools: [(Pool, Pool); 2] = [
            (max_pool_2x2, max_pool_2x2_composed),
            (max_pool_3x3_s2, max_pool_3x3_s2_composed),
        ];
        for (h, w) in [(7, 8), (8, 7), (5, 5), (12, 10)] {
            // Distinct non-negative values: no ties, and zero padding equals -∞ padding.
            let len = 2 * h * w * 3;
            let values: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1009) as f32).collect();
            let x = candle_core::Var::from_vec(values, (2, h, w, 3), &Device::Cpu).expect("var");
            for (kernel, composed) in pools {
                let fast = kernel(&x).expect("kernel");
                let slow = composed(&x).expect("composed");
                let flat = |t: &Tensor| {
                    t.flatten_all()
                        .expect("flat")
                        .to_vec1::<f32>()
                        .expect("vec")
                };
                assert_eq!(flat(&fast), flat(&slow), "{h}x{w} forward");
                let weights = Tensor::arange(0f32, fast.elem_count() as f32, &Device::Cpu)
                    .expect("arange")
                    .reshape(fast.shape())
                    .expect("shape");
                let grad = |y: &Tensor| {
                    let g = (y * &weights)
                        .expect("mul")
                        .sum_all()
                        .expect("sum")
                        .backward();
                    flat(g.expect("backward").get(&x).expect("gradient"))
                };
                assert_eq!(grad(&fast), grad(&slow), "{h}x{w} gradient");
            }
        }
    }

    #[test]
    fn max_pool_2x2_matches_candle() {
        let x = grid(2, 6, 5, 3);
        let ours = max_pool_2x2(&x).expect("ours");
        let stock = nchw(&x.narrow(2, 0, 4).expect("even"))
            .max_pool2d(2)
            .expect("stock");
        let stock = stock.permute((0, 2, 3, 1)).expect("nhwc");
        let diff = (ours - stock).expect("diff").abs().expect("abs").max_all();
        assert_eq!(diff.expect("max").to_scalar::<f32>().expect("scalar"), 0.0);
    }

    #[test]
    fn max_pool_3x3_s2_takes_the_window_maximum() {
        for (h, w) in [(7, 8), (8, 7), (5, 5)] {
            let x = grid(1, h, w, 2);
            let ours = max_pool_3x3_s2(&x).expect("ours");
            let (_, oh, ow, _) = ours.dims4().expect("dims");
            assert_eq!((oh, ow), ((h - 1) / 2 + 1, (w - 1) / 2 + 1));
            let all: Vec<f32> = x.flatten_all().expect("flat").to_vec1().expect("vec");
            let out: Vec<f32> = ours.flatten_all().expect("flat").to_vec1().expect("vec");
            for i in 0..oh {
                for j in 0..ow {
                    for ch in 0..2 {
                        let mut best = f32::NEG_INFINITY;
                        for y in (2 * i).saturating_sub(1)..(2 * i + 2).min(h) {
                            for xx in (2 * j).saturating_sub(1)..(2 * j + 2).min(w) {
                                best = best.max(all[(y * w + xx) * 2 + ch]);
                            }
                        }
                        assert_eq!(out[(i * ow + j) * 2 + ch], best, "{h}x{w} at {i},{j}");
                    }
                }
            }
        }
    }

    #[test]
    fn adaptive_pool_averages_pytorch_windows() {
        let x = grid(1, 5, 5, 1);
        let pooled = adaptive_avg_pool(&x, 7, 7).expect("pool");
        assert_eq!(pooled.dims(), &[1, 7, 7, 1]);
        let same = adaptive_avg_pool(&x, 5, 5).expect("pool");
        assert_eq!(same.dims(), x.dims());
        // 4 → 2 cells average pairs.
        let x = grid(1, 4, 4, 1);
        let out: Vec<f32> = adaptive_avg_pool(&x, 2, 2)
            .expect("pool")
            .flatten_all()
            .expect("flat")
            .to_vec1()
            .expect("vec");
        let all: Vec<f32> = x.flatten_all().expect("flat").to_vec1().expect("vec");
        let mean = (all[0] + all[1] + all[4] + all[5]) / 4.0;
        assert!((out[0] - mean).abs() < 1e-6);
    }
}
