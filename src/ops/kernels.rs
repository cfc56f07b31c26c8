//! CPU kernels on plain slices, NHWC layout (channels innermost, so the inner loops run over
//! contiguous channels and vectorise).
//!
//! * Leaf loops are compiled twice, for the baseline target and with AVX2, and picked at run
//!   time ([`simd_dispatch!`]), so one portable binary uses the wide registers where present.
//! * Work is split into chunks whose boundaries depend only on the shapes, never on the
//!   thread count, and partial sums are combined in a fixed order: results are bit-identical
//!   from run to run and from machine to machine.

use rayon::prelude::*;

/// Rows per chunk in the BatchNorm reductions (a chunk's partial sums stay in f64).
const BN_CHUNK_ROWS: usize = 256;
/// Output rows per chunk in the depthwise weight-gradient reduction.
const DW_GRAD_CHUNK_ROWS: usize = 4;

/// Defines `pub fn $name(..)` that runs its body compiled with AVX2 when the CPU supports it.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn inner($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) {
                    inner($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            inner($($arg),*)
        }
    };
}

/// TensorFlow "SAME" padding along one axis: `(out, pad_before, pad_after)`.
pub fn same_padding(in_px: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = in_px.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(in_px);
    (out, total / 2, total - total / 2)
}

/// Shapes of a convolution with "SAME" padding over an NHWC input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl ConvGeometry {
    pub fn same(
        batch: usize,
        in_h: usize,
        in_w: usize,
        channels: usize,
        kernel: usize,
        stride: usize,
    ) -> Self {
        let (out_h, pad_top, _) = same_padding(in_h, kernel, stride);
        let (out_w, pad_left, _) = same_padding(in_w, kernel, stride);
        Self {
            batch,
            in_h,
            in_w,
            channels,
            kernel,
            stride,
            out_h,
            out_w,
            pad_top,
            pad_left,
        }
    }

    pub fn in_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.channels
    }

    pub fn out_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.channels
    }

    /// Input coordinate read by output coordinate `o` at tap `k`, if inside the image.
    #[inline(always)]
    fn source(&self, o: usize, k: usize, pad: usize, size: usize) -> Option<usize> {
        (o * self.stride + k).checked_sub(pad).filter(|&i| i < size)
    }
}

/// Optional bias + ReLU6 applied to a convolution's output in the same pass.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    pub bias: &'a [f32],
    pub relu6: bool,
}

/// Reorders depthwise weights from torch's `[C, 1, k, k]` to `[k, k, C]`.
pub fn depthwise_weights_to_kkc(weights: &[f32], channels: usize, kernel: usize) -> Vec<f32> {
    let mut out = vec![0f32; kernel * kernel * channels];
    for c in 0..channels {
        for t in 0..kernel * kernel {
            out[t * channels + c] = weights[c * kernel * kernel + t];
        }
    }
    out
}

/// Reorders `[k, k, C]` weight gradients back to torch's `[C, 1, k, k]`.
pub fn depthwise_weights_from_kkc(kkc: &[f32], channels: usize, kernel: usize) -> Vec<f32> {
    let mut out = vec![0f32; kernel * kernel * channels];
    for c in 0..channels {
        for t in 0..kernel * kernel {
            out[c * kernel * kernel + t] = kkc[t * channels + c];
        }
    }
    out
}

simd_dispatch! {
    /// One output row of a depthwise convolution (`out_row` is `out_w * C`).
    fn depthwise_forward_row(
        out_row: &mut [f32],
        image: &[f32],
        weights_kkc: &[f32],
        g: &ConvGeometry,
        oy: usize,
        epilogue: Option<Epilogue<'_>>,
    ) {
        let c = g.channels;
        out_row.fill(0.0);
        for ky in 0..g.kernel {
            let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else { continue };
            let in_row = &image[iy * g.in_w * c..(iy + 1) * g.in_w * c];
            for (ox, acc) in out_row.chunks_exact_mut(c).enumerate() {
                for kx in 0..g.kernel {
                    let Some(ix) = g.source(ox, kx, g.pad_left, g.in_w) else { continue };
                    let w = &weights_kkc[(ky * g.kernel + kx) * c..][..c];
                    let x = &in_row[ix * c..][..c];
                    for ((a, &w), &x) in acc.iter_mut().zip(w).zip(x) {
                        *a += w * x;
                    }
                }
            }
        }
        if let Some(Epilogue { bias, relu6 }) = epilogue {
            for acc in out_row.chunks_exact_mut(c) {
                for (a, &b) in acc.iter_mut().zip(bias) {
                    let v = *a + b;
                    *a = if relu6 { v.clamp(0.0, 6.0) } else { v };
                }
            }
        }
    }
}

