//! BatchNorm: batch statistics, the folded scale/shift and bias epilogues, and the train-mode
//! backward.

use rayon::prelude::*;

use super::common::{Act, output_buffer};

/// Rows per chunk in the BatchNorm reductions (a chunk's partial sums stay in f64).
const BN_CHUNK_ROWS: usize = 256;

/// Per-channel statistics of a batch, from [`batch_stats`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelStats {
    pub mean: Vec<f32>,
    /// Biased (population) variance, as normalisation uses.
    pub var: Vec<f32>,
    /// Number of values per channel.
    pub count: usize,
}

simd_dispatch! {
    fn accumulate_sums(rows: &[f32], c: usize, sum: &mut [f64], sum_sq: &mut [f64]) {
        for row in rows.chunks_exact(c) {
            for ((s, q), &v) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(row) {
                let v = f64::from(v);
                *s += v;
                *q += v * v;
            }
        }
    }
}

simd_dispatch! {
    fn accumulate_column_sums(rows: &[f32], c: usize, sum: &mut [f64]) {
        for row in rows.chunks_exact(c) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
    }
}

/// The sum of each column of a `[rows, C]` matrix (a bias's gradient): in f64 per chunk of
/// rows, the chunks added in order, so the result does not depend on the thread count.
pub fn column_sums(x: &[f32], c: usize) -> Vec<f32> {
    let partials: Vec<Vec<f64>> = x
        .par_chunks(BN_CHUNK_ROWS * c.max(1))
        .map(|chunk| {
            let mut sum = vec![0f64; c];
            accumulate_column_sums(chunk, c, &mut sum);
            sum
        })
        .collect();
    let mut sum = vec![0f64; c];
    for partial in &partials {
        for (s, p) in sum.iter_mut().zip(partial) {
            *s += p;
        }
    }
    sum.into_iter().map(|s| s as f32).collect()
}

/// Mean and biased variance of each channel of a `[rows, C]` matrix.
pub fn batch_stats(x: &[f32], c: usize) -> ChannelStats {
    let rows = x.len().checked_div(c).unwrap_or(0);
    let partials: Vec<(Vec<f64>, Vec<f64>)> = x
        .par_chunks(BN_CHUNK_ROWS * c.max(1))
        .map(|chunk| {
            let mut sum = vec![0f64; c];
            let mut sum_sq = vec![0f64; c];
            accumulate_sums(chunk, c, &mut sum, &mut sum_sq);
            (sum, sum_sq)
        })
        .collect();
    let mut sum = vec![0f64; c];
    let mut sum_sq = vec![0f64; c];
    for (s, q) in &partials {
        for i in 0..c {
            sum[i] += s[i];
            sum_sq[i] += q[i];
        }
    }
    let count = rows.max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let var = sum_sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| (q / count - m * m).max(0.0) as f32)
        .collect();
    ChannelStats {
        mean: mean.iter().map(|&m| m as f32).collect(),
        var,
        count: rows,
    }
}

simd_dispatch! {
    fn scale_shift_rows(
        out: &mut [f32],
        x: &[f32],
        scale: &[f32],
        shift: &[f32],
        residual: Option<&[f32]>,
        act: Act,
    ) {
        let c = scale.len();
        per_act!(act, |ACT| {
            match residual {
                None => {
                    for (o_row, x_row) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                        for (((o, &x), &s), &b) in o_row.iter_mut().zip(x_row).zip(scale).zip(shift) {
                            let v = x * s + b;
                            *o = ACT.on(v);
                        }
                    }
                }
                Some(res) => {
                    for ((o_row, x_row), r_row) in
                        out.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(res.chunks_exact(c))
                    {
                        for ((((o, &x), &s), &b), &r) in
                            o_row.iter_mut().zip(x_row).zip(scale).zip(shift).zip(r_row)
                        {
                            let v = x * s + b + r;
                            *o = ACT.on(v);
                        }
                    }
                }
            }
        })
    }
}

