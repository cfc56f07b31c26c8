//! Each fast CPU op against the same computation composed from stock candle ops, forward and
//! gradients, on odd shapes: stride 2, k = 5, asymmetric "SAME" padding, batch 1, odd sizes.

use crate::common;

use candle_core::{Device, Tensor, Var};
use transfer_studio::ops::{self, Act, reference};

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn var(shape: &[usize], seed: u64, scale: f32) -> Var {
    let n = shape.iter().product();
    let data: Vec<f32> = values(n, seed).into_iter().map(|v| v * scale).collect();
    Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).expect("tensor")).expect("var")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a: Vec<f32> = a.flatten_all().expect("flat").to_vec1().expect("vec");
    let b: Vec<f32> = b.flatten_all().expect("flat").to_vec1().expect("vec");
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn max_abs(a: &Tensor) -> f32 {
    a.abs()
        .expect("abs")
        .max_all()
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar")
}

/// Compares outputs and the gradients of `sum(y * r)` with respect to every input.
fn check(
    what: &str,
    inputs: &[&Var],
    fast: impl Fn() -> Tensor,
    slow: impl Fn() -> Tensor,
    tolerance: f32,
) {
    let y_fast = fast();
    let y_slow = slow();
    let scale = max_abs(&y_slow).max(1.0);
    let diff = max_abs_diff(&y_fast, &y_slow);
    assert!(
        diff <= tolerance * scale,
        "{what}: forward differs by {diff}"
    );
    let r = Tensor::from_vec(
        values(y_slow.elem_count(), 99),
        y_slow.shape(),
        &Device::Cpu,
    )
    .expect("weights");
    let g_fast = (y_fast * &r)
        .expect("mul")
        .sum_all()
        .expect("sum")
        .backward()
        .expect("bwd");
    let g_slow = (y_slow * &r)
        .expect("mul")
        .sum_all()
        .expect("sum")
        .backward()
        .expect("bwd");
    for (i, v) in inputs.iter().enumerate() {
        let a = g_fast
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{what}: no fast grad {i}"));
        let b = g_slow
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{what}: no stock grad {i}"));
        let scale = max_abs(b).max(1.0);
        let diff = max_abs_diff(a, b);
        assert!(
            diff <= tolerance * scale,
            "{what}: gradient {i} differs by {diff} (scale {scale})"
        );
    }
}

/// Depthwise shapes checked: (batch, height, width, channels, kernel, stride).
/// (n, h, w, c, k, stride). 37 channels: two full 16-channel register blocks and a remainder.
const DEPTHWISE_CASES: [(usize, usize, usize, usize, usize, usize); 6] = [
    (1, 7, 9, 3, 3, 1),
    (2, 9, 7, 37, 3, 2),
    (2, 8, 8, 5, 3, 2),
    (1, 11, 6, 4, 5, 2),
    (3, 5, 5, 16, 5, 1),
    (1, 1, 3, 2, 5, 2),
];

#[test]
fn depthwise_conv_matches_grouped_conv2d() {
    common::init();
    for &(n, h, w, c, k, s) in &DEPTHWISE_CASES {
        let x = var(&[n, h, w, c], 1, 1.0);
        let wt = var(&[c, 1, k, k], 2, 0.5);
        check(
            &format!("depthwise {n}x{h}x{w}x{c} k{k} s{s}"),
            &[&x, &wt],
            || ops::depthwise_conv(x.as_tensor(), wt.as_tensor(), s).expect("fast"),
            || reference::depthwise_conv(x.as_tensor(), wt.as_tensor(), s).expect("stock"),
            1e-5,
        );
    }
}

/// The path off the CPU (k² shifted multiply-adds, no per-channel launches) gives the CPU
/// kernel's outputs and gradients.
#[test]
fn the_shifted_depthwise_composition_matches_the_cpu_kernel() {
    common::init();
    // Lite0's widest depthwise layer too.
    for &(n, h, w, c, k, s) in DEPTHWISE_CASES.iter().chain(&[(1, 14, 14, 1152, 5, 1)]) {
        let x = var(&[n, h, w, c], 3, 1.0);
        let wt = var(&[c, 1, k, k], 4, 0.5);
        check(
            &format!("shifted depthwise {n}x{h}x{w}x{c} k{k} s{s}"),
            &[&x, &wt],
            || ops::depthwise_conv(x.as_tensor(), wt.as_tensor(), s).expect("cpu kernel"),
            || reference::depthwise_shifted(x.as_tensor(), wt.as_tensor(), s).expect("shifted"),
            1e-5,
        );
    }
}

