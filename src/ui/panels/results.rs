//! The Results panel: the confusion matrix, per-class metrics and the mistakes.

use egui::{Color32, RichText, Stroke, Vec2};

use super::widgets::{selection_hint_ui, tag, thumbnail_ui};
use crate::train::Evaluation;
use crate::ui::command::Command;
use crate::ui::state::{AppState, CELL_THUMBNAILS, MISTAKE_THUMBNAILS, Run};

pub(super) fn results_panel_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    ui.heading("Results");
    if let (Some(runs), None) = (state.last_comparison(), state.results.run) {
        let recommended = state.guide.shown.as_ref().map(|r| r.case);
        super::compare::compare_summary_ui(ui, &runs, recommended, out);
        ui.separator();
    }
    run_selector_ui(ui, state, out);
    let Some(eval) = state.shown_report().and_then(|r| r.evaluation.as_ref()) else {
        ui.label("Train a model to see its confusion matrix and mistakes.");
        return;
    };
    if state.results.run.is_none() {
        super::widgets::stale_model_ui(ui, state);
    }
    ui.label(format!(
        "validation accuracy {:.1} % on {} images",
        eval.accuracy * 100.0,
        eval.images
    ));
    ui.label(
        "Confusion matrix (rows: true class, columns: predicted). Click a cell to see its images.",
    );
    confusion_ui(ui, state, eval, out);
    cell_images_ui(ui, state, eval, out);
    ui.separator();
    per_class_ui(ui, eval);
    ui.separator();
    mistakes_ui(ui, state, eval, out);
}

/// Which run's results to show: the current model's, or any earlier run's.
fn run_selector_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    let runs: Vec<(usize, &Run, f64)> = state
        .train
        .runs
        .iter()
        .enumerate()
        .filter_map(|(i, run)| {
            let eval = run.report.as_ref()?.evaluation.as_ref()?;
            Some((i, run, eval.accuracy))
        })
        .collect();
    if runs.len() < 2 && state.results.run.is_none() {
        return;
    }
    const CURRENT: &str = "the current model";
    let selected = state
        .results
        .run
        .and_then(|i| state.train.runs.get(i))
        .map_or(CURRENT.to_owned(), |r| r.label.clone());
    ui.horizontal(|ui| {
        let label = ui.label("Results of");
        let combo = egui::ComboBox::from_id_salt("results-run")
            .selected_text(selected)
            .show_ui(ui, |ui| {
                if ui
                    .selectable_label(state.results.run.is_none(), CURRENT)
                    .clicked()
                {
                    out.push(Command::ShowRunResults(None));
                }
                for (i, run, accuracy) in runs {
                    let text = format!("{} ({:.1} %)", run.label, accuracy * 100.0);
                    if ui
                        .selectable_label(state.results.run == Some(i), text)
                        .clicked()
                    {
                        out.push(Command::ShowRunResults(Some(i)));
                    }
                }
            });
        let response = combo.response.labelled_by(label.id);
        tag(ui, &response, "results-run");
    });
}

/// Up to this many classes the confusion matrix is a grid of labelled buttons; beyond, one
/// painted heat map (200 classes would be 40 000 buttons, laid out every frame).
const BUTTON_MATRIX_MAX_CLASSES: usize = 12;
/// The per-class table scrolls on its own beyond this many rows.
const TABLE_ROWS_SHOWN: usize = 25;

fn confusion_ui(ui: &mut egui::Ui, state: &AppState, eval: &Evaluation, out: &mut Vec<Command>) {
    if eval.classes.len() <= BUTTON_MATRIX_MAX_CLASSES {
        button_matrix_ui(ui, state, eval, out);
    } else {
        // The list of frequent confusions beside the map (below it in a narrow window).
        ui.horizontal_wrapped(|ui| {
            super::heatmap::heatmap_ui(ui, state.results.selected_cell, eval, out);
            ui.vertical(|ui| super::heatmap::top_confusions_ui(ui, eval, out));
        });
    }
}

