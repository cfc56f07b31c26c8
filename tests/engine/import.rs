//! The PyTorch checkpoint importer, on checkpoints written by torch itself
//! (tests/fixtures/torch/make_fixtures.py) and on hostile pickles.

use crate::common;

use std::io::Write;
use std::path::Path;

use transfer_studio::checkpoint::{self, CheckpointError, CheckpointFormat, FloatStorage};
use transfer_studio::data::decode::decode_rgb;

fn import(input: &Path, out_dir: &Path, name: &str) -> Vec<u8> {
    let out = out_dir.join(name);
    checkpoint::import_weights(input, &out, FloatStorage::Keep).expect("import");
    std::fs::read(out).expect("read output")
}

#[test]
fn legacy_and_zip_files_of_the_same_tensors_give_identical_safetensors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from_zip = import(
        &common::fixture("torch/tiny_zip.pth"),
        dir.path(),
        "zip.safetensors",
    );
    let from_legacy = import(
        &common::fixture("torch/tiny_legacy.pth"),
        dir.path(),
        "legacy.safetensors",
    );
    assert!(!from_zip.is_empty());
    assert_eq!(from_zip, from_legacy);
}

#[test]
fn imported_values_match_what_torch_saved() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("torch/tiny_expected.json")).expect("read"),
    )
    .expect("json");
    for (file, format) in [
        ("torch/tiny_zip.pth", CheckpointFormat::Zip),
        ("torch/tiny_legacy.pth", CheckpointFormat::Legacy),
    ] {
        let ckpt = checkpoint::read_checkpoint(&common::fixture(file)).expect("read");
        assert_eq!(ckpt.format, format);
        assert_eq!(
            ckpt.skipped_entries,
            vec!["epoch".to_string(), "arch".to_string()]
        );
        let entries = expected.as_object().expect("object");
        assert_eq!(ckpt.tensors.len(), entries.len());
        for (name, info) in entries {
            let tensor = ckpt
                .get(&format!("state_dict.{name}"))
                .unwrap_or_else(|| panic!("{file}: {name} missing"));
            let shape: Vec<usize> = info["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            assert_eq!(tensor.shape, shape, "{file}: {name}");
            // Compared at f32, the precision torch stored (JSON holds them as doubles).
            let values: Vec<f32> = info["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect();
            let ours: Vec<f32> = match tensor.to_f32() {
                Some(v) => v,
                None => tensor
                    .data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                    .collect(),
            };
            assert_eq!(ours, values, "{file}: {name}");
        }
    }
}

#[test]
fn f16_storage_halves_float_tensors_and_keeps_integers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("half.safetensors");
    let summary = checkpoint::import_weights(
        &common::fixture("torch/tiny_zip.pth"),
        &out,
        FloatStorage::F16,
    )
    .expect("import");
    assert_eq!(summary.dropped_counters, 1);
    let bytes = std::fs::read(&out).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    for (name, view) in st.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F16, "{name}");
    }
}

/// A pickle that, if executed, would run `touch SENTINEL`.
fn hostile_pickle(sentinel: &Path) -> Vec<u8> {
    let command = format!("touch {}", sentinel.display());
    let mut p = b"\x80\x02cos\nsystem\nq\x00X".to_vec();
    p.extend_from_slice(&(command.len() as u32).to_le_bytes());
    p.extend_from_slice(command.as_bytes());
    p.extend_from_slice(b"q\x01\x85q\x02Rq\x03.");
    p
}

fn assert_rejected(result: Result<checkpoint::Checkpoint, CheckpointError>, sentinel: &Path) {
    match result {
        Err(CheckpointError::ForbiddenGlobal(name)) => {
            assert_eq!(name, "os.system");
            let message = CheckpointError::ForbiddenGlobal(name).to_string();
            assert!(message.contains("os.system"), "{message}");
        }
        other => panic!("expected a refusal naming os.system, got {other:?}"),
    }
    assert!(!sentinel.exists(), "the pickle's command ran");
}

