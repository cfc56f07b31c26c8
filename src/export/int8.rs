//! int8 ONNX by post-training quantization, in the QDQ form ONNX Runtime and tract both run:
//! weights int8 per output channel (symmetric), biases int32 at the input's scale times the
//! weight's, and uint8 per tensor both sides of every convolution (its input, and its output
//! after any ReLU6), residual sums, the pooled features and the classifier's input, each range
//! calibrated on the user's own images (the 0.01th and 99.99th percentiles of what the f32
//! model computes there). The logits and softmax stay f32.

use std::collections::HashMap;

use image::RgbImage;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, GraphProto, Message, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;

use super::types::ExportError;

/// Histogram bins per calibrated tensor.
const BINS: usize = 2048;
/// The share of values left outside the range at each end.
const TAIL: f64 = 1e-4;
/// Calibration images run at once.
const BATCH: usize = 8;

/// The calibrated range of each quantized tensor, and on how many images it was measured.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub ranges: HashMap<String, (f32, f32)>,
    pub images: usize,
}

impl Calibration {
    /// How the ranges were measured, for the file's metadata.
    pub fn description(&self) -> String {
        format!(
            "activation ranges: 0.01th to 99.99th percentile over {} images",
            self.images
        )
    }
}

/// The tensors quantized: the data input of every `Conv` and `Gemm`, and what every `Conv`,
/// `Add` and global pooling writes (after the ReLU or ReLU6 that alone reads it), so that
/// each convolution sits between dequantize and quantize pairs: ONNX Runtime then runs it
/// with its integer kernel (QLinearConv), the activation folded into the output's range.
fn calibrated_tensors(graph: &GraphProto) -> Vec<String> {
    let activations = super::onnx::sole_activations(graph);
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: &String| {
        if !names.contains(name) {
            names.push(name.clone());
        }
    };
    for (i, node) in graph.node.iter().enumerate() {
        let op = node.op_type.as_str();
        if matches!(op, "Conv" | "Gemm")
            && let Some(x) = node.input.first()
        {
            add(x);
        }
        let written = match activations.get(&i) {
            Some(&j) if matches!(op, "Conv" | "Add") => graph.node[j].output.first(),
            _ if matches!(op, "Conv" | "Add" | "GlobalAveragePool") => node.output.first(),
            _ => None,
        };
        if let Some(out) = written {
            add(out);
        }
    }
    names
}

/// Runs the f32 model on `crops` and measures each quantized tensor's range.
pub fn calibrate(model: &ModelProto, crops: &[RgbImage]) -> Result<Calibration, ExportError> {
    let names = model
        .graph
        .as_ref()
        .map(calibrated_tensors)
        .unwrap_or_default();
    calibrate_tensors(model, crops, names)
}

/// Runs the f32 model on `crops` and measures the range of each tensor in `names`.
pub fn calibrate_tensors(
    model: &ModelProto,
    crops: &[RgbImage],
    names: Vec<String>,
) -> Result<Calibration, ExportError> {
    let fail = |e: &dyn std::fmt::Display| ExportError::Check(format!("calibration: {e:#}"));
    if crops.is_empty() {
        return Err(ExportError::Check("calibration: no images".into()));
    }
    let mut probe = model.clone();
    if let Some(g) = probe.graph.as_mut() {
        g.output = names.iter().map(|n| float_value(n)).collect();
    }
    let bytes = probe
        .write_to_bytes()
        .map_err(|e| ExportError::Encode(e.to_string()))?;
    let runnable = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| fail(&e))?;
    let run = |batch: &[RgbImage]| -> Result<TVec<TValue>, ExportError> {
        runnable
            .run(tvec!(super::check::nchw(batch).into_tensor().into()))
            .map_err(|e| fail(&e))
    };
    // Pass 1: the extremes; pass 2: a histogram between them.
    let mut extremes = vec![(f32::INFINITY, f32::NEG_INFINITY); names.len()];
    for batch in crops.chunks(BATCH) {
        for (i, out) in run(batch)?.iter().enumerate() {
            let view = out.to_plain_array_view::<f32>().map_err(|e| fail(&e))?;
            for &v in view.iter() {
                extremes[i].0 = extremes[i].0.min(v);
                extremes[i].1 = extremes[i].1.max(v);
            }
        }
    }
    let mut histograms = vec![vec![0u64; BINS]; names.len()];
    for batch in crops.chunks(BATCH) {
        for (i, out) in run(batch)?.iter().enumerate() {
            let (lo, hi) = extremes[i];
            let width = (hi - lo).max(f32::MIN_POSITIVE);
            let view = out.to_plain_array_view::<f32>().map_err(|e| fail(&e))?;
            for &v in view.iter() {
                let bin = (((v - lo) / width) * BINS as f32) as usize;
                histograms[i][bin.min(BINS - 1)] += 1;
            }
        }
    }
    let ranges = names
        .into_iter()
        .zip(extremes.iter().zip(&histograms))
        .map(|(name, (&(lo, hi), h))| (name, percentile_range(h, lo, hi)))
        .collect();
    Ok(Calibration {
        ranges,
        images: crops.len(),
    })
}

