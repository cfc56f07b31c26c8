//! Tensors as plain slices: what the custom ops read their inputs through and build their
//! outputs from.

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Storage, Tensor, bail};

/// Borrows a tensor's elements as a contiguous f32 slice (CPU only).
pub(super) fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
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

pub(super) fn storage_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("custom op input is not contiguous"),
    }
}

pub(super) fn dims4(layout: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    match layout.dims() {
        &[n, h, w, c] => Ok((n, h, w, c)),
        other => bail!("{what}: expected an NHWC tensor, got shape {other:?}"),
    }
}

/// Whether the CPU kernels take `t` (else the device-generic path, as on a GPU, or as forced
/// by `runtime::GENERIC_OPS_VAR`).
pub(super) fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32 && crate::runtime::cpu_kernels_enabled()
}

pub(super) fn vec_tensor(data: Vec<f32>, shape: impl Into<Shape>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(data, shape, like.device())
}
