//! The fuzz targets: seeds, how a case runs, what it may allocate.

use super::*;

use image::{DynamicImage, ImageFormat, RgbImage, RgbaImage};
use transfer_studio::checkpoint::read_checkpoint_bytes;
use transfer_studio::data::decode::{DecodeError, MAX_DECODE_BYTES, MAX_SIDE_PX, decode_rgb_bytes};
use transfer_studio::data::preprocess::Preprocessing;
use transfer_studio::export::{ExportInfo, onnx_model};
use transfer_studio::model::hub::HubConfig;
use transfer_studio::model::{HeadInit, Network, NetworkSpec, Unit};
use transfer_studio::predict::Predictor;
use transfer_studio::train::{TrainPlan, TrainedModel};

// ---- images ------------------------------------------------------------------------------

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).expect("encode");
    bytes.into_inner()
}

fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 17) as u8, (y * 29) as u8, ((x + y) * 7) as u8])
    })
}

/// A JPEG with an EXIF block saying "rotate 90° clockwise" (orientation 6).
fn jpeg_with_orientation() -> Vec<u8> {
    let jpeg = encode(&DynamicImage::ImageRgb8(gradient(12, 8)), ImageFormat::Jpeg);
    // TIFF header (little endian), one IFD entry: 0x0112 SHORT 1 = 6.
    let mut tiff = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0\0\0".to_vec();
    let mut app1 = b"Exif\0\0".to_vec();
    app1.append(&mut tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Seeds in every format the app reads; each decodes as generated.
pub fn image_seeds() -> Vec<Vec<u8>> {
    let rgb = DynamicImage::ImageRgb8(gradient(13, 7));
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(9, 6, |x, y| {
        image::Rgba([x as u8 * 20, y as u8 * 30, 99, (x * y * 9) as u8])
    }));
    let grey16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(7, 5, |x, y| {
        image::Luma([(x * 9000 + y * 300) as u16])
    }));
    let mut seeds = vec![
        encode(&rgb, ImageFormat::Png),
        encode(&rgba, ImageFormat::Png),
        encode(&grey16, ImageFormat::Png),
        encode(&rgb, ImageFormat::Jpeg),
        jpeg_with_orientation(),
        encode(&rgb, ImageFormat::Tiff),
        encode(&DynamicImage::ImageLuma8(rgb.to_luma8()), ImageFormat::Tiff),
        encode(&rgb, ImageFormat::Bmp),
        encode(&rgba, ImageFormat::Gif),
        encode(&rgb, ImageFormat::WebP),
    ];
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    if let Ok(entries) = std::fs::read_dir(corpus) {
        let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        seeds.extend(paths.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    seeds
}

pub fn run_image(bytes: &[u8]) -> String {
    let result = decode_rgb_bytes(bytes);
    if let Ok(image) = &result {
        assert!(image.width() >= 1 && image.height() >= 1);
        assert!(image.width() <= MAX_SIDE_PX && image.height() <= MAX_SIDE_PX);
    }
    match &result {
        // Which decoder failed how is in the message; the kind is what we count.
        Err(DecodeError::Corrupt(m)) if m.contains("decoder failed") => {
            "decoder panic caught".into()
        }
        Err(DecodeError::Corrupt(_)) => "error: corrupt".into(),
        other => outcome(other),
    }
}

#[test]
fn images_decode_or_fail_in_words() {
    let seeds = image_seeds();
    assert!(
        seeds.iter().take(10).all(|s| decode_rgb_bytes(s).is_ok()),
        "every generated seed decodes"
    );
    let rotated = decode_rgb_bytes(&jpeg_with_orientation()).expect("decodes");
    assert_eq!(rotated.dimensions(), (8, 12), "EXIF orientation applied");
    fuzz(
        "image",
        20_000,
        |rng| mutate(&seeds, rng),
        |_| 3 * MAX_DECODE_BYTES as usize + 64 * MIB,
        run_image,
    );
}

// ---- .pth checkpoints -------------------------------------------------------------------------

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::fixture(name)).expect("fixture")
}

