//! The Predict panel: images classified by the trained or the ImageNet head.

use egui::{Color32, Sense, Vec2};

use crate::ui::browser::PathRequest;
use crate::ui::command::Command;
use crate::ui::state::AppState;

pub(super) fn predict_panel_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    ui.heading("Predict");
    match &state.model.trained {
        Some(m) => ui.label(format!(
            "Using your trained classifier ({} classes: {}).",
            m.classes.len(),
            m.classes.join(", ")
        )),
        None => ui.label(
            "No model trained yet: showing what the pretrained network sees (ImageNet's 1000 classes).",
        ),
    };
    super::widgets::stale_model_ui(ui, state);
    ui.horizontal(|ui| {
        if ui.button("Add images…").clicked() {
            out.push(Command::Pick(PathRequest::Images));
        }
        if ui
            .add_enabled(!state.predict.items.is_empty(), egui::Button::new("Clear"))
            .clicked()
        {
            out.push(Command::ClearImages);
        }
        ui.label("or drop images onto the window");
        if ui
            .add_enabled(state.model.trained.is_some(), egui::Button::new("Export…"))
            .on_hover_text(super::train::EXPORT_HOVER)
            .clicked()
        {
            out.push(Command::Pick(PathRequest::ExportFile));
        }
        let chosen = state.settings.export_precision;
        egui::ComboBox::from_id_salt("export-precision")
            .selected_text(chosen.name())
            .show_ui(ui, |ui| {
                for p in [
                    crate::export::Precision::F32,
                    crate::export::Precision::F16,
                    crate::export::Precision::Int8,
                ] {
                    if ui.selectable_label(chosen == p, p.name()).clicked() {
                        out.push(Command::SetExportPrecision(p));
                    }
                }
            })
            .response
            .on_hover_text(
                "f16 (ONNX only): half the file size; int8: a quarter, calibrated on the \
                 training images. The file is checked against the app after writing",
            );
    });
    grad_cam_toggle_ui(ui, state, true, out);
    super::camera::live_ui(ui, state, out);
    for item in &state.predict.items {
        ui.separator();
        ui.horizontal(|ui| {
            match state.shell.thumbnails.get(&item.path) {
                Some(tex) => {
                    ui.add(egui::Image::new(tex).fit_to_exact_size(Vec2::splat(96.0)));
                }
                None => {
                    ui.allocate_exact_size(Vec2::splat(96.0), Sense::hover());
                }
            }
            if state.settings.show_grad_cam {
                explanation_ui(ui, state, &item.path, 96.0);
            }
            ui.vertical(|ui| {
                ui.label(
                    item.path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                match &item.result {
                    None => {
                        ui.spinner();
                    }
                    Some(Err(e)) => {
                        ui.colored_label(Color32::from_rgb(200, 40, 40), e);
                    }
                    Some(Ok(top)) => super::widgets::top_classes_ui(ui, top),
                }
            });
        });
    }
}

/// The switch for the Grad-CAM overlays (shared by Predict and the mistakes gallery).
pub(super) fn grad_cam_toggle_ui(
    ui: &mut egui::Ui,
    state: &AppState,
    enabled: bool,
    out: &mut Vec<Command>,
) {
    let mut on = state.settings.show_grad_cam;
    let response = ui
        .add_enabled(
            enabled,
            egui::Checkbox::new(&mut on, "Show where it looked (Grad-CAM)"),
        )
        .on_hover_text(
            "Colours the parts of the image that raised the score of the predicted class \
             (red: most), taken at the last feature map before pooling",
        )
        .on_disabled_hover_text("Grad-CAM shows the current model: pick it under Results of");
    super::widgets::tag(ui, &response, "grad-cam-toggle");
    if response.changed() {
        out.push(Command::ShowGradCam(on));
    }
}

/// An image's Grad-CAM overlay, a spinner while it is computed, or why it failed.
pub(super) fn explanation_ui(
    ui: &mut egui::Ui,
    state: &AppState,
    path: &std::path::Path,
    side_px: f32,
) {
    match state.predict.explanations.get(path) {
        Some(Ok((tex, caption))) => {
            let response = ui
                .add(egui::Image::new(tex).fit_to_exact_size(Vec2::splat(side_px)))
                .on_hover_text(caption);
            super::widgets::tag(ui, &response, &format!("grad-cam-{}", path.display()));
        }
        Some(Err(e)) => {
            ui.colored_label(Color32::from_rgb(200, 40, 40), e);
        }
        None => {
            ui.allocate_ui(Vec2::splat(side_px), |ui| ui.spinner());
        }
    }
}