/// Depthwise convolution forward, NHWC, weights `[k, k, C]`.
pub fn depthwise_forward(
    input: &[f32],
    weights_kkc: &[f32],
    g: &ConvGeometry,
    epilogue: Option<Epilogue<'_>>,
) -> Vec<f32> {
    let mut out = vec![0f32; g.out_len()];
    let row_len = g.out_w * g.channels;
    let image_len = g.in_h * g.in_w * g.channels;
    if row_len == 0 {
        return out;
    }
    out.par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(row, out_row)| {
            let (n, oy) = (row / g.out_h, row % g.out_h);
            let image = &input[n * image_len..(n + 1) * image_len];
            depthwise_forward_row(out_row, image, weights_kkc, g, oy, epilogue);
        });
    out
}

simd_dispatch! {
    /// One input row of the depthwise input gradient (gathered from the output rows that read it).
    fn depthwise_grad_input_row(
        grad_row: &mut [f32],
        grad_out_image: &[f32],
        weights_kkc: &[f32],
        g: &ConvGeometry,
        iy: usize,
    ) {
        let c = g.channels;
        grad_row.fill(0.0);
        for ky in 0..g.kernel {
            let Some(shifted) = (iy + g.pad_top).checked_sub(ky) else { continue };
            if shifted % g.stride != 0 {
                continue;
            }
            let oy = shifted / g.stride;
            if oy >= g.out_h {
                continue;
            }
            let gout_row = &grad_out_image[oy * g.out_w * c..(oy + 1) * g.out_w * c];
            for (ox, gout) in gout_row.chunks_exact(c).enumerate() {
                for kx in 0..g.kernel {
                    let Some(ix) = g.source(ox, kx, g.pad_left, g.in_w) else { continue };
                    let w = &weights_kkc[(ky * g.kernel + kx) * c..][..c];
                    let dst = &mut grad_row[ix * c..][..c];
                    for ((d, &w), &go) in dst.iter_mut().zip(w).zip(gout) {
                        *d += w * go;
                    }
                }
            }
        }
    }
}

/// Gradient of a depthwise convolution with respect to its input.
pub fn depthwise_grad_input(grad_out: &[f32], weights_kkc: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let mut grad_in = vec![0f32; g.in_len()];
    let row_len = g.in_w * g.channels;
    let out_image_len = g.out_h * g.out_w * g.channels;
    if row_len == 0 {
        return grad_in;
    }
    grad_in
        .par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(row, grad_row)| {
            let (n, iy) = (row / g.in_h, row % g.in_h);
            let gout = &grad_out[n * out_image_len..(n + 1) * out_image_len];
            depthwise_grad_input_row(grad_row, gout, weights_kkc, g, iy);
        });
    grad_in
}

simd_dispatch! {
    /// Adds one output row's contribution to the `[k, k, C]` weight gradient.
    fn depthwise_grad_weight_row(
        acc_kkc: &mut [f32],
        grad_out_row: &[f32],
        image: &[f32],
        g: &ConvGeometry,
        oy: usize,
    ) {
        let c = g.channels;
        for ky in 0..g.kernel {
            let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else { continue };
            let in_row = &image[iy * g.in_w * c..(iy + 1) * g.in_w * c];
            for kx in 0..g.kernel {
                let acc = &mut acc_kkc[(ky * g.kernel + kx) * c..][..c];
                for (ox, gout) in grad_out_row.chunks_exact(c).enumerate() {
                    let Some(ix) = g.source(ox, kx, g.pad_left, g.in_w) else { continue };
                    let x = &in_row[ix * c..][..c];
                    for ((a, &go), &x) in acc.iter_mut().zip(gout).zip(x) {
                        *a += go * x;
                    }
                }
            }
        }
    }
}

