//! Crash safety as a user meets it: `kill -9` at any moment of train, save, compare and export
//! leaves the previous model (or file) intact and loadable; what a killed run left behind is
//! cleaned up by the next save; a full disk is a clear error that keeps the previous model.

use crate::common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use tempfile::TempDir;
use transfer_studio::train::TrainedModel;

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_transfer-studio"));
    command.stdout(Stdio::null()).stderr(Stdio::null());
    command
}

fn train(data: &Path, out: &Path, seed: u64) -> Command {
    let mut command = binary();
    command
        .args(["train", "--case", "large-similar", "--image-size", "32"])
        .args(["--epochs", "2", "--head-epochs", "1", "--seed"])
        .arg(seed.to_string())
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out);
    command
}

/// Names in `dir` starting with `prefix`.
fn entries_starting(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Kills `child` with SIGKILL once `ready()` holds (polled every 0.2 ms), or once `deadline`
/// has passed. Returns whether `ready()` held before the kill; `None` if the child had already
/// exited.
fn kill_when(mut child: Child, ready: impl Fn() -> bool, deadline: Duration) -> Option<bool> {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return None;
        }
        let hit = ready();
        if hit || start.elapsed() >= deadline {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
            return Some(hit);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A dataset, and a folder holding a model trained on it (in `out/model`).
fn with_a_saved_model(seed: u64) -> (TempDir, TempDir, PathBuf) {
    common::init();
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 6, 36, seed);
    let out = tempfile::tempdir().expect("out");
    let model = out.path().join("model");
    let status = train(data.path(), &model, 1).status().expect("run");
    assert!(status.success());
    (data, out, model)
}

fn assert_loads(dir: &Path) {
    if let Err(e) = TrainedModel::load(dir, &Device::Cpu) {
        panic!("{} no longer loads: {e}", dir.display());
    }
}

#[test]
fn kill_9_during_training_or_its_save_keeps_the_previous_model() {
    let (data, out, model) = with_a_saved_model(11);
    assert_loads(&model);

    let (mut in_save, mut in_training) = (0, 0);
    for round in 0..10u64 {
        let child = train(data.path(), &model, round + 2)
            .spawn()
            .expect("spawn");
        let killed = if round % 2 == 0 {
            // The moment the new model's staging folder appears: mid-save.
            kill_when(
                child,
                || !entries_starting(out.path(), ".model.partial-").is_empty(),
                Duration::from_secs(60),
            )
        } else {
            // Somewhere in loading, training or saving.
            kill_when(child, || false, Duration::from_millis(40 * round))
        };
        match killed {
            Some(true) => in_save += 1,
            Some(false) => in_training += 1,
            None => {}
        }
        assert_loads(&model);
    }
    eprintln!("killed {in_save} times mid-save, {in_training} times before it");
    assert!(in_save >= 3, "the save was hit only {in_save} times");

    assert!(
        train(data.path(), &model, 99)
            .status()
            .expect("run")
            .success()
    );
    assert_loads(&model);
    assert_eq!(
        entries_starting(out.path(), "."),
        Vec::<String>::new(),
        "the killed runs' staging folders are cleaned up by the next save"
    );
}

#[test]
fn kill_9_during_compare_or_export_keeps_what_was_there() {
    common::init();
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 6, 36, 12);
    let out = tempfile::tempdir().expect("out");
    let compare = |seed: u64| {
        let mut command = binary();
        command
            .args([
                "compare",
                "--image-size",
                "32",
                "--max-epochs",
                "1",
                "--seed",
            ])
            .arg(seed.to_string())
            .arg("--data")
            .arg(data.path())
            .arg("--out")
            .arg(out.path());
        command
    };
    assert!(compare(1).status().expect("run").success());
    let cases = [
        "small-similar",
        "small-different",
        "large-similar",
        "large-different",
    ];
    for round in 0..6u64 {
        let child = compare(round + 2).spawn().expect("spawn");
        let staging = |case: &str| !entries_starting(out.path(), &format!(".{case}.")).is_empty();
        kill_when(
            child,
            || staging(cases[round as usize % 4]),
            Duration::from_secs(60),
        );
        for case in cases {
            assert_loads(&out.path().join(case));
        }
        let table = std::fs::read(out.path().join("compare.json")).expect("compare.json");
        serde_json::from_slice::<serde_json::Value>(&table).expect("compare.json is whole");
    }

    let onnx = out.path().join("model.onnx");
    let export = || {
        let mut command = binary();
        command
            .args(["export", "--model"])
            .arg(out.path().join("large-similar"))
            .arg("--onnx")
            .arg(&onnx);
        command
    };
    assert!(export().status().expect("run").success());
    let before = std::fs::read(&onnx).expect("onnx");
    for round in 0..4u64 {
        let child = export().spawn().expect("spawn");
        kill_when(
            child,
            || !entries_starting(out.path(), ".model.onnx.").is_empty(),
            Duration::from_millis(5 + 20 * round),
        );
        let after = std::fs::read(&onnx).expect("onnx still there");
        assert!(
            after == before,
            "an interrupted export left a different file"
        );
    }
}

