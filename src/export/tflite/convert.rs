//! The app's ONNX graph (NCHW) as TFLite operators (NHWC): convolution weights re-laid out,
//! activations fused into the operator before them, TF-style padding kept as `SAME` and any
//! other padding made an explicit `PAD`. With calibrated ranges every tensor becomes int8
//! (full-integer, TFLite's quantization spec), with a `QUANTIZE` after the f32 input and a
//! `DEQUANTIZE` before each f32 output.

use std::collections::{HashMap, HashSet};

use onnx_protobuf::{GraphProto, NodeProto};

use super::super::types::ExportError;
use super::spec::{Fused, Kind, ModelSpec, Op, Pad, Quant, TensorSpec, bias_int32, symmetric_int8};
use crate::ops::kernels::same_padding;

/// A value of the ONNX graph as a TFLite tensor.
#[derive(Debug, Clone)]
struct Value {
    index: i32,
    /// NHWC, or `[N, C]` once flat; the batch is 1.
    shape: Vec<i32>,
    quant: Option<Quant>,
    /// Never negative (after ReLU): zero padding then is max-pooling padding.
    non_negative: bool,
}

fn unsupported(what: impl std::fmt::Display) -> ExportError {
    ExportError::Encode(format!("cannot write {what} to TFLite"))
}

pub struct Converter<'a> {
    spec: ModelSpec,
    values: HashMap<String, Value>,
    constants: HashMap<String, (Vec<i64>, Vec<f32>)>,
    /// Calibrated ranges of the ONNX values: `Some` makes an int8 model.
    ranges: Option<&'a HashMap<String, (f32, f32)>>,
}

impl<'a> Converter<'a> {
    /// Converts `graph`, whose input `image` is `[N, 3, side, side]`.
    pub fn convert(
        graph: &GraphProto,
        side: usize,
        ranges: Option<&'a HashMap<String, (f32, f32)>>,
    ) -> Result<ModelSpec, ExportError> {
        let constants = graph
            .initializer
            .iter()
            .map(|t| {
                Ok((
                    t.name.clone(),
                    (t.dims.clone(), super::super::f16::floats_of(t)?),
                ))
            })
            .collect::<Result<_, ExportError>>()?;
        let mut c = Converter {
            spec: ModelSpec::default(),
            values: HashMap::new(),
            constants,
            ranges,
        };
        c.input(side as i32);
        // The activation that alone reads a node's output is fused into that node.
        let activations = super::super::onnx::sole_activations(graph);
        let mut fused: HashSet<usize> = HashSet::new();
        for (i, node) in graph.node.iter().enumerate() {
            if fused.contains(&i) {
                continue;
            }
            let act = activations
                .get(&i)
                .and_then(|&j| c.fusable(&graph.node[j]).map(|a| (j, a)));
            let fuses = matches!(node.op_type.as_str(), "Conv" | "Add" | "Gemm");
            let (act, out) = match act {
                Some((j, a)) if fuses => {
                    fused.insert(j);
                    (a, graph.node[j].output[0].clone())
                }
                _ => (Fused::None, node.output[0].clone()),
            };
            c.node(node, act, &out)?;
        }
        for output in &graph.output {
            c.output(&output.name)?;
        }
        Ok(c.spec)
    }

    fn int8(&self) -> bool {
        self.ranges.is_some()
    }

    /// The f32 `image` input, NHWC, quantized first in an int8 model.
    fn input(&mut self, side: i32) {
        let shape = vec![1, side, side, 3];
        let index = self.spec.tensor(TensorSpec {
            name: "image".into(),
            shape: shape.clone(),
            kind: Kind::F32,
            data: None,
            quant: None,
        });
        self.spec.inputs.push(index);
        let mut value = Value {
            index,
            shape,
            quant: None,
            non_negative: true,
        };
        if self.int8() {
            // Pixels are in [0, 1].
            let quant = Quant::activation(0.0, 1.0);
            let q = self.activation("image_int8", value.shape.clone(), Some(quant.clone()));
            self.spec.op(Op::Quantize, &[index], &[q]);
            value.index = q;
            value.quant = Some(quant);
        }
        self.values.insert("image".into(), value);
    }

