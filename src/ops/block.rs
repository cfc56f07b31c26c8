//! A residual block (a chain of convolution + train-mode BatchNorm layers, and its shortcut),
//! or a single such layer, trains as one graph node. candle gives every edge of its graph a
//! zeroed gradient tensor and an add (12 % of a Lite0 fine-tune step); inside the block,
//! gradients go from layer to layer directly and the shortcut's is added in place.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::affine::add_activate;
use super::batch_norm::{SavedStats, batch_norm_train, bn_train_forward};
use super::conv_bn::{Dims, FusedConv};
use super::kernels;
use super::kernels::{Act, BnGrads};
use super::slices::{dims4, is_cpu_f32, storage_slice, vec_tensor, with_slice};
use super::stats::BatchStats;

/// One convolution + train-mode BatchNorm (+activation) of a [`train_block`].
#[derive(Debug, Clone, Copy)]
pub struct BlockLayer<'a> {
    /// The convolution's weights, checkpoint layout (`[C_out, C_in, k, k]`).
    pub weight: &'a Tensor,
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
    pub conv: FusedConv,
    /// Recompute the convolution's output in backward instead of keeping it.
    pub recompute: bool,
    pub eps: f64,
    pub act: Act,
}

/// What a block adds to its chain's output before the final activation.
#[derive(Debug, Clone, Copy)]
pub enum Shortcut<'a> {
    /// A plain chain: no sum, and the block's activation must be `Act::None`.
    None,
    /// The block's input.
    Identity,
    /// A convolution + BatchNorm of the block's input (ResNet's downsampling).
    Projection(BlockLayer<'a>),
}