/// Gradient of a depthwise convolution with respect to its `[k, k, C]` weights.
pub fn depthwise_grad_weight(grad_out: &[f32], input: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let c = g.channels;
    let taps = g.kernel * g.kernel * c;
    let image_len = g.in_h * g.in_w * c;
    let row_len = g.out_w * c;
    let rows = g.batch * g.out_h;
    if rows == 0 || taps == 0 {
        return vec![0f32; taps];
    }
    let chunks = rows.div_ceil(DW_GRAD_CHUNK_ROWS);
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|chunk| {
            let mut acc = vec![0f32; taps];
            let end = ((chunk + 1) * DW_GRAD_CHUNK_ROWS).min(rows);
            for row in chunk * DW_GRAD_CHUNK_ROWS..end {
                let (n, oy) = (row / g.out_h, row % g.out_h);
                let image = &input[n * image_len..(n + 1) * image_len];
                let gout = &grad_out[row * row_len..(row + 1) * row_len];
                depthwise_grad_weight_row(&mut acc, gout, image, g, oy);
            }
            acc
        })
        .collect();
    sum_partials(&partials, taps)
}

/// Sums equally long partial vectors in their given order (deterministic), in parallel
/// over elements.
fn sum_partials(partials: &[Vec<f32>], len: usize) -> Vec<f32> {
    let mut total = vec![0f32; len];
    const BLOCK: usize = 1024;
    total
        .par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(b, out)| {
            for p in partials {
                for (o, &v) in out.iter_mut().zip(&p[b * BLOCK..]) {
                    *o += v;
                }
            }
        });
    total
}

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
        relu6: bool,
    ) {
        let c = scale.len();
        match residual {
            None => {
                for (o_row, x_row) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                    for (((o, &x), &s), &b) in o_row.iter_mut().zip(x_row).zip(scale).zip(shift) {
                        let v = x * s + b;
                        *o = if relu6 { v.clamp(0.0, 6.0) } else { v };
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
                        *o = if relu6 { v.clamp(0.0, 6.0) } else { v };
                    }
                }
            }
        }
    }
}

/// `y = x * scale + shift (+ residual)`, optionally clamped to [0, 6], per channel of a
/// `[rows, C]` matrix: eval-mode BatchNorm folded into one pass.
pub fn scale_shift(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    residual: Option<&[f32]>,
    relu6: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    scale_shift_into(&mut out, x, scale, shift, residual, relu6);
    out
}

/// [`scale_shift`] into an existing buffer (`out` may not alias `x`).
pub fn scale_shift_into(
    out: &mut [f32],
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    residual: Option<&[f32]>,
    relu6: bool,
) {
    let c = scale.len().max(1);
    let chunk = BN_CHUNK_ROWS * c;
    match residual {
        None => out
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(o, x)| scale_shift_rows(o, x, scale, shift, None, relu6)),
        Some(res) => out
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .zip(res.par_chunks(chunk))
            .for_each(|((o, x), r)| scale_shift_rows(o, x, scale, shift, Some(r), relu6)),
    }
}

simd_dispatch! {
    fn bias_act_rows(data: &mut [f32], bias: &[f32], residual: Option<&[f32]>, relu6: bool) {
        let c = bias.len();
        match residual {
            None => {
                for row in data.chunks_exact_mut(c) {
                    for (v, &b) in row.iter_mut().zip(bias) {
                        let y = *v + b;
                        *v = if relu6 { y.clamp(0.0, 6.0) } else { y };
                    }
                }
            }
            Some(res) => {
                for (row, r_row) in data.chunks_exact_mut(c).zip(res.chunks_exact(c)) {
                    for ((v, &b), &r) in row.iter_mut().zip(bias).zip(r_row) {
                        let y = *v + b + r;
                        *v = if relu6 { y.clamp(0.0, 6.0) } else { y };
                    }
                }
            }
        }
    }
}

/// In place: `x += bias (+ residual)`, optionally clamped to [0, 6], per channel of a
/// `[rows, C]` matrix (the epilogue of a convolution with BatchNorm folded into it).
pub fn bias_act_in_place(data: &mut [f32], bias: &[f32], residual: Option<&[f32]>, relu6: bool) {
    let chunk = BN_CHUNK_ROWS * bias.len().max(1);
    match residual {
        None => data
            .par_chunks_mut(chunk)
            .for_each(|d| bias_act_rows(d, bias, None, relu6)),
        Some(res) => data
            .par_chunks_mut(chunk)
            .zip(res.par_chunks(chunk))
            .for_each(|(d, r)| bias_act_rows(d, bias, Some(r), relu6)),
    }
}

