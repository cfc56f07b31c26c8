//! A [`ModelSpec`] as TFLite's flatbuffer (schema version 3, identifier `TFL3`), through the
//! types generated from TFLite's `schema.fbs` (they come with `tract-tflite`).

use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};
use tract_tflite::tflite as fb;

use super::spec::{Fused, Kind, ModelSpec, Op, Pad, TensorSpec};

/// Serialises `spec`.
pub fn to_flatbuffer(spec: &ModelSpec) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(1 << 20);
    // Buffer 0 is the empty sentinel; then one per constant tensor, then the metadata.
    let mut buffers = vec![fb::Buffer::create(&mut fbb, &fb::BufferArgs::default())];
    let mut tensors = Vec::with_capacity(spec.tensors.len());
    for t in &spec.tensors {
        let index = match &t.data {
            Some(bytes) => {
                buffers.push(buffer(&mut fbb, bytes));
                buffers.len() as u32 - 1
            }
            None => 0,
        };
        tensors.push(tensor(&mut fbb, t, index));
    }
    let (codes, operators) = operators(&mut fbb, spec);
    let mut metadata = Vec::with_capacity(spec.metadata.len());
    for (name, bytes) in &spec.metadata {
        buffers.push(buffer(&mut fbb, bytes));
        let name = fbb.create_string(name);
        metadata.push(fb::Metadata::create(
            &mut fbb,
            &fb::MetadataArgs {
                name: Some(name),
                buffer: buffers.len() as u32 - 1,
            },
        ));
    }
    let subgraph = {
        let tensors = fbb.create_vector(&tensors);
        let inputs = fbb.create_vector(&spec.inputs);
        let outputs = fbb.create_vector(&spec.outputs);
        let operators = fbb.create_vector(&operators);
        let name = fbb.create_string("main");
        fb::SubGraph::create(
            &mut fbb,
            &fb::SubGraphArgs {
                tensors: Some(tensors),
                inputs: Some(inputs),
                outputs: Some(outputs),
                operators: Some(operators),
                name: Some(name),
            },
        )
    };
    let model = fb::ModelArgs {
        version: 3,
        operator_codes: Some(fbb.create_vector(&codes)),
        subgraphs: Some(fbb.create_vector(&[subgraph])),
        description: Some(fbb.create_string(&spec.description)),
        buffers: Some(fbb.create_vector(&buffers)),
        metadata: Some(fbb.create_vector(&metadata)),
        ..Default::default()
    };
    let root = fb::Model::create(&mut fbb, &model);
    fb::finish_model_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

fn buffer<'a>(fbb: &mut FlatBufferBuilder<'a>, bytes: &[u8]) -> WIPOffset<fb::Buffer<'a>> {
    let data = fbb.create_vector(bytes);
    fb::Buffer::create(fbb, &fb::BufferArgs { data: Some(data) })
}

type Operators<'a> = (
    Vec<WIPOffset<fb::OperatorCode<'a>>>,
    Vec<WIPOffset<fb::Operator<'a>>>,
);

/// The operator codes used (each once) and the operators.
fn operators<'a>(fbb: &mut FlatBufferBuilder<'a>, spec: &ModelSpec) -> Operators<'a> {
    let int8 = spec.tensors.iter().any(|t| t.kind == Kind::I8);
    let mut codes: Vec<(fb::BuiltinOperator, i32)> = Vec::new();
    let mut operators = Vec::with_capacity(spec.ops.len());
    for op in &spec.ops {
        let code = (builtin(&op.op), version(&op.op, int8));
        let index = codes.iter().position(|c| *c == code).unwrap_or_else(|| {
            codes.push(code);
            codes.len() - 1
        });
        let (options_type, options) = options(fbb, &op.op);
        let inputs = fbb.create_vector(&op.inputs);
        let outputs = fbb.create_vector(&op.outputs);
        operators.push(fb::Operator::create(
            fbb,
            &fb::OperatorArgs {
                opcode_index: index as u32,
                inputs: Some(inputs),
                outputs: Some(outputs),
                builtin_options_type: options_type,
                builtin_options: options,
                ..Default::default()
            },
        ));
    }
    let codes = codes
        .into_iter()
        .map(|(code, version)| {
            fb::OperatorCode::create(
                fbb,
                &fb::OperatorCodeArgs {
                    deprecated_builtin_code: code.0.min(127) as i8,
                    custom_code: None,
                    version,
                    builtin_code: code,
                },
            )
        })
        .collect();
    (codes, operators)
}

