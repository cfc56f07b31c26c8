//! The camera in the window, fed by a recorded MJPEG stream (no camera on test machines):
//! a class made from the Camera section, frames recorded into its folder with the counter
//! following the disk, and live prediction with its Grad-CAM overlay.

use egui_kittest::kittest::Queryable;
use transfer_studio::capture::frame::rgb_to_mjpeg;
use transfer_studio::ui::command::CameraCommand;
use transfer_studio::ui::{Command, Tab};

use crate::common;
use crate::harness::{harness, step_until};

fn images_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn frames_are_recorded_into_a_new_class_and_classified_live() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut stream = Vec::new();
    for i in 0..4 {
        let frame = common::shape_image(i % 3, 96, i as u64);
        stream.extend(rgb_to_mjpeg(&frame, 85).expect("encode"));
    }
    let recording = tmp.path().join("demo.mjpeg");
    std::fs::write(&recording, stream).expect("write the stream");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("data folder");

    let mut h = harness();
    h.state_mut().apply(Command::SetTrainFolder(data.clone()));
    h.state_mut().apply(Command::ShowTab(Tab::Data));
    h.state_mut().open_camera(&recording.display().to_string());
    step_until(&mut h, "the first frame", |app| {
        app.camera.preview.is_some() && app.camera.description.is_some()
    });

    let field = h.get_by(|n| n.author_id() == Some("camera-class-name"));
    field.focus();
    field.type_text("mug");
    h.run_steps(2);
    h.get_by(|n| n.author_id() == Some("camera-new-class"))
        .click();
    step_until(&mut h, "the class folder", |app| {
        app.camera.counts.contains_key("mug")
    });
    assert!(data.join("mug").is_dir());
    h.get_by(|n| n.author_id() == Some("record-mug"));

    h.state_mut()
        .apply(Command::Camera(CameraCommand::Record(Some("mug".into()))));
    step_until(&mut h, "frames saved", |app| {
        app.camera.counts.get("mug").is_some_and(|&n| n >= 5)
    });
    h.state_mut()
        .apply(Command::Camera(CameraCommand::Record(None)));
    // After recording the counts are read from disk again: they match the folder.
    step_until(&mut h, "the counter to match the disk", |app| {
        app.camera.counts.get("mug") == Some(&images_in(&data.join("mug")))
    });
    assert!(images_in(&data.join("mug")) >= 5);

    h.state_mut().apply(Command::ShowTab(Tab::Predict));
    h.run_steps(2);
    h.get_by(|n| n.author_id() == Some("live-toggle")).click();
    step_until(&mut h, "a live answer", |app| {
        !app.camera.live.top.is_empty()
    });
    h.state_mut().apply(Command::ShowGradCam(true));
    step_until(&mut h, "a live overlay", |app| {
        app.camera.live.overlay.is_some()
    });
    h.state_mut().apply(Command::Camera(CameraCommand::Stop));
    h.run_steps(2);
    assert!(h.state().state().camera.running.is_none());
}
