//! BatchNorm (train and eval), activations, the inference epilogues and whole residual blocks
//! as one op, each against the same computation composed from stock candle ops.

use crate::common;
use candle_core::{Tensor, Var};
use transfer_studio::ops::{self, Act, reference};

use super::ops::{check, max_abs_diff, var};

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
