//! The Data panel: the training folder, a demo pack, counts, thumbnails.

use egui::{Color32, Vec2};

use crate::data::dataset::Dataset;
use crate::data::demo::DemoPack;
use crate::ui::browser::PathRequest;
use crate::ui::command::{Command, THUMBNAILS_PER_CLASS};
use crate::ui::state::AppState;

use super::widgets::{selection_hint_ui, tag, thumbnail_ui};

pub(super) fn data_panel_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    ui.heading("Data");
    folders_ui(ui, state, out);
    if let Some((done, total)) = state.data.loading {
        ui.add(
            egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                .text(format!("decoding {done} / {total} images")),
        );
    }
    if let Some(e) = &state.data.error {
        ui.colored_label(Color32::from_rgb(200, 40, 40), e);
    }
    egui::CollapsingHeader::new(egui::RichText::new("Camera").heading())
        .id_salt("camera")
        .default_open(true)
        .show(ui, |ui| super::camera::camera_ui(ui, state, out));
    let Some(dataset) = &state.data.dataset else {
        return;
    };
    ui.separator();
    dataset_ui(ui, state, dataset, out);
    ui.separator();
    egui::CollapsingHeader::new(egui::RichText::new("Doctor").heading())
        .id_salt("doctor")
        .default_open(true)
        .show(ui, |ui| super::doctor::doctor_ui(ui, state, dataset, out));
}

/// The training and validation folders, and the demo packs.
fn folders_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    ui.label("One sub-folder per class, images inside. Drop a folder onto the window, or:");
    ui.horizontal(|ui| {
        if ui.button("Choose training folder…").clicked() {
            out.push(Command::Pick(PathRequest::TrainFolder));
        }
        if let Some(dir) = &state.settings.train_dir {
            ui.monospace(dir.display().to_string());
        }
    });
    ui.horizontal(|ui| {
        if ui.button("Choose validation folder…").clicked() {
            out.push(Command::Pick(PathRequest::ValidationFolder));
        }
        match &state.settings.val_dir {
            Some(dir) => {
                ui.monospace(dir.display().to_string());
                if ui.small_button("use a split instead").clicked() {
                    out.push(Command::ClearValidation);
                }
            }
            None => {
                ui.label(format!(
                    "none: {:.0} % of each class is held out",
                    state.settings.plan.val_fraction * 100.0
                ));
            }
        }
    });
    ui.horizontal(|ui| {
        ui.label("Or a bundled demo pack:");
        for pack in DemoPack::ALL {
            if ui
                .button(pack.name())
                .on_hover_text(pack.description())
                .clicked()
            {
                out.push(Command::OpenDemo(pack));
            }
        }
    });
}

/// The size slider, the counts per class with thumbnails, and what was skipped.
fn dataset_ui(ui: &mut egui::Ui, state: &AppState, dataset: &Dataset, out: &mut Vec<Command>) {
    let mut percent = state.settings.use_percent;
    if ui
        .add(egui::Slider::new(&mut percent, 1..=100).text("% of the training images used"))
        .changed()
    {
        out.push(Command::SetUsePercent(percent));
    }
    let used = dataset.subset_len(f64::from(state.settings.use_percent) / 100.0);
    ui.label(format!(
        "{} classes; {} training images in use ({:.0} per class), {} validation images; \
         {} held in memory",
        dataset.classes.len(),
        used,
        used as f64 / dataset.classes.len().max(1) as f64,
        dataset.val.len(),
        dataset.cached_count()
    ));
    let counts = dataset.counts();
    let train: Vec<usize> = counts.iter().map(|c| c.train).collect();
    let largest = train.iter().copied().max().unwrap_or(0);
    let smallest = train.iter().copied().min().unwrap_or(0);
    if crate::train::plan::imbalanced(&train) {
        ui.colored_label(
            egui::Color32::from_rgb(200, 140, 30),
            format!(
                "Imbalanced classes: the largest has {largest} training images, the smallest \
                 {smallest}. Overall accuracy can hide a small class the model ignores: read \
                 each class's recall in Results. The class-weighted loss (Guide, Advanced \
                 settings) is on by default for such data."
            ),
        );
    }
    edit_bar_ui(ui, state, dataset, out);
    egui::Grid::new("class-counts")
        .striped(true)
        .show(ui, |ui| {
            ui.strong("class");
            ui.strong("train");
            ui.strong("validation");
            ui.strong("examples");
            ui.strong("");
            ui.end_row();
            for (c, count) in counts.iter().enumerate() {
                ui.label(&count.class);
                // The count with a bar scaled to the largest class: imbalance at a glance.
                let share = count.train as f32 / largest.max(1) as f32;
                ui.add(
                    egui::ProgressBar::new(share)
                        .desired_width(80.0)
                        .text(count.train.to_string()),
                );
                ui.label(count.val.to_string());
                ui.horizontal(|ui| {
                    for sample in dataset.examples(c, THUMBNAILS_PER_CLASS) {
                        thumbnail_ui(ui, state, &sample.path, 48.0, out);
                    }
                });
                class_actions_ui(ui, state, &count.class, out);
                ui.end_row();
            }
        });
    augmentation_ui(ui, state, out);
    if !dataset.skipped.is_empty() {
        egui::CollapsingHeader::new(format!("{} files skipped", dataset.skipped.len())).show(
            ui,
            |ui| {
                // Only the visible lines are laid out (there may be thousands).
                let row_height_px = ui.text_style_height(&egui::TextStyle::Body);
                egui::ScrollArea::vertical()
                    .id_salt("skipped-files")
                    .max_height(row_height_px * 12.0)
                    .show_rows(ui, row_height_px, dataset.skipped.len(), |ui, range| {
                        for s in &dataset.skipped[range] {
                            ui.label(format!("{}: {}", s.path.display(), s.reason));
                        }
                    });
            },
        );
    }
}

