//! What several panels draw alike: the strip's colours, run colours, stable ids for tests,
//! and the stale-model warning.

use egui::Color32;

use crate::ui::command::Command;
use crate::ui::state::AppState;

pub const FROZEN: Color32 = Color32::from_rgb(96, 125, 160);
pub const TRAINABLE: Color32 = Color32::from_rgb(230, 140, 40);
pub const CUT_AWAY: Color32 = Color32::from_rgb(200, 200, 200);
pub const NEW_HEAD: Color32 = Color32::from_rgb(70, 170, 90);

/// One colour per run, so that overlaid runs stay apart (training solid, validation dashed).
const RUN_COLOURS: [Color32; 6] = [
    Color32::from_rgb(66, 133, 244),
    Color32::from_rgb(230, 140, 40),
    Color32::from_rgb(70, 170, 90),
    Color32::from_rgb(200, 70, 160),
    Color32::from_rgb(150, 110, 60),
    Color32::from_rgb(120, 120, 220),
];

pub fn run_colour(index: usize) -> Color32 {
    RUN_COLOURS[index % RUN_COLOURS.len()]
}

/// Tags a widget with a stable id for tests and assistive tools.
pub fn tag(ui: &egui::Ui, response: &egui::Response, id: &str) {
    let id_owned = id.to_owned();
    ui.ctx()
        .accesskit_node_builder(response.id, move |node| node.set_author_id(id_owned));
}

/// Says that the model shown is the previous run's when the data or the plan changed after it
/// was trained.
pub fn stale_model_ui(ui: &mut egui::Ui, state: &AppState) {
    if let Some(reason) = state.stale_model_reason() {
        ui.colored_label(
            Color32::from_rgb(200, 140, 30),
            format!("This is the previous run's model: {reason}. Train again to update it."),
        );
    }
}

/// A dataset image's thumbnail that can be selected for editing: a click selects it alone,
/// with Ctrl (or Shift) it joins the selection; selected ones are framed. Tagged
/// `thumb:<path>` for tests.
pub fn thumbnail_ui(
    ui: &mut egui::Ui,
    state: &AppState,
    path: &std::path::Path,
    side_px: f32,
    out: &mut Vec<Command>,
) -> Option<egui::Response> {
    let texture = state.shell.thumbnails.get(path)?;
    let selected = state.data.selection.contains(path);
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let image = egui::Image::new(texture)
        .fit_to_exact_size(egui::Vec2::splat(side_px))
        .alt_text(name)
        .sense(egui::Sense::click());
    let frame_colour = if selected {
        Color32::from_rgb(66, 133, 244)
    } else {
        Color32::TRANSPARENT
    };
    let response = egui::Frame::new()
        .stroke(egui::Stroke::new(3.0, frame_colour))
        .show(ui, |ui| ui.add(image))
        .inner;
    tag(ui, &response, &format!("thumb:{}", path.display()));
    if response.clicked() {
        let add = ui.input(|i| i.modifiers.command || i.modifiers.shift);
        out.push(Command::SelectImage {
            path: path.to_owned(),
            add,
        });
    }
    Some(response.on_hover_text(format!(
        "{}\nclick to select (Ctrl: add); then 1–9 moves to a class, Delete removes, Ctrl+Z undoes",
        path.display()
    )))
}

/// Keys for the selected images: 1–9 move them to that class (in the Data panel's order),
/// Delete sends them to the trash, Escape deselects; Ctrl+Z undoes the last edit. Not while
/// a text field has the keyboard.
pub fn edit_keys_ui(ui: &egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    if ui.ctx().egui_wants_keyboard_input() {
        return;
    }
    const DIGITS: [egui::Key; 9] = [
        egui::Key::Num1,
        egui::Key::Num2,
        egui::Key::Num3,
        egui::Key::Num4,
        egui::Key::Num5,
        egui::Key::Num6,
        egui::Key::Num7,
        egui::Key::Num8,
        egui::Key::Num9,
    ];
    ui.input(|i| {
        if i.modifiers.command && i.key_pressed(egui::Key::Z) {
            out.push(Command::UndoEdit);
        }
        if state.data.selection.is_empty() {
            return;
        }
        let classes = state.data.dataset.as_ref().map(|d| d.classes.as_slice());
        for (key, class) in DIGITS.iter().zip(classes.unwrap_or_default()) {
            if i.key_pressed(*key) {
                out.push(Command::MoveSelected(class.clone()));
            }
        }
        if i.key_pressed(egui::Key::Delete) {
            out.push(Command::RemoveSelected);
        }
        if i.key_pressed(egui::Key::Escape) {
            out.push(Command::ClearSelection);
        }
    });
}

/// One line under a thumbnail grid: how to select, or what the keys do to the selection. Always
/// one line, so that selecting does not move the thumbnails under the pointer.
pub fn selection_hint_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    let data = &state.data;
    if data.selection.is_empty() {
        ui.label(
            egui::RichText::new(
                "Click images to select them (Ctrl: add more); then 1–9 moves them to a class, \
                 Delete sends them to the trash, Ctrl+Z undoes.",
            )
            .weak(),
        );
        return;
    }
    let classes = data.dataset.as_ref().map(|d| d.classes.as_slice());
    let keys: Vec<String> = classes
        .unwrap_or_default()
        .iter()
        .take(9)
        .enumerate()
        .map(|(i, c)| format!("{} {c}", i + 1))
        .collect();
    ui.horizontal_wrapped(|ui| {
        ui.label(format!(
            "{} selected: press {} to move them there, Delete to send them to the trash, \
             Escape to deselect.",
            data.selection.len(),
            keys.join(", ")
        ));
        if ui.small_button("remove").clicked() {
            out.push(Command::RemoveSelected);
        }
    });
}

/// The most probable classes, one bar each, most probable first.
pub fn top_classes_ui(ui: &mut egui::Ui, top: &[crate::predict::ClassProb]) {
    for class in top {
        ui.horizontal(|ui| {
            ui.add(
                egui::ProgressBar::new(class.prob)
                    .desired_width(160.0)
                    .text(format!("{:.1} %", class.prob * 100.0)),
            );
            ui.label(&class.label);
        });
    }
}
