//! Runs a TFLite file the app wrote, from the file's own bytes: the check after export. Every
//! tensor is held as real values (f32, NHWC); an int8 tensor's values are rounded to its grid
//! (`scale × (q − zero)`, clamped to int8) after the operator that writes it, which is what an
//! integer kernel computes up to the rounding of its fixed-point rescale. It reads the
//! operators the app writes (`convert.rs`), and says so for any other.

use candle_core::{D, DType, Device, Tensor};
use tract_tflite::tflite as fb;

use super::super::types::ExportError;
use crate::ops::{Act, Padding};

fn fail(what: impl std::fmt::Display) -> ExportError {
    ExportError::Check(format!("the TFLite file: {what}"))
}

fn candle(e: candle_core::Error) -> ExportError {
    fail(e)
}

#[derive(Debug)]
struct TensorInfo {
    shape: Vec<usize>,
    /// Per-tensor `(scale, zero)` of an int8 activation.
    grid: Option<(f32, f32)>,
    /// A constant's values: real (dequantized) f32, and as integers when the type is int32.
    constant: Option<Tensor>,
    ints: Option<Vec<i64>>,
}

#[derive(Debug)]
struct OpInfo {
    code: fb::BuiltinOperator,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    stride: usize,
    filter: usize,
    same: bool,
    act: Act,
}

/// A parsed TFLite model, ready to run on batches.
#[derive(Debug)]
pub struct TfliteRunner {
    tensors: Vec<TensorInfo>,
    ops: Vec<OpInfo>,
    input: usize,
    outputs: Vec<usize>,
}

