//! The block strip (what is frozen, trainable, cut away) and the advanced settings.

use egui::{Color32, Sense, Vec2};

use super::widgets::{CUT_AWAY, FROZEN, NEW_HEAD, TRAINABLE, tag};
use crate::model::Init;
use crate::train::TrainPlan;
use crate::ui::command::Command;
use crate::ui::state::AppState;

/// The network as a strip of blocks: frozen, trainable, cut away, and the new head.
pub(super) fn block_strip_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    let (cut, trainable) = state.plan_units();
    let plan = &state.settings.plan;
    let backbone = plan.backbone;
    let first_trainable = plan.first_trainable_unit();
    let cut_index = backbone.index_of(cut);
    ui.label("The network, input on the left (click a block to cut after it):");
    let block = Vec2::new(34.0, 44.0);
    ui.horizontal(|ui| {
        for (i, info) in backbone.units().iter().enumerate() {
            let unit = info.unit;
            let color = if i > cut_index {
                CUT_AWAY
            } else if i >= first_trainable {
                TRAINABLE
            } else {
                FROZEN
            };
            let (rect, response) = ui.allocate_exact_size(block, Sense::click());
            let painter = ui.painter();
            painter.rect_filled(rect, 3.0, color);
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                backbone.unit_label(unit),
                egui::FontId::proportional(11.0),
                Color32::BLACK,
            );
            let note = backbone
                .unit_note(unit)
                .map_or_else(String::new, |n| format!("; {n}"));
            let response = response.on_hover_text(format!(
                "{unit}: {} channels, stride {}{note}",
                info.out_channels, info.output_stride
            ));
            tag(ui, &response, &format!("block-{unit}"));
            if response.clicked() {
                let plan = TrainPlan {
                    cut_after: unit,
                    auto_cut: false,
                    ..state.settings.plan.clone()
                };
                out.push(Command::SetPlan(plan));
            }
        }
        let (rect, _) = ui.allocate_exact_size(Vec2::new(44.0, block.y), Sense::hover());
        ui.painter().rect_filled(rect, 3.0, NEW_HEAD);
        ui.painter().text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            "new FC",
            egui::FontId::proportional(11.0),
            Color32::BLACK,
        );
    });
    ui.horizontal(|ui| {
        for (color, name) in [
            (FROZEN, "frozen"),
            (TRAINABLE, "trainable"),
            (CUT_AWAY, "cut away"),
            (NEW_HEAD, "new head"),
        ] {
            let (rect, _) = ui.allocate_exact_size(Vec2::splat(12.0), Sense::hover());
            ui.painter().rect_filled(rect, 2.0, color);
            ui.label(name);
        }
    });
    cut_controls_ui(ui, state, cut_index, trainable, out);
}

/// The cut and trainable-blocks sliders, and the switch for choosing the cut from the data.
fn cut_controls_ui(
    ui: &mut egui::Ui,
    state: &AppState,
    cut_index: usize,
    trainable: usize,
    out: &mut Vec<Command>,
) {
    let backbone = state.settings.plan.backbone;
    let mut cut_index = cut_index;
    let mut trainable_units = trainable;
    ui.horizontal(|ui| {
        let changed_cut = ui
            .add(
                egui::Slider::new(&mut cut_index, 0..=backbone.unit_count() - 1)
                    .custom_formatter(|v, _| backbone.unit_at(v as usize).to_string())
                    .text("cut after"),
            )
            .changed();
        let mut auto = state.settings.plan.auto_cut;
        let changed_auto = ui
            .checkbox(&mut auto, "choose the cut from the data")
            .on_hover_text(
                "When training starts, a cross-validated linear probe on the training images \
                 picks the cut where the pretrained features stop helping (ties: the earlier \
                 cut); the strip shows the fallback until then",
            )
            .changed();
        if changed_auto {
            out.push(Command::SetPlan(TrainPlan {
                auto_cut: auto,
                ..state.settings.plan.clone()
            }));
        }
        let kept = cut_index + 1;
        let changed_trainable = ui
            .add(egui::Slider::new(&mut trainable_units, 0..=kept).text("trainable blocks"))
            .changed();
        if changed_cut || changed_trainable {
            out.push(Command::SetPlan(TrainPlan {
                cut_after: backbone.unit_at(cut_index),
                auto_cut: state.settings.plan.auto_cut && !changed_cut,
                trainable_units: trainable_units.min(kept),
                ..state.settings.plan.clone()
            }));
        }
    });
}

pub(super) fn advanced_ui(ui: &mut egui::Ui, plan: &TrainPlan, out: &mut Vec<Command>) {
    egui::CollapsingHeader::new("Advanced settings").show(ui, |ui| {
        let mut p = plan.clone();
        egui::Grid::new("advanced").num_columns(2).show(ui, |ui| {
            ui.label("epochs");
            ui.add(egui::DragValue::new(&mut p.epochs).range(0..=500));
            ui.end_row();
            ui.label("classifier-only epochs first");
            ui.add(egui::DragValue::new(&mut p.head_epochs).range(0..=100));
            ui.end_row();
            ui.label("image size (px)");
            ui.add(
                egui::DragValue::new(&mut p.image_size_px)
                    .range(crate::train::plan::IMAGE_SIZE_RANGE_PX)
                    .speed(8),
            );
            ui.end_row();
            ui.label("batch size");
            ui.add(egui::DragValue::new(&mut p.batch_size).range(1..=256));
            ui.end_row();
            ui.label("learning rate");
            ui.add(
                egui::DragValue::new(&mut p.head_lr)
                    .range(1e-6..=1.0)
                    .speed(1e-4),
            );
            ui.end_row();
            ui.label("backbone learning-rate multiplier");
            ui.add(
                egui::DragValue::new(&mut p.backbone_lr_mult)
                    .range(0.0..=1.0)
                    .speed(0.01),
            );
            ui.end_row();
            ui.label("initialisation");
            ui.horizontal(|ui| {
                ui.radio_value(&mut p.init, Init::Pretrained, "pretrained");
                ui.radio_value(&mut p.init, Init::Random, "random");
            });
            ui.end_row();
            ui.label("augmentation (random crops, flips)");
            ui.checkbox(&mut p.augment, "on");
            ui.end_row();
            ui.label("class-weighted loss").on_hover_text(
                "each image's loss weighted by N / (K x its class's images); auto: on when \
                 the largest class has more than 3x the images of the smallest",
            );
            ui.horizontal(|ui| {
                for choice in crate::train::plan::ClassWeights::ALL {
                    ui.radio_value(&mut p.class_weights, choice, choice.name());
                }
            });
            ui.end_row();
            ui.label("early-stopping patience (epochs)");
            ui.add(egui::DragValue::new(&mut p.patience).range(0..=100));
            ui.end_row();
            ui.label("seed");
            ui.add(egui::DragValue::new(&mut p.seed));
            ui.end_row();
        });
        if &p != plan {
            out.push(Command::SetPlan(p));
        }
    });
}
