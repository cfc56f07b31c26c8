//! The training engine end to end on tiny generated image folders.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::Device;
use transfer_studio::data::dataset::{DatasetError, LoadOptions, LoadProgress, load_dataset};
use transfer_studio::model::{Backbone, Init, Unit, Weights};
use transfer_studio::predict::{Predictor, classify_files};
use transfer_studio::train::saved::{TrainedModel, tensor_values};
use transfer_studio::train::{
    Case, DataSource, TrainCommand, TrainEvent, TrainJob, TrainOutcome, TrainPlan, spawn_training,
};

/// A plan small enough for tests: 32 px images, a few epochs.
fn tiny(case: Case) -> TrainPlan {
    TrainPlan {
        image_size_px: 32,
        batch_size: 8,
        epochs: if case.is_large() { 2 } else { 15 },
        head_epochs: 1,
        patience: 0,
        seed: 7,
        ..case.plan()
    }
}

fn job(data: &Path, plan: TrainPlan) -> TrainJob {
    TrainJob {
        data: DataSource::Folders {
            train: data.to_owned(),
            val: None,
        },
        plan,
        device: Device::Cpu,
    }
}

/// Runs a job to its end and returns every event.
fn run(job: TrainJob) -> Vec<TrainEvent> {
    let handle = spawn_training(job, None).expect("spawn");
    let events: Vec<TrainEvent> = handle.events.iter().collect();
    handle.join();
    events
}

fn outcome(events: &[TrainEvent]) -> &TrainOutcome {
    match events.last() {
        Some(TrainEvent::Finished(o)) => o,
        other => panic!("run did not finish: {other:?}"),
    }
}

fn shapes(classes: usize, per_class: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::write_shapes(dir.path(), classes, per_class, 40, 11);
    dir
}