fn tensor<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    t: &TensorSpec,
    buffer: u32,
) -> WIPOffset<fb::Tensor<'a>> {
    let quantization = t.quant.as_ref().map(|q| {
        let scale = fbb.create_vector(&q.scale);
        let zero_point = fbb.create_vector(&q.zero);
        fb::QuantizationParameters::create(
            fbb,
            &fb::QuantizationParametersArgs {
                scale: Some(scale),
                zero_point: Some(zero_point),
                quantized_dimension: q.axis,
                ..Default::default()
            },
        )
    });
    let shape = fbb.create_vector(&t.shape);
    let name = fbb.create_string(&t.name);
    fb::Tensor::create(
        fbb,
        &fb::TensorArgs {
            shape: Some(shape),
            type_: match t.kind {
                Kind::F32 => fb::TensorType::FLOAT32,
                Kind::I8 => fb::TensorType::INT8,
                Kind::I32 => fb::TensorType::INT32,
            },
            buffer,
            name: Some(name),
            quantization,
            ..Default::default()
        },
    )
}

/// The operator's code in TFLite's list.
pub fn builtin(op: &Op) -> fb::BuiltinOperator {
    use fb::BuiltinOperator as B;
    match op {
        Op::Conv { .. } => B::CONV_2D,
        Op::Depthwise { .. } => B::DEPTHWISE_CONV_2D,
        Op::MaxPool { .. } => B::MAX_POOL_2D,
        Op::AvgPool { .. } => B::AVERAGE_POOL_2D,
        Op::Add { .. } => B::ADD,
        Op::Sub => B::SUB,
        Op::Mul => B::MUL,
        Op::Mean => B::MEAN,
        Op::Reshape { .. } => B::RESHAPE,
        Op::Transpose => B::TRANSPOSE,
        Op::Pad => B::PAD,
        Op::FullyConnected { .. } => B::FULLY_CONNECTED,
        Op::Softmax => B::SOFTMAX,
        Op::Relu => B::RELU,
        Op::Relu6 => B::RELU6,
        Op::Quantize => B::QUANTIZE,
        Op::Dequantize => B::DEQUANTIZE,
    }
}

/// The operator version TFLite's versioning rules give it: int8 kernels are version 2 or
/// more (per-channel convolutions 3, int8 fully connected 4).
fn version(op: &Op, int8: bool) -> i32 {
    if !int8 {
        return 1;
    }
    match op {
        Op::Conv { .. } | Op::Depthwise { .. } => 3,
        Op::FullyConnected { .. } => 4,
        Op::Reshape { .. } => 1,
        _ => 2,
    }
}

fn activation(act: Fused) -> fb::ActivationFunctionType {
    match act {
        Fused::None => fb::ActivationFunctionType::NONE,
        Fused::Relu => fb::ActivationFunctionType::RELU,
        Fused::Relu6 => fb::ActivationFunctionType::RELU6,
    }
}

fn padding(pad: Pad) -> fb::Padding {
    match pad {
        Pad::Same => fb::Padding::SAME,
        Pad::Valid => fb::Padding::VALID,
    }
}

