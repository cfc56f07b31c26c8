//! The device-generic path — the code a CUDA build runs (stock candle compositions instead of
//! the CPU kernels, candle's AdamW) — forced on the CPU with `TRANSFER_STUDIO_GENERIC_OPS=1`,
//! so that a user's first GPU run is not that code's first run. Each preset trains a few steps,
//! a model predicts and Grad-CAM explains, on both paths; they agree within the stated
//! tolerances (the two paths sum in different orders, so bit equality is not expected).

use crate::common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use transfer_studio::runtime::GENERIC_OPS_VAR;

/// Per-epoch loss of training and validation, a few steps in: float sums in another order.
const LOSS_TOLERANCE: f64 = 2e-3;
/// Class probabilities of one image.
const PROB_TOLERANCE: f64 = 1e-4;
/// Grad-CAM cells (normalised to a maximum of 1).
const CAM_TOLERANCE: f64 = 1e-3;

fn command(generic: bool, args: &[&str], paths: &[&Path]) -> Command {
    let mut command = common::binary();
    command.args(args).args(paths);
    if generic {
        command.env(GENERIC_OPS_VAR, "1");
    }
    command
}

/// A command's JSON lines (`train --json`).
fn run(generic: bool, args: &[&str], paths: &[&Path]) -> Vec<Value> {
    common::json_lines(&mut command(generic, args, paths))
}

/// A command's one JSON document (`predict --json`, `explain --json`).
fn run_doc(generic: bool, args: &[&str], paths: &[&Path]) -> Value {
    common::json_of(&mut command(generic, args, paths))
}

fn epochs(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["event"] == "epoch").collect()
}

fn close(a: &Value, b: &Value, tolerance: f64, what: &str) -> bool {
    let (x, y) = (a.as_f64(), b.as_f64());
    match (x, y) {
        (Some(x), Some(y)) => {
            assert!((x - y).abs() <= tolerance, "{what}: {x} vs {y}");
            x == y
        }
        _ => {
            assert_eq!(a, b, "{what}");
            true
        }
    }
}

#[test]
fn every_preset_trains_predicts_and_explains_alike_on_the_generic_path() {
    common::init();
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 8, 40, 17);
    let out = tempfile::tempdir().expect("out");
    let mut identical = true;
    for case in [
        "small-similar",
        "small-different",
        "large-similar",
        "large-different",
    ] {
        let mut runs = [false, true].map(|generic| {
            let model = out.path().join(format!("{case}-{generic}"));
            let args = [
                "train",
                "--case",
                case,
                "--image-size",
                "32",
                "--epochs",
                "2",
                "--head-epochs",
                "1",
                "--seed",
                "3",
                "--json",
                "--data",
            ];
            let lines = run(generic, &args, &[data.path(), Path::new("--out"), &model]);
            let device = lines
                .iter()
                .find(|l| l["event"] == "started")
                .and_then(|l| l["device"].as_str())
                .unwrap_or_default()
                .to_owned();
            assert_eq!(device.contains("generic"), generic, "{case}: {device}");
            (lines, model)
        });
        let (generic_lines, _) = std::mem::take(&mut runs[1]);
        let (fast_lines, model) = std::mem::take(&mut runs[0]);
        let (fast, generic) = (epochs(&fast_lines), epochs(&generic_lines));
        assert_eq!(fast.len(), generic.len(), "{case}: epochs");
        for (f, g) in fast.iter().zip(&generic) {
            for key in ["train_loss", "val_loss"] {
                identical &= close(&f[key], &g[key], LOSS_TOLERANCE, &format!("{case} {key}"));
            }
            let accuracy = |v: &Value| v["val_accuracy"].as_f64().unwrap_or(0.0);
            // One validation image of the four may flip near a tie.
            assert!(
                (accuracy(f) - accuracy(g)).abs() <= 0.25 + 1e-9,
                "{case}: val accuracy {} vs {}",
                accuracy(f),
                accuracy(g)
            );
        }

        // The fast path's model, predicted on both paths.
        let image = data.path().join("circle/000.png");
        let args = ["predict", "--json", "--model"];
        let [fast, generic] = [false, true].map(|g| run_doc(g, &args, &[&model, &image]));
        let probs = |v: &Value| -> Vec<Value> {
            v[0]["top"]
                .as_array()
                .expect("top")
                .iter()
                .map(|c| c["prob"].clone())
                .collect()
        };
        for (f, g) in probs(&fast).iter().zip(probs(&generic)) {
            identical &= close(f, &g, PROB_TOLERANCE, &format!("{case} predict"));
        }
    }

    // Grad-CAM with the bundled network, at its full input size.
    let cat = common::fixture("chelsea.png");
    let [fast, generic] = [false, true].map(|g| {
        let png = out.path().join(format!("cam-{g}.png"));
        let args = ["explain", "--json", "--out"];
        run_doc(g, &args, &[&png, &cat])
    });
    assert_eq!(fast["class_index"], generic["class_index"]);
    let cells = |v: &Value| -> Vec<Value> {
        v["grid"]
            .as_array()
            .expect("grid")
            .iter()
            .flat_map(|row| row.as_array().expect("row").clone())
            .collect()
    };
    for (f, g) in cells(&fast).iter().zip(cells(&generic)) {
        identical &= close(f, &g, CAM_TOLERANCE, "grad-cam");
    }
    assert!(
        !identical,
        "the two paths agreed to the last bit: the switch had no effect"
    );
}
