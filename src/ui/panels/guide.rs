//! The Guide panel: the 2×2 grid, the measured recommendation and the depth probe.

use egui::{Color32, RichText, Vec2};
use egui_plot::{Legend, Line, Plot, PlotPoints};

use crate::train::cut::CutChoice;

use super::strip::{advanced_ui, block_strip_ui};
use super::widgets::{FROZEN, NEW_HEAD, TRAINABLE, tag};
use crate::model::{Backbone, Init, WeightsSource};
use crate::train::Case;
use crate::ui::browser::PathRequest;
use crate::ui::command::Command;
use crate::ui::state::{AppState, Job};

pub(super) fn guide_panel_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    backbone_picker_ui(ui, state, out);
    ui.heading("Which case is yours?");
    let current = Case::matching(&state.settings.plan);
    let measured = state.guide.shown.as_ref().map(|r| r.case());
    let cell_size = Vec2::new(260.0, 70.0);
    egui::Grid::new("guide-grid")
        .spacing([8.0, 8.0])
        .show(ui, |ui| {
            ui.label("");
            ui.strong("similar to ImageNet");
            ui.strong("different from ImageNet");
            ui.end_row();
            for large in [false, true] {
                ui.strong(if large {
                    "large dataset"
                } else {
                    "small dataset"
                });
                for similar in [true, false] {
                    let case = Case::from_axes(large, similar);
                    let selected = current == Some(case);
                    let yours = measured == Some(case);
                    let text = RichText::new(format!(
                        "{}{}\n{}",
                        case.title(),
                        if yours { "  (your data)" } else { "" },
                        case.rule()
                    ));
                    let button = egui::Button::new(text)
                        .min_size(cell_size)
                        .wrap()
                        .selected(selected);
                    let response = ui.add_sized(cell_size, button);
                    tag(ui, &response, &format!("cell-{case}"));
                    if yours {
                        // The measured dot, drawn (the default fonts have no bullet glyph).
                        let centre = response.rect.right_top() + Vec2::new(-12.0, 12.0);
                        ui.painter().circle_filled(centre, 6.0, NEW_HEAD);
                        response.clone().on_hover_text("Your data, as measured");
                    }
                    if response.clicked() {
                        out.push(Command::SelectCase(case));
                    }
                }
                ui.end_row();
            }
        });
    recommendation_ui(ui, state, out);
    match current {
        Some(case) => ui.label(format!("Selected: {} ({case}).", case.title())),
        None => ui.colored_label(
            TRAINABLE,
            "Edited: the plan no longer matches a preset. Click a cell to reset it.",
        ),
    };
    let offers_retrain =
        current == Some(Case::LargeDifferent) || state.settings.plan.init == Init::Random;
    let retraining = state.settings.plan.init == Init::Random;
    if offers_retrain
        && ui
            .selectable_label(retraining, "Retrain from scratch (random init)")
            .clicked()
    {
        out.push(if retraining {
            Command::SelectCase(Case::LargeDifferent)
        } else {
            Command::Retrain
        });
    }
    ui.separator();
    block_strip_ui(ui, state, out);
    ui.separator();
    advanced_ui(ui, &state.settings.plan, out);
    ui.separator();
    ui.label(state.settings.plan.summary());
    let can_train = state.data.dataset.is_some() && !state.train.is_running();
    ui.horizontal(|ui| {
        if ui
            .add_enabled(can_train, egui::Button::new("Train with this plan"))
            .clicked()
        {
            out.push(Command::StartTraining);
        }
        if ui
            .add_enabled(can_train, egui::Button::new("Compare all four"))
            .on_hover_text(
                "Train the four presets one after the other on this data and overlay them",
            )
            .clicked()
        {
            out.push(Command::CompareAll);
        }
        if !state.train.compare_queue.is_empty() {
            ui.label(format!("{} more to train", state.train.compare_queue.len()));
        }
    });
    ui.separator();
    probe_ui(ui, state, out);
}

/// The measured place of the data on the grid, its explanation and the thresholds.
pub(super) fn recommendation_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    if state.data.dataset.is_none() {
        ui.label("Load a training folder (Data) to see where it sits on the grid.");
        return;
    }
    if state.guide.recommendation.is_running() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Measuring your data against ImageNet…");
        });
    }
    if let Some(r) = &state.guide.shown {
        ui.label(
            RichText::new(format!("Your data: {} ({})", r.case().title(), r.case))
                .strong()
                .color(NEW_HEAD),
        );
        ui.label(RichText::new("Measured on your data:").strong());
        for fact in &r.measured {
            ui.label(format!("  - {fact}"));
        }
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("The guide's rule:").strong());
            ui.label(&r.rule);
        });
        if ui.button("Use this case").clicked() {
            out.push(Command::SelectCase(r.case()));
        }
    }
    ui.collapsing("Thresholds", |ui| {
        let mut t = state.settings.thresholds;
        let mut changed = false;
        ui.horizontal(|ui| {
            ui.label("large from");
            changed |= ui
                .add(egui::DragValue::new(&mut t.large_images_per_class).range(1..=100_000))
                .changed();
            ui.label("images per class");
        });
        ui.horizontal(|ui| {
            ui.label("similar from score");
            changed |= ui
                .add(egui::Slider::new(&mut t.similar_min_score, 0.0..=1.0).step_by(0.01))
                .changed();
        });
        ui.label(
            "The score is 1 / (1 + D / 0.1), D the mean divergence between your images' \
             activation statistics and the ImageNet statistics stored in the network's \
             BatchNorm layers.",
        );
        if changed {
            out.push(Command::SetThresholds(t));
        }
    });
}