#[test]
fn dense_same_conv_matches_conv2d() {
    common::init();
    for &(n, h, w, c_in, c_out, k, s) in &[(1, 9, 7, 3, 4, 3, 2), (2, 6, 6, 2, 3, 5, 1)] {
        let x = var(&[n, h, w, c_in], 3, 1.0);
        let wt = var(&[c_out, c_in, k, k], 4, 0.5);
        check(
            &format!("dense conv k{k} s{s}"),
            &[&x, &wt],
            || ops::conv_same(x.as_tensor(), wt.as_tensor(), s).expect("fast"),
            || reference::conv_same(x.as_tensor(), wt.as_tensor(), s).expect("stock"),
            1e-5,
        );
    }
}

/// torchvision's paddings: ResNet's 7×7 stem (stride 2, padding 3), its 3×3 (padding 1, stride
/// 1 and 2) and strided 1×1 shortcut, on shapes that span several blocks of output pixels.
#[test]
fn dense_symmetric_conv_matches_conv2d() {
    common::init();
    let cases = [
        (2, 17, 15, 3, 4, 7, 2, 3),
        (3, 40, 40, 6, 5, 3, 1, 1),
        // Odd sizes under stride 2: candle's own conv2d backward gets the input gradient's
        // shape wrong when stride 2 drops a pixel.
        (1, 9, 13, 5, 7, 3, 2, 1),
        (2, 9, 9, 4, 6, 1, 2, 0),
    ];
    for (n, h, w, c_in, c_out, k, s, p) in cases {
        let x = var(&[n, h, w, c_in], 7, 1.0);
        let wt = var(&[c_out, c_in, k, k], 8, 0.5);
        let padding = ops::Padding::Symmetric(p);
        check(
            &format!("dense conv k{k} s{s} p{p}"),
            &[&x, &wt],
            || ops::conv2d(x.as_tensor(), wt.as_tensor(), s, padding).expect("fast"),
            || reference::conv2d(x.as_tensor(), wt.as_tensor(), s, padding).expect("stock"),
            1e-5,
        );
    }
}

/// The inference convolution with its epilogue fused per block (VGG, ResNet) equals the
/// convolution, the bias, the residual and the activation one after another.
#[test]
fn dense_conv_with_fused_epilogue_matches_the_composition() {
    common::init();
    let x = var(&[2, 11, 9, 5], 22, 1.0).as_tensor().detach();
    let w = var(&[6, 5, 3, 3], 23, 0.5).as_tensor().detach();
    let bias = var(&[6], 24, 1.0).as_tensor().detach();
    let residual = var(&[2, 6, 5, 6], 25, 1.0).as_tensor().detach();
    let padding = ops::Padding::Symmetric(1);
    for (res, act) in [
        (None, Act::Relu),
        (Some(&residual), Act::Relu),
        (Some(&residual), Act::None),
    ] {
        let fused = ops::conv2d_bias_act(&x, &w, &bias, 2, padding, res, act).expect("fused");
        let mut y = reference::conv2d(&x, &w, 2, padding)
            .expect("conv")
            .broadcast_add(&bias)
            .expect("bias");
        if let Some(r) = res {
            y = (y + r).expect("residual");
        }
        let expected = reference::activate(y, act).expect("act");
        assert!(
            max_abs_diff(&fused, &expected) < 1e-5,
            "{act:?}, residual {}",
            res.is_some()
        );
    }
}

#[test]
fn pointwise_conv_as_matmul_matches_conv2d() {
    common::init();
    let x = var(&[2, 5, 3, 7], 5, 1.0);
    let wt = var(&[6, 7, 1, 1], 6, 0.5);
    check(
        "1x1 conv",
        &[&x, &wt],
        || ops::conv1x1(x.as_tensor(), wt.as_tensor()).expect("fast"),
        || reference::conv1x1(x.as_tensor(), wt.as_tensor()).expect("stock"),
        1e-5,
    );
}