/// The entries of a zip archive, in order.
fn zip_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).expect("entry");
            let mut data = Vec::new();
            file.read_to_end(&mut data).expect("read");
            (file.name().expect("name").into_owned(), data)
        })
        .collect()
}

/// A torch zip checkpoint with these entries: stored, with correct CRCs, so that mutations of
/// `data.pkl` reach the pickle reader instead of stopping at the zip's checksum.
fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        writer.start_file(name.as_str(), options).expect("start");
        writer.write_all(data).expect("write");
    }
    writer.finish().expect("finish").into_inner()
}

pub fn run_checkpoint(bytes: &[u8]) -> String {
    let result = read_checkpoint_bytes(bytes);
    if let Ok(checkpoint) = &result {
        for tensor in &checkpoint.tensors {
            if let Some(values) = tensor.to_f32() {
                assert_eq!(values.len(), tensor.numel(), "{}", tensor.name);
            }
        }
    }
    outcome(&result)
}

#[test]
fn pth_files_import_or_fail_in_words() {
    let zip = fixture("torch/tiny_zip.pth");
    let legacy = fixture("torch/tiny_legacy.pth");
    let entries = zip_entries(&zip);
    let pickle_at = entries
        .iter()
        .position(|(n, _)| n.ends_with("data.pkl"))
        .expect("data.pkl");
    let pickles = vec![entries[pickle_at].1.clone()];
    let whole = vec![zip.clone(), legacy.clone(), fixture("torch/self_loop.pth")];
    assert_eq!(run_checkpoint(&zip_of(&entries)), "ok");
    fuzz(
        "pth",
        20_000,
        |rng| {
            if rng.random_bool(0.5) {
                return mutate(&whole, rng);
            }
            // The pickle inside a well-formed archive; or one storage's bytes.
            let mut edited = entries.clone();
            let at = if rng.random_bool(0.8) {
                pickle_at
            } else {
                rng.random_range(0..edited.len())
            };
            let seed = if at == pickle_at {
                pickles.clone()
            } else {
                vec![edited[at].1.clone()]
            };
            edited[at].1 = mutate(&seed, rng);
            zip_of(&edited)
        },
        |len| 64 * len + 16 * MIB,
        run_checkpoint,
    );
}

// ---- saved models -----------------------------------------------------------------------------

/// A small saved model (EfficientNet-Lite0 cut after its stem, 3 classes): its two files.
fn saved_model_files() -> (Vec<u8>, Vec<u8>) {
    let spec = NetworkSpec {
        backbone: "efficientnet-lite0".parse().expect("registered"),
        cut_after: Unit::Stem,
        num_classes: 3,
        trainable_units: 0,
        bn_momentum: 0.1,
    };
    let network = Network::build(spec, None, HeadInit::Random, 1, &Device::Cpu).expect("build");
    let model = TrainedModel {
        network: std::sync::Arc::new(network),
        classes: vec!["cat".into(), "dog".into(), "newt".into()],
        preprocessing: Preprocessing::for_size(32),
        plan: TrainPlan::default(),
        pretrained: None,
        training_folder: None,
    };
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("model");
    model.save(&path, None).expect("save");
    let read = |name: &str| std::fs::read(path.join(name)).expect("read");
    (read("model.json"), read("model.safetensors"))
}

/// `model.json` with the weights' sha256 set to that of `weights` (so that edits of the
/// weights reach the safetensors reader and the network builder).
fn with_checksum(manifest: &[u8], weights: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(manifest) else {
        return manifest.to_vec();
    };
    let sha: String = sha2::Sha256::digest(weights)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json["weights_sha256"] = serde_json::Value::String(sha);
    serde_json::to_vec(&json).unwrap_or_else(|_| manifest.to_vec())
}