/// The cross-validated probe: where the pretrained features stop transferring to this data
/// (what *Start of ConvNet* cuts by), as a curve with the chosen cut marked.
pub(super) fn probe_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.strong("Depth probe");
        let response = ui
            .add_enabled(
                state.data.dataset.is_some() && !state.guide.probe.is_running(),
                egui::Button::new("Run"),
            )
            .on_hover_text(
                "A linear classifier on the features after several depths, each scored by \
                 cross-validation on the training images only",
            );
        tag(ui, &response, "probe-run");
        if response.clicked() {
            out.push(Command::RunProbe);
        }
        if state.guide.probe.is_running() {
            ui.spinner();
        }
    });
    match &state.guide.probe {
        Job::Done(choice) => probe_curve_ui(ui, state, choice),
        Job::Failed(e) => {
            ui.colored_label(Color32::RED, e);
        }
        Job::Idle | Job::Running => {
            ui.label(
                "Where do the pretrained features stop helping with your classes? (Start of \
                 ConvNet cuts there.)",
            );
        }
    }
}

fn probe_curve_ui(ui: &mut egui::Ui, state: &AppState, choice: &CutChoice) {
    let backbone = state.settings.plan.backbone;
    let x = |unit| backbone.index_of(unit) as f64;
    let curve: PlotPoints<'_> = choice
        .points
        .iter()
        .map(|p| [x(p.unit), p.cv_accuracy])
        .collect();
    let names: Vec<(f64, String)> = choice
        .points
        .iter()
        .map(|p| (x(p.unit), p.unit.to_string()))
        .collect();
    let chosen = choice.points.iter().find(|p| p.unit == choice.chosen);
    Plot::new("depth-probe")
        .height(180.0)
        .legend(Legend::default().position(egui_plot::Corner::LeftBottom))
        .include_y(0.0)
        .include_y(1.0)
        .x_axis_formatter(move |mark, _| {
            names
                .iter()
                .find(|(x, _)| (x - mark.value).abs() < 0.01)
                .map(|(_, n)| n.clone())
                .unwrap_or_default()
        })
        .show(ui, |plot| {
            plot.line(Line::new("cross-validated accuracy", curve).color(NEW_HEAD));
            if let Some(p) = chosen {
                plot.points(
                    egui_plot::Points::new("the cut", vec![[x(p.unit), p.cv_accuracy]])
                        .radius(6.0)
                        .color(FROZEN),
                );
                plot.vline(egui_plot::VLine::new("", x(p.unit)).color(FROZEN));
            }
        });
    let sentence = ui.label(choice.sentence());
    tag(ui, &sentence, "probe-sentence");
}

/// The network the plans train, and where its weights come from.
fn backbone_picker_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    let plan = &state.settings.plan;
    ui.horizontal(|ui| {
        let response = egui::ComboBox::from_label("Network")
            .selected_text(plan.backbone.title())
            .show_ui(ui, |ui| {
                for backbone in Backbone::all() {
                    let chosen = ui.selectable_label(plan.backbone == backbone, backbone.title());
                    tag(ui, &chosen, &format!("backbone-{}", backbone.name()));
                    if chosen.clicked() && plan.backbone != backbone {
                        out.push(Command::SetBackbone(backbone));
                    }
                }
            });
        tag(ui, &response.response, "backbone-picker");
        weights_picker_ui(ui, state, out);
    });
}

/// Where the network's weights come from: its default (bundled, or the hub's, downloaded once
/// into the cache), or a file chosen here (for offline use).
pub(super) fn weights_picker_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    let plan = &state.settings.plan;
    let default = plan.backbone.weights_or_default(None);
    let shown = match &plan.weights {
        Some(WeightsSource::File(path)) => path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
        Some(other) => other.to_string(),
        None => format!("default ({default})"),
    };
    let response = egui::ComboBox::from_id_salt("weights-picker")
        .selected_text(format!("weights: {shown}"))
        .show_ui(ui, |ui| {
            let item = ui.selectable_label(plan.weights.is_none(), format!("default ({default})"));
            tag(ui, &item, "weights-default");
            if item.clicked() {
                out.push(Command::SetWeights(None));
            }
            let file = ui.selectable_label(false, "choose a .pth/.safetensors file…");
            tag(ui, &file, "weights-file");
            if file.clicked() {
                out.push(Command::Pick(PathRequest::Weights));
            }
        });
    tag(ui, &response.response, "weights-picker");
    response.response.on_hover_text(
        "hf:… weights are downloaded once into the Hugging Face cache, then used offline; a \
         file (torchvision or timm names) needs no network at all",
    );
}
