//! Layout, one file per panel. Each panel reads [`AppState`] and returns [`Command`]s; nothing
//! here touches the disk, decodes images or blocks.

mod browser;
mod camera;
mod compare;
mod data;
mod doctor;
mod doctor_map;
mod guide;
mod heatmap;
mod inspect;
mod predict;
mod results;
mod strip;
mod train;
pub mod widgets;

use egui::{Color32, RichText};

use crate::ui::command::Command;
use crate::ui::state::{AppState, Tab};
use widgets::tag;

/// Where training runs, and a choice of device (not while training).
fn device_picker_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    ui.add_enabled_ui(!state.train.is_running(), |ui| {
        let response = egui::ComboBox::from_id_salt("device-picker")
            .selected_text(format!("runs on: {}", state.shell.device_label))
            .show_ui(ui, |ui| {
                for choice in crate::runtime::DeviceChoice::ALL {
                    let item = ui.selectable_label(state.settings.device == choice, choice.title());
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
pub fn window_ui(ui: &mut egui::Ui, state: &AppState) -> Vec<Command> {
    let mut out = Vec::new();
    egui::Panel::top("tabs").show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.heading("Transfer Studio");
            ui.separator();
            for tab in Tab::ALL {
                if ui
                    .selectable_label(state.settings.tab == tab, tab.title())
                    .clicked()
                {
                    out.push(Command::ShowTab(tab));
                }
            }
            ui.separator();
            device_picker_ui(ui, state, &mut out);
            if let Some(secs) = state.shell.frame_secs {
                ui.label(RichText::new(format!("frame {:.1} ms", secs * 1000.0)).weak())
                    .on_hover_text("CPU time of the last frame's layout");
            }
        });
    });
    if !state.shell.errors.is_empty() || !state.shell.notices.is_empty() {
        egui::Panel::bottom("messages").show(ui, |ui| {
            for (i, e) in state.shell.errors.iter().enumerate() {
                // The button first: a long message (a remedy at its end) wraps in what is left.
                ui.horizontal_top(|ui| {
                    if ui.small_button("dismiss").clicked() {
                        out.push(Command::DismissError(i));
                    }
                    // Offline, with weights not in the hub's cache: the way out, one click away.
                    if e.text.contains("not in the cache") {
                        let choose = ui.small_button("choose a weights file…");
                        tag(ui, &choose, "error-choose-weights");
                        if choose.clicked() {
                            out.push(Command::Pick(crate::ui::browser::PathRequest::Weights));
                        }
                    }
                    let text = RichText::new(&e.text).color(Color32::from_rgb(200, 40, 40));
                    ui.add(egui::Label::new(text).wrap());
                });
            }
            if let Some(n) = state.shell.notices.last() {
                ui.add(egui::Label::new(RichText::new(n).weak()).wrap());
            }
        });
    }
    widgets::edit_keys_ui(ui, state, &mut out);
    egui::CentralPanel::default().show(ui, |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| match state.settings.tab {
            Tab::Data => data::data_panel_ui(ui, state, &mut out),
            Tab::Guide => guide::guide_panel_ui(ui, state, &mut out),
            Tab::Train => train::train_panel_ui(ui, state, &mut out),
            Tab::Results => results::results_panel_ui(ui, state, &mut out),
            Tab::Predict => predict::predict_panel_ui(ui, state, &mut out),
            Tab::Inspect => inspect::inspect_panel_ui(ui, state, &mut out),
        });
    });
    if let Some(b) = &state.shell.browser {
        browser::browser_ui(ui.ctx(), b, &mut out);
    }
    out
}
