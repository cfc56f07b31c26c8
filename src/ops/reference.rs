//! The same operations composed from stock candle ops. They run on every candle device (the
//! fallback off the CPU) and are the yardstick the fast kernels are tested against.

use candle_core::{D, Result, Tensor};

use super::kernels::{Act, same_padding};
use super::stats::BatchStats;

/// NHWC → NCHW, "SAME"-padded for a k×k kernel at `stride`.
fn to_padded_nchw(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    let (_, top, bottom) = same_padding(h, kernel, stride);
    let (_, left, right) = same_padding(w, kernel, stride);
    x.permute((0, 3, 1, 2))?
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)
}

/// Depthwise convolution as candle's grouped `conv2d` (groups = channels).
pub fn depthwise_conv(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (c, _, k, _) = w.dims4()?;
    to_padded_nchw(x, k, stride)?
        .conv2d(w, 0, stride, 1, c)?
        .permute((0, 2, 3, 1))
}

/// Depthwise convolution ("SAME" padding) as k² shifted multiply-adds over the whole NHWC
/// tensor: a fixed number of launches whatever the channel count, where candle's grouped
/// `conv2d` launches one convolution per channel (1152 for Lite0's widest layer). This is the
/// path off the CPU; every op in it has candle's own backward.
pub fn depthwise_shifted(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, h, wd, c) = x.dims4()?;
    let (_, _, k, _) = w.dims4()?;
    let (out_h, top, bottom) = same_padding(h, k, stride);
    let (out_w, left, right) = same_padding(wd, k, stride);
    let padded = x
        .pad_with_zeros(1, top, bottom)?
        .pad_with_zeros(2, left, right)?;
    let taps = |offset: usize, count: usize| -> Result<Tensor> {
        let index: Vec<u32> = (0..count).map(|i| (offset + i * stride) as u32).collect();
        Tensor::from_vec(index, count, x.device())
    };
    let mut sum: Option<Tensor> = None;
    for dy in 0..k {
        let rows = padded.index_select(&taps(dy, out_h)?, 1)?;
        for dx in 0..k {
            let shifted = rows.index_select(&taps(dx, out_w)?, 2)?;
            let weight = w
                .narrow(2, dy, 1)?
                .narrow(3, dx, 1)?
                .reshape((1, 1, 1, c))?;
            let term = shifted.broadcast_mul(&weight)?;
            sum = Some(match sum {
                Some(s) => (s + term)?,
                None => term,
            });
        }
    }
    sum.ok_or_else(|| candle_core::Error::Msg("depthwise kernel of size 0".into()))
}

/// Dense convolution with "SAME" padding via candle's `conv2d`.
pub fn conv_same(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, _, k, _) = w.dims4()?;
    to_padded_nchw(x, k, stride)?
        .conv2d(w, 0, stride, 1, 1)?
        .permute((0, 2, 3, 1))
}

/// Dense convolution with any padding via candle's `conv2d`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: super::kernels::Padding,
) -> Result<Tensor> {
    match padding {
        super::kernels::Padding::Same => conv_same(x, w, stride),
        super::kernels::Padding::Symmetric(pad) => x
            .permute((0, 3, 1, 2))?
            .contiguous()?
            .conv2d(w, pad, stride, 1, 1)?
            .permute((0, 2, 3, 1)),
    }
}

/// 1×1 convolution via candle's `conv2d`.
pub fn conv1x1(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.permute((0, 3, 1, 2))?
        .contiguous()?
        .conv2d(w, 0, 1, 1, 1)?
        .permute((0, 2, 3, 1))
}

/// The activation from stock ops (ReLU6 as `clamp`).
pub fn activate(x: Tensor, act: Act) -> Result<Tensor> {
    match act {
        Act::None => Ok(x),
        Act::Relu => x.relu(),
        Act::Relu6 => x.clamp(0f32, 6f32),
    }
}

/// Train-mode BatchNorm over all but the channel axis, from means and squares.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: Act,
) -> Result<(Tensor, BatchStats)> {
    let c = x.dim(D::Minus1)?;
    let flat = x.reshape(((), c))?;
    let count = flat.dim(0)?;
    let mean = flat.mean_keepdim(0)?;
    let centered = flat.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(0)?;
    let normed = centered.broadcast_div(&(var.clone() + eps)?.sqrt()?)?;
    let y = normed
        .broadcast_mul(&gamma.reshape((1, c))?)?
        .broadcast_add(&beta.reshape((1, c))?)?;
    let y = activate(y, act)?;
    let stats = BatchStats {
        mean: mean.flatten_all()?.to_vec1()?,
        var: var.flatten_all()?.to_vec1()?,
        count,
    };
    Ok((y.reshape(x.shape())?, stats))
}

/// Eval-mode BatchNorm as broadcast multiply and add.
pub fn scale_shift_act(
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    residual: Option<&Tensor>,
    act: Act,
) -> Result<Tensor> {
    let mut y = x.broadcast_mul(scale)?.broadcast_add(shift)?;
    if let Some(r) = residual {
        y = (y + r)?;
    }
    activate(y, act)
}
