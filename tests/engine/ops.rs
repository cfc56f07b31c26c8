//! Each fast CPU op against the same computation composed from stock candle ops, forward and
//! gradients, on odd shapes: stride 2, k = 5, asymmetric "SAME" padding, batch 1, odd sizes.

use crate::common;

use candle_core::{Device, Tensor, Var};
use transfer_studio::ops::{self, Act, reference};

/// Deterministic pseudo-random values in [-1, 1).
pub(crate) fn values(n: usize, seed: u64) -> Vec<f32> {
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

pub(crate) fn var(shape: &[usize], seed: u64, scale: f32) -> Var {
    let n = shape.iter().product();
    let data: Vec<f32> = values(n, seed).into_iter().map(|v| v * scale).collect();
    Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).expect("tensor")).expect("var")
}

pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a: Vec<f32> = a.flatten_all().expect("flat").to_vec1().expect("vec");
    let b: Vec<f32> = b.flatten_all().expect("flat").to_vec1().expect("vec");
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub(crate) fn max_abs(a: &Tensor) -> f32 {
    a.abs()
        .expect("abs")
        .max_all()
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar")
}

/// Compares outputs and the gradients of `sum(y * r)` with respect to every input.
pub(crate) fn check(
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
/// The last two are wide rows with 16-channel multiples (many interior pixels).
const DEPTHWISE_CASES: [(usize, usize, usize, usize, usize, usize); 8] = [
    (1, 7, 9, 3, 3, 1),
    (2, 9, 7, 37, 3, 2),
    (2, 8, 8, 5, 3, 2),
    (1, 11, 6, 4, 5, 2),
    (3, 5, 5, 16, 5, 1),
    (1, 1, 3, 2, 5, 2),
    (2, 6, 20, 32, 3, 1),
    (1, 5, 29, 48, 5, 2),
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

/// The fused MBConv block (expand, depthwise, project in one pass per image) gives what the
/// three folded ops give one after another: odd sizes, k 3 and 5, stride 1 (with the skip) and
/// 2, images shorter than the kernel, and enough images that it runs (it needs one per thread).
#[test]
fn fused_mbconv_matches_the_ops_one_by_one() {
    common::init();
    let n = rayon::current_num_threads().max(2) + 1;
    let (c_in, c_exp) = (8, 48);
    for &(h, w) in &[(9, 11), (7, 7), (13, 5), (16, 16), (2, 3), (30, 4)] {
        for (k, s) in [(3, 1), (3, 2), (5, 1), (5, 2)] {
            let skip = s == 1;
            let c_out = if skip { c_in } else { 12 };
            // Inference: the input records no gradients (the fused op has no backward).
            let x = var(&[n, h, w, c_in], 1, 1.0).as_tensor().detach();
            let t = |shape: &[usize], seed, scale| var(shape, seed, scale).as_tensor().clone();
            let (ew, eb) = (t(&[c_exp, c_in, 1, 1], 2, 0.5), t(&[c_exp], 3, 1.0));
            let (dw, db) = (t(&[c_exp, 1, k, k], 4, 0.5), t(&[c_exp], 5, 1.0));
            let (pw, pb) = (t(&[c_out, c_exp, 1, 1], 6, 0.3), t(&[c_out], 7, 1.0));
            let x = &x;
            let fold = |weight, bias, act| ops::FoldedTensors { weight, bias, act };
            let fused = ops::mbconv_fused(
                x,
                fold(&ew, &eb, Act::Relu6),
                fold(&dw, &db, Act::Relu6),
                s,
                fold(&pw, &pb, Act::None),
                skip,
            )
            .expect("fused")
            .expect("the fused kernel runs with an image per thread");
            let e = ops::conv1x1_bias_act(x, &ew, &eb, None, Act::Relu6).expect("expand");
            let d = ops::depthwise_conv_bias_act(&e, &dw, &db, s, Act::Relu6).expect("dw");
            let residual = skip.then_some(x);
            let y = ops::conv1x1_bias_act(&d, &pw, &pb, residual, Act::None).expect("project");
            let scale = max_abs(&y).max(1.0);
            let diff = max_abs_diff(&fused, &y);
            assert!(
                diff <= 1e-5 * scale,
                "{h}x{w} k{k} s{s}: fused differs by {diff} (scale {scale})"
            );
            if (h, w, k) == (7, 7, 3) {
                // A tensor that records its graph goes op by op, so gradients still flow.
                let tracked = var(&[n, h, w, c_in], 1, 1.0);
                let layers = (fold(&ew, &eb, Act::Relu6), fold(&dw, &db, Act::Relu6));
                let project = fold(&pw, &pb, Act::None);
                let none =
                    ops::mbconv_fused(tracked.as_tensor(), layers.0, layers.1, s, project, skip);
                assert!(none.expect("checked").is_none());
            }
        }
    }
}

#[test]
fn conv_bias_act_as_one_op_matches_the_composition() {
    common::init();
    use ops::FusedConv::{Dense, Depthwise, Pointwise};
    let padding = ops::Padding::Symmetric(1);
    // (batch, height, width, in channels, out channels, conv, activation, pooled). 3×3 stride 1
    // with 16+ channels takes Winograd's path, stride 2 the blocked implicit products; odd
    // sizes leave a row and a column out of the pooling.
    let cases = [
        (
            2,
            7,
            5,
            16,
            17,
            Dense { stride: 1, padding },
            Act::Relu,
            false,
        ),
        (
            2,
            8,
            7,
            16,
            9,
            Dense { stride: 1, padding },
            Act::Relu,
            true,
        ),
        (
            1,
            9,
            7,
            3,
            4,
            Dense { stride: 2, padding },
            Act::None,
            false,
        ),
        (1, 9, 9, 3, 4, Dense { stride: 2, padding }, Act::None, true),
        (2, 5, 3, 7, 6, Pointwise, Act::Relu6, false),
        (2, 6, 4, 5, 3, Pointwise, Act::Relu6, true),
        (2, 9, 7, 5, 5, Depthwise { stride: 2 }, Act::Relu6, false),
    ];
    for (n, h, w, c_in, c_out, conv, act, pool) in cases {
        let x = var(&[n, h, w, c_in], 21, 2.0);
        let weight_shape = match conv {
            Pointwise => vec![c_out, c_in, 1, 1],
            Depthwise { .. } => vec![c_out, 1, 5, 5],
            Dense { .. } => vec![c_out, c_in, 3, 3],
        };
        let wt = var(&weight_shape, 22, 0.7);
        let bias = var(&[c_out], 23, 1.0);
        check(
            &format!("conv+bias {conv:?} {n}x{h}x{w}x{c_in} {act:?} pool {pool}"),
            &[&x, &wt, &bias],
            || {
                let (x, w, b) = (x.as_tensor(), wt.as_tensor(), bias.as_tensor());
                ops::conv_bias_act(x, w, b, conv, act, pool).expect("fast")
            },
            || {
                let (x, w) = (x.as_tensor(), wt.as_tensor());
                let y = match conv {
                    Pointwise => reference::conv1x1(x, w),
                    Depthwise { stride } => reference::depthwise_conv(x, w, stride),
                    Dense { stride, padding } => reference::conv2d(x, w, stride, padding),
                }
                .expect("stock conv");
                let y = y.broadcast_add(bias.as_tensor()).expect("bias");
                let y = reference::activate(y, act).expect("stock");
                if pool {
                    let (n, h, w, c) = y.dims4().expect("dims");
                    let cropped = y.narrow(1, 0, h / 2 * 2).expect("rows");
                    let cropped = cropped.narrow(2, 0, w / 2 * 2).expect("columns");
                    let windows = cropped
                        .reshape((n, h / 2, 2, w / 2, 2, c))
                        .expect("windows");
                    windows.max(4).expect("max").max(2).expect("max")
                } else {
                    y
                }
            },
            1e-4,
        );
    }
    // Frozen filters and input: only the bias gets a gradient, one per active output.
    let x = Tensor::from_vec(values(2 * 5 * 5 * 3, 24), (2, 5, 5, 3), &Device::Cpu).expect("x");
    let frozen =
        Tensor::from_vec(values(4 * 3 * 3 * 3, 25), (4, 3, 3, 3), &Device::Cpu).expect("w");
    let bias = var(&[4], 26, 1.0);
    let conv = Dense { stride: 1, padding };
    let y =
        ops::conv_bias_act(&x, &frozen, bias.as_tensor(), conv, Act::Relu, false).expect("fast");
    let grads = y.sum_all().expect("sum").backward().expect("bwd");
    assert!(grads.get(&frozen).is_none() && grads.get(&x).is_none());
    let g = grads.get(bias.as_tensor()).expect("bias gradient");
    let active: Vec<f32> = y
        .gt(0f32)
        .expect("mask")
        .to_dtype(candle_core::DType::F32)
        .expect("f32")
        .sum((0, 1, 2))
        .expect("sum")
        .to_vec1()
        .expect("vec");
    assert_eq!(g.to_vec1::<f32>().expect("vec"), active);
}