/// `y = x * scale + shift (+ residual)`, then the activation, per channel of a
/// `[rows, C]` matrix: eval-mode BatchNorm folded into one pass.
pub fn scale_shift(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    residual: Option<&[f32]>,
    act: Act,
) -> Vec<f32> {
    output_buffer(x.len(), |out| {
        scale_shift_into(out, x, scale, shift, residual, act)
    })
}

/// [`scale_shift`] into an existing buffer (`out` may not alias `x`).
pub fn scale_shift_into(
    out: &mut [f32],
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    residual: Option<&[f32]>,
    act: Act,
) {
    let c = scale.len().max(1);
    let chunk = BN_CHUNK_ROWS * c;
    match residual {
        None => out
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(o, x)| scale_shift_rows(o, x, scale, shift, None, act)),
        Some(res) => out
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .zip(res.par_chunks(chunk))
            .for_each(|((o, x), r)| scale_shift_rows(o, x, scale, shift, Some(r), act)),
    }
}

simd_dispatch! {
    pub(super) fn bias_act_rows(data: &mut [f32], bias: &[f32], residual: Option<&[f32]>, act: Act) {
        let c = bias.len();
        per_act!(act, |ACT| {
            match residual {
                None => {
                    for row in data.chunks_exact_mut(c) {
                        for (v, &b) in row.iter_mut().zip(bias) {
                            let y = *v + b;
                            *v = ACT.on(y);
                        }
                    }
                }
                Some(res) => {
                    for (row, r_row) in data.chunks_exact_mut(c).zip(res.chunks_exact(c)) {
                        for ((v, &b), &r) in row.iter_mut().zip(bias).zip(r_row) {
                            let y = *v + b + r;
                            *v = ACT.on(y);
                        }
                    }
                }
            }
        })
    }
}

/// In place: `x += bias (+ residual)`, then the activation, per channel of a
/// `[rows, C]` matrix (the epilogue of a convolution with BatchNorm folded into it).
pub fn bias_act_in_place(data: &mut [f32], bias: &[f32], residual: Option<&[f32]>, act: Act) {
    let chunk = BN_CHUNK_ROWS * bias.len().max(1);
    match residual {
        None => data
            .par_chunks_mut(chunk)
            .for_each(|d| bias_act_rows(d, bias, None, act)),
        Some(res) => data
            .par_chunks_mut(chunk)
            .zip(res.par_chunks(chunk))
            .for_each(|(d, r)| bias_act_rows(d, bias, Some(r), act)),
    }
}

/// Train-mode BatchNorm's per-channel affine map from its batch statistics:
/// `out = act(x · scale + shift)`. Forward and backward both take it from here, so backward
/// recomputes the exact pre-activation values (and which of them the activation passed)
/// instead of reading the output back.
pub fn bn_affine(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    inv_std: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma.iter().zip(inv_std).map(|(g, s)| g * s).collect();
    let shift = (0..scale.len())
        .map(|i| beta[i] - mean[i] * scale[i])
        .collect();
    (scale, shift)
}

/// The affine map and statistics BatchNorm's backward reads per channel.
struct BnChannels<'a> {
    mean: &'a [f32],
    inv_std: &'a [f32],
    scale: &'a [f32],
    shift: &'a [f32],
}

impl BnChannels<'_> {
    /// For channel `i` of input `x` with output gradient `dy`: the gradient before the
    /// activation, and the normalised input.
    #[inline(always)]
    fn at(&self, act: Act, i: usize, x: f32, dy: f32) -> (f32, f32) {
        let g = act.grad(x * self.scale[i] + self.shift[i], dy);
        (g, (x - self.mean[i]) * self.inv_std[i])
    }
}