/// `act(chain(x) + shortcut(x))` in training mode as one graph node (CPU; elsewhere the same
/// block as separate nodes, [`train_block_unfused`]), with each layer's batch statistics for
/// the running averages: the chain's layers first, then the projection's.
pub fn train_block(
    x: &Tensor,
    chain: &[BlockLayer<'_>],
    shortcut: Shortcut<'_>,
    act: Act,
) -> Result<(Tensor, Vec<BatchStats>)> {
    if matches!(shortcut, Shortcut::None) && act != Act::None {
        bail!("a block without a shortcut takes its activation from its last layer");
    }
    if chain.is_empty() {
        bail!("a block needs at least one layer");
    }
    let projection = match &shortcut {
        Shortcut::Projection(p) => Some(p),
        _ => None,
    };
    let layers: Vec<&BlockLayer<'_>> = chain.iter().chain(projection).collect();
    if !is_cpu_f32(x) || !fusing_pays(x, &layers, chain.len())? {
        return train_block_unfused(x, chain, shortcut, act);
    }
    let identity = matches!(shortcut, Shortcut::Identity);
    fused_block(x, &layers, chain.len(), identity, act)
}

/// Convolution then train-mode BatchNorm (+activation): a block of one layer, one graph node
/// on the CPU (elsewhere the convolution, then [`batch_norm_train`]). Backward gets no
/// gradient for the convolution's output from candle, and with `recompute` keeps only the
/// convolution's *input*: that saves one activation-sized tensor per layer (a third of the
/// live memory of a fine-tune step in the early, wide layers) for the cost of running the
/// convolution twice, worth it where it is cheap for its output size (depthwise, and 1×1 with
/// few input channels). Returns the output and the batch statistics.
pub fn conv_bn_train(x: &Tensor, layer: &BlockLayer<'_>) -> Result<(Tensor, BatchStats)> {
    if !is_cpu_f32(x) {
        let y = layer.conv.apply(x, layer.weight)?;
        return batch_norm_train(&y, layer.gamma, layer.beta, layer.eps, layer.act);
    }
    let (y, mut stats) = fused_block(x, &[layer], 1, false, Act::None)?;
    let stats = stats
        .pop()
        .ok_or_else(|| candle_core::Error::Msg("no batch statistics".into()))?;
    Ok((y, stats))
}

/// The block as one [`BlockTrain`] node: `layers` are the chain's `chain_len` layers, then the
/// projection's if there is one.
fn fused_block(
    x: &Tensor,
    layers: &[&BlockLayer<'_>],
    chain_len: usize,
    identity: bool,
    act: Act,
) -> Result<(Tensor, Vec<BatchStats>)> {
    let mut weights = Vec::with_capacity(layers.len());
    let mut norms = Vec::with_capacity(2 * layers.len());
    let mut specs = Vec::with_capacity(layers.len());
    for l in layers {
        weights.push(l.weight.flatten_all()?);
        norms.extend([l.gamma.clone(), l.beta.clone()]);
        let (c_out, _, kernel, _) = l.weight.dims4()?;
        specs.push(Spec {
            conv: l.conv,
            recompute: l.recompute,
            eps: l.eps,
            act: l.act,
            kernel,
            c_out,
            weight_len: l.weight.elem_count(),
        });
    }
    let saved = Arc::new(Mutex::new(Vec::new()));
    let op = BlockTrain {
        chain_len,
        specs,
        identity,
        act,
        saved: saved.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&Tensor::cat(&weights, 0)?, &Tensor::cat(&norms, 0)?, op)?;
    let stats = lock(&saved)?
        .iter()
        .map(|s| s.stats.batch_stats())
        .collect();
    Ok((y, stats))
}

/// [`train_block`] as separate graph nodes, one per layer and one for the sum: what runs off
/// the CPU, and what the tests compare the fused block with.
pub fn train_block_unfused(
    x: &Tensor,
    chain: &[BlockLayer<'_>],
    shortcut: Shortcut<'_>,
    act: Act,
) -> Result<(Tensor, Vec<BatchStats>)> {
    let mut stats = Vec::with_capacity(chain.len() + 1);
    let mut h = x.clone();
    for l in chain {
        let (y, s) = conv_bn_train(&h, l)?;
        stats.push(s);
        h = y;
    }
    let y = match shortcut {
        Shortcut::None => h,
        Shortcut::Identity => add_activate(&h, x, act)?,
        Shortcut::Projection(p) => {
            let (s_out, s) = conv_bn_train(x, &p)?;
            stats.push(s);
            add_activate(&h, &s_out, act)?
        }
    };
    Ok((y, stats))
}

/// Whether one node is cheaper than one per layer. The node's arguments are every layer's
/// parameters concatenated, which costs a few passes over the parameters (the concatenation,
/// and candle's gradient of it); it saves a few passes over every layer's output (candle's
/// zeroed gradient and add per edge). ResNet's last stage at batch 32 has twice as many
/// weights as outputs; Lite0's blocks have ten times more outputs than weights.
fn fusing_pays(x: &Tensor, layers: &[&BlockLayer<'_>], chain_len: usize) -> Result<bool> {
    let (n, h, w, _) = x.dims4()?;
    let mut pixels = n * h * w;
    let mut outputs = 0;
    for (i, l) in layers.iter().enumerate() {
        if i == chain_len {
            pixels = n * h * w;
        }
        pixels /= l.conv.stride() * l.conv.stride();
        outputs += pixels * l.weight.dim(0)?;
    }
    let weights: usize = layers.iter().map(|l| l.weight.elem_count()).sum();
    Ok(weights <= outputs)
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| candle_core::Error::Msg("block state lock poisoned".into()))
}

/// A layer without its tensors: what the op keeps.
#[derive(Debug, Clone, Copy)]
struct Spec {
    conv: FusedConv,
    recompute: bool,
    eps: f64,
    act: Act,
    kernel: usize,
    c_out: usize,
    weight_len: usize,
}

/// What backward needs of one layer besides its input and weights.
struct Saved {
    input_dims: Dims,
    /// The convolution's output, unless backward recomputes it.
    conv_out: Option<Vec<f32>>,
    /// The layer's output, which the next layer reads (`None` for the chain's last layer and
    /// the projection: BatchNorm's backward recomputes its activation's mask from its input).
    out: Option<Vec<f32>>,
    stats: SavedStats,
}

/// The layers of the chain, then the projection's if there is one. Arguments: the input, every
/// layer's weights flattened and concatenated, and every layer's `[gamma; beta]` concatenated.
struct BlockTrain {
    chain_len: usize,
    specs: Vec<Spec>,
    identity: bool,
    act: Act,
    saved: Arc<Mutex<Vec<Saved>>>,
}

/// The gradients of one layer: its input's (where asked for), its weights', its BatchNorm's
/// gamma and beta.
type LayerGrads = (Option<Vec<f32>>, Vec<f32>, Vec<f32>, Vec<f32>);

/// One layer's weights, gamma and beta.
type LayerParams<'a> = (&'a [f32], &'a [f32], &'a [f32]);

/// The block's gradients: its input's (where asked for), the concatenated weights' and the
/// concatenated `[gamma; beta]`s'.
type BlockGrads = (Option<Vec<f32>>, Vec<f32>, Vec<f32>);

impl BlockTrain {
    fn projection(&self) -> Option<usize> {
        (self.specs.len() > self.chain_len).then_some(self.chain_len)
    }

    /// Where each layer's weights and `[gamma; beta]` start in the concatenated arguments, and
    /// the two arguments' lengths.
    fn offsets(&self) -> (Vec<(usize, usize)>, usize, usize) {
        let (mut w_at, mut n_at) = (0, 0);
        let mut starts = Vec::with_capacity(self.specs.len());
        for s in &self.specs {
            starts.push((w_at, n_at));
            w_at += s.weight_len;
            n_at += 2 * s.c_out;
        }
        (starts, w_at, n_at)
    }

    /// Each layer's weights and `(gamma, beta)` within the concatenated arguments.
    fn split<'a>(&self, weights: &'a [f32], norms: &'a [f32]) -> Result<Vec<LayerParams<'a>>> {
        let (starts, weight_len, norm_len) = self.offsets();
        if weights.len() != weight_len || norms.len() != norm_len {
            bail!("block parameters do not match its layers");
        }
        let split = |(s, &(w_at, n_at)): (&Spec, &(usize, usize))| {
            let (gamma, beta) = norms[n_at..][..2 * s.c_out].split_at(s.c_out);
            (&weights[w_at..][..s.weight_len], gamma, beta)
        };
        Ok(self.specs.iter().zip(&starts).map(split).collect())
    }

    /// Layer `i` forward: its output, its output's dimensions and what backward needs.
    fn layer_forward(
        &self,
        i: usize,
        x: &[f32],
        d: Dims,
        (w, gamma, beta): LayerParams<'_>,
    ) -> Result<(Vec<f32>, Dims, Saved)> {
        let s = &self.specs[i];
        let weights_fit = s
            .conv
            .filter_channels(d.3, s.c_out)
            .is_some_and(|c_in| s.c_out * c_in * s.kernel * s.kernel == s.weight_len);
        if !weights_fit || d.0 * d.1 * d.2 * d.3 != x.len() {
            bail!("block layer {i}: weights do not fit {} input channels", d.3);
        }
        let (conv_out, out_dims) = s.conv.forward_slices(x, d, w, (s.kernel, s.c_out), None);
        let (out, stats) = bn_train_forward(&conv_out, s.c_out, gamma, beta, s.eps, s.act)?;
        let saved = Saved {
            input_dims: d,
            conv_out: (!s.recompute).then_some(conv_out),
            out: None,
            stats,
        };
        Ok((out, out_dims, saved))
    }

    /// Layer `i` backward from the gradient `gy` of its output.
    fn layer_backward(
        &self,
        i: usize,
        saved: &Saved,
        x: &[f32],
        (w, gamma, beta): LayerParams<'_>,
        gy: &[f32],
        need_x: bool,
    ) -> LayerGrads {
        let s = &self.specs[i];
        let conv_out = match &saved.conv_out {
            Some(c) => Cow::Borrowed(c.as_slice()),
            None => Cow::Owned(
                s.conv
                    .forward_slices(x, saved.input_dims, w, (s.kernel, s.c_out), None)
                    .0,
            ),
        };
        let BnGrads {
            input: g_conv,
            gamma: g_gamma,
            beta: g_beta,
        } = saved
            .stats
            .backward(&conv_out, gy, (gamma, beta), s.act, true);
        drop(conv_out);
        let (gx, gw) =
            s.conv
                .backward_slices(x, saved.input_dims, w, s.kernel, s.c_out, &g_conv, need_x);
        (gx, gw, g_gamma, g_beta)
    }

    /// The block's backward on slices: the input's gradient (where `need_x`), then the
    /// concatenated weight and `[gamma; beta]` gradients.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        x: &[f32],
        weights: &[f32],
        norms: &[f32],
        y: &[f32],
        g: &[f32],
        need_x: bool,
    ) -> Result<BlockGrads> {
        let saved = lock(&self.saved)?;
        let params = self.split(weights, norms)?;
        if saved.len() != self.specs.len() {
            bail!("block backward without its forward");
        }
        let has_sum = self.identity || self.projection().is_some();
        let g_sum = match (has_sum, self.act) {
            (true, act) if act != Act::None => Cow::Owned(kernels::activation_backward(y, g, act)),
            _ => Cow::Borrowed(g),
        };
        let (starts, weight_len, norm_len) = self.offsets();
        let (mut grad_w, mut grad_n) = (vec![0f32; weight_len], vec![0f32; norm_len]);
        let mut store = |i: usize, gw: &[f32], g_gamma: &[f32], g_beta: &[f32]| {
            let ((w_at, n_at), c) = (starts[i], g_gamma.len());
            grad_w[w_at..][..gw.len()].copy_from_slice(gw);
            grad_n[n_at..][..c].copy_from_slice(g_gamma);
            grad_n[n_at + c..][..c].copy_from_slice(g_beta);
        };
        let kept = |i: usize| {
            saved[i]
                .out
                .as_deref()
                .ok_or_else(|| candle_core::Error::Msg(format!("block layer {i}: output not kept")))
        };
        let mut g_chain: Option<Vec<f32>> = None;
        for i in (0..self.chain_len).rev() {
            let input = match i {
                0 => x,
                _ => kept(i - 1)?,
            };
            let gy = g_chain.as_deref().unwrap_or(&g_sum);
            let (gx, gw, g_gamma, g_beta) =
                self.layer_backward(i, &saved[i], input, params[i], gy, i > 0 || need_x);
            store(i, &gw, &g_gamma, &g_beta);
            g_chain = gx;
        }
        let mut grad_x = g_chain;
        if let Some(p) = self.projection() {
            let (gx, gw, g_gamma, g_beta) =
                self.layer_backward(p, &saved[p], x, params[p], &g_sum, need_x);
            store(p, &gw, &g_gamma, &g_beta);
            if let (Some(dst), Some(src)) = (grad_x.as_mut(), gx) {
                kernels::add_assign(dst, &src);
            }
        } else if let (true, Some(dst)) = (self.identity, grad_x.as_mut()) {
            kernels::add_assign(dst, &g_sum);
        }
        Ok((grad_x, grad_w, grad_n))
    }
}

impl CustomOp3 for BlockTrain {
    fn name(&self) -> &'static str {
        "block-train"
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
        let x = storage_slice(s1, l1)?;
        let d0 = dims4(l1, "block")?;
        let params = self.split(storage_slice(s2, l2)?, storage_slice(s3, l3)?)?;
        let mut saved: Vec<Saved> = Vec::with_capacity(self.specs.len());
        let (mut h, mut d): (Option<Vec<f32>>, Dims) = (None, d0);
        for (i, &p) in params.iter().enumerate().take(self.chain_len) {
            let (out, out_dims, layer) = self.layer_forward(i, h.as_deref().unwrap_or(x), d, p)?;
            if let Some(last) = saved.last_mut() {
                last.out = h.take();
            }
            saved.push(layer);
            (h, d) = (Some(out), out_dims);
        }
        let h = h.unwrap_or_default();
        let y = if let Some(p) = self.projection() {
            let (s_out, s_dims, layer) = self.layer_forward(p, x, d0, params[p])?;
            if s_dims != d {
                bail!("block: the projection's output {s_dims:?} does not match {d:?}");
            }
            saved.push(layer);
            kernels::add_activate(&h, &s_out, self.act)
        } else if self.identity {
            if d != d0 {
                bail!("block: the chain's output {d:?} does not match its input {d0:?}");
            }
            kernels::add_activate(&h, x, self.act)
        } else {
            h
        };
        *lock(&self.saved)? = saved;
        Ok((CpuStorage::F32(y), Shape::from(d)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weights: &Tensor,
        norms: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let need_x = x.track_op();
        let (gx, gw, gn) = with_slice(x, |xs| {
            with_slice(weights, |ws| {
                with_slice(norms, |ns| {
                    with_slice(res, |ys| {
                        with_slice(grad, |gs| self.backward(xs, ws, ns, ys, gs, need_x))
                    })
                })
            })
        })?;
        let grad_x = gx.map(|v| vec_tensor(v, x.shape(), x)).transpose()?;
        let grad_w = (weights.track_op())
            .then(|| vec_tensor(gw, weights.shape(), weights))
            .transpose()?;
        let grad_n = (norms.track_op())
            .then(|| vec_tensor(gn, norms.shape(), norms))
            .transpose()?;
        Ok((grad_x, grad_w, grad_n))
    }
}
