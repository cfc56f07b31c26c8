//! After Compare all four: the four cases side by side — validation accuracy as bars, time and
//! trainable parameters, and the four confusion matrices as small multiples.

use egui::{Color32, RichText, Vec2};
use egui_plot::{Bar, BarChart, Plot};

use super::widgets::{run_colour, tag};
use crate::guide::compare::{Advice, Basis};
use crate::train::Case;
use crate::ui::command::Command;
use crate::ui::state::Run;

const SMALL_MATRIX_PX: f32 = 150.0;

pub(super) fn compare_summary_ui(
    ui: &mut egui::Ui,
    runs: &[(usize, &Run)],
    recommended: Option<Case>,
    out: &mut Vec<Command>,
) {
    ui.strong("Compare all four");
    let accuracies: Vec<(Case, Option<f64>)> = runs
        .iter()
        .filter_map(|(_, r)| Some((r.case?, r.report.as_ref()?.best_val_accuracy)))
        .collect();
    if let Some(advice) =
        recommended.and_then(|c| Advice::judge_accuracies(&accuracies, c, Basis::Validation))
    {
        let colour = if advice.held {
            Color32::from_rgb(70, 170, 90)
        } else {
            Color32::from_rgb(200, 140, 30)
        };
        let response = ui.colored_label(colour, advice.sentence());
        tag(ui, &response, "compare-advice");
    }
    let title = |run: &Run| {
        run.case
            .map_or_else(|| run.label.clone(), |c| c.title().to_owned())
    };
    let accuracy = |run: &Run| {
        run.report
            .as_ref()
            .and_then(|r| r.evaluation.as_ref())
            .map_or(0.0, |e| e.accuracy)
    };
    let bars: Vec<Bar> = runs
        .iter()
        .enumerate()
        .map(|(x, (i, run))| {
            Bar::new(x as f64, accuracy(run))
                .name(title(run))
                .fill(run_colour(*i))
                .width(0.6)
        })
        .collect();
    let names: Vec<String> = runs.iter().map(|(_, r)| title(r)).collect();
    Plot::new("compare-bars")
        .height(160.0)
        .include_y(0.0)
        .include_y(1.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .y_axis_label("validation accuracy")
        .x_axis_formatter(move |mark, _| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("validation accuracy", bars))
        });
    egui::Grid::new("compare-table")
        .striped(true)
        .show(ui, |ui| {
            for heading in [
                "case",
                "val accuracy",
                "training time",
                "trainable parameters",
            ] {
                ui.strong(heading);
            }
            ui.end_row();
            for (_, run) in runs {
                let Some(report) = &run.report else { continue };
                ui.label(title(run));
                ui.label(format!("{:.1} %", accuracy(run) * 100.0));
                ui.label(format!("{:.1} s", report.wall_secs));
                ui.label(report.trainable_parameters.to_string());
                ui.end_row();
            }
        });
    small_multiples_ui(ui, runs, out);
}

/// The four confusion matrices as small heat maps; a click shows that run's full results.
fn small_multiples_ui(ui: &mut egui::Ui, runs: &[(usize, &Run)], out: &mut Vec<Command>) {
    ui.horizontal_wrapped(|ui| {
        for (i, run) in runs {
            let Some(eval) = run.report.as_ref().and_then(|r| r.evaluation.as_ref()) else {
                continue;
            };
            ui.vertical(|ui| {
                let slot = format!("compare-{i}");
                let texture = super::heatmap::texture(ui.ctx(), eval, &slot);
                let image = egui::Image::new(&texture)
                    .fit_to_exact_size(Vec2::splat(SMALL_MATRIX_PX))
                    .sense(egui::Sense::click());
                let response = ui.add(image).on_hover_text("show this run's results");
                tag(
                    ui,
                    &response,
                    &format!("compare-matrix-{}", run.case.map_or(0, |c| c as usize)),
                );
                if response.clicked() {
                    out.push(Command::ShowRunResults(Some(*i)));
                }
                ui.label(RichText::new(&run.label).color(run_colour(*i)).small());
            });
        }
    });
    ui.label(
        RichText::new("rows: true class, columns: predicted; green: right, red: confused")
            .color(Color32::GRAY)
            .small(),
    );
}
