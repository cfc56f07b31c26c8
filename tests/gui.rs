//! The window, driven through its accessibility tree (egui_kittest; no display needed).

mod common;

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use transfer_studio::model::Unit;
use transfer_studio::train::{Case, TrainPlan};
use transfer_studio::ui::app::RunStatus;
use transfer_studio::ui::{Command, StudioApp, Tab};

fn harness() -> Harness<'static, StudioApp> {
    common::init();
    Harness::builder()
        .with_size(egui::vec2(1200.0, 900.0))
        .build_eframe(|cc| StudioApp::new(&cc.egui_ctx, None))
}

/// Steps frames until `done` holds (workers keep requesting repaints, so `run` would not
/// settle).
fn step_until(h: &mut Harness<'static, StudioApp>, what: &str, done: impl Fn(&StudioApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

#[test]
fn clicking_each_grid_cell_selects_its_plan_and_redraws_the_strip() {
    let mut h = harness();
    h.state_mut().apply(Command::ShowTab(Tab::Guide));
    h.run();
    for case in Case::ALL {
        h.get_by(|n| n.author_id() == Some(&format!("cell-{case}")))
            .click();
        h.run();
        let plan = &h.state().settings.plan;
        assert_eq!(Case::matching(plan), Some(case));
        assert_eq!(plan.cut_after, case.plan().cut_after);
        // The strip follows the plan: a block for every unit, whatever is cut away.
        for unit in Unit::all() {
            h.get_by(|n| n.author_id() == Some(&format!("block-{unit}")));
        }
    }
    // Clicking a block cuts there; the grid then says the plan is edited.
    h.get_by(|n| n.author_id() == Some("block-block5")).click();
    h.run();
    assert_eq!(h.state().settings.plan.cut_after, Unit::Block(5));
    assert_eq!(Case::matching(&h.state().settings.plan), None);
    h.get_by_label_contains("no longer matches a preset");
}

#[test]
fn a_short_training_run_fills_the_charts_and_ends_with_a_confusion_matrix() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 8, 40, 3);
    let mut h = harness();
    {
        let app = h.state_mut();
        app.settings.train_dir = Some(data.path().to_owned());
        app.settings.plan = TrainPlan {
            image_size_px: 32,
            epochs: 4,
            ..Case::SmallSimilar.plan()
        };
        app.apply(Command::LoadDataset);
    }
    step_until(&mut h, "the dataset", |app| app.dataset.is_some());
    h.state_mut().apply(Command::ShowTab(Tab::Guide));
    h.run();
    h.get_by_label("Train with this plan").click();
    step_until(&mut h, "training", |app| {
        app.runs
            .last()
            .is_some_and(|r| matches!(r.status, RunStatus::Finished | RunStatus::Failed(_)))
    });
    let run = h.state().runs.last().expect("a run");
    assert_eq!(run.status, RunStatus::Finished);
    assert_eq!(run.epochs.len(), 4, "one chart point per epoch");
    assert!(!run.batch_losses.is_empty());
    step_until(&mut h, "the mistakes' thumbnails", |app| {
        app.trained_report
            .as_ref()
            .and_then(|r| r.evaluation.as_ref())
            .is_some_and(|e| {
                e.misclassified
                    .iter()
                    .take(24)
                    .all(|m| app.thumbnails.contains_key(&m.path))
            })
    });
    h.state_mut().apply(Command::ShowTab(Tab::Results));
    h.step();
    h.get_by(|n| n.author_id() == Some("confusion-0-0")).click();
    // The cell's thumbnails decode in the background (spinners repaint meanwhile).
    step_until(&mut h, "the cell's thumbnails", |app| {
        app.selected_cell == Some((0, 0))
            && app.trained_report.as_ref().is_some_and(|r| {
                r.evaluation.as_ref().is_some_and(|e| {
                    e.predictions
                        .iter()
                        .filter(|(_, t, p)| *t == 0 && *p == 0)
                        .all(|(path, _, _)| app.thumbnails.contains_key(path))
                })
            })
    });
    h.get_by_label_contains("validation accuracy");

    // Save, then open the model in a fresh window: Predict then uses the trained head.
    let saved = tempfile::tempdir().expect("model dir");
    let model_dir = saved.path().join("shapes-model");
    h.state_mut().apply(Command::SaveModelTo(model_dir.clone()));
    step_until(&mut h, "the save", |app| {
        app.notices.iter().any(|n| n.starts_with("model saved"))
    });
    assert!(model_dir.join("model.json").is_file());
    assert!(model_dir.join("model.safetensors").is_file());
    // A folder that holds something else is never overwritten: an error, in words.
    let occupied = saved.path().join("occupied");
    std::fs::create_dir_all(&occupied).expect("dir");
    std::fs::write(occupied.join("notes.txt"), "mine").expect("file");
    h.state_mut().apply(Command::SaveModelTo(occupied.clone()));
    step_until(&mut h, "the refusal", |app| !app.errors.is_empty());
    assert!(h.state().errors[0].contains("not a saved model"));
    assert_eq!(
        std::fs::read_to_string(occupied.join("notes.txt")).expect("kept"),
        "mine"
    );

    let mut fresh = harness();
    fresh.state_mut().apply(Command::OpenModelFrom(model_dir));
    step_until(&mut fresh, "the opened model", |app| app.trained.is_some());
    let first_class = std::fs::read_dir(data.path())
        .expect("classes")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .min()
        .expect("a class");
    let image = first_class.join("000.png");
    fresh.state_mut().add_images(vec![image]);
    step_until(&mut fresh, "the prediction", |app| {
        app.predictions.iter().all(|p| p.result.is_some())
    });
    let classes = &fresh.state().trained.as_ref().expect("model").classes;
    let top = match &fresh.state().predictions[0].result {
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
        .add_images(vec![common::fixture("coffee.png")]);
    step_until(&mut h, "the prediction", |app| {
        app.predictions.iter().all(|p| p.result.is_some())
    });
    h.run();
    h.get_by_label("espresso");
}