/// A case's two files in one input: the manifest's length (4 bytes), it, the weights.
fn pack(manifest: &[u8], weights: &[u8]) -> Vec<u8> {
    let mut out = (manifest.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(manifest);
    out.extend_from_slice(weights);
    out
}

pub fn run_saved_model(input: &[u8]) -> String {
    let len = u32::from_le_bytes(input[..4].try_into().expect("4 bytes")) as usize;
    let (manifest, weights) = input[4..].split_at(len);
    let result = TrainedModel::from_bytes(Path::new("fuzzed"), manifest, weights, &Device::Cpu);
    if let Ok((model, _)) = &result {
        // A model that opens must also predict.
        let predictor = Predictor::from_network(
            &model.network,
            model.classes.clone(),
            model.preprocessing.clone(),
        )
        .expect("predictor");
        let crop = predictor.preprocessing().eval_crop(&gradient(40, 30));
        let probs = predictor.probabilities(&[crop]).expect("predict");
        assert_eq!(probs[0].len(), model.classes.len());
    }
    outcome(&result)
}

#[test]
fn saved_models_open_or_fail_in_words() {
    let (manifest, weights) = saved_model_files();
    assert_eq!(run_saved_model(&pack(&manifest, &weights)), "ok");
    let manifests = vec![manifest.clone()];
    let weight_seeds = vec![weights.clone()];
    fuzz(
        "saved-model",
        5_000,
        |rng| match rng.random_range(0..3) {
            0 => pack(&mutate(&manifests, rng), &weights),
            1 => pack(&mutate_json(&manifest, rng), &weights),
            _ => {
                let edited = mutate(&weight_seeds, rng);
                pack(&with_checksum(&manifest, &edited), &edited)
            }
        },
        |len| 64 * len + 32 * MIB,
        run_saved_model,
    );
}

// ---- the hub's config.json --------------------------------------------------------------------

const CONFIGS: [&str; 3] = [
    r#"{"architecture": "resnet18", "pretrained_cfg": {"input_size": [3, 224, 224],
        "interpolation": "bilinear", "crop_pct": 0.875, "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225], "num_classes": 1000}}"#,
    r#"{"architecture": "vgg16", "num_classes": 1000, "pretrained_cfg": {"crop_pct": 1.0,
        "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "tag": "tv_in1k"}}"#,
    r#"{"architectures": ["ResNetForImageClassification"], "model_type": "resnet"}"#,
];

pub fn run_config(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let result = HubConfig::parse(&text);
    if let Ok(Some(config)) = &result {
        for size in [16, 224, 1024] {
            let pre = config.preprocessing(size);
            assert_eq!(pre.validate(), Ok(()), "{config:?} at {size} px");
        }
    }
    outcome(&result)
}

#[test]
fn hub_configs_parse_or_fail_in_words() {
    let seeds: Vec<Vec<u8>> = CONFIGS.iter().map(|c| c.as_bytes().to_vec()).collect();
    fuzz(
        "config",
        20_000,
        |rng| {
            let seed = &seeds[rng.random_range(0..seeds.len())];
            if rng.random_bool(0.5) {
                mutate_json(seed, rng)
            } else {
                mutate(&seeds, rng)
            }
        },
        |len| 64 * len + 4 * MIB,
        run_config,
    );
}

// ---- ONNX export round trip -------------------------------------------------------------------

/// A label of random length and characters (quotes, control characters, non-Latin text).
fn random_label(rng: &mut ChaCha8Rng) -> String {
    const PIECES: [&str; 10] = ["a", "Z", " ", "\"", "\\", "\n", "\u{0}", "é", "猫", "🦎"];
    let len = [0, 1, 3, 12, 300][rng.random_range(0..5)];
    (0..len)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect()
}

#[test]
fn onnx_export_round_trips() {
    use onnx_protobuf::{Message, ModelProto};
    let networks: Vec<Network> = [
        ("efficientnet-lite0", Unit::Block(0)),
        ("resnet18", Unit::Stem),
    ]
    .into_iter()
    .map(|(name, cut_after)| {
        let spec = NetworkSpec {
            backbone: name.parse().expect("registered"),
            cut_after,
            num_classes: 4,
            trainable_units: 0,
            bn_momentum: 0.1,
        };
        Network::build(spec, None, HeadInit::Random, 3, &Device::Cpu).expect("build")
    })
    .collect();
    fuzz(
        "onnx",
        2_000,
        |rng| {
            // The input is the case's choices: network, labels, crop size.
            let labels: Vec<String> = (0..4).map(|_| random_label(rng)).collect();
            let pick = rng.random_range(0..networks.len()) as u8;
            let size = rng.random_range(16..=256u32);
            serde_json::to_vec(&(pick, labels, size)).expect("json")
        },
        |len| 64 * len + 64 * MIB,
        |input| {
            let (pick, labels, size): (u8, Vec<String>, u32) =
                serde_json::from_slice(input).expect("choices");
            let network = &networks[usize::from(pick)];
            let predictor =
                Predictor::from_network(network, labels.clone(), Preprocessing::imagenet(size))
                    .expect("predictor");
            let info = ExportInfo {
                backbone: network.spec.backbone,
                cut_after: network.spec.cut_after,
                metrics: None,
                precision: transfer_studio::export::Precision::F32,
            };
            let model = onnx_model(&predictor, &info).expect("export");
            let bytes = model.write_to_bytes().expect("encode");
            let back = ModelProto::parse_from_bytes(&bytes).expect("decode");
            assert_eq!(back, model, "the file reads back as written");
            let meta: BTreeMap<&str, &str> = back
                .metadata_props
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str()))
                .collect();
            let read: Vec<String> = serde_json::from_str(meta["labels"]).expect("labels");
            assert_eq!(read, labels);
            let pre = Preprocessing::imagenet(size);
            assert_eq!(meta["image_size"], pre.image_size_px.to_string());
            assert_eq!(meta["resize"], pre.resize_px.to_string());
            "ok".into()
        },
    );
}