simd_dispatch! {
    #[allow(clippy::too_many_arguments)]
    fn bn_backward_sums_rows(
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        mean: &[f32],
        inv_std: &[f32],
        relu6: bool,
        sum_dy: &mut [f64],
        sum_dy_xhat: &mut [f64],
    ) {
        let c = mean.len();
        for ((x_row, y_row), dy_row) in x.chunks_exact(c).zip(y.chunks_exact(c)).zip(dy.chunks_exact(c)) {
            for i in 0..c {
                let g = if relu6 && !(y_row[i] > 0.0 && y_row[i] < 6.0) { 0.0 } else { dy_row[i] };
                let xhat = (x_row[i] - mean[i]) * inv_std[i];
                sum_dy[i] += f64::from(g);
                sum_dy_xhat[i] += f64::from(g * xhat);
            }
        }
    }
}

simd_dispatch! {
    #[allow(clippy::too_many_arguments)]
    fn bn_backward_input_rows(
        dx: &mut [f32],
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        mean: &[f32],
        inv_std: &[f32],
        coef_a: &[f32],
        coef_b: &[f32],
        coef_c: &[f32],
        relu6: bool,
    ) {
        let c = mean.len();
        for (((dx_row, x_row), y_row), dy_row) in dx
            .chunks_exact_mut(c)
            .zip(x.chunks_exact(c))
            .zip(y.chunks_exact(c))
            .zip(dy.chunks_exact(c))
        {
            for i in 0..c {
                let g = if relu6 && !(y_row[i] > 0.0 && y_row[i] < 6.0) { 0.0 } else { dy_row[i] };
                let xhat = (x_row[i] - mean[i]) * inv_std[i];
                dx_row[i] = coef_a[i] * g - coef_b[i] - coef_c[i] * xhat;
            }
        }
    }
}

/// Gradients of train-mode BatchNorm (+ optional ReLU6 on its output `y`).
#[derive(Debug)]
pub struct BnGrads {
    pub input: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// Analytic backward of `y = act(gamma * (x - mean) * inv_std + beta)` with batch statistics.
#[allow(clippy::too_many_arguments)]
pub fn bn_train_backward(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    relu6: bool,
    need_input_grad: bool,
) -> BnGrads {
    let c = gamma.len();
    let rows = x.len().checked_div(c).unwrap_or(0);
    let chunk = BN_CHUNK_ROWS * c.max(1);
    let partials: Vec<(Vec<f64>, Vec<f64>)> = x
        .par_chunks(chunk)
        .zip(y.par_chunks(chunk))
        .zip(dy.par_chunks(chunk))
        .map(|((x, y), dy)| {
            let mut s = vec![0f64; c];
            let mut sx = vec![0f64; c];
            bn_backward_sums_rows(x, y, dy, mean, inv_std, relu6, &mut s, &mut sx);
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
        let coef_a: Vec<f32> = (0..c).map(|i| gamma[i] * inv_std[i]).collect();
        let coef_b: Vec<f32> = (0..c)
            .map(|i| (f64::from(coef_a[i]) * sum_dy[i] / m) as f32)
            .collect();
        let coef_c: Vec<f32> = (0..c)
            .map(|i| (f64::from(coef_a[i]) * sum_dy_xhat[i] / m) as f32)
            .collect();
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .zip(y.par_chunks(chunk))
            .zip(dy.par_chunks(chunk))
            .for_each(|(((dx, x), y), dy)| {
                bn_backward_input_rows(
                    dx, x, y, dy, mean, inv_std, &coef_a, &coef_b, &coef_c, relu6,
                );
            });
        dx
    } else {
        Vec::new()
    };
    BnGrads {
        input,
        gamma: sum_dy_xhat.iter().map(|&v| v as f32).collect(),
        beta: sum_dy.iter().map(|&v| v as f32).collect(),
    }
}

simd_dispatch! {
    fn relu6_backward_rows(out: &mut [f32], y: &[f32], dy: &[f32]) {
        for ((o, &y), &d) in out.iter_mut().zip(y).zip(dy) {
            *o = if y > 0.0 && y < 6.0 { d } else { 0.0 };
        }
    }
}

simd_dispatch! {
    fn relu6_rows(out: &mut [f32], x: &[f32]) {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = x.clamp(0.0, 6.0);
        }
    }
}

const ELEMENTWISE_CHUNK: usize = 1 << 15;

/// `min(max(x, 0), 6)` in one pass.
pub fn relu6(x: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(x.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|(o, x)| relu6_rows(o, x));
    out
}

/// Gradient of ReLU6 from its output: passes `dy` where `0 < y < 6`.
pub fn relu6_backward(y: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; y.len()];
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(y.par_chunks(ELEMENTWISE_CHUNK))
        .zip(dy.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|((o, y), d)| relu6_backward_rows(o, y, d));
    out
}