/// What random crops and flips do to a few training images: their evaluation crop, then the
/// views the first fine-tuning epochs train on.
fn augmentation_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    const VIEW_PX: f32 = 64.0;
    ui.horizontal(|ui| {
        if ui.button("Preview augmentation").clicked() {
            out.push(Command::PreviewAugmentation);
        }
        let note = if state.settings.plan.augment {
            "what random crops and flips show the network, epoch by epoch"
        } else {
            "augmentation is off in this plan (Guide, Advanced settings): this is what it would do"
        };
        ui.label(egui::RichText::new(note).weak());
    });
    let Some(rows) = &state.data.augment_preview else {
        return;
    };
    egui::Grid::new("augmentation-preview").show(ui, |ui| {
        for (class, eval, views) in rows {
            ui.label(class);
            ui.vertical(|ui| {
                ui.add(egui::Image::new(eval).fit_to_exact_size(Vec2::splat(VIEW_PX)));
                ui.label(egui::RichText::new("evaluation").small());
            });
            for (i, view) in views.iter().enumerate() {
                ui.vertical(|ui| {
                    ui.add(egui::Image::new(view).fit_to_exact_size(Vec2::splat(VIEW_PX)));
                    ui.label(egui::RichText::new(format!("view {}", i + 1)).small());
                });
            }
            ui.end_row();
        }
    });
}

/// The class name field (for a new class or a rename), undo, and the selection with what keys
/// do to it.
fn edit_bar_ui(ui: &mut egui::Ui, state: &AppState, dataset: &Dataset, out: &mut Vec<Command>) {
    let data = &state.data;
    ui.horizontal(|ui| {
        let mut draft = data.class_draft.clone();
        let field = ui.add(
            egui::TextEdit::singleline(&mut draft)
                .hint_text("class name")
                .desired_width(140.0),
        );
        tag(ui, &field, "class-name");
        if field.changed() {
            out.push(Command::SetClassDraft(draft.clone()));
        }
        let name = draft.trim().to_owned();
        let free = !name.is_empty() && !dataset.classes.contains(&name);
        let new = ui.add_enabled(free && !data.editing, egui::Button::new("New class"));
        tag(ui, &new, "new-class");
        if new.clicked() {
            out.push(Command::NewClass(name));
        }
        if let Some(last) = data.undo.last() {
            let undo = ui
                .add_enabled(!data.editing, egui::Button::new("Undo"))
                .on_hover_text(format!("Ctrl+Z: {}", last.journal.summary));
            tag(ui, &undo, "undo-edit");
            if undo.clicked() {
                out.push(Command::UndoEdit);
            }
        }
        if data.editing {
            ui.spinner();
        }
    });
    selection_hint_ui(ui, state, out);
}

/// Renaming (to the name in the class field) and deleting one class.
fn class_actions_ui(ui: &mut egui::Ui, state: &AppState, class: &str, out: &mut Vec<Command>) {
    let data = &state.data;
    let to = data.class_draft.trim();
    ui.horizontal(|ui| {
        let rename = ui
            .add_enabled(
                !to.is_empty() && to != class && !data.editing,
                egui::Button::new("rename").small(),
            )
            .on_hover_text("rename this class to the name in the class field");
        tag(ui, &rename, &format!("rename-{class}"));
        if rename.clicked() {
            out.push(Command::RenameClass {
                from: class.to_owned(),
                to: to.to_owned(),
            });
        }
        let delete = ui
            .add_enabled(!data.editing, egui::Button::new("delete").small())
            .on_hover_text(
                "send this class's folder, images and all, to the trash (Undo brings it back)",
            );
        tag(ui, &delete, &format!("delete-{class}"));
        if delete.clicked() {
            out.push(Command::DeleteClass(class.to_owned()));
        }
    });
}
