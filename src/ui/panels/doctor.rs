//! The Doctor view on the Data tab: copies across the split first, then duplicate groups,
//! likely mislabels (each with its suggested class, one click to move it), class health, and
//! the map of the features at each cut.

use std::path::{Path, PathBuf};

use egui::{Color32, RichText};

use super::doctor_map::map_ui;
use super::widgets::{tag, thumbnail_ui};
use crate::data::dataset::Dataset;
use crate::doctor::Report;
use crate::ui::command::{Command, DoctorCommand};
use crate::ui::state::AppState;

/// Thumbnail side in the doctor's lists.
const THUMB_PX: f32 = 56.0;
/// Duplicate groups and suspects listed, at most (the CLI's JSON has them all).
const MAX_GROUPS: usize = 12;
const MAX_SUSPECTS: usize = 24;
const WARN: Color32 = Color32::from_rgb(200, 140, 30);

pub(super) fn doctor_ui(
    ui: &mut egui::Ui,
    state: &AppState,
    dataset: &Dataset,
    out: &mut Vec<Command>,
) {
    let doctor = &state.doctor;
    ui.label(
        "Finds copies (the same photo twice, resized or re-encoded), copies on both sides of \
         the training/validation split, images that look like another class, and shows a map \
         of what the network sees.",
    );
    ui.horizontal(|ui| {
        let examine = ui.add_enabled(
            !doctor.is_running(),
            egui::Button::new("Examine the dataset"),
        );
        tag(ui, &examine, "doctor-examine");
        if examine.clicked() {
            out.push(Command::Doctor(DoctorCommand::Examine));
        }
        if let Some((stage, done, total)) = doctor.progress {
            let stop = ui.button("Stop");
            tag(ui, &stop, "doctor-stop");
            if stop.clicked() {
                out.push(Command::Doctor(DoctorCommand::Stop));
            }
            ui.add(
                egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                    .desired_width(260.0)
                    .text(format!("{stage}: {done} / {total}")),
            );
        }
    });
    if let Some(e) = &doctor.error {
        ui.colored_label(Color32::from_rgb(200, 40, 40), e);
    }
    let Some(report) = &doctor.report else {
        return;
    };
    if doctor.examined.as_ref() != Some(&(dataset.root.clone(), state.data.revision)) {
        ui.colored_label(
            WARN,
            "The folders changed since this examination (or another folder is loaded): examine \
             again to bring it up to date.",
        );
    }
    ui.strong(report.summary());
    let mut missing = Vec::new();
    leakage_ui(ui, state, report, &mut missing, out);
    duplicates_ui(ui, state, report, &mut missing, out);
    suspects_ui(ui, state, report, &mut missing, out);
    health_ui(ui, report);
    map_ui(ui, state, report, out);
    let missing: Vec<PathBuf> = missing
        .into_iter()
        .filter(|p| !doctor.thumbnails_asked.contains(p))
        .collect();
    if !missing.is_empty() {
        out.push(Command::Doctor(DoctorCommand::Thumbnails(missing)));
    }
}

/// A selectable thumbnail, or the file's name until its thumbnail is decoded.
fn thumb_ui(
    ui: &mut egui::Ui,
    state: &AppState,
    path: &Path,
    missing: &mut Vec<PathBuf>,
    out: &mut Vec<Command>,
) {
    if thumbnail_ui(ui, state, path, THUMB_PX, out).is_none() {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        ui.add_sized(
            [THUMB_PX, THUMB_PX],
            egui::Label::new(RichText::new(name).small()),
        );
        missing.push(path.to_owned());
    }
}

fn leakage_ui(
    ui: &mut egui::Ui,
    state: &AppState,
    report: &Report,
    missing: &mut Vec<PathBuf>,
    out: &mut Vec<Command>,
) {
    if report.leakage.is_empty() {
        return;
    }
    ui.separator();
    ui.colored_label(
        WARN,
        format!(
            "{} validation images are copies of training images: the validation score counts \
             them as if unseen. Remove the validation copies (or move them out of the folders).",
            report.leakage.len()
        ),
    );
    let copies: Vec<PathBuf> = (report.leakage.iter())
        .map(|l| report.images[l.validation].path.clone())
        .collect();
    let remove = ui.button(format!("Remove the {} validation copies", copies.len()));
    tag(ui, &remove, "doctor-remove-leaks");
    if remove.clicked() {
        out.push(Command::RemoveImages(copies));
    }
    egui::Grid::new("doctor-leaks").show(ui, |ui| {
        for leak in report.leakage.iter().take(MAX_GROUPS) {
            thumb_ui(
                ui,
                state,
                &report.images[leak.validation].path,
                missing,
                out,
            );
            ui.label("validation = training");
            thumb_ui(ui, state, &report.images[leak.train].path, missing, out);
            ui.label(leak.kind.words());
            ui.end_row();
        }
    });
}

