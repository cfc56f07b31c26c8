//! The Train panel: controls, progress and the live loss and accuracy charts.

use egui_plot::{Line, LineStyle, Plot, PlotPoints, VLine};

use super::widgets::run_colour;
use crate::train::{EpochMetrics, Phase, TrainCommand};
use crate::ui::browser::PathRequest;
use crate::ui::command::Command;
use crate::ui::state::{AppState, RunStatus};

/// What the Export buttons say they do.
pub const EXPORT_HOVER: &str = "the classifier in use, with its labels and preprocessing: \
     ONNX, or TFLite when the name ends in .tflite";

/// Per run: the training series solid, the validation series dashed, in the run's colour.
pub(super) fn epoch_lines(
    plot: &mut egui_plot::PlotUi<'_>,
    state: &AppState,
    train_value: impl Fn(&EpochMetrics) -> f64,
    val_value: impl Fn(&EpochMetrics) -> Option<f64>,
) {
    for (i, run) in state.train.runs.iter().enumerate() {
        let colour = run_colour(i);
        let train: Vec<[f64; 2]> = run
            .epochs
            .iter()
            .map(|m| [m.epoch as f64, train_value(m)])
            .collect();
        plot.line(Line::new(format!("{} train", run.label), PlotPoints::from(train)).color(colour));
        let val: Vec<[f64; 2]> = run
            .epochs
            .iter()
            .filter_map(|m| val_value(m).map(|v| [m.epoch as f64, v]))
            .collect();
        plot.line(
            Line::new(format!("{} val", run.label), PlotPoints::from(val))
                .color(colour)
                .style(LineStyle::dashed_loose()),
        );
    }
}

pub(super) fn train_panel_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    ui.heading("Train");
    ui.label(state.settings.plan.summary());
    if !state.train.compare_queue.is_empty() {
        let next: Vec<&str> = state
            .train
            .compare_queue
            .iter()
            .map(|c| c.title())
            .collect();
        ui.label(format!(
            "Comparing all four: {} of 4; then {}.",
            4 - state.train.compare_queue.len(),
            next.join(", ")
        ));
    }
    controls_ui(ui, state, out);
    if state.data.dataset.is_none() {
        ui.label("Choose a training folder in Data first.");
    }
    progress_ui(ui, state);
    charts_ui(ui, state);
    runs_table_ui(ui, state);
}

/// Start, pause or resume, stop, clear, save and open.
fn controls_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        let training = state.train.is_running();
        if ui
            .add_enabled(
                state.data.dataset.is_some() && !training,
                egui::Button::new("Start"),
            )
            .clicked()
        {
            out.push(Command::StartTraining);
        }
        let paused = state
            .train
            .runs
            .last()
            .is_some_and(|r| r.status == RunStatus::Paused);
        if paused {
            if ui.button("Resume").clicked() {
                out.push(Command::Train(TrainCommand::Resume));
            }
        } else if ui
            .add_enabled(training, egui::Button::new("Pause"))
            .clicked()
        {
            out.push(Command::Train(TrainCommand::Pause));
        }
        if ui
            .add_enabled(training, egui::Button::new("Stop"))
            .clicked()
        {
            out.push(Command::Train(TrainCommand::Stop));
        }
        if ui
            .add_enabled(
                !training && !state.train.runs.is_empty(),
                egui::Button::new("Clear runs"),
            )
            .clicked()
        {
            out.push(Command::ClearRuns);
        }
        if ui
            .add_enabled(
                state.model.trained.is_some(),
                egui::Button::new("Save model…"),
            )
            .clicked()
        {
            out.push(Command::Pick(PathRequest::SaveModel));
        }
        if ui
            .add_enabled(state.model.trained.is_some(), egui::Button::new("Export…"))
            .on_hover_text(EXPORT_HOVER)
            .clicked()
        {
            out.push(Command::Pick(PathRequest::ExportFile));
        }
        if ui.button("Open model…").clicked() {
            out.push(Command::Pick(PathRequest::OpenModel));
        }
    });
}

/// The live run's progress bar, with what it is doing in words.
fn progress_ui(ui: &mut egui::Ui, state: &AppState) {
    if let Some(run) = state.train.runs.last() {
        let p = &state.train.progress;
        let text = match &run.status {
            RunStatus::Downloading {
                done_bytes,
                total_bytes,
            } => format!(
                "downloading the pretrained weights {:.0}/{:.0} MB",
                *done_bytes as f64 / 1e6,
                *total_bytes as f64 / 1e6
            ),
            RunStatus::Loading { done, total } => format!("loading images {done}/{total}"),
            RunStatus::Caching { done, total } => {
                format!("computing features of the frozen layers {done}/{total}")
            }
            RunStatus::Running => format!(
                "epoch {}/{}  batch {}/{}  {:.1} images/s  ETA {:.0} s",
                p.epoch, p.epochs_total, p.batch, p.batches, p.images_per_sec, p.eta_secs
            ),
            RunStatus::Paused => "paused".into(),
            RunStatus::Finished => run
                .report
                .as_ref()
                .map_or_else(|| "finished".into(), |r| r.stop_reason.to_string()),
            RunStatus::Failed(e) => format!("failed: {e}"),
            RunStatus::Cancelled => "stopped".into(),
        };
        ui.add(egui::ProgressBar::new(p.fraction).text(text));
    }
}

