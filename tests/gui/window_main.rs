//! The window, driven through its accessibility tree (egui_kittest; no display needed).

use crate::common;
use crate::harness as window;

use egui_kittest::kittest::Queryable;
use transfer_studio::model::Backbone;
use transfer_studio::model::Unit;
use transfer_studio::train::{Case, TrainPlan};
use transfer_studio::ui::{Command, RunStatus, Tab};
use window::{harness, loaded, step_until};

#[test]
fn clicking_each_grid_cell_selects_its_plan_and_redraws_the_strip() {
    let mut h = harness();
    h.state_mut().apply(Command::ShowTab(Tab::Guide));
    h.run();
    for case in Case::ALL {
        h.get_by(|n| n.author_id() == Some(&format!("cell-{case}")))
            .click();
        h.run();
        let plan = &h.state().state().settings.plan;
        assert_eq!(Case::matching(plan), Some(case));
        assert_eq!(plan.cut_after, case.plan().cut_after);
        // The strip follows the plan: a block for every unit, whatever is cut away.
        for unit in Backbone::default().units().iter().map(|u| u.unit) {
            h.get_by(|n| n.author_id() == Some(&format!("block-{unit}")));
        }
    }
    // Clicking a block cuts there; the grid then says the plan is edited.
    h.get_by(|n| n.author_id() == Some("block-block5")).click();
    h.run();
    assert_eq!(h.state().state().settings.plan.cut_after, Unit::Block(5));
    assert_eq!(Case::matching(&h.state().state().settings.plan), None);
    h.get_by_label_contains("no longer matches a preset");
}

#[test]
fn a_short_training_run_fills_the_charts_and_ends_with_a_confusion_matrix() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 8, 40, 3);
    let plan = TrainPlan {
        image_size_px: 32,
        epochs: 4,
        ..Case::SmallSimilar.plan()
    };
    let mut h = loaded(Some(plan), data.path());
    h.state_mut().apply(Command::ShowTab(Tab::Guide));
    h.run();
    h.get_by_label("Train with this plan").click();
    step_until(&mut h, "training", |app| {
        app.train
            .runs
            .last()
            .is_some_and(|r| matches!(r.status, RunStatus::Finished | RunStatus::Failed(_)))
    });
    let run = h.state().state().train.runs.last().expect("a run");
    assert_eq!(run.status, RunStatus::Finished);
    assert_eq!(run.epochs.len(), 4, "one chart point per epoch");
    assert!(!run.batch_losses.is_empty());
    step_until(&mut h, "the mistakes' thumbnails", |app| {
        app.model
            .report
            .as_ref()
            .and_then(|r| r.evaluation.as_ref())
            .is_some_and(|e| {
                e.misclassified
                    .iter()
                    .take(24)
                    .all(|m| app.shell.thumbnails.contains_key(&m.path))
            })
    });
    h.state_mut().apply(Command::ShowTab(Tab::Results));
    h.step();
    h.get_by(|n| n.author_id() == Some("confusion-0-0")).click();
    // The cell's thumbnails decode in the background (spinners repaint meanwhile).
    step_until(&mut h, "the cell's thumbnails", |app| {
        app.results.selected_cell == Some((0, 0))
            && app.model.report.as_ref().is_some_and(|r| {
                r.evaluation.as_ref().is_some_and(|e| {
                    e.predictions
                        .iter()
                        .filter(|(_, t, p)| *t == 0 && *p == 0)
                        .all(|(path, _, _)| app.shell.thumbnails.contains_key(path))
                })
            })
    });
    h.get_by_label_contains("validation accuracy");

    // Save, then open the model in a fresh window: Predict then uses the trained head.
    let saved = tempfile::tempdir().expect("model dir");
    let model_dir = saved.path().join("shapes-model");
    h.state_mut().apply(Command::SaveModelTo(model_dir.clone()));
    step_until(&mut h, "the save", |app| {
        app.shell
            .notices
            .iter()
            .any(|n| n.starts_with("model saved"))
    });
    assert!(model_dir.join("model.json").is_file());
    assert!(model_dir.join("model.safetensors").is_file());
    // A folder that holds something else is never overwritten: an error, in words.
    let occupied = saved.path().join("occupied");
    std::fs::create_dir_all(&occupied).expect("dir");
    std::fs::write(occupied.join("notes.txt"), "mine").expect("file");
    h.state_mut().apply(Command::SaveModelTo(occupied.clone()));
    step_until(&mut h, "the refusal", |app| !app.shell.errors.is_empty());
    assert!(
        h.state().state().shell.errors[0]
            .text
            .contains("not a saved model")
    );
    assert_eq!(
        std::fs::read_to_string(occupied.join("notes.txt")).expect("kept"),
        "mine"
    );
    // The error stays until a save succeeds, then it no longer holds and goes.
    let again = saved.path().join("again");
    h.state_mut().apply(Command::SaveModelTo(again.clone()));
    step_until(&mut h, "the second save", |app| app.shell.errors.is_empty());
    assert!(again.join("model.json").is_file());

    let mut fresh = harness();
    fresh.state_mut().apply(Command::OpenModelFrom(model_dir));
    step_until(&mut fresh, "the opened model", |app| {
        app.model.trained.is_some()
    });
    let first_class = std::fs::read_dir(data.path())
        .expect("classes")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .min()
        .expect("a class");
    let image = first_class.join("000.png");
    fresh.state_mut().apply(Command::AddImages(vec![image]));
    step_until(&mut fresh, "the prediction", |app| {
        app.predict.items.iter().all(|p| p.result.is_some())
    });
    let classes = &fresh
        .state()
        .state()
        .model
        .trained
        .as_ref()
        .expect("model")
        .classes;
    let top = match &fresh.state().state().predict.items[0].result {
        Some(Ok(top)) => top.clone(),
        other => panic!("no prediction: {other:?}"),
    };
    assert_eq!(top.len(), classes.len().min(5));
    assert!(classes.contains(&top[0].label));
    fresh.state_mut().apply(Command::ShowTab(Tab::Predict));
    fresh.run();
    fresh.get_by_label(&top[0].label);
}