/// A child whose files may not grow beyond `limit_bytes` (as on a full disk: writes fail with
/// EFBIG instead of SIGXFSZ killing it).
fn with_file_size_limit(command: &mut Command, limit_bytes: u64) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: limit_bytes,
                rlim_max: limit_bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn a_full_disk_during_a_save_is_a_clear_error_and_keeps_the_previous_model() {
    let (data, out, model) = with_a_saved_model(13);
    let weights_before = std::fs::read(model.join("model.safetensors")).expect("weights");

    let mut command = train(data.path(), &model, 2);
    command.stderr(Stdio::piped());
    with_file_size_limit(&mut command, 1 << 20);
    let output = command.output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("not enough disk space"), "{stderr}");
    assert!(stderr.contains("previous"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read(model.join("model.safetensors")).expect("weights"),
        weights_before
    );
    assert_loads(&model);
    assert_eq!(entries_starting(out.path(), "."), Vec::<String>::new());
}

/// Every file name under `root`'s class folders, with how many times it is there.
fn file_census(root: &Path) -> std::collections::BTreeMap<Vec<u8>, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for class in std::fs::read_dir(root)
        .expect("root")
        .filter_map(Result::ok)
    {
        for file in std::fs::read_dir(class.path())
            .expect("class")
            .filter_map(Result::ok)
        {
            let bytes = std::fs::read(file.path()).expect("read");
            *seen.entry(bytes).or_insert(0) += 1;
        }
    }
    seen
}

/// `kill -9` in the middle of relabelling many images (the moves the window's keys make):
/// every image is still there, exactly once, in one class or the other.
#[test]
fn kill_9_during_a_relabel_loses_no_file() {
    let data = tempfile::tempdir().expect("data");
    let (from, to) = (data.path().join("cat"), data.path().join("dog"));
    std::fs::create_dir_all(&from).expect("dir");
    std::fs::create_dir_all(&to).expect("dir");
    let count = 3000;
    let files: Vec<PathBuf> = (0..count)
        .map(|i| {
            let path = from.join(format!("{i:05}.jpg"));
            // Distinct contents, so that the census tells each file apart.
            std::fs::write(&path, format!("image {i}")).expect("write");
            path
        })
        .collect();
    let before = file_census(data.path());
    let mut killed_midway = 0;
    for round in 0..6u64 {
        let remaining: Vec<PathBuf> = files.iter().filter(|f| f.exists()).cloned().collect();
        if remaining.is_empty() {
            break;
        }
        let mut command = binary();
        command.args(["relabel", "--to", "dog"]).args(&remaining);
        let child = command.spawn().expect("spawn");
        let moved_some = || std::fs::read_dir(&to).is_ok_and(|d| d.count() > 0);
        let deadline = Duration::from_millis(5 + 10 * round);
        if kill_when(child, moved_some, deadline).is_some() {
            killed_midway += 1;
        }
        assert_eq!(file_census(data.path()), before, "after kill {round}");
    }
    eprintln!("killed {killed_midway} relabels midway");
    assert!(killed_midway > 0, "no relabel was killed while it ran");
}