    /// ReLU or ReLU6 (`Clip(0, 6)`), when `node` is one.
    fn fusable(&self, node: &NodeProto) -> Option<Fused> {
        match node.op_type.as_str() {
            "Relu" => Some(Fused::Relu),
            "Clip" => {
                let bound = |i: usize| {
                    node.input
                        .get(i)
                        .and_then(|n| self.constants.get(n))
                        .and_then(|(_, v)| v.first().copied())
                };
                (bound(1) == Some(0.0) && bound(2) == Some(6.0)).then_some(Fused::Relu6)
            }
            _ => None,
        }
    }

    fn activation(&mut self, name: &str, shape: Vec<i32>, quant: Option<Quant>) -> i32 {
        let kind = if quant.is_some() { Kind::I8 } else { Kind::F32 };
        self.spec.tensor(TensorSpec {
            name: name.into(),
            shape,
            kind,
            data: None,
            quant,
        })
    }

    /// The quantization of ONNX value `name` from its calibrated range (`None` in f32).
    fn quant_of(&self, name: &str) -> Result<Option<Quant>, ExportError> {
        match self.ranges {
            None => Ok(None),
            Some(ranges) => ranges
                .get(name)
                .map(|&(lo, hi)| Some(Quant::activation(lo, hi)))
                .ok_or_else(|| ExportError::Check(format!("no calibrated range for {name}"))),
        }
    }

    /// A new output tensor for ONNX value `name`, registered under that name.
    fn output_value(
        &mut self,
        name: &str,
        shape: Vec<i32>,
        quant: Option<Quant>,
        non_negative: bool,
    ) -> i32 {
        let index = self.activation(name, shape.clone(), quant.clone());
        self.values.insert(
            name.into(),
            Value {
                index,
                shape,
                quant,
                non_negative,
            },
        );
        index
    }