#[test]
fn every_case_trains_saves_loads_and_predicts() {
    common::init();
    let data = shapes(3, 12);
    let out = tempfile::tempdir().expect("out");
    for case in Case::ALL {
        let plan = tiny(case);
        let events = run(job(data.path(), plan.clone()));
        let done = outcome(&events);
        let report = &done.report;
        assert_eq!(report.classes, vec!["circle", "square", "triangle"]);
        assert!(report.epochs_run >= 1, "{case}");
        let evaluation = report.evaluation.as_ref().expect("validation split");
        assert_eq!(
            evaluation.images, 6,
            "{case}: round(20 % of 12) = 2 per class held out"
        );
        let epochs: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                TrainEvent::Epoch(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(epochs.len(), report.epochs_run);
        assert!(epochs.iter().all(|m| m.train_loss.is_finite()));
        if case == Case::SmallSimilar {
            // Linearly separable shapes: the head must learn them.
            assert!(
                evaluation.accuracy >= 0.8,
                "accuracy {}",
                evaluation.accuracy
            );
        }

        let dir = out.path().join(case.to_string());
        done.model
            .save(&dir, Some(report.saved_metrics()))
            .expect("save");
        let (loaded, manifest) = TrainedModel::load(&dir, &Device::Cpu).expect("load");
        // Start of ConvNet chooses its cut from the training images and says so.
        let chosen = events.iter().find_map(|e| match e {
            TrainEvent::CutChosen(choice) => Some(choice.chosen),
            _ => None,
        });
        assert_eq!(chosen.is_some(), plan.auto_cut, "{case}");
        assert_eq!(chosen, report.cut_choice.as_ref().map(|c| c.chosen));
        assert_eq!(manifest.cut_after, chosen.unwrap_or(plan.cut_after));
        assert_eq!(manifest.plan.as_chosen(), plan.as_chosen());
        let predictor =
            Predictor::from_network(&loaded.network, loaded.classes, loaded.preprocessing)
                .expect("predictor");
        let image = data.path().join("square").join("000.png");
        let results = classify_files(&predictor, &[image], 3, 4);
        let json = serde_json::to_value(&results).expect("json");
        assert_eq!(json[0]["top"].as_array().map(Vec::len), Some(3), "{case}");
        // The reloaded model predicts what the trained one does.
        let original = Predictor::from_network(
            &done.model.network,
            done.model.classes.clone(),
            done.model.preprocessing.clone(),
        )
        .expect("predictor");
        let again = classify_files(
            &original,
            &[data.path().join("square").join("000.png")],
            3,
            4,
        );
        assert_eq!(
            serde_json::to_value(&again).expect("json")[0]["top"],
            json[0]["top"],
            "{case}"
        );
    }
}

#[test]
fn frozen_weights_stay_bit_identical_and_trainable_ones_change() {
    common::init();
    let data = shapes(2, 8);
    let plan = TrainPlan {
        cut_after: Unit::Block(4),
        trainable_units: 2, // blocks 3 and 4 train; stem and blocks 0-2 are frozen
        head_epochs: 0,
        epochs: 2,
        augment: true,
        ..tiny(Case::LargeSimilar)
    };
    let events = run(job(data.path(), plan));
    let trained = tensor_values(&outcome(&events).model.network).expect("values");
    let bundled = Backbone::default()
        .pretrained_weights(&Device::Cpu)
        .expect("bundled");
    let mut frozen = 0;
    let mut changed = 0;
    for (name, values) in &trained {
        if name.starts_with("_fc") {
            continue;
        }
        let before = tensor_of(&bundled, name);
        let is_trainable = name.starts_with("_blocks.3.") || name.starts_with("_blocks.4.");
        if is_trainable {
            if &before != values {
                changed += 1;
            }
        } else {
            assert_eq!(&before, values, "{name} changed although frozen");
            frozen += 1;
        }
    }
    assert!(frozen > 0);
    assert!(changed > 10, "only {changed} trainable tensors changed");
}

fn tensor_of(weights: &Weights, name: &str) -> Vec<f32> {
    weights
        .tensor(name)
        .expect("tensor exists in the bundled weights")
        .flatten_all()
        .expect("flat")
        .to_vec1()
        .expect("values")
}

#[test]
fn the_same_seed_gives_the_same_result() {
    common::init();
    let data = shapes(2, 8);
    let plan = TrainPlan {
        head_epochs: 1,
        epochs: 1,
        augment: true,
        ..tiny(Case::LargeDifferent)
    };
    let a = run(job(data.path(), plan.clone()));
    let b = run(job(data.path(), plan));
    let (a, b) = (outcome(&a), outcome(&b));
    assert_eq!(
        tensor_values(&a.model.network).expect("a"),
        tensor_values(&b.model.network).expect("b")
    );
    assert_eq!(a.report.best_val_loss, b.report.best_val_loss);
}

fn wait_for(
    handle: &transfer_studio::train::TrainerHandle,
    pred: impl Fn(&TrainEvent) -> bool,
) -> Vec<TrainEvent> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match handle.events.recv_timeout(Duration::from_secs(1)) {
            Ok(e) => {
                let hit = pred(&e);
                let terminal = e.is_terminal();
                seen.push(e);
                if hit || terminal {
                    return seen;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    seen
}

#[test]
fn pause_resume_and_stop() {
    common::init();
    let data = shapes(2, 10);
    let plan = TrainPlan {
        epochs: 200,
        ..tiny(Case::SmallSimilar)
    };
    let handle = spawn_training(job(data.path(), plan.clone()), None).expect("spawn");
    wait_for(&handle, |e| matches!(e, TrainEvent::Epoch(_)));
    handle.send(TrainCommand::Pause);
    let seen = wait_for(&handle, |e| matches!(e, TrainEvent::Paused));
    assert!(matches!(seen.last(), Some(TrainEvent::Paused)), "{seen:?}");
    // Paused: no epochs arrive.
    assert!(
        handle
            .events
            .recv_timeout(Duration::from_millis(300))
            .is_err()
    );
    handle.send(TrainCommand::Resume);
    let seen = wait_for(&handle, |e| matches!(e, TrainEvent::Epoch(_)));
    assert!(seen.iter().any(|e| matches!(e, TrainEvent::Resumed)));
    handle.send(TrainCommand::Stop);
    let seen = wait_for(&handle, |e| e.is_terminal());
    assert!(
        matches!(seen.last(), Some(TrainEvent::Cancelled)),
        "{:?}",
        seen.last()
    );
    handle.join();
}

#[test]
fn a_huge_learning_rate_ends_with_a_clear_message() {
    common::init();
    let data = shapes(2, 8);
    let plan = TrainPlan {
        head_lr: 1e38,
        epochs: 30,
        ..tiny(Case::SmallSimilar)
    };
    let events = run(job(data.path(), plan));
    match events.last() {
        Some(TrainEvent::Finished(o)) => {
            assert!(
                o.report.stop_reason.to_string().contains("NaN"),
                "{}",
                o.report.stop_reason
            );
        }
        Some(TrainEvent::Failed { error }) => assert!(error.contains("NaN"), "{error}"),
        other => panic!("unexpected end {other:?}"),
    }
}

#[test]
fn bad_files_are_skipped_and_listed() {
    common::init();
    let data = shapes(2, 6);
    let root = data.path();
    std::fs::write(root.join("circle/empty.png"), b"").expect("write");
    std::fs::write(root.join("circle/notes.txt"), b"hello").expect("write");
    std::fs::write(root.join("square/fake.jpg"), b"\xff\xd8\xff\xe0 not a jpeg").expect("write");
    let png = std::fs::read(root.join("square/000.png")).expect("read");
    std::fs::write(root.join("square/truncated.png"), &png[..png.len() / 2]).expect("write");
    std::fs::write(root.join("square/.hidden.png"), b"ignored").expect("write");
    std::fs::write(root.join("loose.png"), &png).expect("write");
    std::fs::create_dir(root.join(".thumbnails")).expect("mkdir");
    std::fs::write(root.join(".thumbnails/x.png"), b"x").expect("write");
    let dataset = load_dataset(root, &LoadOptions::default(), &LoadProgress::default())
        .expect("loads despite bad files");
    assert_eq!(dataset.classes, vec!["circle", "square"]);
    assert_eq!(dataset.train.len() + dataset.val.len(), 12);
    let mut skipped: Vec<(String, String)> = dataset
        .skipped
        .iter()
        .map(|s| {
            (
                s.path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                s.reason.clone(),
            )
        })
        .collect();
    skipped.sort();
    let names: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "empty.png",
            "fake.jpg",
            "loose.png",
            "notes.txt",
            "truncated.png"
        ]
    );
    assert!(skipped.iter().all(|(_, reason)| !reason.is_empty()));
    assert!(skipped[0].1.contains("empty"));
}

#[test]
fn unusable_folders_are_clear_errors() {
    let missing = PathBuf::from("/definitely/not/here");
    assert_eq!(
        load_dataset(&missing, &LoadOptions::default(), &LoadProgress::default()).err(),
        Some(DatasetError::NotAFolder(missing))
    );
    let one = shapes(1, 3);
    assert!(matches!(
        load_dataset(
            one.path(),
            &LoadOptions::default(),
            &LoadProgress::default()
        ),
        Err(DatasetError::TooFewClasses(_, 1))
    ));
    let data = shapes(2, 3);
    std::fs::create_dir(data.path().join("empty-class")).expect("mkdir");
    std::fs::write(data.path().join("empty-class/broken.png"), b"").expect("write");
    match load_dataset(
        data.path(),
        &LoadOptions::default(),
        &LoadProgress::default(),
    ) {
        Err(DatasetError::EmptyClass(folder)) => assert!(folder.ends_with("empty-class")),
        other => panic!("expected an empty-class error, got {other:?}"),
    }
    let train = shapes(2, 3);
    let val = shapes(3, 2);
    let options = LoadOptions {
        val_dir: Some(val.path().to_owned()),
        ..LoadOptions::default()
    };
    match load_dataset(train.path(), &options, &LoadProgress::default()) {
        Err(DatasetError::UnknownValidationClasses { classes, .. }) => {
            assert_eq!(classes, vec!["triangle"]);
        }
        other => panic!("expected unknown validation classes, got {other:?}"),
    }
}

#[test]
fn stratified_split_keeps_every_class_in_both_parts() {
    let data = shapes(3, 5);
    let options = LoadOptions {
        val_fraction: 0.2,
        seed: 3,
        ..LoadOptions::default()
    };
    let a = load_dataset(data.path(), &options, &LoadProgress::default()).expect("load");
    for count in a.counts() {
        assert_eq!((count.train, count.val), (4, 1), "{}", count.class);
    }
    let b = load_dataset(data.path(), &options, &LoadProgress::default()).expect("load");
    let paths = |d: &transfer_studio::data::dataset::Dataset| {
        d.val.iter().map(|s| s.path.clone()).collect::<Vec<_>>()
    };
    assert_eq!(paths(&a), paths(&b), "same seed, same split");
    // Split again with another seed: as loading with that seed splits, pixels shared.
    let other = LoadOptions { seed: 8, ..options };
    let fresh = load_dataset(data.path(), &other, &LoadProgress::default()).expect("load");
    let again = a.resplit(8).expect("a split");
    assert_eq!(paths(&again), paths(&fresh));
    assert_ne!(
        paths(&again),
        paths(&a),
        "seed 8 splits otherwise than seed 3"
    );
    assert_eq!(again.validation, fresh.validation);
    let train = |d: &transfer_studio::data::dataset::Dataset| {
        d.train.iter().map(|s| s.path.clone()).collect::<Vec<_>>()
    };
    assert_eq!(train(&again), train(&fresh));
    assert_eq!(a.resplit(3).map(|d| paths(&d)), Some(paths(&a)));
}

/// An image cached smaller than asked for is decoded again, never enlarged from the copy; one
/// cached larger is shrunk from the file, not resized twice: every cache size gives the pixels
/// a load at the asked size gives.
#[test]
fn images_are_the_same_whatever_size_they_were_cached_at() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 3, 300, 5);
    let load = |side_px: u32| {
        let options = LoadOptions {
            cache_short_side_px: side_px,
            ..LoadOptions::default()
        };
        load_dataset(data.path(), &options, &LoadProgress::default()).expect("load")
    };
    let (small, exact, large) = (load(182), load(256), load(290));
    for ((s, e), l) in small.train.iter().zip(&exact.train).zip(&large.train) {
        let want = e.image(256).expect("decode");
        assert_eq!(want.width().min(want.height()), 256);
        assert_eq!(
            *s.image(256).expect("decode"),
            *want,
            "{}",
            s.path.display()
        );
        assert_eq!(
            *l.image(256).expect("decode"),
            *want,
            "{}",
            l.path.display()
        );
    }
}