/// The operator's options table, if it has one.
fn options(
    fbb: &mut FlatBufferBuilder<'_>,
    op: &Op,
) -> (fb::BuiltinOptions, Option<WIPOffset<UnionWIPOffset>>) {
    use fb::BuiltinOptions as O;
    let pool = |fbb: &mut FlatBufferBuilder<'_>, pad: Pad, stride: i32, filter: i32| {
        fb::Pool2DOptions::create(
            fbb,
            &fb::Pool2DOptionsArgs {
                padding: padding(pad),
                stride_w: stride,
                stride_h: stride,
                filter_width: filter,
                filter_height: filter,
                fused_activation_function: fb::ActivationFunctionType::NONE,
            },
        )
        .as_union_value()
    };
    match op {
        Op::Conv { .. } | Op::Depthwise { .. } => conv_options(fbb, op),
        Op::MaxPool {
            pad,
            stride,
            filter,
        }
        | Op::AvgPool {
            pad,
            stride,
            filter,
        } => (O::Pool2DOptions, Some(pool(fbb, *pad, *stride, *filter))),
        Op::Add { act } => {
            let o = fb::AddOptions::create(
                fbb,
                &fb::AddOptionsArgs {
                    fused_activation_function: activation(*act),
                    pot_scale_int16: false,
                },
            );
            (O::AddOptions, Some(o.as_union_value()))
        }
        Op::Sub => {
            let o = fb::SubOptions::create(fbb, &fb::SubOptionsArgs::default());
            (O::SubOptions, Some(o.as_union_value()))
        }
        Op::Mul => {
            let o = fb::MulOptions::create(fbb, &fb::MulOptionsArgs::default());
            (O::MulOptions, Some(o.as_union_value()))
        }
        Op::Mean => {
            let o = fb::ReducerOptions::create(fbb, &fb::ReducerOptionsArgs { keep_dims: false });
            (O::ReducerOptions, Some(o.as_union_value()))
        }
        Op::Reshape { shape } => {
            let new_shape = fbb.create_vector(shape);
            let o = fb::ReshapeOptions::create(
                fbb,
                &fb::ReshapeOptionsArgs {
                    new_shape: Some(new_shape),
                },
            );
            (O::ReshapeOptions, Some(o.as_union_value()))
        }
        Op::FullyConnected { act } => {
            let o = fb::FullyConnectedOptions::create(
                fbb,
                &fb::FullyConnectedOptionsArgs {
                    fused_activation_function: activation(*act),
                    ..Default::default()
                },
            );
            (O::FullyConnectedOptions, Some(o.as_union_value()))
        }
        Op::Softmax => {
            let o = fb::SoftmaxOptions::create(fbb, &fb::SoftmaxOptionsArgs { beta: 1.0 });
            (O::SoftmaxOptions, Some(o.as_union_value()))
        }
        Op::Transpose | Op::Pad | Op::Relu | Op::Relu6 | Op::Quantize | Op::Dequantize => {
            (O::NONE, None)
        }
    }
}

/// The options of a convolution.
fn conv_options(
    fbb: &mut FlatBufferBuilder<'_>,
    op: &Op,
) -> (fb::BuiltinOptions, Option<WIPOffset<UnionWIPOffset>>) {
    use fb::BuiltinOptions as O;
    match op {
        Op::Conv { pad, stride, act } => {
            let o = fb::Conv2DOptions::create(
                fbb,
                &fb::Conv2DOptionsArgs {
                    padding: padding(*pad),
                    stride_w: *stride,
                    stride_h: *stride,
                    fused_activation_function: activation(*act),
                    dilation_w_factor: 1,
                    dilation_h_factor: 1,
                },
            );
            (O::Conv2DOptions, Some(o.as_union_value()))
        }
        Op::Depthwise { pad, stride, act } => {
            let o = fb::DepthwiseConv2DOptions::create(
                fbb,
                &fb::DepthwiseConv2DOptionsArgs {
                    padding: padding(*pad),
                    stride_w: *stride,
                    stride_h: *stride,
                    depth_multiplier: 1,
                    fused_activation_function: activation(*act),
                    dilation_w_factor: 1,
                    dilation_h_factor: 1,
                },
            );
            (O::DepthwiseConv2DOptions, Some(o.as_union_value()))
        }
        _ => (O::NONE, None),
    }
}
