//! `transfer-studio predict` as a user runs it.

mod common;

use std::process::Command;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_transfer-studio"))
}

#[test]
fn json_output_lists_each_image_and_reports_bad_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 this is not really a jpeg").expect("write");
    let missing = dir.path().join("missing.png");
    let output = binary()
        .args(["predict", "--json", "--top-k", "3"])
        .arg(common::fixture("coffee.png"))
        .arg(&corrupt)
        .arg(&missing)
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    let entries = json.as_array().expect("array");
    assert_eq!(entries.len(), 3);
    assert!(entries[0]["image"].as_str().expect("path").ends_with("coffee.png"));
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
    let output = binary().args(["predict", "--json"]).arg(&empty).output().expect("run");
    assert!(!output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("still JSON");
    assert!(json[0]["error"].as_str().expect("error").contains("empty"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
