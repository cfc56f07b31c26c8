//! A TFLite model under construction, in plain Rust values: tensors (with their data and
//! quantization) and operators. `write.rs` turns it into the flatbuffer; `convert.rs` fills
//! it from the ONNX graph.

/// A tensor's element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    F32,
    I8,
    I32,
}

/// Affine quantization: `real = scale × (q − zero)`, one pair per tensor or one per channel
/// along `axis`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quant {
    pub scale: Vec<f32>,
    pub zero: Vec<i64>,
    pub axis: i32,
}

impl Quant {
    /// One scale and zero point for the whole tensor.
    pub fn per_tensor(scale: f32, zero: i64) -> Self {
        Self {
            scale: vec![scale],
            zero: vec![zero],
            axis: 0,
        }
    }

    /// int8 parameters of an activation whose values lie in `[lo, hi]` (widened to hold 0,
    /// which must be exact: zero padding).
    pub fn activation(lo: f32, hi: f32) -> Self {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = ((hi - lo) / 255.0).max(1e-8);
        let zero = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i64;
        Self::per_tensor(scale, zero)
    }
}

/// A fused activation, applied to an operator's output before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fused {
    #[default]
    None,
    Relu,
    Relu6,
}

/// TFLite's two paddings; anything else is an explicit `PAD` before a `VALID` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pad {
    Same,
    Valid,
}

/// An operator and the options it carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Conv {
        pad: Pad,
        stride: i32,
        act: Fused,
    },
    Depthwise {
        pad: Pad,
        stride: i32,
        act: Fused,
    },
    MaxPool {
        pad: Pad,
        stride: i32,
        filter: i32,
    },
    AvgPool {
        pad: Pad,
        stride: i32,
        filter: i32,
    },
    Add {
        act: Fused,
    },
    Sub,
    Mul,
    /// Mean over the axes in the second input, dropping them.
    Mean,
    /// To the shape in the second input.
    Reshape {
        shape: Vec<i32>,
    },
    Transpose,
    Pad,
    FullyConnected {
        act: Fused,
    },
    Softmax,
    Relu,
    Relu6,
    Quantize,
    Dequantize,
}

/// A tensor: activations have no data; constants do (little-endian, in `kind`).
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<i32>,
    pub kind: Kind,
    pub data: Option<Vec<u8>>,
    pub quant: Option<Quant>,
}

#[derive(Debug, Clone)]
pub struct OpSpec {
    pub op: Op,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
}

/// The whole model: one subgraph, and `(name, bytes)` metadata.
#[derive(Debug, Clone, Default)]
pub struct ModelSpec {
    pub tensors: Vec<TensorSpec>,
    pub ops: Vec<OpSpec>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub metadata: Vec<(String, Vec<u8>)>,
    pub description: String,
}

impl ModelSpec {
    /// Adds a tensor and returns its index.
    pub fn tensor(&mut self, spec: TensorSpec) -> i32 {
        self.tensors.push(spec);
        self.tensors.len() as i32 - 1
    }

    /// Adds an f32 constant.
    pub fn f32_constant(&mut self, name: &str, shape: Vec<i32>, values: &[f32]) -> i32 {
        self.tensor(TensorSpec {
            name: name.into(),
            shape,
            kind: Kind::F32,
            data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            quant: None,
        })
    }

    /// Adds an int32 constant (shapes, axes, paddings, biases).
    pub fn i32_constant(
        &mut self,
        name: &str,
        shape: Vec<i32>,
        values: &[i32],
        quant: Option<Quant>,
    ) -> i32 {
        self.tensor(TensorSpec {
            name: name.into(),
            shape,
            kind: Kind::I32,
            data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            quant,
        })
    }

    /// Adds an operator.
    pub fn op(&mut self, op: Op, inputs: &[i32], outputs: &[i32]) {
        self.ops.push(OpSpec {
            op,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        });
    }
}

/// Symmetric int8 values of `values` per channel (`channel_of(i)` for element `i`), and the
/// channel scales (`max |w| / 127`).
pub fn symmetric_int8(
    values: &[f32],
    channels: usize,
    channel_of: impl Fn(usize) -> usize,
) -> (Vec<u8>, Vec<f32>) {
    let mut max = vec![0f32; channels];
    for (i, v) in values.iter().enumerate() {
        let c = channel_of(i);
        max[c] = max[c].max(v.abs());
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let bytes = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[channel_of(i)]).round().clamp(-127.0, 127.0) as i8 as u8)
        .collect();
    (bytes, scales)
}

/// A bias as int32 at `input_scale × weight_scale` per channel (`weight_scales` has one
/// scale per channel, or one for all).
pub fn bias_int32(values: &[f32], input_scale: f32, weight_scales: &[f32]) -> (Vec<i32>, Quant) {
    let scales: Vec<f32> = (0..values.len())
        .map(|c| input_scale * weight_scales[c.min(weight_scales.len() - 1)])
        .collect();
    let q = values
        .iter()
        .zip(&scales)
        .map(|(v, s)| (v / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32)
        .collect();
    // One weight scale (a fully connected layer's) gives one bias scale.
    let quant = if weight_scales.len() == 1 {
        Quant::per_tensor(scales.first().copied().unwrap_or(1.0), 0)
    } else {
        Quant {
            zero: vec![0; scales.len()],
            scale: scales,
            axis: 0,
        }
    };
    (q, quant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_range_keeps_zero_exact() {
        let q = Quant::activation(-1.0, 3.0);
        let zero = q.zero[0] as f32;
        assert!((q.scale[0] - 4.0 / 255.0).abs() < 1e-7);
        // 0.0 maps to the zero point exactly, and the ends stay inside int8.
        assert_eq!((0.0 / q.scale[0] + zero).round(), zero);
        assert!((-1.0 / q.scale[0] + zero).round() >= -128.0);
        assert!((3.0 / q.scale[0] + zero).round() <= 127.0);
        // A range that is all positive starts at -128.
        assert_eq!(Quant::activation(0.0, 6.0).zero, vec![-128]);
    }

    #[test]
    fn per_channel_weights_use_each_channel_range() {
        let (q, scales) = symmetric_int8(&[1.0, -0.5, 0.01, 0.02], 2, |i| i / 2);
        assert_eq!(scales.len(), 2);
        assert_eq!(q[0] as i8, 127);
        assert_eq!(q[1] as i8, -64);
        assert_eq!(q[3] as i8, 127);
        let (b, quant) = bias_int32(&[0.5, 0.0], 0.1, &scales);
        assert_eq!(b[0], (0.5 / (0.1 * scales[0])).round() as i32);
        assert_eq!(quant.zero, vec![0, 0]);
    }
}
