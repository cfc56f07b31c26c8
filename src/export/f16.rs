//! Half-precision ONNX: every float weight and activation in f16, while the file's input and
//! outputs stay f32 for callers (one Cast after the input, one before each output).

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, GraphProto, NodeProto, TensorProto};

use super::types::ExportError;

const FLOAT: i32 = DataType::FLOAT as i32;
const FLOAT16: i32 = DataType::FLOAT16 as i32;

/// Rewrites `graph` (an f32 graph from this app) to compute in f16.
pub fn convert_graph(graph: &mut GraphProto) -> Result<(), ExportError> {
    gemm_to_matmul(graph)?;
    for tensor in &mut graph.initializer {
        convert_tensor(tensor)?;
    }
    for node in &mut graph.node {
        convert_node(node)?;
    }
    for info in &mut graph.value_info {
        retype(info, FLOAT, FLOAT16);
    }
    let mut casts_in = Vec::new();
    for input in &graph.input {
        let f16_name = format!("{}_f16", input.name);
        rename_uses(&mut graph.node, &input.name, &f16_name);
        casts_in.push(cast(&input.name, &f16_name, FLOAT16));
    }
    let mut casts_out = Vec::new();
    for output in &graph.output {
        let f16_name = format!("{}_f16", output.name);
        for node in &mut graph.node {
            for o in &mut node.output {
                if *o == output.name {
                    o.clone_from(&f16_name);
                }
            }
        }
        rename_uses(&mut graph.node, &output.name, &f16_name);
        casts_out.push(cast(&f16_name, &output.name, FLOAT));
    }
    let body = std::mem::take(&mut graph.node);
    graph.node = casts_in.into_iter().chain(body).chain(casts_out).collect();
    Ok(())
}