/// TIFF headers: interesting integers written over the tag values of generated TIFFs, which
/// reaches the decoders' size arithmetic (where the `tiff` crate asserts instead of erroring).
#[test]
fn tiff_headers_decode_or_fail_in_words() {
    let seeds: Vec<Vec<u8>> = image_seeds()
        .into_iter()
        .filter(|s| s.starts_with(b"II*\0") || s.starts_with(b"MM\0*"))
        .collect();
    assert!(seeds.len() >= 5);
    fuzz(
        "tiff-header",
        10_000,
        |rng| {
            let mut data = seeds[rng.random_range(0..seeds.len())].clone();
            for _ in 0..rng.random_range(1..4) {
                let value = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
                let value = if rng.random_bool(0.3) {
                    rng.random_range(0..64)
                } else {
                    value
                };
                let at = match ifd_range(&data) {
                    Some(range) if rng.random_bool(0.8) => rng.random_range(range),
                    _ => rng.random_range(0..data.len().saturating_sub(4).max(1)),
                };
                let width = if rng.random_bool(0.5) { 2 } else { 4 };
                let bytes = value.to_le_bytes();
                let end = (at + width).min(data.len());
                data[at..end].copy_from_slice(&bytes[..end - at]);
            }
            data
        },
        |_| 3 * MAX_DECODE_BYTES as usize + 64 * MIB,
        run_image,
    );
}

/// Where a little-endian TIFF's first IFD lies (its entries, not the header).
fn ifd_range(data: &[u8]) -> Option<std::ops::Range<usize>> {
    let at = u32::from_le_bytes(data.get(4..8)?.try_into().ok()?) as usize;
    let entries = usize::from(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?));
    let end = (at + 2 + 12 * entries).min(data.len().saturating_sub(4));
    (at + 2 < end).then_some(at + 2..end)
}