/// Patches of a "SAME"-padded convolution, `[N * out_h * out_w, k * k * C]`, ordered
/// `(ky, kx, c)`; padding reads as zero.
pub fn im2col(input: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let c = g.channels;
    let patch = g.kernel * g.kernel * c;
    let mut cols = vec![0f32; g.batch * g.out_h * g.out_w * patch];
    let image_len = g.in_h * g.in_w * c;
    let row_len = g.out_w * patch;
    if row_len == 0 {
        return cols;
    }
    cols.par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(row, out)| {
            let (n, oy) = (row / g.out_h, row % g.out_h);
            let image = &input[n * image_len..(n + 1) * image_len];
            for (ox, dst) in out.chunks_exact_mut(patch).enumerate() {
                for ky in 0..g.kernel {
                    let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else {
                        continue;
                    };
                    for kx in 0..g.kernel {
                        let Some(ix) = g.source(ox, kx, g.pad_left, g.in_w) else {
                            continue;
                        };
                        let src = &image[(iy * g.in_w + ix) * c..][..c];
                        dst[(ky * g.kernel + kx) * c..][..c].copy_from_slice(src);
                    }
                }
            }
        });
    cols
}

/// Adjoint of [`im2col`]: sums patch gradients back into an input-shaped gradient.
pub fn col2im(grad_cols: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let c = g.channels;
    let patch = g.kernel * g.kernel * c;
    let mut grad = vec![0f32; g.in_len()];
    let image_len = g.in_h * g.in_w * c;
    let cols_per_image = g.out_h * g.out_w * patch;
    if image_len == 0 {
        return grad;
    }
    grad.par_chunks_mut(image_len)
        .enumerate()
        .for_each(|(n, image)| {
            let cols = &grad_cols[n * cols_per_image..(n + 1) * cols_per_image];
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let src = &cols[(oy * g.out_w + ox) * patch..][..patch];
                    for ky in 0..g.kernel {
                        let Some(iy) = g.source(oy, ky, g.pad_top, g.in_h) else {
                            continue;
                        };
                        for kx in 0..g.kernel {
                            let Some(ix) = g.source(ox, kx, g.pad_left, g.in_w) else {
                                continue;
                            };
                            let dst = &mut image[(iy * g.in_w + ix) * c..][..c];
                            for (d, &s) in dst.iter_mut().zip(&src[(ky * g.kernel + kx) * c..][..c])
                            {
                                *d += s;
                            }
                        }
                    }
                }
            }
        });
    grad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // (in, k, s) -> (out, before, after)
        assert_eq!(same_padding(224, 3, 2), (112, 0, 1));
        assert_eq!(same_padding(112, 3, 1), (112, 1, 1));
        assert_eq!(same_padding(56, 5, 2), (28, 1, 2));
        assert_eq!(same_padding(7, 5, 1), (7, 2, 2));
        assert_eq!(same_padding(1, 5, 2), (1, 2, 2));
    }

    #[test]
    fn batch_stats_are_exact_on_small_input() {
        let x = [1.0, 10.0, 3.0, 20.0, 5.0, 30.0];
        let s = batch_stats(&x, 2);
        assert_eq!(s.mean, vec![3.0, 20.0]);
        assert!((s.var[0] - 8.0 / 3.0).abs() < 1e-6);
        assert!((s.var[1] - 200.0 / 3.0).abs() < 1e-4);
        assert_eq!(s.count, 3);
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> for arbitrary x, y.
        let g = ConvGeometry::same(2, 5, 4, 3, 3, 2);
        let x: Vec<f32> = (0..g.in_len())
            .map(|i| ((i * 7) % 11) as f32 - 5.0)
            .collect();
        let cols = im2col(&x, &g);
        let y: Vec<f32> = (0..cols.len())
            .map(|i| ((i * 5) % 13) as f32 - 6.0)
            .collect();
        let lhs: f64 = cols.iter().zip(&y).map(|(a, b)| f64::from(a * b)).sum();
        let back = col2im(&y, &g);
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| f64::from(a * b)).sum();
        assert!(
            (lhs - rhs).abs() < 1e-6 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }
}