#[test]
fn a_stopped_run_writes_nothing_and_mismatched_files_are_refused() {
    common::init();
    let data = shapes(2, 6);
    let handle = spawn_training(job(data.path(), tiny(Case::SmallSimilar)), None).expect("spawn");
    handle.send(TrainCommand::Stop);
    let events: Vec<TrainEvent> = handle.events.iter().collect();
    handle.join();
    assert!(matches!(events.last(), Some(TrainEvent::Cancelled)));

    // Two saves; swapping their weight files must be detected.
    let out = tempfile::tempdir().expect("out");
    let a = run(job(data.path(), tiny(Case::SmallSimilar)));
    let b = run(job(
        data.path(),
        TrainPlan {
            seed: 99,
            ..tiny(Case::SmallSimilar)
        },
    ));
    let (dir_a, dir_b) = (out.path().join("a"), out.path().join("b"));
    outcome(&a).model.save(&dir_a, None).expect("save a");
    outcome(&b).model.save(&dir_b, None).expect("save b");
    std::fs::copy(
        dir_b.join("model.safetensors"),
        dir_a.join("model.safetensors"),
    )
    .expect("copy");
    let error = TrainedModel::load(&dir_a, &Device::Cpu).expect_err("mismatch");
    assert!(error.to_string().contains("does not belong"), "{error}");

    // A non-model folder is never overwritten.
    let precious = out.path().join("precious");
    std::fs::create_dir(&precious).expect("mkdir");
    std::fs::write(precious.join("thesis.txt"), b"keep me").expect("write");
    assert!(outcome(&a).model.save(&precious, None).is_err());
    assert_eq!(
        std::fs::read(precious.join("thesis.txt")).expect("read"),
        b"keep me"
    );
}

#[test]
fn retraining_from_scratch_runs() {
    common::init();
    let data = shapes(2, 6);
    let plan = TrainPlan {
        image_size_px: 32,
        batch_size: 8,
        epochs: 1,
        ..Case::retrain_plan()
    };
    assert_eq!(plan.init, Init::Random);
    let events = run(job(data.path(), plan));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, TrainEvent::CachingFeatures { .. }))
    );
    outcome(&events);
}
