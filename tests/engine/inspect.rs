//! Looking inside the network: `inspect` (activation maps) and `explain` (Grad-CAM).

use crate::common;

use common::{binary, json_of};

use std::path::Path;

use candle_core::Device;
use transfer_studio::inspect::{activation_maps, grad_cam, spatial_units};
use transfer_studio::model::Unit;
use transfer_studio::predict::Predictor;

fn png_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).expect("a PNG was written")
}

fn cat() -> image::RgbImage {
    image::open(common::fixture("chelsea.png"))
        .expect("fixture")
        .to_rgb8()
}

#[test]
fn inspect_json_lists_the_strongest_channels_and_writes_their_grid() {
    let out = tempfile::tempdir().expect("out");
    let png = out.path().join("maps.png");
    let json = json_of(
        binary()
            .args(["inspect", "--unit", "block3", "--json", "--out"])
            .arg(&png)
            .arg(common::fixture("chelsea.png")),
    );
    assert_eq!(json["unit"], "block3");
    assert_eq!(json["backbone"], "efficientnet-lite0");
    assert_eq!(json["map"]["rows"], 28);
    assert_eq!(json["map"]["columns"], 28);
    assert_eq!(json["channels_total"], 40);
    let channels = json["channels"].as_array().expect("channels");
    assert_eq!(channels.len(), 16);
    let means: Vec<f64> = channels
        .iter()
        .map(|c| c["mean_activation"].as_f64().expect("mean"))
        .collect();
    assert!(means.windows(2).all(|w| w[0] >= w[1]), "{means:?}");
    for c in channels {
        assert!(c["max_activation"].as_f64() >= c["mean_activation"].as_f64());
    }
    // 4 × 4 tiles of 112 px with 4 px gaps.
    assert_eq!(png_size(&png), (4 * 112 + 5 * 4, 4 * 112 + 5 * 4));
}

