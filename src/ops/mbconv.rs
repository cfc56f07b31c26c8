//! A folded MBConv block (expand, depthwise, project) as one CPU op for inference: see
//! [`kernels::mbconv_forward`].

use candle_core::{Result, Tensor};

use super::kernels::{self, Act, DepthwiseFolded, MbConvFolded, Pointwise};
use super::slices::{is_cpu_f32, vec_tensor, with_slice};

/// A folded convolution's tensors: weights (torch layout), bias, the activation after it.
#[derive(Debug, Clone, Copy)]
pub struct FoldedTensors<'a> {
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
    pub act: Act,
}

/// `project(depthwise(expand(x))) [+ x]` in one pass per image, or `None` where the fused
/// kernel does not apply: off the CPU, on a tensor that records gradients, with a kernel smaller
/// than its stride, or with fewer images than threads (it runs images in parallel, so a single
/// image goes op by op, each op using every thread).
pub fn mbconv_fused(
    x: &Tensor,
    expand: FoldedTensors<'_>,
    depthwise: FoldedTensors<'_>,
    stride: usize,
    project: FoldedTensors<'_>,
    skip: bool,
) -> Result<Option<Tensor>> {
    let (n, h, w, _) = match x.dims() {
        &[n, h, w, c] => (n, h, w, c),
        _ => return Ok(None),
    };
    let kernel = depthwise.weight.dim(3)?;
    // It has no backward: a tensor that records its graph goes op by op. Its window of rows
    // assumes each depthwise output row reads the row after the previous one's (kernel ≥ stride).
    if !is_cpu_f32(x) || x.track_op() || n < rayon::current_num_threads() || kernel < stride {
        return Ok(None);
    }
    let vec = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
    let (dw_weights, dw_bias) = (vec(depthwise.weight)?, vec(depthwise.bias)?);
    let kkc = kernels::depthwise_weights_to_kkc(&dw_weights, dw_bias.len(), kernel);
    let (expand_w, expand_b) = (vec(expand.weight)?, vec(expand.bias)?);
    let (project_w, project_b) = (vec(project.weight)?, vec(project.bias)?);
    let block = MbConvFolded {
        expand: Pointwise {
            weights: &expand_w,
            bias: &expand_b,
            act: expand.act,
        },
        depthwise: DepthwiseFolded {
            weights_kkc: &kkc,
            bias: &dw_bias,
            act: depthwise.act,
            kernel,
            stride,
        },
        project: Pointwise {
            weights: &project_w,
            bias: &project_b,
            act: project.act,
        },
        skip,
    };
    let c_out = project_b.len();
    let (y, (out_h, out_w)) = with_slice(x, |data| {
        Ok(kernels::mbconv_forward(data, (n, h, w), &block))
    })?;
    vec_tensor(y, (n, out_h, out_w, c_out), x).map(Some)
}
