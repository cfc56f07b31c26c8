//! Building an ONNX graph from the inference form of a network: each folded unit adds its
//! nodes (see [`super::FoldedUnit::export_onnx`]); shapes are tracked so that TF-style "SAME"
//! padding becomes explicit, possibly asymmetric, `pads`.

use candle_core::Tensor;
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};

use super::error::ModelError;
use super::layers::kind::ConvKind;
use crate::ops::Act;
use crate::ops::Padding;
use crate::ops::kernels::same_padding;

/// A value flowing through the graph: its name and shape (`[C, H, W]` per image, or a flat
/// vector of `C` values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub channels: usize,
    /// `None` for a flat vector.
    pub spatial: Option<(usize, usize)>,
}

/// Nodes and initializers under construction.
#[derive(Debug, Default)]
pub struct OnnxGraph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    counter: usize,
}

fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i: value,
        ..Default::default()
    }
}

fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INTS.into(),
        ints: values.to_vec(),
        ..Default::default()
    }
}

impl OnnxGraph {
    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    /// Adds a constant and returns its name.
    pub fn constant(&mut self, stem: &str, tensor: &Tensor) -> Result<String, ModelError> {
        let values: Vec<f32> = tensor.flatten_all()?.to_vec1()?;
        let dims = tensor.dims().iter().map(|&d| d as i64).collect();
        Ok(self.constant_values(stem, values, dims))
    }

    /// Adds a constant from plain values.
    pub fn constant_values(&mut self, stem: &str, values: Vec<f32>, dims: Vec<i64>) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims,
            data_type: DataType::FLOAT as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds a node with one output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let output = self.fresh(&op.to_ascii_lowercase());
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name: format!("{output}_node"),
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.clone()],
            attribute: attributes,
            ..Default::default()
        });
        output
    }

    /// A convolution with bias (BatchNorm already folded in), an optional residual added,
    /// then the activation.
    pub fn conv(
        &mut self,
        x: &Port,
        weight: &Tensor,
        bias: &Tensor,
        kind: ConvKind,
        residual: Option<&Port>,
        act: Act,
    ) -> Result<Port, ModelError> {
        let (h, w) = x
            .spatial
            .ok_or_else(|| export_error("a convolution on a flat vector"))?;
        let c_out = weight.dim(0)?;
        let (kernel, stride, padding, group) = match kind {
            ConvKind::Dense {
                kernel,
                stride,
                padding,
            } => (kernel, stride, padding, 1),
            ConvKind::Depthwise { kernel, stride } => (kernel, stride, Padding::Same, c_out),
            ConvKind::Pointwise => (1, 1, Padding::Symmetric(0), 1),
        };
        let (out_h, top, bottom, out_w, left, right) = match padding {
            Padding::Same => {
                let (oh, t, b) = same_padding(h, kernel, stride);
                let (ow, l, r) = same_padding(w, kernel, stride);
                (oh, t, b, ow, l, r)
            }
            Padding::Symmetric(p) => {
                let out = |n: usize| (n + 2 * p).saturating_sub(kernel) / stride + 1;
                (out(h), p, p, out(w), p, p)
            }
        };
        let w_name = self.constant("weight", weight)?;
        let b_name = self.constant("bias", bias)?;
        let k = kernel as i64;
        let s = stride as i64;
        let pads = [top, left, bottom, right].map(|p| p as i64);
        let mut y = self.node(
            "Conv",
            &[&x.name, &w_name, &b_name],
            vec![
                attr_ints("kernel_shape", &[k, k]),
                attr_ints("strides", &[s, s]),
                attr_ints("pads", &pads),
                attr_int("group", group as i64),
            ],
        );
        if let Some(r) = residual {
            y = self.node("Add", &[&y, &r.name], Vec::new());
        }
        let y = self.activation(&y, act);
        Ok(Port {
            name: y,
            channels: c_out,
            spatial: Some((out_h, out_w)),
        })
    }

    /// ReLU as `Relu`, ReLU6 as `Clip(0, 6)`.
    pub fn activation(&mut self, x: &str, act: Act) -> String {
        match act {
            Act::None => x.to_owned(),
            Act::Relu => self.node("Relu", &[x], Vec::new()),
            Act::Relu6 => {
                let lo = self.constant_values("clip_min", vec![0.0], Vec::new());
                let hi = self.constant_values("clip_max", vec![6.0], Vec::new());
                self.node("Clip", &[x, &lo, &hi], Vec::new())
            }
        }
    }

    /// Max pooling with square windows; `pad` pixels on every side.
    pub fn max_pool(&mut self, x: &Port, kernel: usize, stride: usize, pad: usize) -> Port {
        let (k, s, p) = (kernel as i64, stride as i64, pad as i64);
        let name = self.node(
            "MaxPool",
            &[&x.name],
            vec![
                attr_ints("kernel_shape", &[k, k]),
                attr_ints("strides", &[s, s]),
                attr_ints("pads", &[p, p, p, p]),
            ],
        );
        let out = |n: usize| (n + 2 * pad - kernel) / stride + 1;
        Port {
            name,
            channels: x.channels,
            spatial: x.spatial.map(|(h, w)| (out(h), out(w))),
        }
    }

    /// Average pooling of a map down to `side × side` (whole windows only), then flattening
    /// in NCHW order: VGG's input to fc6.
    pub fn pool_and_flatten(&mut self, x: &Port, side: usize) -> Result<Port, ModelError> {
        let (h, w) = x
            .spatial
            .ok_or_else(|| export_error("pooling a flat vector"))?;
        let pooled = if (h, w) == (side, side) {
            x.name.clone()
        } else if h % side == 0 && w % side == 0 {
            let (kh, kw) = ((h / side) as i64, (w / side) as i64);
            self.node(
                "AveragePool",
                &[&x.name],
                vec![
                    attr_ints("kernel_shape", &[kh, kw]),
                    attr_ints("strides", &[kh, kw]),
                ],
            )
        } else {
            return Err(export_error(&format!(
                "adaptive pooling from {h}×{w} to {side}×{side} (train at a multiple of {} px)",
                32 * side
            )));
        };
        let flat = self.node("Flatten", &[&pooled], vec![attr_int("axis", 1)]);
        Ok(Port {
            name: flat,
            channels: x.channels * side * side,
            spatial: None,
        })
    }

    /// `x · Wᵀ + b`, then the activation.
    pub fn linear(
        &mut self,
        x: &Port,
        weight: &Tensor,
        bias: &Tensor,
        act: Act,
    ) -> Result<Port, ModelError> {
        let w = self.constant("fc_weight", weight)?;
        let b = self.constant("fc_bias", bias)?;
        let y = self.node("Gemm", &[&x.name, &w, &b], vec![attr_int("transB", 1)]);
        Ok(Port {
            name: self.activation(&y, act),
            channels: weight.dim(0)?,
            spatial: None,
        })
    }

    /// Global average pooling of a map into a flat vector (a flat input passes through).
    pub fn pooled(&mut self, x: Port) -> Port {
        if x.spatial.is_none() {
            return x;
        }
        let pooled = self.node("GlobalAveragePool", &[&x.name], Vec::new());
        let flat = self.node("Flatten", &[&pooled], vec![attr_int("axis", 1)]);
        Port {
            name: flat,
            channels: x.channels,
            spatial: None,
        }
    }
}

/// The error for a network part that has no ONNX form here.
pub fn export_error(what: &str) -> ModelError {
    ModelError::Export(format!("cannot export {what} to ONNX"))
}