/// The values between the `TAIL` and `1 - TAIL` quantiles of a histogram over `[lo, hi]`.
fn percentile_range(histogram: &[u64], lo: f32, hi: f32) -> (f32, f32) {
    let total: u64 = histogram.iter().sum();
    let cut = (total as f64 * TAIL) as u64;
    let width = (hi - lo) / histogram.len() as f32;
    let mut seen = 0;
    let mut low_bin = 0;
    for (i, &n) in histogram.iter().enumerate() {
        seen += n;
        if seen > cut {
            low_bin = i;
            break;
        }
    }
    seen = 0;
    let mut high_bin = histogram.len() - 1;
    for (i, &n) in histogram.iter().enumerate().rev() {
        seen += n;
        if seen > cut {
            high_bin = i;
            break;
        }
    }
    (
        lo + width * low_bin as f32,
        lo + width * (high_bin + 1) as f32,
    )
}

fn float_value(name: &str) -> onnx_protobuf::ValueInfoProto {
    use onnx_protobuf::{TypeProto, type_proto};
    onnx_protobuf::ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::FLOAT as i32,
                ..Default::default()
            })),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

/// uint8 scale and zero point of a range (which always holds 0).
fn activation_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zero = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero)
}

/// Rewrites `graph` into QDQ form with `calibration`'s ranges: each calibrated tensor is
/// quantized once, right after the node that writes it, and its readers take the
/// dequantized copy; convolution and classifier weights become int8, biases int32.
pub fn quantize_graph(
    graph: &mut GraphProto,
    calibration: &Calibration,
) -> Result<(), ExportError> {
    let mut floats: HashMap<String, TensorProto> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == DataType::FLOAT as i32)
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    // Only what a node writes can be quantized after it.
    let written: std::collections::HashSet<&String> =
        graph.node.iter().flat_map(|n| &n.output).collect();
    let params: HashMap<String, (f32, u8)> = calibration
        .ranges
        .iter()
        .filter(|(name, _)| written.contains(name))
        .map(|(name, &(lo, hi))| (name.clone(), activation_params(lo, hi)))
        .collect();
    let mut q = Quantizer::default();
    let mut body = Vec::new();
    for mut node in std::mem::take(&mut graph.node) {
        let x_params = node.input.first().and_then(|x| params.get(x)).copied();
        for input in &mut node.input {
            if params.contains_key(input) {
                *input = format!("{input}_dq");
            }
        }
        let is_quantized =
            matches!(node.op_type.as_str(), "Conv" | "Gemm") && node.input.len() == 3;
        if let (true, Some((x_scale, _))) = (is_quantized, x_params) {
            let weight = floats.remove(&node.input[1]);
            let bias = floats.remove(&node.input[2]);
            if let (Some(w), Some(b)) = (weight, bias) {
                let w_scales = q.weight(&w, &mut body)?;
                node.input[1] = format!("{}_dq", w.name);
                node.input[2] = q.bias(&b, x_scale, &w_scales, &mut body)?;
            }
        }
        let outputs = node.output.clone();
        body.push(node);
        for out in &outputs {
            if let Some(&(scale, zero)) = params.get(out) {
                q.activation(out, scale, zero, &mut body);
            }
        }
    }
    // The float weights that were quantized are gone; the rest stay.
    graph
        .initializer
        .retain(|t| t.data_type != DataType::FLOAT as i32 || floats.contains_key(&t.name));
    graph.initializer.extend(q.initializers);
    graph.node = body;
    Ok(())
}

#[derive(Default)]
struct Quantizer {
    initializers: Vec<TensorProto>,
}

