//! The `transfer-studio` commands as a user runs them.

use crate::common;

use common::{binary, json_lines, json_of};

#[test]
fn json_output_lists_each_image_and_reports_bad_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 this is not really a jpeg").expect("write");
    let missing = dir.path().join("missing.png");
    let json = json_of(
        binary()
            .args(["predict", "--json", "--top-k", "3"])
            .arg(common::fixture("coffee.png"))
            .arg(&corrupt)
            .arg(&missing),
    );
    let entries = json.as_array().expect("array");
    assert_eq!(entries.len(), 3);
    assert!(
        entries[0]["image"]
            .as_str()
            .expect("path")
            .ends_with("coffee.png")
    );
    let top = entries[0]["top"].as_array().expect("top");
    assert_eq!(top.len(), 3);
    assert_eq!(top[0]["index"], 967);
    assert_eq!(top[0]["label"], "espresso");
    assert!(top[0]["prob"].as_f64().expect("prob") > 0.9);
    for bad in &entries[1..] {
        assert!(bad.get("top").is_none());
        assert!(!bad["error"].as_str().expect("error message").is_empty());
    }
}

#[test]
fn fails_only_when_nothing_could_be_classified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").expect("write");
    let output = binary()
        .args(["predict", "--json"])
        .arg(&empty)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("still JSON");
    assert!(json[0]["error"].as_str().expect("error").contains("empty"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn train_json_then_predict_and_evaluate_the_saved_model() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 8, 40, 5);
    let out = tempfile::tempdir().expect("out");
    let model = out.path().join("model");
    let lines = json_lines(
        binary()
            .args(["train", "--case", "small-similar", "--image-size", "32"])
            .args(["--epochs", "5", "--json", "--data"])
            .arg(data.path())
            .arg("--out")
            .arg(&model),
    );
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"loading"));
    assert!(kinds.contains(&"started"));
    assert_eq!(kinds.iter().filter(|k| **k == "epoch").count(), 5);
    assert_eq!(&kinds[kinds.len() - 2..], &["finished", "saved"]);
    let finished = &lines[lines.len() - 2];
    assert!(finished["report"]["evaluation"]["confusion"].is_array());

    let json = json_of(
        binary()
            .args(["predict", "--json", "--model"])
            .arg(&model)
            .arg(data.path().join("circle").join("000.png")),
    );
    let labels: Vec<&str> = json[0]["top"]
        .as_array()
        .expect("top")
        .iter()
        .filter_map(|c| c["label"].as_str())
        .collect();
    assert_eq!(labels.len(), 2);
    assert!(labels.contains(&"circle") && labels.contains(&"square"));

    let json = json_of(
        binary()
            .args(["evaluate", "--json", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(data.path()),
    );
    assert_eq!(json["images"], 16);
    assert!(json["accuracy"].as_f64().expect("accuracy") > 0.5);
    assert_eq!(json["confusion"].as_array().map(Vec::len), Some(2));

    // The model knows its training folder: an int8 TFLite export calibrates on it and is
    // checked on its validation split without being told where it is.
    let tflite = out.path().join("model.tflite");
    let json = json_of(
        binary()
            .args(["export", "--precision", "int8", "--json", "--model"])
            .arg(&model)
            .arg("--out")
            .arg(&tflite),
    );
    assert_eq!(json["format"], "tflite");
    assert!(
        json["checked_on"]
            .as_str()
            .is_some_and(|s| s.contains("validation split")),
        "{json}"
    );
    assert!(json["check"]["top1_agreement"].as_f64().is_some());
    let bytes = std::fs::read(&tflite).expect("written");
    assert_eq!(&bytes[4..8], b"TFL3");
    // f16 TFLite is refused in words.
    let out16 = binary()
        .args(["export", "--precision", "f16", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(out.path().join("half.tflite"))
        .output()
        .expect("run");
    assert!(!out16.status.success());
    assert!(String::from_utf8_lossy(&out16.stderr).contains("f32 or int8"));
}

#[test]
fn train_refuses_bad_arguments_in_words() {
    let output = binary()
        .args(["train", "--case", "medium-ish", "--data", ".", "--out", "x"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown case"));
    let output = binary()
        .args([
            "train",
            "--case",
            "small-similar",
            "--data",
            "/no/such/folder",
            "--out",
            "/tmp/never",
        ])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/no/such/folder") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn bench_json_has_every_workload() {
    let json = json_of(binary().args([
        "bench",
        "--json",
        "--image-size",
        "32",
        "--batch-size",
        "2",
        "--repeats",
        "1",
    ]));
    for key in [
        "forward_images_per_sec",
        "fine_tune_images_per_sec",
        "head_epoch_ms",
        "feature_caching_images_per_sec",
        "peak_rss_bytes",
    ] {
        assert!(
            json[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {}",
            json[key]
        );
    }
    // Page faults in steady state: counted (zero is the goal, so zero is allowed).
    for key in [
        "forward_page_faults_per_batch",
        "fine_tune_page_faults_per_step",
    ] {
        assert!(json[key].as_f64().is_some_and(|v| v >= 0.0), "{key}");
    }
}

#[test]
fn recommend_and_probe_print_json() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 6, 40, 2);
    let json = json_of(
        binary()
            .args(["recommend", "--json", "--max-images", "8", "--data"])
            .arg(data.path()),
    );
    assert_eq!(json["images_per_class"], 5);
    assert_eq!(json["size"], "small");
    assert!(json["similarity_score"].as_f64().is_some());
    assert!(json["similarity"] == "similar" || json["similarity"] == "different");
    assert!(
        json["case"]
            .as_str()
            .is_some_and(|c| c.starts_with("small-"))
    );

    let json = json_of(
        binary()
            .args(["probe", "--json", "--epochs", "5", "--data"])
            .arg(data.path()),
    );
    assert_eq!(json.as_array().map(Vec::len), Some(7));
}

/// A valid file on which the TIFF decoder panics (image-rs/image-tiff#403): predict and train
/// report it in one line and go on; no panic text, no backtrace (even with RUST_BACKTRACE=1).
#[test]
fn a_decoder_panic_is_one_quiet_line() {
    let panicking = common::fixture("decoder-panic/tiled_planar.tif");
    let output = binary()
        .args(["predict", "--json", "--top-k", "1"])
        .arg(&panicking)
        .arg(common::fixture("coffee.png"))
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run");
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(
        json[0]["error"]
            .as_str()
            .expect("error")
            .contains("decoder failed")
    );
    assert_eq!(json[1]["top"][0]["label"], "espresso");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );

    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 6, 36, 21);
    std::fs::copy(&panicking, data.path().join("circle").join("odd.tif")).expect("copy");
    let out = tempfile::tempdir().expect("out");
    let output = binary()
        .args([
            "train",
            "--case",
            "small-similar",
            "--image-size",
            "32",
            "--epochs",
            "1",
        ])
        .arg("--data")
        .arg(data.path())
        .arg("--out")
        .arg(out.path().join("model"))
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let mentions: Vec<&str> = stderr.lines().filter(|l| l.contains("odd.tif")).collect();
    assert_eq!(mentions.len(), 1, "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

/// Imbalanced classes turn the class-weighted loss on (auto), said in one warning event; the
/// saved model records the plan's choice; --class-weights off keeps it off.
#[test]
fn imbalanced_classes_get_a_class_weighted_loss() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 4, 36, 31);
    for i in 0..16 {
        common::shape_image(0, 36, 500 + i)
            .save(data.path().join("circle").join(format!("more{i}.png")))
            .expect("save");
    }
    let out = tempfile::tempdir().expect("out");
    let run = |extra: &[&str], name: &str| {
        let output = binary()
            .args(["train", "--case", "large-similar", "--image-size", "32"])
            .args(["--epochs", "1", "--head-epochs", "1", "--json"])
            .args(extra)
            .arg("--data")
            .arg(data.path())
            .arg("--out")
            .arg(out.path().join(name))
            .output()
            .expect("run");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let auto = run(&[], "auto");
    assert!(auto.contains("class weights on"), "{auto}");
    let manifest =
        std::fs::read_to_string(out.path().join("auto").join("model.json")).expect("json");
    assert!(
        manifest.contains("\"class_weights\": \"auto\""),
        "{manifest}"
    );
    let off = run(&["--class-weights", "off"], "off");
    assert!(!off.contains("class weights on"));
}

/// Start of ConvNet's cut comes from a cross-validated probe on the training images (a JSON
/// event, then the saved model is cut there); `compare` says which case the recommendation
/// picks and whether that advice held.
#[test]
fn the_cut_is_chosen_from_the_data_and_compare_judges_the_advice() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 3, 8, 40, 11);
    let out = tempfile::tempdir().expect("out");
    let model = out.path().join("model");
    let lines = json_lines(
        binary()
            .args(["train", "--case", "small-different", "--image-size", "32"])
            .args(["--epochs", "3", "--json", "--data"])
            .arg(data.path())
            .arg("--out")
            .arg(&model),
    );
    let chosen = lines
        .iter()
        .find(|l| l["event"] == "cut-chosen")
        .expect("a cut-chosen event");
    let points = chosen["points"].as_array().expect("points");
    assert_eq!(points.len(), 7, "Lite0's probe units and its head");
    assert_eq!(points.last().expect("head")["unit"], "head");
    // The latest cut tied with the best (the most accurate, then the lowest loss): its
    // fold-by-fold accuracy deficit and loss excess both within one standard error.
    let value = |p: &serde_json::Value, key: &str| p[key].as_f64().expect("a number");
    let folds = |p: &serde_json::Value, key: &str| -> Vec<f64> {
        p[key]
            .as_array()
            .expect("per-fold values")
            .iter()
            .map(|v| v.as_f64().expect("a number"))
            .collect()
    };
    let best = points
        .iter()
        .max_by(|a, b| {
            value(a, "cv_accuracy")
                .total_cmp(&value(b, "cv_accuracy"))
                .then(value(b, "cv_loss").total_cmp(&value(a, "cv_loss")))
        })
        .expect("a best cut");
    let within_one_se = |d: Vec<f64>| {
        let k = d.len() as f64;
        let mean = d.iter().sum::<f64>() / k;
        let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
        mean <= (var / k).sqrt()
    };
    let expected = points
        .iter()
        .rev()
        .find(|p| {
            let accuracy = folds(best, "fold_accuracy")
                .iter()
                .zip(folds(p, "fold_accuracy"))
                .map(|(b, a)| b - a)
                .collect();
            let loss = folds(p, "fold_loss")
                .iter()
                .zip(folds(best, "fold_loss"))
                .map(|(a, b)| a - b)
                .collect();
            within_one_se(accuracy) && within_one_se(loss)
        })
        .expect("the best is tied with itself");
    assert_eq!(chosen["chosen"], expected["unit"]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("model.json")).expect("model.json"))
            .expect("manifest");
    assert_eq!(manifest["cut_after"], chosen["chosen"]);
    // model.json keeps the measurement behind the cut.
    let saved = &manifest["metrics"]["cut_choice"];
    assert_eq!(saved["chosen"], chosen["chosen"]);
    assert_eq!(saved["points"], chosen["points"]);

    // A test folder with a class the training data lacks is refused in words, at once.
    let test = tempfile::tempdir().expect("test");
    common::write_shapes(test.path(), 4, 2, 40, 99);
    let refused = binary()
        .args(["compare", "--image-size", "32", "--data"])
        .arg(data.path())
        .arg("--test")
        .arg(test.path())
        .arg("--out")
        .arg(out.path().join("refused"))
        .output()
        .expect("run");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("the test folder has a class"), "{stderr}");
    assert!(!out.path().join("refused").exists());
    // A held-out test folder: other images of the same classes.
    let test = tempfile::tempdir().expect("test");
    common::write_shapes(test.path(), 3, 4, 40, 99);
    let compared = out.path().join("compare");
    let output = binary()
        .args([
            "compare",
            "--image-size",
            "32",
            "--max-epochs",
            "1",
            "--json",
            "--data",
        ])
        .arg(data.path())
        .arg("--test")
        .arg(test.path())
        .arg("--out")
        .arg(&compared)
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["event"] == "compared")
        .expect("the compared event");
    let advice = &summary["advice"];
    let accuracy_of = |case: &serde_json::Value| {
        summary["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| &r["case"] == case)
            .and_then(|r| r["test_accuracy"].as_f64())
            .expect("accuracy")
    };
    // Every model was evaluated on the 12 test images, and the advice judged on them.
    assert_eq!(advice["basis"], "test");
    for row in summary["rows"].as_array().expect("rows") {
        let accuracy = row["test_accuracy"].as_f64().expect("a test accuracy");
        let images = accuracy * 12.0;
        assert!((images - images.round()).abs() < 1e-6, "{row}");
    }
    let recommended = accuracy_of(&advice["recommended"]);
    let best = accuracy_of(&advice["best"]);
    assert_eq!(
        advice["held"].as_bool(),
        Some(best - recommended <= 0.015 + 1e-9)
    );
    let table: serde_json::Value = serde_json::from_slice(
        &std::fs::read(compared.join("compare.json")).expect("compare.json"),
    )
    .expect("compare.json");
    assert_eq!(table["advice"], *advice);
    assert_eq!(table["recommendation"]["case"], advice["recommended"]);
}

#[test]
fn a_device_the_build_cannot_use_is_refused_in_words() {
    let image = common::fixture("chelsea.png");
    let output = binary()
        .args(["--device", "cuda", "predict"])
        .arg(&image)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if cfg!(feature = "cuda") {
        return;
    }
    assert!(!output.status.success());
    assert!(stderr.contains("no CUDA support"), "{stderr}");
    let json = json_of(
        binary()
            .args(["predict", "--device", "cpu", "--json"])
            .arg(&image),
    );
    assert_eq!(json[0]["top"][0]["label"], "Egyptian cat");
}