#[test]
fn the_predict_panel_shows_imagenet_labels_before_training() {
    let mut h = harness();
    h.state_mut()
        .apply(Command::AddImages(vec![common::fixture("coffee.png")]));
    step_until(&mut h, "the prediction", |app| {
        app.predict.items.iter().all(|p| p.result.is_some())
    });
    h.run();
    h.get_by_label("espresso");
}

#[test]
fn the_grid_marks_the_measured_case_and_compare_runs_the_presets_in_turn() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 8, 40, 4);
    let mut h = harness();
    {
        let app = h.state_mut();
        app.apply(Command::SetTrainFolder(data.path().to_owned()));
    }
    step_until(&mut h, "the measurement", |app| app.guide.shown.is_some());
    let case = h
        .state()
        .state()
        .guide
        .shown
        .as_ref()
        .map(|r| r.case())
        .expect("case");
    // Flat generated shapes are far from ImageNet photos, and 8 per class is small.
    assert_eq!(case, Case::SmallDifferent);
    h.state_mut().apply(Command::ShowTab(Tab::Guide));
    h.run();
    h.get_by_label_contains("Your data: Start of ConvNet");
    // The size slider moves the dot along the size axis once the threshold is lowered.
    h.state_mut().apply(Command::SetThresholds(
        transfer_studio::guide::recommend::Thresholds {
            large_images_per_class: 3,
            similar_min_score: 0.45,
        },
    ));
    assert_eq!(
        h.state().state().guide.shown.as_ref().map(|r| r.case()),
        Some(Case::LargeDifferent)
    );
    h.state_mut().apply(Command::SetUsePercent(20));
    assert_eq!(
        h.state().state().guide.shown.as_ref().map(|r| r.case()),
        Some(Case::SmallDifferent)
    );
    h.state_mut().apply(Command::SetUsePercent(100));

    h.get_by_label("Compare all four").click();
    h.step();
    assert_eq!(h.state().state().train.runs.len(), 1);
    assert_eq!(h.state().state().train.compare_queue.len(), 3);
    step_until(&mut h, "the second preset", |app| app.train.runs.len() == 2);
    assert_eq!(h.state().state().train.runs[0].status, RunStatus::Finished);
    assert!(
        h.state().state().train.runs[0]
            .label
            .starts_with("End of ConvNet")
    );
    assert!(
        h.state().state().train.runs[1]
            .label
            .starts_with("Start of ConvNet")
    );
    // Stopping ends the comparison: the running preset stops and nothing else starts.
    h.state_mut()
        .apply(Command::Train(transfer_studio::train::TrainCommand::Stop));
    step_until(&mut h, "the stop", |app| !app.train.is_running());
    assert!(h.state().state().train.compare_queue.is_empty());
    let last = h.state().state().train.runs.last().expect("run");
    assert_eq!(last.status, RunStatus::Cancelled);
}

