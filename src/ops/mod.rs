//! Network operations on NHWC tensors (`[N, H, W, C]`, channels innermost).
//!
//! On the CPU each is a custom candle op over the kernels in [`kernels`], with a hand-written
//! backward: stock candle runs depthwise convolution as one convolution per channel (O(C²)
//! backward) and train-mode BatchNorm as ~10 passes. On any other device the same functions
//! fall back to [`reference`], compositions of stock candle ops, which are also what the tests
//! compare the kernels with.

mod affine;
mod batch_norm;
mod block;
mod conv;
mod conv_bn;
mod depthwise;
pub mod kernels;
mod pool;
pub mod reference;

pub use affine::{activate, add_activate, bias_act_inplace, scale_shift_act};
pub use batch_norm::{BatchStats, batch_norm_train};
pub use block::{BlockLayer, Shortcut, conv_bn_train, train_block, train_block_unfused};
pub use conv::{conv_same, conv1x1, conv1x1_bias_act, conv2d, conv2d_bias_act, global_avg_pool};
pub use conv_bn::FusedConv;
pub use depthwise::{depthwise_conv, depthwise_conv_bias_act};
pub use kernels::{Act, Padding};
pub use pool::{adaptive_avg_pool, flatten_nchw, max_pool_2x2, max_pool_3x3_s2};

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Storage, Tensor, bail};

/// Borrows a tensor's elements as a contiguous f32 slice (CPU only).
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(storage_slice(cpu, layout)?),
        _ => bail!("expected a CPU tensor"),
    }
}

fn storage_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("custom op input is not contiguous"),
    }
}

fn dims4(layout: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    match layout.dims() {
        &[n, h, w, c] => Ok((n, h, w, c)),
        other => bail!("{what}: expected an NHWC tensor, got shape {other:?}"),
    }
}

fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

fn vec_tensor(data: Vec<f32>, shape: impl Into<Shape>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(data, shape, like.device())
}
