//! The window's looks inside the network: the Inspect view and the Grad-CAM overlays.

use crate::common;
use crate::harness as window;

use egui_kittest::kittest::Queryable;
use transfer_studio::model::Unit;
use transfer_studio::train::{Case, TrainPlan};
use transfer_studio::ui::{Command, Tab};
use window::{harness, step_until, train_on};

#[test]
fn the_inspect_view_shows_an_early_and_a_late_unit_and_follows_the_strip() {
    let mut h = harness();
    let cat = common::fixture("chelsea.png");
    h.state_mut().apply(Command::AddImages(vec![cat.clone()]));
    h.state_mut().apply(Command::ShowTab(Tab::Inspect));
    step_until(&mut h, "the thumbnail", |app| {
        app.shell.thumbnails.contains_key(&cat)
    });
    h.get_by_label_contains("Pick an image above");
    h.get_by(|n| n.author_id() == Some("inspect-image-0"))
        .click();
    step_until(&mut h, "the maps", |app| {
        app.inspect.shown.len() == 2 && !app.inspect.busy
    });
    let units: Vec<Unit> = h
        .state()
        .state()
        .inspect
        .shown
        .iter()
        .map(|s| s.maps.unit)
        .collect();
    assert_eq!(units, [Unit::Stem, Unit::Head]);
    h.get_by_label_contains("stem (left): the 16 strongest of 32 channels");
    h.get_by_label_contains("head (right): the 16 strongest of 1280 channels");
    h.get_by_label_contains("7 x 7 map: one cell per 32 x 32 input pixels");
    h.get_by(|n| n.author_id() == Some("inspect-maps-head"));

    // The right side takes the next click on the strip.
    h.get_by_label("right").click();
    h.run();
    h.get_by(|n| n.author_id() == Some("inspect-unit-block5"))
        .click();
    step_until(&mut h, "block 5's maps", |app| {
        app.inspect
            .shown
            .get(1)
            .is_some_and(|s| s.maps.unit == Unit::Block(5))
    });
    h.get_by_label_contains("block5 (right): the 16 strongest of 80 channels");
    assert_eq!(h.state().state().inspect.shown[0].maps.unit, Unit::Stem);
    h.get_by(|n| n.author_id() == Some("inspect-maps-block5"));
}

/// Folders whose images are drawn at random from all shapes: whatever is learnt, the
/// validation images include mistakes.
fn write_noisy_labels(root: &std::path::Path) {
    for (class, name) in ["a", "b"].iter().enumerate() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("class dir");
        for i in 0..8 {
            let kind = (i * 7 + class * 3) % 4;
            let image = common::shape_image(kind, 40, (class * 100 + i) as u64);
            image.save(dir.join(format!("{i:03}.png"))).expect("write");
        }
    }
}

#[test]
fn the_grad_cam_switch_overlays_predict_and_the_mistakes_of_the_new_model() {
    let mut h = harness();
    let cat = common::fixture("chelsea.png");
    h.state_mut().apply(Command::AddImages(vec![cat.clone()]));
    step_until(&mut h, "the prediction", |app| {
        app.predict.items.iter().all(|i| i.result.is_some())
    });
    assert!(!h.state().state().settings.show_grad_cam);
    h.get_by(|n| n.author_id() == Some("grad-cam-toggle"))
        .click();
    step_until(&mut h, "the overlay", |app| {
        app.predict
            .explanations
            .get(&cat)
            .is_some_and(|e| e.is_ok())
    });
    assert!(h.state().state().settings.show_grad_cam);
    h.get_by(|n| n.author_id() == Some(format!("grad-cam-{}", cat.display()).as_str()));

    // A new model: the overlays are made again with it, mistakes included.
    let data = tempfile::tempdir().expect("data");
    write_noisy_labels(data.path());
    let plan = TrainPlan {
        image_size_px: 32,
        epochs: 2,
        ..Case::SmallSimilar.plan()
    };
    h.state_mut().apply(Command::SetPlan(plan));
    train_on(&mut h, data.path(), 2);
    let mistakes: Vec<std::path::PathBuf> = h
        .state()
        .state()
        .model
        .report
        .as_ref()
        .and_then(|r| r.evaluation.as_ref())
        .map(|e| e.misclassified.iter().map(|m| m.path.clone()).collect())
        .unwrap_or_default();
    assert!(!mistakes.is_empty(), "noisy labels leave mistakes");
    step_until(&mut h, "overlays of the new model", |app| {
        mistakes
            .iter()
            .chain([&cat])
            .all(|p| app.predict.explanations.get(p).is_some_and(|e| e.is_ok()))
    });
    h.state_mut().apply(Command::ShowTab(Tab::Results));
    h.run_steps(3);
    h.get_by(|n| n.author_id() == Some(format!("grad-cam-{}", mistakes[0].display()).as_str()));
    // Switching the overlays off shows the plain thumbnails again.
    h.get_by(|n| n.author_id() == Some("grad-cam-toggle"))
        .click();
    h.run_steps(3);
    assert!(!h.state().state().settings.show_grad_cam);
    assert!(
        h.query_by(
            |n| n.author_id() == Some(format!("grad-cam-{}", mistakes[0].display()).as_str())
        )
        .is_none()
    );
}