#[test]
fn train_batch_norm_matches_the_composition() {
    common::init();
    for &(shape, act) in &[
        (&[2usize, 5, 3, 7][..], Act::None),
        (&[1, 4, 4, 3][..], Act::Relu6),
        (&[3, 17, 13, 11][..], Act::Relu6),
        (&[2, 6, 5, 9][..], Act::Relu),
        // 800 rows: several chunks of partial sums, combined in order.
        (&[2, 20, 20, 45][..], Act::Relu6),
    ] {
        // Offset and scaled inputs so that ReLU6 clips on both sides.
        let x = var(shape, 7, 4.0);
        let c = shape[3];
        let gamma = var(&[c], 8, 2.0);
        let beta = var(&[c], 9, 3.0);
        check(
            &format!("bn train {shape:?} {act:?}"),
            &[&x, &gamma, &beta],
            || {
                ops::batch_norm_train(
                    x.as_tensor(),
                    gamma.as_tensor(),
                    beta.as_tensor(),
                    1e-3,
                    act,
                )
                .expect("fast")
                .0
            },
            || {
                reference::batch_norm_train(
                    x.as_tensor(),
                    gamma.as_tensor(),
                    beta.as_tensor(),
                    1e-3,
                    act,
                )
                .expect("stock")
                .0
            },
            1e-4,
        );
    }
}

/// The fused convolution + train-mode BatchNorm, recomputing the convolution in backward or
/// keeping its output, against the composition of stock ops.
#[test]
fn conv_then_train_batch_norm_as_one_op_matches_the_composition() {
    common::init();
    use ops::FusedConv::{Dense, Depthwise, Pointwise};
    let same = ops::Padding::Symmetric(1);
    // (batch, height, width, in channels, out channels, conv, recompute, activation)
    let cases = [
        (2, 5, 3, 7, 6, Pointwise, true, Act::Relu6),
        (1, 4, 4, 3, 5, Pointwise, false, Act::None),
        (2, 4, 5, 3, 6, Pointwise, true, Act::Relu),
        (2, 9, 7, 5, 5, Depthwise { stride: 2 }, true, Act::Relu6),
        (1, 6, 11, 4, 4, Depthwise { stride: 1 }, true, Act::None),
        // 3×3 stride 1 with 16+ channels takes Winograd's path; stride 2 the direct one.
        (
            2,
            7,
            5,
            16,
            17,
            Dense {
                stride: 1,
                padding: same,
            },
            false,
            Act::Relu,
        ),
        // Odd sizes: candle's own stride-2 convolution backward mis-shapes even ones.
        (
            1,
            9,
            7,
            3,
            4,
            Dense {
                stride: 2,
                padding: same,
            },
            false,
            Act::None,
        ),
    ];
    for (n, h, w, c_in, c_out, conv, recompute, act) in cases {
        let x = var(&[n, h, w, c_in], 13, 2.0);
        let weight_shape = match conv {
            Pointwise => vec![c_out, c_in, 1, 1],
            Depthwise { .. } => vec![c_out, 1, 5, 5],
            Dense { .. } => vec![c_out, c_in, 3, 3],
        };
        let wt = var(&weight_shape, 14, 0.7);
        let gamma = var(&[c_out], 15, 2.0);
        let beta = var(&[c_out], 16, 3.0);
        let stock_conv = |x: &Tensor, w: &Tensor| match conv {
            Pointwise => reference::conv1x1(x, w),
            Depthwise { stride } => reference::depthwise_conv(x, w, stride),
            Dense { stride, padding } => reference::conv2d(x, w, stride, padding),
        };
        check(
            &format!("conv+bn {conv:?} recompute {recompute} {n}x{h}x{w}x{c_in} {act:?}"),
            &[&x, &wt, &gamma, &beta],
            || {
                let layer = ops::BlockLayer {
                    weight: wt.as_tensor(),
                    gamma: gamma.as_tensor(),
                    beta: beta.as_tensor(),
                    conv,
                    recompute,
                    eps: 1e-3,
                    act,
                };
                ops::conv_bn_train(x.as_tensor(), &layer).expect("fast").0
            },
            || {
                let y = stock_conv(x.as_tensor(), wt.as_tensor()).expect("stock conv");
                reference::batch_norm_train(&y, gamma.as_tensor(), beta.as_tensor(), 1e-3, act)
                    .expect("stock")
                    .0
            },
            1e-4,
        );
    }
}