#[test]
fn a_legacy_file_with_an_unexpected_global_is_rejected_unexecuted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sentinel = dir.path().join("pwned");
    // Legacy header (magic, protocol, sys_info) as torch writes it, then the hostile object.
    let legacy = std::fs::read(common::fixture("torch/tiny_legacy.pth")).expect("read");
    let mut bytes = Vec::new();
    let mut pos = 0;
    for _ in 0..3 {
        let start = pos;
        let mut ignore = checkpoint::pickle::TorchStorages::default();
        checkpoint::pickle::read_pickle(&legacy, &mut pos, &mut ignore).expect("header");
        bytes.extend_from_slice(&legacy[start..pos]);
    }
    bytes.extend_from_slice(&hostile_pickle(&sentinel));
    assert_rejected(checkpoint::read_checkpoint_bytes(&bytes), &sentinel);
}

#[test]
fn a_zip_file_with_an_unexpected_global_is_rejected_unexecuted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sentinel = dir.path().join("pwned");
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buffer);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("archive/data.pkl", options).expect("entry");
        zip.write_all(&hostile_pickle(&sentinel)).expect("write");
        zip.finish().expect("finish");
    }
    let path = dir.path().join("hostile.pth");
    std::fs::write(&path, buffer.into_inner()).expect("write file");
    assert_rejected(checkpoint::read_checkpoint(&path), &sentinel);
}

#[test]
fn garbage_and_truncated_files_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("garbage.pth");
    std::fs::write(&path, b"definitely not a checkpoint").expect("write");
    assert!(matches!(
        checkpoint::read_checkpoint(&path),
        Err(CheckpointError::NotACheckpoint(_))
    ));
    let legacy = std::fs::read(common::fixture("torch/tiny_legacy.pth")).expect("read");
    for cut in [10, legacy.len() / 2, legacy.len() - 3] {
        assert!(
            checkpoint::read_checkpoint_bytes(&legacy[..cut]).is_err(),
            "truncated at {cut} was accepted"
        );
    }
    let out = dir.path().join("never.safetensors");
    assert!(checkpoint::import_weights(&path, &out, FloatStorage::Keep).is_err());
    assert!(!out.exists(), "a failed import left a file behind");
}

/// Odd but valid image variants (CMYK, YCbCr, Lab, palette, planar, 1-, 2-, 4-bit and float
/// TIFFs; RLE and OS/2 BMPs; GIFs with a local or no colour table) decode like Pillow reads them.
#[test]
fn odd_image_variants_decode_as_pillow_reads_them() {
    let dir = common::fixture("images");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("images")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tif") || n.ends_with(".bmp") || n.ends_with(".gif"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 15);
    for name in names {
        let ours = decode_rgb(&dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let pillow =
            decode_rgb(&dir.join("pillow").join(format!("{name}.png"))).expect("reference");
        assert_eq!(ours.dimensions(), pillow.dimensions(), "{name}");
        let diff: f64 = ours
            .as_raw()
            .iter()
            .zip(pillow.as_raw())
            .map(|(a, b)| f64::from(a.abs_diff(*b)))
            .sum::<f64>()
            / ours.as_raw().len() as f64;
        // Pillow's Lab conversion differs a little from the colorimetric one.
        let tolerance = if name == "lab.tif" { 6.0 } else { 1.5 };
        assert!(
            diff <= tolerance,
            "{name}: mean difference {diff:.2} levels"
        );
    }
}

/// A dict that contains itself (found by fuzzing: its walk overflowed the stack) is an error.
#[test]
fn a_state_dict_that_contains_itself_is_refused() {
    let error =
        checkpoint::read_checkpoint(&common::fixture("torch/self_loop.pth")).expect_err("refused");
    assert!(error.to_string().contains("contains itself"), "{error}");
}
