//! The Camera section (Data): pick a camera, see it, hold a class's button to record into its
//! folder; and live prediction (Predict): the camera's frames classified as they come.

use egui::{Color32, Sense, Vec2};

use crate::ui::command::{CameraCommand, Command};
use crate::ui::state::AppState;

use super::widgets::tag;

const PREVIEW_WIDTH_PX: f32 = 320.0;

fn send(out: &mut Vec<Command>, command: CameraCommand) {
    out.push(Command::Camera(command));
}

/// The camera picker, start/stop, and what the running camera does.
fn picker_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    let camera = &state.camera;
    if !camera.listed {
        send(out, CameraCommand::List);
    }
    if camera.listed && camera.cameras.is_empty() {
        ui.label(crate::capture::no_camera_reason());
        if ui.small_button("look again").clicked() {
            send(out, CameraCommand::List);
        }
        return;
    }
    let chosen = state
        .settings
        .camera
        .clone()
        .filter(|id| camera.cameras.iter().any(|c| &c.id == id))
        .or_else(|| camera.cameras.first().map(|c| c.id.clone()));
    ui.horizontal(|ui| {
        let name = |id: &str| {
            camera
                .cameras
                .iter()
                .find(|c| c.id == id)
                .map_or_else(|| id.to_owned(), |c| c.name.clone())
        };
        let combo = egui::ComboBox::from_id_salt("camera-picker")
            .selected_text(chosen.as_deref().map_or_else(String::new, name))
            .show_ui(ui, |ui| {
                for c in &camera.cameras {
                    if ui
                        .selectable_label(chosen.as_ref() == Some(&c.id), &c.name)
                        .clicked()
                    {
                        send(out, CameraCommand::Start(c.id.clone()));
                    }
                }
            });
        tag(ui, &combo.response, "camera-picker");
        match (&camera.running, &chosen) {
            (Some(_), _) => {
                if ui.button("Stop camera").clicked() {
                    send(out, CameraCommand::Stop);
                }
            }
            (None, Some(id)) => {
                let start = ui.button("Start camera");
                tag(ui, &start, "camera-start");
                if start.clicked() {
                    send(out, CameraCommand::Start(id.clone()));
                }
            }
            (None, None) => {}
        }
        if ui
            .small_button("look again")
            .on_hover_text("look for cameras again")
            .clicked()
        {
            send(out, CameraCommand::List);
        }
    });
    if let Some(e) = &camera.error {
        ui.add(
            egui::Label::new(egui::RichText::new(e).color(Color32::from_rgb(200, 40, 40))).wrap(),
        );
    }
    if let Some(d) = &camera.description {
        ui.label(
            egui::RichText::new(format!("{d} · {:.0} frames/s", camera.frames_per_sec)).weak(),
        );
    }
}

/// The preview at a fixed width (black until the first frame).
fn preview_ui(ui: &mut egui::Ui, state: &AppState) {
    match &state.camera.preview {
        Some(tex) => {
            let size = tex.size_vec2();
            let height = PREVIEW_WIDTH_PX * size.y / size.x.max(1.0);
            ui.add(egui::Image::new(tex).fit_to_exact_size(Vec2::new(PREVIEW_WIDTH_PX, height)));
        }
        None if state.camera.running.is_some() => {
            ui.allocate_ui(Vec2::new(PREVIEW_WIDTH_PX, 240.0), |ui| ui.spinner());
        }
        None => {}
    }
}

/// The Camera section of the Data tab.
pub(super) fn camera_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    picker_ui(ui, state, out);
    if state.camera.running.is_none() {
        return;
    }
    let Some(root) = &state.settings.train_dir else {
        preview_ui(ui, state);
        ui.label("Choose a training folder above (an empty one is fine) to record into.");
        return;
    };
    ui.horizontal_top(|ui| {
        preview_ui(ui, state);
        ui.vertical(|ui| classes_ui(ui, state, root, out));
    });
}