/// The confusion matrix as a grid of buttons, shaded by count.
fn button_matrix_ui(
    ui: &mut egui::Ui,
    state: &AppState,
    eval: &Evaluation,
    out: &mut Vec<Command>,
) {
    let max = eval
        .confusion
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    egui::Grid::new("confusion")
        .spacing([2.0, 2.0])
        .show(ui, |ui| {
            ui.label("");
            for name in &eval.classes {
                ui.label(RichText::new(name).small());
            }
            ui.end_row();
            for (t, row) in eval.confusion.iter().enumerate() {
                ui.label(RichText::new(&eval.classes[t]).small());
                for (p, &count) in row.iter().enumerate() {
                    let strength = count as f32 / max as f32;
                    let fill = if t == p {
                        Color32::from_rgb(
                            (255.0 - 180.0 * strength) as u8,
                            (255.0 - 60.0 * strength) as u8,
                            (255.0 - 180.0 * strength) as u8,
                        )
                    } else {
                        Color32::from_rgb(
                            255,
                            (255.0 - 200.0 * strength) as u8,
                            (255.0 - 200.0 * strength) as u8,
                        )
                    };
                    let selected = state.results.selected_cell == Some((t, p));
                    let button =
                        egui::Button::new(RichText::new(count.to_string()).color(Color32::BLACK))
                            .fill(fill)
                            .stroke(if selected {
                                Stroke::new(2.0, Color32::BLACK)
                            } else {
                                Stroke::NONE
                            })
                            .min_size(Vec2::splat(40.0));
                    let response = ui.add(button);
                    tag(ui, &response, &format!("confusion-{t}-{p}"));
                    if response.clicked() {
                        out.push(Command::ShowCell {
                            truth: t,
                            predicted: p,
                        });
                    }
                }
                ui.end_row();
            }
        });
}

/// The images of the selected confusion cell.
fn cell_images_ui(ui: &mut egui::Ui, state: &AppState, eval: &Evaluation, out: &mut Vec<Command>) {
    if let Some((t, p)) = state.results.selected_cell {
        let count = eval.confusion[t][p];
        ui.label(format!(
            "{} predicted as {}: {}",
            eval.classes[t],
            eval.classes[p],
            if count == 0 { "none" } else { "" }
        ));
        ui.horizontal_wrapped(|ui| {
            for (path, _, _) in eval
                .predictions
                .iter()
                .filter(|(_, tt, pp)| *tt == t && *pp == p)
                .take(CELL_THUMBNAILS)
            {
                if thumbnail_ui(ui, state, path, 64.0, out).is_none() {
                    ui.spinner();
                }
            }
        });
    }
}

/// Precision, recall and support per class; a long table scrolls under its header (only the
/// visible rows are laid out).
fn per_class_ui(ui: &mut egui::Ui, eval: &Evaluation) {
    const COLUMN_PX: f32 = 110.0;
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} %", v * 100.0));
    egui::Grid::new("per-class-header")
        .min_col_width(COLUMN_PX)
        .show(ui, |ui| {
            for title in ["class", "precision", "recall", "images"] {
                ui.strong(title);
            }
            ui.end_row();
        });
    let rows = |ui: &mut egui::Ui, range: std::ops::Range<usize>| {
        egui::Grid::new("per-class")
            .striped(true)
            .min_col_width(COLUMN_PX)
            .show(ui, |ui| {
                for m in &eval.per_class[range] {
                    ui.add(egui::Label::new(&m.class).truncate())
                        .on_hover_text(&m.class);
                    ui.label(pct(m.precision));
                    ui.label(pct(m.recall));
                    ui.label(m.support.to_string());
                    ui.end_row();
                }
            });
    };
    let n = eval.per_class.len();
    let row_height_px = ui.text_style_height(&egui::TextStyle::Body) + ui.spacing().item_spacing.y;
    egui::ScrollArea::vertical()
        .id_salt("per-class-scroll")
        .max_height(row_height_px * TABLE_ROWS_SHOWN as f32)
        .show_rows(ui, row_height_px, n, rows);
}

/// A gallery of misclassified validation images with their true and predicted classes.
fn mistakes_ui(ui: &mut egui::Ui, state: &AppState, eval: &Evaluation, out: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.label(format!(
            "Misclassified validation images ({}):",
            eval.misclassified.len()
        ));
        super::predict::grad_cam_toggle_ui(ui, state, state.results.run.is_none(), out);
    });
    if state.data.dataset.is_some() {
        selection_hint_ui(ui, state, out);
    }
    let overlays = state.settings.show_grad_cam && state.results.run.is_none();
    ui.horizontal_wrapped(|ui| {
        for m in eval.misclassified.iter().take(MISTAKE_THUMBNAILS) {
            ui.vertical(|ui| {
                if overlays {
                    super::predict::explanation_ui(ui, state, &m.path, 72.0);
                } else {
                    if thumbnail_ui(ui, state, &m.path, 72.0, out).is_none() {
                        ui.spinner();
                    }
                }
                ui.label(RichText::new(format!("true: {}", eval.classes[m.true_label])).small());
                ui.label(
                    RichText::new(format!(
                        "predicted: {} ({:.0} %)",
                        eval.classes[m.predicted],
                        m.confidence * 100.0
                    ))
                    .small(),
                );
            });
        }
    });
}