/// Loss and accuracy per epoch for every run, batch losses faint behind, the start of
/// fine-tuning marked; the legend sits below the charts (inside, it covered the curves), and the
/// charts take the height the window has.
fn charts_ui(ui: &mut egui::Ui, state: &AppState) {
    let height_px = (ui.ctx().content_rect().height() - 420.0).clamp(200.0, 640.0);
    ui.columns(2, |cols| {
        cols[0].label("loss");
        Plot::new("loss-plot")
            .height(height_px)
            .x_axis_label("epoch")
            .show(&mut cols[0], |plot| {
                for (i, run) in state.train.runs.iter().enumerate() {
                    if !run.batch_losses.is_empty() {
                        plot.line(
                            Line::new(
                                format!("{} batches", run.label),
                                PlotPoints::from(run.batch_losses.clone()),
                            )
                            .color(run_colour(i).gamma_multiply(0.35))
                            .width(0.5),
                        );
                    }
                }
                epoch_lines(plot, state, |m| m.train_loss, |m| m.val_loss);
                phase_marks(plot, state);
            });
        cols[1].label("accuracy");
        Plot::new("accuracy-plot")
            .height(height_px)
            .x_axis_label("epoch")
            .include_y(0.0)
            .include_y(1.0)
            .show(&mut cols[1], |plot| {
                epoch_lines(plot, state, |m| m.train_accuracy, |m| m.val_accuracy);
                phase_marks(plot, state);
            });
    });
    legend_ui(ui, state);
}

/// A dotted vertical line where a run's fine-tuning starts (after its classifier-only epochs).
fn phase_marks(plot: &mut egui_plot::PlotUi<'_>, state: &AppState) {
    for (i, run) in state.train.runs.iter().enumerate() {
        let head_only = run.epochs.iter().any(|m| m.phase == Phase::HeadOnly);
        let first_fine_tune = run.epochs.iter().find(|m| m.phase == Phase::FineTune);
        if let (true, Some(m)) = (head_only, first_fine_tune) {
            plot.vline(
                VLine::new(
                    format!("{}: fine-tuning starts", run.label),
                    m.epoch as f64 - 1.0,
                )
                .color(run_colour(i))
                .style(LineStyle::dotted_dense()),
            );
        }
    }
}

/// Which colour is which run, and what the line styles mean.
fn legend_ui(ui: &mut egui::Ui, state: &AppState) {
    if state.train.runs.is_empty() {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        for (i, run) in state.train.runs.iter().enumerate() {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(18.0, 10.0), egui::Sense::hover());
            ui.painter().hline(
                rect.x_range(),
                rect.center().y,
                egui::Stroke::new(2.5, run_colour(i)),
            );
            ui.label(&run.label);
            ui.add_space(8.0);
        }
    });
    ui.label(
        egui::RichText::new(
            "solid: training, dashed: validation, faint: each batch's loss, dotted: \
             fine-tuning starts",
        )
        .weak(),
    );
}

/// One row per run: best validation accuracy, time, trainable parameters.
fn runs_table_ui(ui: &mut egui::Ui, state: &AppState) {
    if !state.train.runs.is_empty() {
        egui::Grid::new("runs").striped(true).show(ui, |ui| {
            ui.strong("run");
            ui.strong("best val accuracy");
            ui.strong("time");
            ui.strong("trainable parameters");
            ui.end_row();
            for run in &state.train.runs {
                ui.label(&run.label);
                match &run.report {
                    Some(r) => {
                        ui.label(
                            r.best_val_accuracy
                                .map_or("-".into(), |a| format!("{:.1} %", a * 100.0)),
                        );
                        ui.label(format!("{:.1} s", r.wall_secs));
                        ui.label(r.trainable_parameters.to_string());
                    }
                    None => {
                        ui.label(match &run.status {
                            RunStatus::Cancelled => "stopped",
                            RunStatus::Failed(_) => "failed",
                            _ => "…",
                        });
                        ui.label("");
                        ui.label("");
                    }
                }
                ui.end_row();
            }
        });
    }
}