fn duplicates_ui(
    ui: &mut egui::Ui,
    state: &AppState,
    report: &Report,
    missing: &mut Vec<PathBuf>,
    out: &mut Vec<Command>,
) {
    if report.duplicates.is_empty() {
        return;
    }
    ui.separator();
    ui.strong(format!("{} groups of copies", report.duplicates.len()));
    for (g, group) in report.duplicates.iter().take(MAX_GROUPS).enumerate() {
        ui.horizontal(|ui| {
            for &i in &group.images {
                thumb_ui(ui, state, &report.images[i].path, missing, out);
            }
            ui.vertical(|ui| {
                ui.label(group.kind.words());
                if group.mixed_labels {
                    ui.colored_label(WARN, "in different classes");
                }
                let extra: Vec<PathBuf> = (group.images.iter().skip(1))
                    .map(|&i| report.images[i].path.clone())
                    .collect();
                let select = ui.small_button("select the extra copies");
                tag(ui, &select, &format!("doctor-select-copies-{g}"));
                if select.clicked() {
                    out.push(Command::SelectImages {
                        paths: extra,
                        add: false,
                    });
                }
            });
        });
    }
    if report.duplicates.len() > MAX_GROUPS {
        ui.label(format!(
            "… and {} more groups",
            report.duplicates.len() - MAX_GROUPS
        ));
    }
}

fn suspects_ui(
    ui: &mut egui::Ui,
    state: &AppState,
    report: &Report,
    missing: &mut Vec<PathBuf>,
    out: &mut Vec<Command>,
) {
    if report.suspects.is_empty() {
        return;
    }
    ui.separator();
    ui.strong(format!("{} likely mislabels", report.suspects.len()));
    ui.label(
        RichText::new(
            "The probability a probe that never saw the image gives its own class; the class \
             it points to instead.",
        )
        .weak(),
    );
    let class = |c: usize| report.classes.get(c).cloned().unwrap_or_default();
    egui::Grid::new("doctor-suspects")
        .striped(true)
        .show(ui, |ui| {
            for (k, suspect) in report.suspects.iter().take(MAX_SUSPECTS).enumerate() {
                let image = &report.images[suspect.image];
                thumb_ui(ui, state, &image.path, missing, out);
                ui.label(format!(
                    "filed under {} ({:.0} %)\nlooks like {} ({:.0} %)",
                    class(image.class),
                    suspect.self_confidence * 100.0,
                    class(suspect.suggested),
                    suspect.suggested_probability * 100.0
                ));
                let to = class(suspect.suggested);
                let moved = ui.add_enabled(
                    !state.data.editing,
                    egui::Button::new(format!("move to {to}")),
                );
                tag(ui, &moved, &format!("doctor-move-{k}"));
                if moved.clicked() {
                    out.push(Command::MoveImages {
                        images: vec![image.path.clone()],
                        class: to,
                    });
                }
                if k % 2 == 1 {
                    ui.end_row();
                }
            }
        });
}

fn health_ui(ui: &mut egui::Ui, report: &Report) {
    let health = &report.health;
    let class = |c: usize| report.classes.get(c).map_or("?", String::as_str);
    ui.separator();
    ui.strong("Class health");
    ui.label(format!(
        "Imbalance (largest / smallest class): {:.1}. A probe on the pretrained features gets \
         {:.1} % out of fold, labels as they are.",
        health.imbalance,
        health.probe_accuracy * 100.0
    ));
    for &c in &health.near_empty {
        ui.colored_label(
            WARN,
            format!(
                "{} has fewer than {} images",
                class(c),
                crate::doctor::NEAR_EMPTY_IMAGES
            ),
        );
    }
    for pair in &health.confused {
        ui.label(format!(
            "{} and {} are mixed up: {} images ({:.1} %)",
            class(pair.a),
            class(pair.b),
            pair.count,
            pair.share * 100.0
        ));
    }
}
