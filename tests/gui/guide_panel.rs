//! The Guide in the window (what was measured and the rule, apart; the
//! cross-validated depth probe with its chosen cut) and the device picker in the top bar.

use crate::common;
use crate::harness as window;

use egui_kittest::kittest::Queryable;
use transfer_studio::ui::state::Job;
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
        !matches!(app.guide.probe, Job::Idle | Job::Running)
    });
    let choice = match &h.state().state().guide.probe {
        Job::Done(choice) => choice.clone(),
        other => panic!("probe failed: {other:?}"),
    };
    assert_eq!(choice.images, 18, "the training split only (6 per class)");
    assert_eq!(choice.folds, 5);
    let chosen = choice.chosen.to_string();
    h.get_by(|n| {
        n.author_id() == Some("probe-sentence") && n.value().is_some_and(|l| l.contains(&chosen))
    });
}

/// The top bar says where training runs and offers the devices; one this build cannot use is
/// an error in words, and the current device stays.
#[test]
fn the_device_picker_shows_where_training_runs() {
    let mut h = window::harness();
    h.run();
    h.get_by(|n| {
        n.author_id() == Some("device-picker")
            && n.value().is_some_and(|v| v.starts_with("runs on: CPU"))
    });
    h.state_mut().apply(Command::SetDevice(
        transfer_studio::runtime::DeviceChoice::Cuda,
    ));
    h.run();
    if cfg!(feature = "cuda") {
        return;
    }
    let state = h.state().state();
    assert!(
        state
            .shell
            .errors
            .iter()
            .any(|e| e.text.contains("no CUDA support")),
        "{:?}",
        state.shell.errors
    );
    assert_eq!(
        state.settings.device,
        transfer_studio::runtime::DeviceChoice::Auto
    );
    h.state_mut().apply(Command::SetDevice(
        transfer_studio::runtime::DeviceChoice::Cpu,
    ));
    h.run();
    assert_eq!(
        h.state().state().settings.device,
        transfer_studio::runtime::DeviceChoice::Cpu
    );
    h.get_by(|n| {
        n.author_id() == Some("device-picker")
            && n.value().is_some_and(|v| v.starts_with("runs on: CPU"))
    });
}

/// The network's weights can come from a file chosen in the window (for offline use): the
/// picker offers it beside the default, the plan remembers it, and training loads it.
#[test]
fn weights_chosen_from_a_file_are_remembered_and_trained_from() {
    let data = tempfile::tempdir().expect("data");
    common::write_shapes(data.path(), 2, 6, 32, 21);
    let weights = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/models/efficientnet_lite0.safetensors");
    let quick = transfer_studio::train::TrainPlan {
        image_size_px: 32,
        epochs: 2,
        ..transfer_studio::train::Case::SmallSimilar.plan()
    };
    let mut h = loaded(Some(quick), data.path());
    h.state_mut().apply(Command::ShowTab(Tab::Guide));
    h.run();
    h.get_by(|n| n.author_id() == Some("weights-picker"))
        .click();
    h.run();
    h.get_by(|n| n.author_id() == Some("weights-file"));
    h.state_mut()
        .apply(Command::SetWeights(Some(weights.clone())));
    let plan = &h.state().state().settings.plan;
    assert_eq!(
        plan.weights,
        Some(transfer_studio::model::WeightsSource::File(weights.clone()))
    );
    // Remembered: the plan is part of the persisted settings.
    let saved = serde_json::to_string(&h.state().state().settings).expect("json");
    assert!(saved.contains("efficientnet_lite0.safetensors"), "{saved}");
    h.state_mut().apply(Command::StartTraining);
    step_until(&mut h, "training", |s| {
        s.train.runs.last().is_some_and(|r| {
            matches!(
                r.status,
                transfer_studio::ui::RunStatus::Finished
                    | transfer_studio::ui::RunStatus::Failed(_)
            )
        })
    });
    let model = h.state().state().model.trained.as_ref().expect("a model");
    let source = &model.pretrained.as_ref().expect("pretrained").source;
    assert_eq!(
        *source,
        transfer_studio::model::WeightsSource::File(weights)
    );
}