#[test]
fn train_batch_norm_reports_batch_statistics() {
    common::init();
    let x = var(&[2, 3, 5, 4], 10, 3.0);
    let gamma = var(&[4], 11, 1.0);
    let beta = var(&[4], 12, 1.0);
    let (_, fast) = ops::batch_norm_train(
        x.as_tensor(),
        gamma.as_tensor(),
        beta.as_tensor(),
        1e-3,
        Act::None,
    )
    .expect("fast");
    let (_, slow) = reference::batch_norm_train(
        x.as_tensor(),
        gamma.as_tensor(),
        beta.as_tensor(),
        1e-3,
        Act::None,
    )
    .expect("stock");
    assert_eq!(fast.count, 30);
    for (a, b) in fast
        .mean
        .iter()
        .zip(&slow.mean)
        .chain(fast.var.iter().zip(&slow.var))
    {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn eval_batch_norm_scale_shift_matches_the_composition() {
    common::init();
    let x = var(&[2, 3, 5, 6], 13, 5.0);
    let residual = var(&[2, 3, 5, 6], 14, 1.0);
    let scale = var(&[6], 15, 2.0);
    let shift = var(&[6], 16, 2.0);
    for act in [Act::None, Act::Relu6, Act::Relu] {
        check(
            &format!("scale-shift {act:?}"),
            &[&x],
            || {
                ops::scale_shift_act(
                    x.as_tensor(),
                    scale.as_tensor(),
                    shift.as_tensor(),
                    None,
                    act,
                )
                .expect("fast")
            },
            || {
                reference::scale_shift_act(
                    x.as_tensor(),
                    scale.as_tensor(),
                    shift.as_tensor(),
                    None,
                    act,
                )
                .expect("stock")
            },
            1e-6,
        );
        check(
            &format!("scale-shift + residual {act:?}"),
            &[&x, &residual],
            || {
                ops::scale_shift_act(
                    x.as_tensor(),
                    scale.as_tensor(),
                    shift.as_tensor(),
                    Some(residual.as_tensor()),
                    act,
                )
                .expect("fast")
            },
            || {
                reference::scale_shift_act(
                    x.as_tensor(),
                    scale.as_tensor(),
                    shift.as_tensor(),
                    Some(residual.as_tensor()),
                    act,
                )
                .expect("stock")
            },
            1e-6,
        );
    }
}

#[test]
fn activations_match_stock_ops() {
    common::init();
    let x = var(&[3, 4, 5, 2], 17, 8.0);
    let r = var(&[3, 4, 5, 2], 18, 2.0);
    for act in [Act::Relu6, Act::Relu, Act::None] {
        check(
            &format!("{act:?}"),
            &[&x],
            || ops::activate(x.as_tensor(), act).expect("fast"),
            || reference::activate(x.as_tensor().clone(), act).expect("stock"),
            0.0,
        );
        check(
            &format!("add then {act:?}"),
            &[&x, &r],
            || ops::add_activate(x.as_tensor(), r.as_tensor(), act).expect("fast"),
            || {
                let sum = (x.as_tensor() + r.as_tensor()).expect("add");
                reference::activate(sum, act).expect("stock")
            },
            0.0,
        );
    }
}

#[test]
fn inference_epilogues_match_the_composition() {
    common::init();
    let x = var(&[2, 6, 5, 4], 18, 3.0);
    let w = var(&[4, 1, 5, 5], 19, 0.5);
    let bias = var(&[4], 20, 2.0);
    let fused = ops::depthwise_conv_bias_act(
        x.as_tensor(),
        w.as_tensor(),
        bias.as_tensor(),
        2,
        Act::Relu6,
    )
    .expect("fused");
    let composed = reference::activate(
        reference::depthwise_conv(x.as_tensor(), w.as_tensor(), 2)
            .expect("conv")
            .broadcast_add(bias.as_tensor())
            .expect("add"),
        Act::Relu6,
    )
    .expect("relu6");
    assert!(max_abs_diff(&fused, &composed) < 1e-5);

    let w1 = var(&[4, 4, 1, 1], 21, 1.0).as_tensor().detach();
    let y = ops::conv1x1(&x.as_tensor().detach(), &w1).expect("conv");
    let expected = reference::scale_shift_act(
        &y,
        &bias.as_tensor().ones_like().expect("ones"),
        bias.as_tensor(),
        Some(x.as_tensor()),
        Act::Relu6,
    )
    .expect("composed");
    let in_place = ops::bias_act_inplace(
        y.copy().expect("copy"),
        &bias.as_tensor().detach(),
        Some(x.as_tensor()),
        Act::Relu6,
    )
    .expect("in place");
    assert!(max_abs_diff(&in_place, &expected) < 1e-6);
    let blocked = ops::conv1x1_bias_act(
        &x.as_tensor().detach(),
        &w1,
        &bias.as_tensor().detach(),
        Some(&x.as_tensor().detach()),
        Act::Relu6,
    )
    .expect("1x1 with epilogue");
    assert!(max_abs_diff(&blocked, &expected) < 1e-5);
}

/// A residual block as one graph node gives what its layers give as separate nodes: outputs,
/// batch statistics, and the gradients of the input and every parameter. Lite0's blocks (with
/// and without a skip), ResNet's (identity and a strided projection; 16 channels take
/// Winograd's path).
#[test]
fn a_block_as_one_op_matches_its_layers() {
    common::init();
    use ops::FusedConv::{Dense, Depthwise, Pointwise};
    use ops::Padding::Symmetric;
    let dense = |stride, pad| Dense {
        stride,
        padding: Symmetric(pad),
    };
    // Per layer: (conv, in channels, out channels, kernel, recompute, activation).
    type Spec = (ops::FusedConv, usize, usize, usize, bool, Act);
    let mbconv: &[Spec] = &[
        (Pointwise, 8, 24, 1, true, Act::Relu6),
        (Depthwise { stride: 1 }, 24, 24, 3, true, Act::Relu6),
        (Pointwise, 24, 8, 1, false, Act::None),
    ];
    let strided: &[Spec] = &[
        (Depthwise { stride: 2 }, 8, 8, 5, true, Act::Relu6),
        (Pointwise, 8, 12, 1, false, Act::None),
    ];
    let down: &[Spec] = &[
        (dense(2, 1), 6, 16, 3, false, Act::Relu),
        (dense(1, 1), 16, 16, 3, false, Act::None),
    ];
    let basic: &[Spec] = &[
        (dense(1, 1), 16, 16, 3, false, Act::Relu),
        (dense(1, 1), 16, 16, 3, false, Act::None),
    ];
    let projection: Spec = (dense(2, 0), 6, 16, 1, false, Act::None);
    // (input shape, chain, shortcut: 0 none, 1 identity, 2 projection, activation)
    let cases = [
        ([2, 5, 6, 8], mbconv, 1, Act::None),
        ([1, 9, 7, 8], strided, 0, Act::None),
        ([2, 7, 9, 6], down, 2, Act::Relu),
        ([1, 6, 5, 16], basic, 1, Act::Relu),
    ];
    for (case, (shape, chain, shortcut, act)) in cases.into_iter().enumerate() {
        let x = var(&shape, 30, 2.0);
        let specs: Vec<Spec> = chain
            .iter()
            .copied()
            .chain((shortcut == 2).then_some(projection))
            .collect();
        let params: Vec<[Var; 3]> = (0u64..)
            .zip(&specs)
            .map(|(i, &(conv, c_in, c_out, k, ..))| {
                let c_in = if matches!(conv, Depthwise { .. }) {
                    1
                } else {
                    c_in
                };
                [
                    var(&[c_out, c_in, k, k], 31 + i, 0.7),
                    var(&[c_out], 41 + i, 2.0),
                    var(&[c_out], 51 + i, 1.0),
                ]
            })
            .collect();
        let layers: Vec<ops::BlockLayer<'_>> = specs
            .iter()
            .zip(&params)
            .map(
                |(&(conv, _, _, _, recompute, act), [w, gamma, beta])| ops::BlockLayer {
                    weight: w.as_tensor(),
                    gamma: gamma.as_tensor(),
                    beta: beta.as_tensor(),
                    conv,
                    recompute,
                    eps: 1e-3,
                    act,
                },
            )
            .collect();
        let (chain_layers, shortcut) = match shortcut {
            0 => (&layers[..], ops::Shortcut::None),
            1 => (&layers[..], ops::Shortcut::Identity),
            _ => (
                &layers[..layers.len() - 1],
                ops::Shortcut::Projection(layers[layers.len() - 1]),
            ),
        };
        let run = |fused: bool| {
            let f = if fused {
                ops::train_block
            } else {
                ops::train_block_unfused
            };
            f(x.as_tensor(), chain_layers, shortcut, act).expect("block")
        };
        let (stats_fused, stats_unfused) = (run(true).1, run(false).1);
        assert_eq!(stats_fused.len(), specs.len());
        for (a, b) in stats_fused.iter().zip(&stats_unfused) {
            assert_eq!(
                (&a.mean, &a.var, a.count),
                (&b.mean, &b.var, b.count),
                "case {case}"
            );
        }
        let mut inputs = vec![&x];
        inputs.extend(params.iter().flatten());
        check(
            &format!("block case {case}"),
            &inputs,
            || run(true).0,
            || run(false).0,
            1e-4,
        );
    }
}
