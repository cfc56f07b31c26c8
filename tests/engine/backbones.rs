//! The torchvision networks: parity with torchvision (logits from
//! `scripts/make_backbone_fixtures.py`), timm's naming, the hub cache and its offline error,
//! a training step per network, save → load → predict.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use transfer_studio::data::dataset::{LoadOptions, LoadProgress, load_dataset};
use transfer_studio::data::preprocess::Preprocessing;
use transfer_studio::model::hub::Hub;
use transfer_studio::model::{
    Backbone, HeadInit, Init, Network, NetworkSpec, Unit, Weights, WeightsSource,
};
use transfer_studio::predict::Predictor;
use transfer_studio::train::{
    Case, DataSource, TrainEvent, TrainJob, TrainPlan, TrainedModel, spawn_training,
};

fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The script's formula for element `i` of tensor `name` (see make_backbone_fixtures.py).
fn synthetic_tensor(name: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let phase = (fnv1a(name) % 1000) as f64 / 1000.0 * 2.0 * std::f64::consts::PI;
    let values: Vec<f32> = (0..n)
        .map(|i| {
            let raw = ((i as f64 + 1.0) * std::f64::consts::FRAC_1_SQRT_2 + phase).sin();
            let v = if name.ends_with("running_var") {
                0.5 + 0.25 * (raw + 1.0)
            } else if name.ends_with("running_mean") {
                0.1 * raw
            } else if name.ends_with("bias") {
                0.05 * raw
            } else if shape.len() == 1 {
                1.0 + 0.1 * raw
            } else {
                raw * (3.0 / (n / shape[0]) as f64).sqrt()
            };
            v as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor")
}

/// Every tensor the pretrained `backbone` has, filled by the formula.
pub(crate) fn synthetic_weights(backbone: Backbone) -> Weights {
    let spec = NetworkSpec::pretrained(backbone);
    let random =
        Network::build(spec, None, HeadInit::Random, 0, &Device::Cpu).expect("random network");
    let tensors: HashMap<String, Tensor> = random
        .named_tensors()
        .into_iter()
        .map(|(name, t)| {
            let tensor = synthetic_tensor(&name, t.dims());
            (name, tensor)
        })
        .collect();
    Weights::from_tensors(tensors)
}

/// The script's input, NHWC: `0.5 sin(0.37 (c·S² + y·S + x) + 0.11 n)`.
fn synthetic_input(batch: usize, side: usize) -> Tensor {
    let mut values = Vec::with_capacity(batch * side * side * 3);
    for n in 0..batch {
        for y in 0..side {
            for x in 0..side {
                for c in 0..3 {
                    let flat = (c * side * side + y * side + x) as f64;
                    values.push((0.5 * (0.37 * flat + 0.11 * n as f64).sin()) as f32);
                }
            }
        }
    }
    Tensor::from_vec(values, (batch, side, side, 3), &Device::Cpu).expect("input")
}

fn logits_of(backbone: Backbone, weights: &Weights, side: usize) -> Vec<Vec<f32>> {
    let network = Network::build(
        NetworkSpec::pretrained(backbone),
        Some(weights),
        HeadInit::FromWeights,
        0,
        &Device::Cpu,
    )
    .expect("network");
    let labels = (0..1000).map(|i| format!("c{i}")).collect();
    let predictor =
        Predictor::from_network(&network, labels, Preprocessing::imagenet(224)).expect("predictor");
    predictor
        .logits(&synthetic_input(2, side))
        .expect("logits")
        .to_vec2()
        .expect("values")
}

fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = row.iter().map(|&v| f64::from(v - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// Logits within 1e-3 of torchvision's (relative to their scale), probabilities within 1e-3.
fn assert_matches_torchvision(name: &str, ours: &[Vec<f32>]) {
    let fixtures: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("backbones.json")).expect("fixture"),
    )
    .expect("json");
    let reference: Vec<Vec<f32>> =
        serde_json::from_value(fixtures[name]["logits"].clone()).expect("logits");
    assert_eq!(ours.len(), reference.len());
    for (a, b) in ours.iter().zip(&reference) {
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            worst <= 1e-3 * scale,
            "{name}: logits differ by {worst} (scale {scale})"
        );
        let (pa, pb) = (softmax(a), softmax(b));
        let worst_p = pa
            .iter()
            .zip(&pb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(worst_p <= 1e-3, "{name}: probabilities differ by {worst_p}");
    }
}

fn parity(name: &str) {
    common::init();
    let backbone: Backbone = name.parse().expect("registered");
    let weights = synthetic_weights(backbone);
    assert_matches_torchvision(name, &logits_of(backbone, &weights, 64));
}

#[test]
fn resnet18_matches_torchvision() {
    parity("resnet18");
}

#[test]
fn resnet50_matches_torchvision() {
    parity("resnet50");
}

/// VGG16 with torchvision's names, and again with timm's (fc6/fc7 stored as convolutions).
#[test]
fn vgg16_matches_torchvision_under_both_naming_schemes() {
    common::init();
    let vgg: Backbone = "vgg16".parse().expect("registered");
    let weights = synthetic_weights(vgg);
    let torchvision = logits_of(vgg, &weights, 64);
    assert_matches_torchvision("vgg16", &torchvision);

    let timm_name = |name: &str| {
        [
            ("classifier.0", "pre_logits.fc1"),
            ("classifier.3", "pre_logits.fc2"),
            ("classifier.6", "head.fc"),
        ]
        .iter()
        .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")))
    };
    let mut timm = HashMap::new();
    for name in weights.names().map(str::to_owned).collect::<Vec<_>>() {
        let t = weights.tensor(&name).expect("tensor").clone();
        let t = match name.as_str() {
            "classifier.0.weight" => t.reshape((4096, 512, 7, 7)).expect("fc1 as conv"),
            "classifier.3.weight" => t.reshape((4096, 4096, 1, 1)).expect("fc2 as conv"),
            _ => t,
        };
        timm.insert(timm_name(&name).unwrap_or(name), t);
    }
    let adapted = vgg
        .adapt_weights(Weights::from_tensors(timm))
        .expect("timm names");
    assert_eq!(logits_of(vgg, &adapted, 64), torchvision);
}

/// A hub cache laid out as huggingface_hub does: refs/main → snapshot → blob named by sha256.
fn fill_cache(cache: &Path, repo: &str, weights: &[u8], config: &str) {
    use sha2::Digest;
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(root.join("refs")).expect("refs");
    std::fs::write(root.join("refs/main"), commit).expect("ref");
    let snapshot = root.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).expect("snapshot");
    std::fs::create_dir_all(root.join("blobs")).expect("blobs");
    let sha: String = sha2::Sha256::digest(weights)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let blob = root.join("blobs").join(&sha);
    std::fs::write(&blob, weights).expect("blob");
    std::os::unix::fs::symlink(&blob, snapshot.join("model.safetensors")).expect("link");
    std::fs::write(snapshot.join("config.json"), config).expect("config");
}

pub(crate) const TIMM_CONFIG: &str = r#"{"architecture": "resnet18", "pretrained_cfg": {
    "input_size": [3, 224, 224], "interpolation": "bilinear", "crop_pct": 0.875,
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}"#;