fn cast(from: &str, to: &str, elem_type: i32) -> NodeProto {
    NodeProto {
        op_type: "Cast".into(),
        name: format!("cast_{to}"),
        input: vec![from.into()],
        output: vec![to.into()],
        attribute: vec![AttributeProto {
            name: "to".into(),
            type_: onnx_protobuf::attribute_proto::AttributeType::INT.into(),
            i: i64::from(elem_type),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn rename_uses(nodes: &mut [NodeProto], from: &str, to: &str) {
    for node in nodes {
        for i in &mut node.input {
            if i == from {
                *i = to.to_owned();
            }
        }
    }
}

/// A value declared as tensor of `from` is declared as tensor of `to`.
fn retype(info: &mut onnx_protobuf::ValueInfoProto, from: i32, to: i32) {
    if let Some(t) = info.type_.as_mut()
        && let Some(onnx_protobuf::type_proto::Value::TensorType(tensor)) = t.value.as_mut()
        && tensor.elem_type == from
    {
        tensor.elem_type = to;
    }
}

/// A `Cast` to `from` casts to `to` instead.
fn retarget_cast(node: &mut NodeProto, from: i32, to: i32) {
    if node.op_type != "Cast" {
        return;
    }
    for attr in &mut node.attribute {
        if attr.name == "to" && attr.i == i64::from(from) {
            attr.i = i64::from(to);
        }
    }
}

/// Float constants inside nodes and Casts to float become f16.
fn convert_node(node: &mut NodeProto) -> Result<(), ExportError> {
    for attr in &mut node.attribute {
        if let Some(t) = attr.t.as_mut() {
            convert_tensor(t)?;
        }
    }
    retarget_cast(node, FLOAT, FLOAT16);
    Ok(())
}

/// An f32 tensor's values as f16 (round to nearest), stored as raw little-endian bytes.
fn convert_tensor(tensor: &mut TensorProto) -> Result<(), ExportError> {
    if tensor.data_type != FLOAT {
        return Ok(());
    }
    let values = floats_of(tensor)?;
    tensor.raw_data = values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    tensor.float_data.clear();
    tensor.data_type = FLOAT16;
    Ok(())
}

/// An f32 tensor's values, from its raw little-endian bytes or its `float_data`.
pub(super) fn floats_of(tensor: &TensorProto) -> Result<Vec<f32>, ExportError> {
    if tensor.raw_data.is_empty() {
        return Ok(tensor.float_data.clone());
    }
    if !tensor.raw_data.len().is_multiple_of(4) {
        return Err(ExportError::Encode(format!(
            "tensor {} has {} raw bytes, not whole floats",
            tensor.name,
            tensor.raw_data.len()
        )));
    }
    Ok(tensor
        .raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// `Gemm(x, W, b, transB=1)` as `MatMul(x, Wᵀ) + b`: the same product, in the operators every
/// runtime takes in f16 (tract's f16 Gemm gives f32 out).
fn gemm_to_matmul(graph: &mut GraphProto) -> Result<(), ExportError> {
    let mut body = Vec::with_capacity(graph.node.len() + 1);
    for node in std::mem::take(&mut graph.node) {
        let trans_b = node
            .attribute
            .iter()
            .any(|a| a.name == "transB" && a.i == 1);
        let plain = node
            .attribute
            .iter()
            .all(|a| a.name == "transB" || a.name == "transA" && a.i == 0);
        if node.op_type != "Gemm" || !trans_b || !plain || node.input.len() != 3 {
            body.push(node);
            continue;
        }
        let weight = graph
            .initializer
            .iter_mut()
            .find(|t| t.name == node.input[1])
            .ok_or_else(|| ExportError::Encode(format!("{}: weight not found", node.name)))?;
        transpose_2d(weight)?;
        let product = format!("{}_matmul", node.output[0]);
        body.push(NodeProto {
            op_type: "MatMul".into(),
            name: format!("{}_node", product),
            input: vec![node.input[0].clone(), node.input[1].clone()],
            output: vec![product.clone()],
            ..Default::default()
        });
        body.push(NodeProto {
            op_type: "Add".into(),
            name: node.name.clone(),
            input: vec![product, node.input[2].clone()],
            output: node.output.clone(),
            ..Default::default()
        });
    }
    graph.node = body;
    Ok(())
}

/// An f32 `[rows, columns]` tensor transposed in place.
fn transpose_2d(tensor: &mut TensorProto) -> Result<(), ExportError> {
    let [rows, columns] = tensor.dims[..] else {
        return Err(ExportError::Encode(format!(
            "{} is not a matrix",
            tensor.name
        )));
    };
    let (rows, columns) = (rows as usize, columns as usize);
    let values = floats_of(tensor)?;
    if values.len() != rows * columns {
        return Err(ExportError::Encode(format!(
            "{} has the wrong size",
            tensor.name
        )));
    }
    let mut out = Vec::with_capacity(values.len() * 4);
    for c in 0..columns {
        for r in 0..rows {
            out.extend_from_slice(&values[r * columns + c].to_le_bytes());
        }
    }
    tensor.raw_data = out;
    tensor.float_data.clear();
    tensor.dims = vec![columns as i64, rows as i64];
    Ok(())
}

/// The f16 file's graph computing in f32 on its f16-rounded weights: what ONNX Runtime runs on
/// x86 CPUs (which lack f16 kernels), and what the app's check runs, since tract computes f16
/// in software (some 27 s per 224 px image on two cores).
pub fn widened(graph: &GraphProto) -> GraphProto {
    let mut graph = graph.clone();
    for tensor in &mut graph.initializer {
        if tensor.data_type == FLOAT16 {
            tensor.raw_data = tensor
                .raw_data
                .chunks_exact(2)
                .flat_map(|b| {
                    half::f16::from_le_bytes([b[0], b[1]])
                        .to_f32()
                        .to_le_bytes()
                })
                .collect();
            tensor.data_type = FLOAT;
        }
    }
    for node in &mut graph.node {
        retarget_cast(node, FLOAT16, FLOAT);
    }
    for info in &mut graph.value_info {
        retype(info, FLOAT16, FLOAT);
    }
    graph
}