impl TfliteRunner {
    /// Parses and verifies `bytes`.
    pub fn load(bytes: &[u8]) -> Result<Self, ExportError> {
        let model = fb::root_as_model(bytes).map_err(fail)?;
        let buffers = model.buffers().ok_or_else(|| fail("no buffers"))?;
        let codes = model
            .operator_codes()
            .ok_or_else(|| fail("no operator codes"))?;
        let graph = model
            .subgraphs()
            .and_then(|s| s.iter().next())
            .ok_or_else(|| fail("no subgraph"))?;
        let tensors = graph
            .tensors()
            .ok_or_else(|| fail("no tensors"))?
            .iter()
            .map(|t| tensor_info(&t, &buffers))
            .collect::<Result<Vec<_>, _>>()?;
        let ops = graph
            .operators()
            .ok_or_else(|| fail("no operators"))?
            .iter()
            .map(|op| op_info(&op, &codes))
            .collect::<Result<Vec<_>, _>>()?;
        let indices = |v: Option<flatbuffers::Vector<'_, i32>>| -> Vec<usize> {
            v.map(|v| v.iter().map(|i| i as usize).collect())
                .unwrap_or_default()
        };
        let input = *indices(graph.inputs())
            .first()
            .ok_or_else(|| fail("no input"))?;
        let outputs = indices(graph.outputs());
        let all = ops.iter().flat_map(|o| o.inputs.iter().chain(&o.outputs));
        if all.chain(&outputs).any(|&i| i >= tensors.len()) || input >= tensors.len() {
            return Err(fail("an operator names a tensor that does not exist"));
        }
        Ok(Self {
            tensors,
            ops,
            input,
            outputs,
        })
    }

    /// The input's `[1, H, W, C]`.
    pub fn input_shape(&self) -> &[usize] {
        &self.tensors[self.input].shape
    }

    /// Runs `input` (`[N, H, W, 3]`, f32) and returns the outputs in order.
    pub fn run(&self, input: &Tensor) -> Result<Vec<Tensor>, ExportError> {
        let mut values: Vec<Option<Tensor>> = vec![None; self.tensors.len()];
        values[self.input] = Some(input.clone());
        for op in &self.ops {
            let args = op
                .inputs
                .iter()
                .map(|&i| {
                    values[i]
                        .clone()
                        .or_else(|| self.tensors[i].constant.clone())
                        .ok_or_else(|| fail(format!("tensor {i} is read before it is written")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let y = self.apply(op, &args).map_err(candle)?;
            let out = *op
                .outputs
                .first()
                .ok_or_else(|| fail("an operator without output"))?;
            let y = crate::ops::activate(&y, op.act).map_err(candle)?;
            values[out] = Some(match self.tensors[out].grid {
                Some((scale, zero)) => on_grid(&y, scale, zero).map_err(candle)?,
                None => y,
            });
        }
        self.outputs
            .iter()
            .map(|&i| {
                values[i]
                    .clone()
                    .ok_or_else(|| fail("an output is never written"))
            })
            .collect()
    }

    fn apply(&self, op: &OpInfo, args: &[Tensor]) -> candle_core::Result<Tensor> {
        use fb::BuiltinOperator as B;
        let arg = |i: usize| {
            args.get(i)
                .ok_or_else(|| candle_core::Error::Msg(format!("{:?} lacks input {i}", op.code)))
        };
        let ints = |i: usize| {
            op.inputs
                .get(i)
                .and_then(|&t| self.tensors[t].ints.clone())
                .ok_or_else(|| candle_core::Error::Msg(format!("{:?}: no constant {i}", op.code)))
        };
        let x = arg(0)?;
        let padding = if op.same {
            Padding::Same
        } else {
            Padding::Symmetric(0)
        };
        match op.code {
            B::CONV_2D => {
                // [O, kh, kw, I] -> [O, I, kh, kw]
                let w = arg(1)?.permute((0, 3, 1, 2))?.contiguous()?;
                crate::ops::conv2d(x, &w, op.stride, padding)?.broadcast_add(arg(2)?)
            }
            B::DEPTHWISE_CONV_2D if op.same => {
                // [1, kh, kw, C] -> [C, 1, kh, kw]
                let w = arg(1)?.permute((3, 0, 1, 2))?.contiguous()?;
                crate::ops::depthwise_conv(x, &w, op.stride)?.broadcast_add(arg(2)?)
            }
            B::DEPTHWISE_CONV_2D => {
                let w = arg(1)?.permute((3, 0, 1, 2))?.contiguous()?;
                let nchw = x.permute((0, 3, 1, 2))?.contiguous()?;
                let y = nchw.conv2d(&w, 0, op.stride, 1, w.dim(0)?)?;
                y.permute((0, 2, 3, 1))?
                    .contiguous()?
                    .broadcast_add(arg(2)?)
            }
            B::MAX_POOL_2D | B::AVERAGE_POOL_2D if !op.same => {
                let nchw = x.permute((0, 3, 1, 2))?;
                let (k, s) = ((op.filter, op.filter), (op.stride, op.stride));
                let pooled = if op.code == B::MAX_POOL_2D {
                    nchw.max_pool2d_with_stride(k, s)?
                } else {
                    nchw.avg_pool2d_with_stride(k, s)?
                };
                pooled.permute((0, 2, 3, 1))?.contiguous()
            }
            B::ADD => x.broadcast_add(arg(1)?),
            B::SUB => x.broadcast_sub(arg(1)?),
            B::MUL => x.broadcast_mul(arg(1)?),
            B::MEAN => {
                let mut axes = ints(1)?;
                axes.sort_unstable();
                let mut y = x.clone();
                for &axis in axes.iter().rev() {
                    y = y.mean(axis as usize)?;
                }
                Ok(y)
            }
            B::RESHAPE => {
                let shape = ints(1)?;
                let known: i64 = shape.iter().filter(|&&d| d > 0).product();
                let dims: Vec<usize> = shape
                    .iter()
                    .map(|&d| {
                        if d < 0 {
                            x.elem_count() / known.max(1) as usize
                        } else {
                            d as usize
                        }
                    })
                    .collect();
                x.reshape(dims)
            }
            B::TRANSPOSE => {
                let perm: Vec<usize> = ints(1)?.iter().map(|&p| p as usize).collect();
                x.permute(perm)?.contiguous()
            }
            B::PAD => {
                let p = ints(1)?;
                let mut y = x.clone();
                for (dim, pair) in p.chunks(2).enumerate() {
                    y = y.pad_with_zeros(dim, pair[0] as usize, pair[1] as usize)?;
                }
                Ok(y)
            }
            B::FULLY_CONNECTED => x.matmul(&arg(1)?.t()?)?.broadcast_add(arg(2)?),
            B::SOFTMAX => candle_nn::ops::softmax(x, D::Minus1),
            B::RELU => x.relu(),
            B::RELU6 => x.clamp(0f32, 6f32),
            B::QUANTIZE | B::DEQUANTIZE => Ok(x.clone()),
            other => Err(candle_core::Error::Msg(format!(
                "the operator {other:?} (with these options) is not one the app writes"
            ))),
        }
    }
}

/// `x` rounded to the int8 grid `scale × (q − zero)`.
fn on_grid(x: &Tensor, scale: f32, zero: f32) -> candle_core::Result<Tensor> {
    let q = ((x / f64::from(scale))?.round()? + f64::from(zero))?.clamp(-128f32, 127f32)?;
    (q - f64::from(zero))? * f64::from(scale)
}

fn tensor_info(
    t: &fb::Tensor<'_>,
    buffers: &flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::Buffer<'_>>>,
) -> Result<TensorInfo, ExportError> {
    let shape: Vec<usize> = t
        .shape()
        .map(|s| s.iter().map(|d| d.max(1) as usize).collect())
        .unwrap_or_default();
    let quant = t.quantization().and_then(|q| {
        let scale: Vec<f32> = q.scale()?.iter().collect();
        let zero: Vec<i64> = q.zero_point()?.iter().collect();
        Some((scale, zero, q.quantized_dimension() as usize))
    });
    let data = match t.buffer() as usize {
        0 => None,
        b => Some(
            (b < buffers.len())
                .then(|| buffers.get(b).data().map(|d| d.bytes().to_vec()))
                .flatten()
                .ok_or_else(|| fail(format!("buffer {b} is missing")))?,
        ),
    };
    let grid = match (&quant, &data, t.type_()) {
        (Some((s, z, _)), None, fb::TensorType::INT8) if s.len() == 1 => Some((s[0], z[0] as f32)),
        _ => None,
    };
    let (constant, ints) = match data {
        None => (None, None),
        Some(bytes) => constant_values(&bytes, t.type_(), &shape, quant.as_ref())?,
    };
    Ok(TensorInfo {
        shape,
        grid,
        constant,
        ints,
    })
}

/// A constant's real values (dequantized per its axis) and, for int32, its integers.
fn constant_values(
    bytes: &[u8],
    kind: fb::TensorType,
    shape: &[usize],
    quant: Option<&(Vec<f32>, Vec<i64>, usize)>,
) -> Result<(Option<Tensor>, Option<Vec<i64>>), ExportError> {
    let (raw, ints): (Vec<f32>, Option<Vec<i64>>) = match kind {
        fb::TensorType::FLOAT32 => (
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            None,
        ),
        fb::TensorType::INT8 => (bytes.iter().map(|&b| f32::from(b as i8)).collect(), None),
        fb::TensorType::INT32 => {
            let ints: Vec<i64> = bytes
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            (ints.iter().map(|&i| i as f32).collect(), Some(ints))
        }
        other => return Err(fail(format!("constants of type {other:?}"))),
    };
    let count: usize = shape.iter().product();
    if raw.len() != count {
        return Err(fail(format!(
            "a constant holds {} values for shape {shape:?}",
            raw.len()
        )));
    }
    let real = match quant {
        Some((scales, zeros, axis)) if kind != fb::TensorType::FLOAT32 => {
            // Element i's channel along `axis`: (i / inner) % channels.
            let inner: usize = shape.iter().skip(axis + 1).product();
            let channels = shape.get(*axis).copied().unwrap_or(1);
            raw.iter()
                .enumerate()
                .map(|(i, &q)| {
                    let c = if scales.len() == 1 {
                        0
                    } else {
                        (i / inner.max(1)) % channels
                    };
                    let (s, z) = (
                        scales[c.min(scales.len() - 1)],
                        zeros[c.min(zeros.len() - 1)],
                    );
                    s * (q - z as f32)
                })
                .collect()
        }
        _ => raw,
    };
    let tensor = Tensor::from_vec(real, shape, &Device::Cpu).map_err(candle)?;
    Ok((Some(tensor.to_dtype(DType::F32).map_err(candle)?), ints))
}

fn op_info(
    op: &fb::Operator<'_>,
    codes: &flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::OperatorCode<'_>>>,
) -> Result<OpInfo, ExportError> {
    let index = op.opcode_index() as usize;
    if index >= codes.len() {
        return Err(fail(format!("operator code {index} is missing")));
    }
    let code = codes.get(index).builtin_code();
    let list = |v: Option<flatbuffers::Vector<'_, i32>>| -> Vec<usize> {
        v.map(|v| v.iter().map(|i| i as usize).collect())
            .unwrap_or_default()
    };
    let act = |a: fb::ActivationFunctionType| match a {
        fb::ActivationFunctionType::RELU => Ok(Act::Relu),
        fb::ActivationFunctionType::RELU6 => Ok(Act::Relu6),
        fb::ActivationFunctionType::NONE => Ok(Act::None),
        other => Err(fail(format!("the fused activation {other:?}"))),
    };
    let mut info = OpInfo {
        code,
        inputs: list(op.inputs()),
        outputs: list(op.outputs()),
        stride: 1,
        filter: 1,
        same: false,
        act: Act::None,
    };
    if let Some(o) = op.builtin_options_as_conv_2_doptions() {
        (info.stride, info.same) = (o.stride_w() as usize, o.padding() == fb::Padding::SAME);
        info.act = act(o.fused_activation_function())?;
    } else if let Some(o) = op.builtin_options_as_depthwise_conv_2_doptions() {
        (info.stride, info.same) = (o.stride_w() as usize, o.padding() == fb::Padding::SAME);
        info.act = act(o.fused_activation_function())?;
    } else if let Some(o) = op.builtin_options_as_pool_2_doptions() {
        (info.stride, info.same) = (o.stride_w() as usize, o.padding() == fb::Padding::SAME);
        info.filter = o.filter_width() as usize;
    } else if let Some(o) = op.builtin_options_as_add_options() {
        info.act = act(o.fused_activation_function())?;
    } else if let Some(o) = op.builtin_options_as_fully_connected_options() {
        info.act = act(o.fused_activation_function())?;
    }
    Ok(info)
}
