//! Pooling for the torchvision networks, composed from candle ops on NHWC tensors (so that
//! autograd handles backward, on any device).

use candle_core::{Result, Tensor};

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
    let (n, h, w, c) = x.dims4()?;
    let (oh, ow) = (h / 2, w / 2);
    x.narrow(1, 0, 2 * oh)?
        .narrow(2, 0, 2 * ow)?
        .reshape((n, oh, 2, ow, 2, c))?
        .max(4)?
        .max(2)
}

/// Max pooling, 3×3 windows at stride 2 with one pixel of padding (ResNet's stem). The input
/// must be non-negative (it follows a ReLU), so zero padding equals PyTorch's -∞ padding.
pub fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
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
