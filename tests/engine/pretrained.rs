//! The bundled network against PyTorch's reference figures for the same weights.

use crate::common;

use candle_core::{Device, Tensor};
use transfer_studio::data::decode::decode_rgb;
use transfer_studio::data::preprocess::Preprocessing;
use transfer_studio::predict::Predictor;

fn reference_input_chw() -> Vec<f32> {
    let bytes = std::fs::read(common::fixture("lite0_chelsea_input_3x224x224_f32le.bin"))
        .expect("reference input");
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn reference_logits() -> Vec<f32> {
    let text =
        std::fs::read_to_string(common::fixture("lite0_chelsea_logits.json")).expect("logits");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    json["logits"]
        .as_array()
        .expect("logits array")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

fn chw_to_hwc(chw: &[f32], side: usize) -> Vec<f32> {
    let plane = side * side;
    let mut hwc = vec![0f32; chw.len()];
    for c in 0..3 {
        for i in 0..plane {
            hwc[i * 3 + c] = chw[c * plane + i];
        }
    }
    hwc
}

#[test]
fn logits_match_pytorch_on_the_reference_input() {
    common::init();
    let device = Device::Cpu;
    let predictor = Predictor::imagenet(&device).expect("bundled network");
    let input = Tensor::from_vec(
        chw_to_hwc(&reference_input_chw(), 224),
        (1, 224, 224, 3),
        &device,
    )
    .expect("tensor");
    let logits: Vec<f32> = predictor
        .logits(&input)
        .expect("forward")
        .flatten_all()
        .expect("flatten")
        .to_vec1()
        .expect("values");
    let expected = reference_logits();
    assert_eq!(logits.len(), 1000);
    let max_diff = logits
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("max |logit - pytorch| = {max_diff:.5}");
    // The bundled weights are f16; a padding or normalisation error moves logits by 1.0-1.65.
    assert!(max_diff < 0.05, "max abs logit difference {max_diff}");
}

#[test]
fn preprocessing_reproduces_the_reference_tensor() {
    let image = decode_rgb(&common::fixture("chelsea.png")).expect("decode");
    let pre = Preprocessing::default();
    let crop = pre.eval_crop(&image);
    let mut ours = vec![0f32; 224 * 224 * 3];
    pre.normalize_into(&crop, &mut ours);
    let reference = chw_to_hwc(&reference_input_chw(), 224);
    let max_diff = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // Bit-exact Pillow resampling: identical up to float rounding of the normalisation.
    assert!(max_diff < 1e-6, "max abs input difference {max_diff}");
}

fn top(predictor: &Predictor, name: &str) -> Vec<(usize, f32)> {
    let image = decode_rgb(&common::fixture(name)).expect("decode");
    predictor.classify_images(&[image], 5).expect("classify")[0]
        .iter()
        .map(|c| (c.index, c.prob))
        .collect()
}

#[test]
fn golden_photos_are_recognised() {
    common::init();
    let predictor = Predictor::imagenet(&Device::Cpu).expect("bundled network");

    let cat = top(&predictor, "chelsea.png");
    assert!((281..=285).contains(&cat[0].0), "chelsea top-1 {cat:?}");
    let cat_mass: f32 = cat
        .iter()
        .filter(|(i, _)| (281..=285).contains(i))
        .map(|(_, p)| p)
        .sum();
    assert!(cat_mass >= 0.85, "cat classes sum to {cat_mass}");

    let coffee = top(&predictor, "coffee.png");
    assert_eq!(coffee[0].0, 967, "coffee top-1 {coffee:?}");
    assert!(coffee[0].1 >= 0.9, "espresso probability {}", coffee[0].1);
}

#[test]
fn top5_order_matches_the_pytorch_reference() {
    common::init();
    let predictor = Predictor::imagenet(&Device::Cpu).expect("bundled network");
    let text = std::fs::read_to_string(common::fixture("lite0_imagenet_top5.json")).expect("read");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    for name in ["chelsea.png", "coffee.png", "rocket.jpg"] {
        let expected: Vec<(usize, f32)> = json["top5_per_photo"][name]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                (
                    e[0].as_u64().expect("index") as usize,
                    e[2].as_f64().expect("p") as f32,
                )
            })
            .collect();
        let ours = top(&predictor, name);
        let our_order: Vec<usize> = ours.iter().map(|(i, _)| *i).collect();
        let their_order: Vec<usize> = expected.iter().map(|(i, _)| *i).collect();
        assert_eq!(our_order, their_order, "{name}: {ours:?} vs {expected:?}");
        for ((_, p), (_, q)) in ours.iter().zip(&expected) {
            assert!((p - q).abs() < 0.01, "{name}: probability {p} vs {q}");
        }
    }
}