#[test]
fn the_backbone_picker_switches_the_network_and_the_strip_follows() {
    let mut h = harness();
    h.state_mut().apply(Command::ShowTab(Tab::Guide));
    h.state_mut()
        .apply(Command::SelectCase(Case::SmallDifferent));
    h.run();
    h.get_by(|n| n.author_id() == Some("backbone-picker"))
        .click();
    h.run();
    h.get_by(|n| n.author_id() == Some("backbone-resnet18"))
        .click();
    h.run();
    let resnet: Backbone = "resnet18".parse().expect("registered");
    let plan = h.state().state().settings.plan.clone();
    assert_eq!(plan.backbone, resnet);
    // The case stays; its cut is ResNet-18's generic one.
    assert_eq!(Case::matching(&plan), Some(Case::SmallDifferent));
    assert_eq!(plan.cut_after, resnet.generic_cut());
    for unit in resnet.units().iter().map(|u| u.unit) {
        h.get_by(|n| n.author_id() == Some(&format!("block-{unit}")));
    }
    assert!(
        h.query_by(|n| n.author_id() == Some("block-head"))
            .is_none(),
        "ResNet has no head unit"
    );
    // The weights picker names the network's default.
    h.get_by(|n| {
        n.author_id() == Some("weights-picker")
            && n.value()
                .is_some_and(|v| v.contains("hf:timm/resnet18.tv_in1k"))
    });
}

#[test]
fn a_model_opened_in_the_window_exports_to_onnx() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 6, 40, 5);
    let mut h = harness();
    h.state_mut().apply(Command::SetPlan(TrainPlan {
        image_size_px: 32,
        epochs: 2,
        ..Case::SmallSimilar.plan()
    }));
    h.state_mut()
        .apply(Command::SetTrainFolder(data.path().to_owned()));
    step_until(&mut h, "the dataset", |app| app.data.dataset.is_some());
    h.state_mut().apply(Command::StartTraining);
    step_until(&mut h, "the trained model", |app| {
        app.model.trained.is_some()
    });
    let out = tempfile::tempdir().expect("out");
    let path = out.path().join("shapes.onnx");
    h.state_mut().apply(Command::ExportTo(path.clone()));
    step_until(&mut h, "the export", |app| {
        app.shell
            .notices
            .iter()
            .any(|n| n.starts_with("exported to"))
    });
    let bytes = std::fs::read(&path).expect("written");
    assert!(bytes.len() > 1_000_000, "the weights are inside");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("labels") && text.contains("image_size"),
        "metadata"
    );
    // A name ending in .tflite gives TFLite; int8 calibrates on the loaded training images.
    h.state_mut().apply(Command::SetExportPrecision(
        transfer_studio::export::Precision::Int8,
    ));
    let tflite = out.path().join("shapes.tflite");
    h.state_mut().apply(Command::ExportTo(tflite.clone()));
    let exported = |n: &&String| n.starts_with("exported to") && n.contains("shapes.tflite");
    step_until(&mut h, "the TFLite export", |app| {
        app.shell.notices.iter().any(|n| exported(&n))
    });
    let bytes = std::fs::read(&tflite).expect("TFLite written");
    assert!(transfer_studio::export::tflite::is_tflite(&bytes));
    let meta = |k| transfer_studio::export::tflite::metadata(&bytes, k);
    assert_eq!(meta("precision").as_deref(), Some("int8"));
    let app = h.state().state();
    let notice = app.shell.notices.iter().find(exported);
    assert!(
        notice.is_some_and(|n| n.contains("top-1 agreement")),
        "{notice:?}"
    );
}