#[test]
fn inspect_refuses_units_without_a_map_in_words() {
    let out = tempfile::tempdir().expect("out");
    for (unit, says) in [("fc7", "has no unit fc7"), ("99", "block99")] {
        let output = binary()
            .args(["inspect", "--unit", unit, "--out"])
            .arg(out.path().join("x.png"))
            .arg(common::fixture("chelsea.png"))
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(says), "{unit}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(!out.path().join("x.png").exists());
}

#[test]
fn explain_json_gives_the_top1_and_a_grid_over_the_crop() {
    let out = tempfile::tempdir().expect("out");
    let png = out.path().join("heat.png");
    let image = common::fixture("chelsea.png");
    let top = json_of(
        binary()
            .args(["predict", "--json", "--top-k", "1"])
            .arg(&image),
    );
    let json = json_of(
        binary()
            .args(["explain", "--json", "--out"])
            .arg(&png)
            .arg(&image),
    );
    assert_eq!(json["class_index"], top[0]["top"][0]["index"]);
    assert_eq!(json["label"], top[0]["top"][0]["label"]);
    let prob = json["prob"].as_f64().expect("prob");
    let predicted = top[0]["top"][0]["prob"].as_f64().expect("prob");
    assert!((prob - predicted).abs() < 1e-4, "{prob} vs {predicted}");
    assert_eq!(json["image"], image.to_string_lossy().as_ref());
    let grid: Vec<Vec<f64>> = serde_json::from_value(json["grid"].clone()).expect("grid");
    assert_eq!((grid.len(), grid[0].len()), (7, 7));
    let values: Vec<f64> = grid.into_iter().flatten().collect();
    assert!(values.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(values.iter().copied().fold(0.0, f64::max), 1.0);
    assert_eq!(png_size(&png), (224, 224));

    // Another class by label: its own map.
    let dog = json_of(
        binary()
            .args(["explain", "--json", "--class", "Golden Retriever", "--out"])
            .arg(out.path().join("dog.png"))
            .arg(&image),
    );
    assert_eq!(dog["class_index"], 207);
    assert_ne!(dog["grid"], json["grid"]);
}

/// For a pooled linear classifier, Grad-CAM is the class activation map: ReLU(Σ_k w_ck A_k),
/// computed here from the parts without gradients.
#[test]
fn grad_cam_on_a_pooled_linear_head_equals_the_class_activation_map() {
    common::init();
    let predictor = Predictor::imagenet(&Device::Cpu).expect("bundled network");
    let crop = predictor.preprocessing().eval_crop(&cat());
    let explanation = grad_cam(&predictor, &crop, None).expect("grad-cam");
    assert_eq!(explanation.unit, Unit::Head);
    let input = predictor
        .preprocessing()
        .batch_tensor(std::slice::from_ref(&crop), &Device::Cpu)
        .expect("input");
    let folded = predictor.folded();
    let map = folded
        .forward_units(&input, 0, folded.unit_count())
        .expect("map")
        .squeeze(0)
        .expect("one image");
    let (rows, columns, channels) = map.dims3().expect("HWC");
    let map = map
        .flatten_all()
        .and_then(|m| m.to_vec1::<f32>())
        .expect("map");
    let weights = predictor
        .classifier()
        .0
        .get(explanation.class_index)
        .and_then(|w| w.to_vec1::<f32>())
        .expect("class weights");
    let cam: Vec<f32> = map
        .chunks_exact(channels)
        .map(|pixel| {
            pixel
                .iter()
                .zip(&weights)
                .map(|(a, w)| a * w)
                .sum::<f32>()
                .max(0.0)
        })
        .collect();
    let max = cam.iter().copied().fold(0f32, f32::max);
    assert!(max > 0.0);
    let ours: Vec<f32> = explanation.grid.iter().flatten().copied().collect();
    assert_eq!(ours.len(), rows * columns);
    for (a, b) in ours.iter().zip(&cam) {
        assert!((a - b / max).abs() < 1e-4, "{a} vs {}", b / max);
    }
}

/// A model cut early (Start of ConvNet) is explained at its cut, and inspected only up to it.
#[test]
fn a_truncated_model_is_explained_at_its_cut() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 6, 40, 3);
    let out = tempfile::tempdir().expect("out");
    let model = out.path().join("model");
    let status = binary()
        .args([
            "train",
            "--case",
            "small-different",
            "--cut-after",
            "block5",
        ])
        .args(["--image-size", "32", "--epochs", "2", "--json"])
        .arg("--data")
        .arg(data.path())
        .arg("--out")
        .arg(&model)
        .output()
        .expect("train");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let image = data.path().join("circle").read_dir().expect("class").next();
    let image = image.expect("an image").expect("entry").path();
    let json = json_of(
        binary()
            .arg("explain")
            .arg("--model")
            .arg(&model)
            .args(["--json", "--class", "1", "--out"])
            .arg(out.path().join("heat.png"))
            .arg(&image),
    );
    assert_eq!(json["unit"], "block5");
    assert_eq!(json["class_index"], 1);
    // block5 of Lite0 has stride 16: a 32 px crop gives a 2 × 2 grid.
    let grid: Vec<Vec<f64>> = serde_json::from_value(json["grid"].clone()).expect("grid");
    assert_eq!((grid.len(), grid[0].len()), (2, 2));

    let (trained, _) =
        transfer_studio::train::TrainedModel::load(&model, &Device::Cpu).expect("load");
    let predictor =
        Predictor::from_network(&trained.network, trained.classes, trained.preprocessing)
            .expect("predictor");
    assert_eq!(spatial_units(&predictor).last(), Some(&Unit::Block(5)));
    let crop = predictor
        .preprocessing()
        .eval_crop(&image::open(&image).expect("image").to_rgb8());
    let error = activation_maps(&predictor, &crop, &[Unit::Block(9)], 4).expect_err("cut away");
    assert!(error.to_string().contains("cut away"), "{error}");
}