/// One row per class folder: its image count and a hold-to-record button; a new class field.
fn classes_ui(ui: &mut egui::Ui, state: &AppState, root: &std::path::Path, out: &mut Vec<Command>) {
    let camera = &state.camera;
    ui.label(format!("Record into a class of {}:", root.display()));
    let released = ui.input(|i| i.pointer.any_released());
    egui::Grid::new("camera-classes")
        .striped(true)
        .show(ui, |ui| {
            for (class, count) in &camera.counts {
                let recording = camera.recording.as_deref() == Some(class.as_str());
                ui.label(class);
                ui.label(format!("{count} images"));
                let text = if recording {
                    "recording…"
                } else {
                    "hold to record"
                };
                let fill = if recording {
                    Color32::from_rgb(190, 40, 40)
                } else {
                    Color32::TRANSPARENT
                };
                let button = egui::Button::new(text)
                    .fill(fill)
                    .sense(Sense::click_and_drag());
                let response = ui.add(button);
                tag(ui, &response, &format!("record-{class}"));
                // Records from the press until the release (wherever the pointer is let go).
                if response.is_pointer_button_down_on() && !recording {
                    send(out, CameraCommand::Record(Some(class.clone())));
                } else if recording && (response.drag_stopped() || response.clicked() || released) {
                    send(out, CameraCommand::Record(None));
                }
                ui.end_row();
            }
        });
    ui.horizontal(|ui| {
        let mut draft = camera.class_draft.clone();
        let field = ui.add(
            egui::TextEdit::singleline(&mut draft)
                .hint_text("new class")
                .desired_width(140.0),
        );
        tag(ui, &field, "camera-class-name");
        if field.changed() {
            send(out, CameraCommand::SetClassDraft(draft.clone()));
        }
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let button = ui.button("New class");
        tag(ui, &button, "camera-new-class");
        if (button.clicked() || enter) && !draft.trim().is_empty() {
            send(out, CameraCommand::NewClass(draft));
        }
    });
    let mut fps = state.settings.record_fps;
    let slider = ui.add(egui::Slider::new(&mut fps, 1..=30).text("frames saved per second"));
    if slider.changed() {
        send(out, CameraCommand::SetRecordFps(fps));
    }
    ui.label(
        egui::RichText::new(format!(
            "saved {} this session ({:.1} frames/s){}",
            camera.saved,
            camera.saved_per_sec,
            if camera.dropped > 0 {
                format!(", {} not saved: the disk was too slow", camera.dropped)
            } else {
                String::new()
            }
        ))
        .weak(),
    );
}

/// Predict's live view: the camera's frames classified as they come, with Grad-CAM when on.
pub(super) fn live_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    let live = &state.camera.live;
    let mut on = live.on;
    let toggle = ui.checkbox(&mut on, "Live from the camera");
    tag(ui, &toggle, "live-toggle");
    if toggle.changed() {
        send(out, CameraCommand::Live(on));
    }
    if !on {
        return;
    }
    if state.camera.running.is_none() {
        picker_ui(ui, state, out);
        return;
    }
    ui.horizontal_top(|ui| {
        preview_ui(ui, state);
        if state.settings.show_grad_cam
            && let Some(tex) = &live.overlay
        {
            ui.add(egui::Image::new(tex).fit_to_exact_size(Vec2::splat(224.0)));
        }
        ui.vertical(|ui| {
            super::widgets::top_classes_ui(ui, &live.top);
            if let Some(e) = &live.error {
                ui.colored_label(Color32::from_rgb(200, 40, 40), e);
            }
            let overlays = if state.settings.show_grad_cam {
                format!(", {:.1} overlays/s", live.overlays_per_sec)
            } else {
                String::new()
            };
            ui.label(
                egui::RichText::new(format!(
                    "{:.1} predictions/s{overlays} (frames the model cannot keep up with are skipped)",
                    live.predictions_per_sec
                ))
                .weak(),
            );
        });
    });
}