simd_dispatch! {
    fn bn_backward_sums_rows(
        x: &[f32],
        dy: &[f32],
        ch: &BnChannels<'_>,
        act: Act,
        sum_dy: &mut [f64],
        sum_dy_xhat: &mut [f64],
    ) {
        let c = ch.mean.len();
        per_act!(act, |ACT| {
            for (x_row, dy_row) in x.chunks_exact(c).zip(dy.chunks_exact(c)) {
                for i in 0..c {
                    let (g, xhat) = ch.at(ACT, i, x_row[i], dy_row[i]);
                    sum_dy[i] += f64::from(g);
                    sum_dy_xhat[i] += f64::from(g * xhat);
                }
            }
        })
    }
}

simd_dispatch! {
    #[allow(clippy::too_many_arguments)]
    fn bn_backward_input_rows(
        dx: &mut [f32],
        x: &[f32],
        dy: &[f32],
        ch: &BnChannels<'_>,
        coef_a: &[f32],
        coef_b: &[f32],
        coef_c: &[f32],
        act: Act,
    ) {
        let c = ch.mean.len();
        per_act!(act, |ACT| {
            for ((dx_row, x_row), dy_row) in dx
                .chunks_exact_mut(c)
                .zip(x.chunks_exact(c))
                .zip(dy.chunks_exact(c))
            {
                for i in 0..c {
                    let (g, xhat) = ch.at(ACT, i, x_row[i], dy_row[i]);
                    dx_row[i] = coef_a[i] * g - coef_b[i] - coef_c[i] * xhat;
                }
            }
        })
    }
}

/// Gradients of train-mode BatchNorm (+ an activation on its output `y`).
#[derive(Debug)]
pub struct BnGrads {
    pub input: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// Analytic backward of `y = act(gamma * (x - mean) * inv_std + beta)` with batch statistics,
/// from the input `x` and the output gradient `dy` (the activation's mask is recomputed from
/// `x`, see [`bn_affine`]).
#[allow(clippy::too_many_arguments)]
pub fn bn_train_backward(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    act: Act,
    need_input_grad: bool,
) -> BnGrads {
    let c = gamma.len();
    let rows = x.len().checked_div(c).unwrap_or(0);
    let chunk = BN_CHUNK_ROWS * c.max(1);
    let (scale, shift) = bn_affine(gamma, beta, mean, inv_std);
    let ch = BnChannels {
        mean,
        inv_std,
        scale: &scale,
        shift: &shift,
    };
    let partials: Vec<(Vec<f64>, Vec<f64>)> = x
        .par_chunks(chunk)
        .zip(dy.par_chunks(chunk))
        .map(|(x, dy)| {
            let mut s = vec![0f64; c];
            let mut sx = vec![0f64; c];
            bn_backward_sums_rows(x, dy, &ch, act, &mut s, &mut sx);
            (s, sx)
        })
        .collect();
    let mut sum_dy = vec![0f64; c];
    let mut sum_dy_xhat = vec![0f64; c];
    for (s, sx) in &partials {
        for i in 0..c {
            sum_dy[i] += s[i];
            sum_dy_xhat[i] += sx[i];
        }
    }
    let input = if need_input_grad {
        let m = rows.max(1) as f64;
        // dx = gamma * inv_std * (g - sum_g / m - xhat * sum_g_xhat / m)
        let coef_a = &scale;
        let coef_b: Vec<f32> = (0..c)
            .map(|i| (f64::from(coef_a[i]) * sum_dy[i] / m) as f32)
            .collect();
        let coef_c: Vec<f32> = (0..c)
            .map(|i| (f64::from(coef_a[i]) * sum_dy_xhat[i] / m) as f32)
            .collect();
        output_buffer(x.len(), |dx| {
            dx.par_chunks_mut(chunk)
                .zip(x.par_chunks(chunk))
                .zip(dy.par_chunks(chunk))
                .for_each(|((dx, x), dy)| {
                    bn_backward_input_rows(dx, x, dy, &ch, coef_a, &coef_b, &coef_c, act);
                });
        })
    } else {
        Vec::new()
    };
    BnGrads {
        input,
        gamma: sum_dy_xhat.iter().map(|&v| v as f32).collect(),
        beta: sum_dy.iter().map(|&v| v as f32).collect(),
    }
}
