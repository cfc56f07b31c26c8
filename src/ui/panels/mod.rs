//! Layout, one file per panel. Each panel reads [`AppState`] and returns [`Command`]s; nothing
//! here touches the disk, decodes images or blocks.

mod browser;
mod compare;
mod data;
mod guide;
mod heatmap;
mod inspect;
mod predict;
mod results;
mod strip;
mod train;

use egui::{Color32, RichText};

use super::command::Command;
use super::state::{AppState, Tab};

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

pub(super) fn run_colour(index: usize) -> Color32 {
    RUN_COLOURS[index % RUN_COLOURS.len()]
}

/// Tags a widget with a stable id for tests and assistive tools.
pub(super) fn tag(ui: &egui::Ui, response: &egui::Response, id: &str) {
    let id_owned = id.to_owned();
    ui.ctx()
        .accesskit_node_builder(response.id, move |node| node.set_author_id(id_owned));
}

/// Says that the model shown is the previous run's when the data or the plan changed after it
/// was trained.
pub(super) fn stale_model_ui(ui: &mut egui::Ui, app: &AppState) {
    if let Some(reason) = app.stale_model_reason() {
        ui.colored_label(
            Color32::from_rgb(200, 140, 30),
            format!("This is the previous run's model: {reason}. Train again to update it."),
        );
    }
}

/// Where training runs, and a choice of device (not while training).
fn device_picker_ui(ui: &mut egui::Ui, app: &AppState, out: &mut Vec<Command>) {
    ui.add_enabled_ui(!app.training, |ui| {
        let response = egui::ComboBox::from_id_salt("device-picker")
            .selected_text(format!("runs on: {}", app.device_label))
            .show_ui(ui, |ui| {
                for choice in crate::runtime::DeviceChoice::ALL {
                    let item = ui.selectable_label(app.settings.device == choice, choice.title());
                    tag(ui, &item, &format!("device-{choice:?}"));
                    if item.clicked() {
                        out.push(Command::SetDevice(choice));
                    }
                }
            });
        tag(ui, &response.response, "device-picker");
        response.response.on_hover_text(
            "Where training and predictions run; auto picks a CUDA GPU when there is one",
        );
    });
}

/// The whole window.
pub fn show(ui: &mut egui::Ui, app: &AppState) -> Vec<Command> {
    let mut out = Vec::new();
    egui::Panel::top("tabs").show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.heading("Transfer Studio");
            ui.separator();
            for tab in Tab::ALL {
                if ui
                    .selectable_label(app.settings.tab == tab, tab.title())
                    .clicked()
                {
                    out.push(Command::ShowTab(tab));
                }
            }
            ui.separator();
            device_picker_ui(ui, app, &mut out);
            if let Some(secs) = app.frame_secs {
                ui.label(RichText::new(format!("frame {:.1} ms", secs * 1000.0)).weak())
                    .on_hover_text("CPU time of the last frame's layout");
            }
        });
    });
    if !app.errors.is_empty() || !app.notices.is_empty() {
        egui::Panel::bottom("messages").show(ui, |ui| {
            for (i, e) in app.errors.iter().enumerate() {
                ui.horizontal(|ui| {
                    ui.colored_label(Color32::from_rgb(200, 40, 40), e);
                    if ui.small_button("dismiss").clicked() {
                        out.push(Command::DismissError(i));
                    }
                });
            }
            if let Some(n) = app.notices.last() {
                ui.label(RichText::new(n).weak());
            }
        });
    }
    egui::CentralPanel::default().show(ui, |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| match app.settings.tab {
            Tab::Data => data::data_panel(ui, app, &mut out),
            Tab::Guide => guide::guide_panel(ui, app, &mut out),
            Tab::Train => train::train_panel(ui, app, &mut out),
            Tab::Results => results::results_panel(ui, app, &mut out),
            Tab::Predict => predict::predict_panel(ui, app, &mut out),
            Tab::Inspect => inspect::inspect_panel(ui, app, &mut out),
        });
    });
    if let Some(b) = &app.browser {
        browser::browser_ui(ui.ctx(), b, &mut out);
    }
    out
}
