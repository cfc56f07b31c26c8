//! What several panels draw alike: the strip's colours, run colours, stable ids for tests,
//! and the stale-model warning.

use egui::Color32;

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
