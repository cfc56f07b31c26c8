//! The Train panel: controls, progress and the live loss and accuracy charts.

use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints};

use super::super::browser::PathRequest;
use super::super::command::Command;
use super::super::state::{AppState, RunStatus};
use super::run_colour;
use crate::train::{EpochMetrics, TrainCommand};

/// Per run: the training series solid, the validation series dashed, in the run's colour.
pub(super) fn epoch_lines(
    plot: &mut egui_plot::PlotUi<'_>,
    app: &AppState,
    train_value: impl Fn(&EpochMetrics) -> f64,
    val_value: impl Fn(&EpochMetrics) -> Option<f64>,
) {
    for (i, run) in app.runs.iter().enumerate() {
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

pub(super) fn train_panel(ui: &mut egui::Ui, app: &AppState, out: &mut Vec<Command>) {
    ui.heading("Train");
    ui.label(app.settings.plan.summary());
    if !app.compare_queue.is_empty() {
        let next: Vec<&str> = app.compare_queue.iter().map(|c| c.title()).collect();
        ui.label(format!(
            "Comparing all four: {} of 4; then {}.",
            4 - app.compare_queue.len(),
            next.join(", ")
        ));
    }
    controls_ui(ui, app, out);
    if app.dataset.is_none() {
        ui.label("Choose a training folder in Data first.");
    }
    progress_ui(ui, app);
    charts_ui(ui, app);
    runs_table_ui(ui, app);
}

/// Start, pause or resume, stop, clear, save and open.
fn controls_ui(ui: &mut egui::Ui, app: &AppState, out: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        let training = app.training;
        if ui
            .add_enabled(
                app.dataset.is_some() && !training,
                egui::Button::new("Start"),
            )
            .clicked()
        {
            out.push(Command::StartTraining);
        }
        let paused = app
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
                !training && !app.runs.is_empty(),
                egui::Button::new("Clear runs"),
            )
            .clicked()
        {
            out.push(Command::ClearRuns);
        }
        if ui
            .add_enabled(app.trained.is_some(), egui::Button::new("Save model…"))
            .clicked()
        {
            out.push(Command::Pick(PathRequest::SaveModel));
        }
        if ui
            .add_enabled(app.trained.is_some(), egui::Button::new("Export ONNX…"))
            .clicked()
        {
            out.push(Command::Pick(PathRequest::OnnxFile));
        }
        if ui.button("Open model…").clicked() {
            out.push(Command::Pick(PathRequest::OpenModel));
        }
    });
}

/// The live run's progress bar, with what it is doing in words.
fn progress_ui(ui: &mut egui::Ui, app: &AppState) {
    if let Some(run) = app.runs.last() {
        let p = &app.progress;
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

/// Loss and accuracy per epoch for every run, batch losses faint behind.
fn charts_ui(ui: &mut egui::Ui, app: &AppState) {
    let height = 220.0;
    ui.columns(2, |cols| {
        cols[0].label("loss");
        Plot::new("loss-plot")
            .legend(Legend::default())
            .height(height)
            .x_axis_label("epoch")
            .show(&mut cols[0], |plot| {
                epoch_lines(plot, app, |m| m.train_loss, |m| m.val_loss);
                // Batch losses share the run's "train" legend entry (one entry per line kind
                // and run keeps the legend readable with four runs overlaid).
                for (i, run) in app.runs.iter().enumerate() {
                    if !run.batch_losses.is_empty() {
                        plot.line(
                            Line::new(
                                format!("{} train", run.label),
                                PlotPoints::from(run.batch_losses.clone()),
                            )
                            .color(run_colour(i).gamma_multiply(0.35))
                            .width(0.5),
                        );
                    }
                }
            });
        cols[1].label("accuracy");
        Plot::new("accuracy-plot")
            .legend(Legend::default())
            .height(height)
            .x_axis_label("epoch")
            .include_y(0.0)
            .include_y(1.0)
            .show(&mut cols[1], |plot| {
                epoch_lines(plot, app, |m| m.train_accuracy, |m| m.val_accuracy);
            });
    });
}

/// One row per run: best validation accuracy, time, trainable parameters.
fn runs_table_ui(ui: &mut egui::Ui, app: &AppState) {
    if !app.runs.is_empty() {
        egui::Grid::new("runs").striped(true).show(ui, |ui| {
            ui.strong("run");
            ui.strong("best val accuracy");
            ui.strong("time");
            ui.strong("trainable parameters");
            ui.end_row();
            for run in &app.runs {
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