    fn value(&self, name: &str) -> Result<Value, ExportError> {
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| unsupported(format!("the value {name} (not computed before use)")))
    }

    fn constant(&self, name: &str) -> Result<&(Vec<i64>, Vec<f32>), ExportError> {
        self.constants
            .get(name)
            .ok_or_else(|| unsupported(format!("{name} (a constant was expected)")))
    }

    fn node(&mut self, node: &NodeProto, act: Fused, out: &str) -> Result<(), ExportError> {
        let input = |i: usize| node.input.get(i).map(String::as_str).unwrap_or_default();
        match node.op_type.as_str() {
            "Conv" => self.conv(node, act, out),
            "Gemm" => self.fully_connected(node, act, out),
            "Add" | "Sub" | "Div" => self.binary(node, act, out),
            "Relu" | "Clip" => {
                let x = self.value(input(0))?;
                let (op, act) = match self.fusable(node) {
                    Some(Fused::Relu) => (Op::Relu, Fused::Relu),
                    Some(Fused::Relu6) => (Op::Relu6, Fused::Relu6),
                    _ => return Err(unsupported("a Clip other than ReLU6")),
                };
                let quant = self.quant_of(out)?;
                let y = self.output_value(out, x.shape.clone(), quant, act != Fused::None);
                self.spec.op(op, &[x.index], &[y]);
                Ok(())
            }
            "MaxPool" | "AveragePool" => self.pool(node, out),
            "GlobalAveragePool" => {
                let x = self.value(input(0))?;
                let axes = self
                    .spec
                    .i32_constant(&format!("{out}_axes"), vec![2], &[1, 2], None);
                let quant = self.quant_of(out)?;
                let shape = vec![1, x.shape[3]];
                let y = self.output_value(out, shape, quant, x.non_negative);
                self.spec.op(Op::Mean, &[x.index, axes], &[y]);
                Ok(())
            }
            "Flatten" => self.flatten(input(0), out),
            "Softmax" => {
                let x = self.value(input(0))?;
                // TFLite's int8 softmax writes probabilities at 1/256 steps from -128.
                let quant = self.int8().then(|| Quant::per_tensor(1.0 / 256.0, -128));
                let y = self.output_value(out, x.shape.clone(), quant, true);
                self.spec.op(Op::Softmax, &[x.index], &[y]);
                Ok(())
            }
            "Identity" => {
                let x = self.value(input(0))?;
                self.values.insert(out.into(), x);
                Ok(())
            }
            other => Err(unsupported(format!("the operator {other}"))),
        }
    }

    /// The graph output `name`: dequantized to f32 in an int8 model, named `name`.
    fn output(&mut self, name: &str) -> Result<(), ExportError> {
        let x = self.value(name)?;
        let index = if self.int8() {
            let y = self.activation(name, x.shape.clone(), None);
            self.spec.op(Op::Dequantize, &[x.index], &[y]);
            y
        } else {
            self.spec.tensors[x.index as usize].name = name.into();
            x.index
        };
        self.spec.outputs.push(index);
        Ok(())
    }

    /// `Conv` as `CONV_2D` (weights `[O, kh, kw, I]`) or, grouped per channel,
    /// `DEPTHWISE_CONV_2D` (weights `[1, kh, kw, C]`).
    fn conv(&mut self, node: &NodeProto, act: Fused, out: &str) -> Result<(), ExportError> {
        let x = self.value(&node.input[0])?;
        let (dims, w) = self.constant(&node.input[1])?.clone();
        let (_, b) = self.constant(&node.input[2])?.clone();
        let [o, i, kh, kw] = dims[..] else {
            return Err(unsupported("a convolution whose weight is not 4-D"));
        };
        let (o, i, kh, kw) = (o as usize, i as usize, kh as usize, kw as usize);
        let group = int_attr(node, "group").unwrap_or(1);
        let stride = ints_attr(node, "strides").first().copied().unwrap_or(1) as usize;
        let pads = ints_attr(node, "pads");
        let depthwise = group > 1;
        if depthwise && (i != 1 || group as usize != o) || kh != kw {
            return Err(unsupported("a grouped or non-square convolution"));
        }
        let (x, pad, (out_h, out_w)) = self.padded(&x, &pads, kh, stride, out)?;
        // ONNX [O, I, kh, kw] -> TFLite [O, kh, kw, I]; depthwise [C, 1, kh, kw] -> [1, kh, kw, C].
        let mut laid = vec![0f32; w.len()];
        for oc in 0..o {
            for ic in 0..i {
                for y in 0..kh {
                    for xx in 0..kw {
                        let from = ((oc * i + ic) * kh + y) * kw + xx;
                        let to = if depthwise {
                            (y * kw + xx) * o + oc
                        } else {
                            ((oc * kh + y) * kw + xx) * i + ic
                        };
                        laid[to] = w[from];
                    }
                }
            }
        }
        let w_shape = if depthwise {
            vec![1, kh as i32, kw as i32, o as i32]
        } else {
            vec![o as i32, kh as i32, kw as i32, i as i32]
        };
        let channel_of = move |k: usize| if depthwise { k % o } else { k / (kh * kw * i) };
        let (w_index, b_index) =
            self.weights(out, &x, w_shape, &laid, &b, o, channel_of, depthwise)?;
        let quant = self.quant_of(out)?;
        let shape = vec![1, out_h as i32, out_w as i32, o as i32];
        let y = self.output_value(out, shape, quant, act != Fused::None);
        let stride = stride as i32;
        let op = if depthwise {
            Op::Depthwise { pad, stride, act }
        } else {
            Op::Conv { pad, stride, act }
        };
        self.spec.op(op, &[x.index, w_index, b_index], &[y]);
        Ok(())
    }

    /// The weight and bias constants: f32, or int8 per channel (along `depthwise`'s last
    /// axis, else the first) with an int32 bias at the input's scale times each channel's.
    #[allow(clippy::too_many_arguments)]
    fn weights(
        &mut self,
        out: &str,
        x: &Value,
        shape: Vec<i32>,
        w: &[f32],
        b: &[f32],
        channels: usize,
        channel_of: impl Fn(usize) -> usize,
        depthwise: bool,
    ) -> Result<(i32, i32), ExportError> {
        let Some(x_quant) = &x.quant else {
            let w_index = self.spec.f32_constant(&format!("{out}_weight"), shape, w);
            let b_index = self
                .spec
                .f32_constant(&format!("{out}_bias"), vec![b.len() as i32], b);
            return Ok((w_index, b_index));
        };
        let (bytes, scales) = symmetric_int8(w, channels, channel_of);
        let axis = if depthwise { 3 } else { 0 };
        let w_index = self.spec.tensor(TensorSpec {
            name: format!("{out}_weight"),
            shape,
            kind: Kind::I8,
            data: Some(bytes),
            quant: Some(Quant {
                zero: vec![0; scales.len()],
                scale: scales.clone(),
                axis,
            }),
        });
        let (q, quant) = bias_int32(b, x_quant.scale[0], &scales);
        let b_index = self.spec.i32_constant(
            &format!("{out}_bias"),
            vec![b.len() as i32],
            &q,
            Some(quant),
        );
        Ok((w_index, b_index))
    }

    /// `x` padded as `pads` (`[top, left, bottom, right]`) asks: `SAME` when that is what
    /// TensorFlow's rule gives, else an explicit `PAD` and `VALID`. Also the output size.
    fn padded(
        &mut self,
        x: &Value,
        pads: &[i64],
        kernel: usize,
        stride: usize,
        out: &str,
    ) -> Result<(Value, Pad, (usize, usize)), ExportError> {
        let (h, w) = (x.shape[1] as usize, x.shape[2] as usize);
        let pads: Vec<usize> = match pads {
            [] => vec![0; 4],
            [t, l, b, r] => [t, l, b, r].iter().map(|&&p| p as usize).collect(),
            _ => return Err(unsupported("padding that is not 2-D")),
        };
        let valid = |n: usize, a: usize, z: usize| (n + a + z).saturating_sub(kernel) / stride + 1;
        let size = (valid(h, pads[0], pads[2]), valid(w, pads[1], pads[3]));
        if pads.iter().all(|&p| p == 0) {
            return Ok((x.clone(), Pad::Valid, size));
        }
        let (oh, t, b) = same_padding(h, kernel, stride);
        let (ow, l, r) = same_padding(w, kernel, stride);
        if pads == [t, l, b, r] {
            return Ok((x.clone(), Pad::Same, (oh, ow)));
        }
        let p = pads.iter().map(|&p| p as i32).collect::<Vec<_>>();
        let paddings = self.spec.i32_constant(
            &format!("{out}_paddings"),
            vec![4, 2],
            &[0, 0, p[0], p[2], p[1], p[3], 0, 0],
            None,
        );
        let shape = vec![
            1,
            h as i32 + p[0] + p[2],
            w as i32 + p[1] + p[3],
            x.shape[3],
        ];
        let index = self.activation(&format!("{out}_padded"), shape.clone(), x.quant.clone());
        self.spec.op(Op::Pad, &[x.index, paddings], &[index]);
        let padded = Value {
            index,
            shape,
            ..x.clone()
        };
        Ok((padded, Pad::Valid, size))
    }

    /// `MaxPool` and `AveragePool` (square windows); the output keeps the input's
    /// quantization, as TFLite's int8 pooling requires.
    fn pool(&mut self, node: &NodeProto, out: &str) -> Result<(), ExportError> {
        let x = self.value(&node.input[0])?;
        let kernel = ints_attr(node, "kernel_shape")
            .first()
            .copied()
            .unwrap_or(1) as usize;
        let stride = ints_attr(node, "strides").first().copied().unwrap_or(1) as usize;
        let pads = ints_attr(node, "pads");
        let max = node.op_type == "MaxPool";
        if pads.iter().any(|&p| p != 0) && !(max && x.non_negative) {
            return Err(unsupported("padded pooling of values that may be negative"));
        }
        let (x, pad, (oh, ow)) = self.padded(&x, &pads, kernel, stride, out)?;
        if pad == Pad::Same && pads.iter().any(|&p| p != 0) {
            // TFLite's SAME pooling ignores the padding; zero padding of ReLU outputs is
            // what the ONNX graph means only when written out.
            return Err(unsupported("SAME-padded pooling"));
        }
        let shape = vec![1, oh as i32, ow as i32, x.shape[3]];
        let y = self.output_value(out, shape, x.quant.clone(), x.non_negative);
        let (stride, filter) = (stride as i32, kernel as i32);
        let op = if max {
            Op::MaxPool {
                pad,
                stride,
                filter,
            }
        } else {
            Op::AvgPool {
                pad,
                stride,
                filter,
            }
        };
        self.spec.op(op, &[x.index], &[y]);
        Ok(())
    }

    /// `Flatten`: nothing after a global mean; `RESHAPE` of a 1×1 map; else a `TRANSPOSE`
    /// to NCHW first, so that the classifier sees ONNX's order.
    fn flatten(&mut self, input: &str, out: &str) -> Result<(), ExportError> {
        let x = self.value(input)?;
        if x.shape.len() == 2 {
            self.values.insert(out.into(), x);
            return Ok(());
        }
        let (h, w, c) = (x.shape[1], x.shape[2], x.shape[3]);
        let mut source = x.index;
        if h * w > 1 {
            let perm = self
                .spec
                .i32_constant(&format!("{out}_perm"), vec![4], &[0, 3, 1, 2], None);
            let t = self.activation(&format!("{out}_nchw"), vec![1, c, h, w], x.quant.clone());
            self.spec.op(Op::Transpose, &[x.index, perm], &[t]);
            source = t;
        }
        let shape = vec![-1, c * h * w];
        let shape_index = self
            .spec
            .i32_constant(&format!("{out}_shape"), vec![2], &shape, None);
        let y = self.output_value(out, vec![1, c * h * w], x.quant.clone(), x.non_negative);
        self.spec
            .op(Op::Reshape { shape }, &[source, shape_index], &[y]);
        Ok(())
    }

    /// `Gemm` (`x · Wᵀ + b`) as `FULLY_CONNECTED`; int8 weights per tensor.
    fn fully_connected(
        &mut self,
        node: &NodeProto,
        act: Fused,
        out: &str,
    ) -> Result<(), ExportError> {
        let x = self.value(&node.input[0])?;
        if int_attr(node, "transB") != Some(1) {
            return Err(unsupported("a Gemm without transB"));
        }
        let (dims, w) = self.constant(&node.input[1])?.clone();
        let (_, b) = self.constant(&node.input[2])?.clone();
        let shape: Vec<i32> = dims.iter().map(|&d| d as i32).collect();
        let outputs = shape[0] as usize;
        let (w_index, b_index) = self.weights(out, &x, shape, &w, &b, 1, |_| 0, false)?;
        let quant = self.quant_of(out)?;
        let y = self.output_value(out, vec![1, outputs as i32], quant, act != Fused::None);
        self.spec.op(
            Op::FullyConnected { act },
            &[x.index, w_index, b_index],
            &[y],
        );
        Ok(())
    }

    /// `Add` of two values, or `Sub`/`Div` by a per-channel constant (the normalisation:
    /// `Div` becomes `MUL` by the reciprocal).
    fn binary(&mut self, node: &NodeProto, act: Fused, out: &str) -> Result<(), ExportError> {
        let a = self.value(&node.input[0])?;
        let op = node.op_type.as_str();
        let b = match self.values.get(&node.input[1]) {
            Some(v) if op == "Add" => v.clone(),
            None if op != "Add" => {
                let (_, values) = self.constant(&node.input[1])?.clone();
                let values: Vec<f32> = if op == "Div" {
                    values.iter().map(|v| 1.0 / v).collect()
                } else {
                    values
                };
                self.channel_constant(&format!("{out}_constant"), &values)
            }
            _ => return Err(unsupported(format!("{op} of these operands"))),
        };
        let quant = self.quant_of(out)?;
        let y = self.output_value(out, a.shape.clone(), quant, act != Fused::None);
        let op = match op {
            "Add" => Op::Add { act },
            "Sub" => Op::Sub,
            _ => Op::Mul,
        };
        self.spec.op(op, &[a.index, b.index], &[y]);
        Ok(())
    }

    /// A per-channel constant `[C]` that broadcasts over NHWC (int8, symmetric, in an int8
    /// model).
    fn channel_constant(&mut self, name: &str, values: &[f32]) -> Value {
        let shape = vec![values.len() as i32];
        let (index, quant) = if self.int8() {
            let (bytes, scales) = symmetric_int8(values, 1, |_| 0);
            let quant = Quant::per_tensor(scales[0], 0);
            let index = self.spec.tensor(TensorSpec {
                name: name.into(),
                shape: shape.clone(),
                kind: Kind::I8,
                data: Some(bytes),
                quant: Some(quant.clone()),
            });
            (index, Some(quant))
        } else {
            (self.spec.f32_constant(name, shape.clone(), values), None)
        };
        Value {
            index,
            shape,
            quant,
            non_negative: false,
        }
    }
}

fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn ints_attr(node: &NodeProto, name: &str) -> Vec<i64> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
        .unwrap_or_default()
}