impl Quantizer {
    fn constant(
        &mut self,
        name: String,
        data_type: DataType,
        dims: Vec<i64>,
        raw: Vec<u8>,
    ) -> String {
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims,
            data_type: data_type as i32,
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    /// `x` through QuantizeLinear and DequantizeLinear (uint8, per tensor), as `{x}_dq`.
    fn activation(&mut self, x: &str, scale: f32, zero: u8, body: &mut Vec<NodeProto>) {
        let s = self.constant(
            format!("{x}_scale"),
            DataType::FLOAT,
            vec![],
            scale.to_le_bytes().to_vec(),
        );
        let z = self.constant(format!("{x}_zero"), DataType::UINT8, vec![], vec![zero]);
        let (quantized, out) = (format!("{x}_q"), format!("{x}_dq"));
        body.push(qdq_node("QuantizeLinear", &[x, &s, &z], &quantized, None));
        body.push(qdq_node(
            "DequantizeLinear",
            &[&quantized, &s, &z],
            &out,
            None,
        ));
    }

    /// The weight as int8 per output channel (axis 0, symmetric) and its DequantizeLinear;
    /// returns the channel scales.
    fn weight(
        &mut self,
        w: &TensorProto,
        body: &mut Vec<NodeProto>,
    ) -> Result<Vec<f32>, ExportError> {
        let values = floats_of(w)?;
        let channels = w.dims.first().copied().unwrap_or(1).max(1) as usize;
        let per = values.len() / channels;
        let mut scales = Vec::with_capacity(channels);
        let mut raw = Vec::with_capacity(values.len());
        for c in values.chunks(per.max(1)) {
            let max = c.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales.push(scale);
            raw.extend(
                c.iter()
                    .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8 as u8),
            );
        }
        let q = self.constant(format!("{}_q", w.name), DataType::INT8, w.dims.clone(), raw);
        let s = self.constant(
            format!("{}_scale", w.name),
            DataType::FLOAT,
            vec![channels as i64],
            le_bytes(&scales),
        );
        let z = self.constant(
            format!("{}_zero", w.name),
            DataType::INT8,
            vec![channels as i64],
            vec![0; channels],
        );
        body.push(qdq_node(
            "DequantizeLinear",
            &[&q, &s, &z],
            &format!("{}_dq", w.name),
            Some(0),
        ));
        Ok(scales)
    }

    /// The bias as int32 at scale `x_scale × w_scale` per channel, and its DequantizeLinear.
    fn bias(
        &mut self,
        b: &TensorProto,
        x_scale: f32,
        w_scales: &[f32],
        body: &mut Vec<NodeProto>,
    ) -> Result<String, ExportError> {
        let values = floats_of(b)?;
        let scales: Vec<f32> = w_scales.iter().map(|w| w * x_scale).collect();
        let raw: Vec<u8> = values
            .iter()
            .zip(&scales)
            .flat_map(|(v, s)| {
                ((v / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32).to_le_bytes()
            })
            .collect();
        let n = values.len() as i64;
        let q = self.constant(format!("{}_q", b.name), DataType::INT32, vec![n], raw);
        let s = self.constant(
            format!("{}_scale", b.name),
            DataType::FLOAT,
            vec![n],
            le_bytes(&scales),
        );
        let z = self.constant(
            format!("{}_zero", b.name),
            DataType::INT32,
            vec![n],
            vec![0; values.len() * 4],
        );
        let out = format!("{}_dq", b.name);
        body.push(qdq_node("DequantizeLinear", &[&q, &s, &z], &out, Some(0)));
        Ok(out)
    }
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A weight's or bias's values (an empty one cannot be quantized).
fn floats_of(t: &TensorProto) -> Result<Vec<f32>, ExportError> {
    let values = super::f16::floats_of(t)?;
    if values.is_empty() {
        return Err(ExportError::Encode(format!(
            "tensor {} holds no floats",
            t.name
        )));
    }
    Ok(values)
}

fn qdq_node(op: &str, inputs: &[&str], output: &str, axis: Option<i64>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: format!("{output}_node"),
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.into()],
        attribute: axis
            .map(|a| AttributeProto {
                name: "axis".into(),
                type_: onnx_protobuf::attribute_proto::AttributeType::INT.into(),
                i: a,
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// Calibration images: the evaluation crops of up to `max` images found in `dir` and its
/// class folders (as loading a dataset finds them), spread evenly over them in name order
/// (files that do not decode are skipped).
pub fn calibration_crops(
    dir: &std::path::Path,
    preprocessing: &crate::data::preprocess::Preprocessing,
    max: usize,
) -> Result<Vec<RgbImage>, ExportError> {
    let scan = crate::data::dataset::scan_folder(dir)
        .map_err(|e| ExportError::Check(format!("calibration: {e}")))?;
    // Images in class folders, and those beside them (listed as outside any class).
    let loose = scan.skipped.into_iter().map(|s| s.path);
    let mut files: Vec<_> = scan
        .classes
        .into_iter()
        .flat_map(|(_, files)| files)
        .chain(loose.filter(|p| crate::data::decode::has_image_extension(p)))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ExportError::Check(format!(
            "no images in {} to calibrate on",
            dir.display()
        )));
    }
    let step = files.len().div_ceil(max.max(1));
    Ok(files
        .iter()
        .step_by(step.max(1))
        .filter_map(|f| crate::data::decode::decode_rgb(f).ok())
        .map(|image| preprocessing.eval_crop(&image))
        .collect())
}
