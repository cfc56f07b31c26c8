//! The Guide's measurements in the window: what was measured and the rule, apart; the
//! cross-validated depth probe with its chosen cut.

mod common;
mod window;

use egui_kittest::kittest::Queryable;
use transfer_studio::ui::{Command, Tab};
use window::{loaded, step_until};

#[test]
fn the_guide_separates_measurements_from_the_rule_and_probes_where_to_cut() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 3, 8, 40, 12);
    let mut h = loaded(None, data.path());
    h.state_mut().apply(Command::ShowTab(Tab::Guide));
    h.run();
    h.get_by_label("Measured on your data:");
    h.get_by_label_contains("training images per class (large from 200): small");
    h.get_by_label_contains("similarity to ImageNet");
    h.get_by_label("The guide's rule:");
    h.get_by_label_contains("Where to cut is measured on your training images");

    h.get_by(|n| n.author_id() == Some("probe-run")).click();
    step_until(&mut h, "the probe", |app| {
        !app.probing && app.probe.is_some()
    });
    let choice = match &h.state().state().probe {
        Some(Ok(choice)) => choice.clone(),
        other => panic!("probe failed: {other:?}"),
    };
    assert_eq!(choice.images, 18, "the training split only (6 per class)");
    assert_eq!(choice.folds, 5);
    let chosen = choice.chosen.to_string();
    h.get_by(|n| {
        n.author_id() == Some("probe-sentence") && n.value().is_some_and(|l| l.contains(&chosen))
    });
}