pub(crate) fn safetensors_bytes(weights: &Weights) -> Vec<u8> {
    let tensors: HashMap<String, Tensor> = weights
        .names()
        .map(|n| (n.to_owned(), weights.tensor(n).expect("tensor").clone()))
        .collect();
    let file = tempfile::NamedTempFile::new().expect("tmp");
    candle_core::safetensors::save(&tensors, file.path()).expect("save");
    std::fs::read(file.path()).expect("read")
}

pub(crate) fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_transfer-studio"))
}

/// A cached repository is used with no network (the endpoint is a closed port); a missing
/// one fails in words; a damaged blob is refused.
#[test]
fn the_hub_cache_is_used_offline_and_missing_files_fail_in_words() {
    common::init();
    let home = tempfile::tempdir().expect("HF_HOME");
    let cache = home.path().join("hub");
    let resnet: Backbone = "resnet18".parse().expect("registered");
    let bytes = safetensors_bytes(&synthetic_weights(resnet));
    fill_cache(&cache, "test/resnet18", &bytes, TIMM_CONFIG);
    let files = Hub::with_cache(cache.clone(), Some("http://127.0.0.1:9".into()))
        .fetch("test/resnet18", None)
        .expect("cached");
    assert!(files.config.is_some() && files.expected_sha256.is_some());

    let image = common::fixture("coffee.png");
    let offline = |cmd: &mut Command| {
        cmd.env("HF_HOME", home.path())
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .output()
            .expect("runs")
    };
    let ok = offline(
        binary()
            .args(["predict", "--backbone", "resnet18", "--weights"])
            .args(["hf:test/resnet18", "--json", image.to_str().expect("utf-8")]),
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(json[0]["top"].as_array().map(Vec::len), Some(5));

    let missing = offline(
        binary()
            .args(["predict", "--backbone", "resnet18", "--weights"])
            .args(["hf:test/not-cached", image.to_str().expect("utf-8")]),
    );
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    for needle in ["hf:test/not-cached", "model.safetensors", "--weights FILE"] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    assert!(err.contains(&*cache.to_string_lossy()), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A blob whose bytes do not match its sha256 name: refused.
    let blob_dir = cache.join("models--test--resnet18/blobs");
    let blob = std::fs::read_dir(&blob_dir)
        .expect("blobs")
        .next()
        .expect("one")
        .expect("entry")
        .path();
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    std::fs::write(&blob, damaged).expect("damage");
    let corrupt = offline(
        binary()
            .args(["predict", "--backbone", "resnet18", "--weights"])
            .args(["hf:test/resnet18", image.to_str().expect("utf-8")]),
    );
    assert!(!corrupt.status.success());
    assert!(String::from_utf8_lossy(&corrupt.stderr).contains("sha256"));
}

fn shapes_dataset(root: &Path) -> Arc<transfer_studio::data::dataset::Dataset> {
    common::write_shapes(root, 2, 4, 40, 11);
    let options = LoadOptions {
        cache_short_side_px: 37,
        ..LoadOptions::default()
    };
    Arc::new(load_dataset(root, &options, &LoadProgress::default()).expect("dataset"))
}

/// One short training run per network (random init: no weights file needed), saved, loaded
/// without naming the network, and used to predict.
#[test]
fn each_network_trains_a_step_and_its_saved_model_predicts() {
    common::init();
    let data = tempfile::tempdir().expect("data");
    let dataset = shapes_dataset(data.path());
    for (name, cut) in [
        ("resnet18", Unit::Block(7)),
        ("resnet50", Unit::Block(3)),
        ("vgg16", Unit::Block(4)),
    ] {
        let backbone: Backbone = name.parse().expect("registered");
        let plan = TrainPlan {
            cut_after: cut,
            init: Init::Random,
            epochs: 1,
            image_size_px: 32,
            batch_size: 4,
            augment: false,
            ..Case::LargeDifferent.plan_for(backbone)
        };
        let job = TrainJob {
            data: DataSource::Loaded(dataset.clone()),
            plan,
            device: Device::Cpu,
        };
        let handle = spawn_training(job, None).expect("spawn");
        let outcome = handle
            .events
            .iter()
            .find_map(|e| match e {
                TrainEvent::Finished(o) => Some(o),
                TrainEvent::Failed { error } => panic!("{name}: {error}"),
                _ => None,
            })
            .expect("finished");
        assert!(outcome.report.trainable_parameters > 0);
        let out = tempfile::tempdir().expect("out");
        let dir = out.path().join(name);
        outcome.model.save(&dir, None).expect("save");
        let (loaded, manifest) = TrainedModel::load(&dir, &Device::Cpu).expect("load");
        assert_eq!(manifest.backbone, backbone);
        assert_eq!(manifest.cut_after, cut);
        let predictor = Predictor::from_network(
            &loaded.network,
            loaded.classes.clone(),
            loaded.preprocessing.clone(),
        )
        .expect("predictor");
        let top = predictor
            .classify_images(&[common::shape_image(0, 40, 3)], 2)
            .expect("classify");
        assert_eq!(top[0].len(), 2);
    }
}

/// Presets on every network: the cut points exist; VGG's End of ConvNet keeps fc6 and fc7.
#[test]
fn presets_fit_every_network() {
    for backbone in Backbone::all() {
        for case in Case::ALL {
            let plan = case.plan_for(backbone);
            plan.validate().expect("valid");
            assert_eq!(Case::matching(&plan), Some(case), "{backbone:?} {case}");
        }
        assert!(backbone.has_unit(backbone.generic_cut()));
        for unit in backbone.probe_units() {
            assert!(backbone.has_unit(unit), "{backbone:?} {unit}");
        }
    }
    let vgg: Backbone = "vgg16".parse().expect("registered");
    assert_eq!(Case::SmallSimilar.plan_for(vgg).cut_after, Unit::Fc(7));
    assert_eq!(vgg.info(Unit::Fc(7)).out_channels, 4096);
    assert_eq!(
        WeightsSource::Hub("timm/vgg16.tv_in1k".into()),
        vgg.default_weights()
    );
}
