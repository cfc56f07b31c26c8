//! Layout. Each panel reads the app's state and returns [`Command`]s; nothing here touches the
//! disk, decodes images or blocks.

use egui::{Color32, RichText, Sense, Stroke, Vec2};
use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints};

use super::app::{Command, RunStatus, StudioApp, Tab};
use super::jobs::FolderPurpose;
use crate::data::demo::DemoPack;
use crate::model::arch::UNIT_COUNT;
use crate::model::{Init, Unit};
use crate::train::{Case, EpochMetrics, TrainCommand, TrainPlan};

pub const FROZEN: Color32 = Color32::from_rgb(96, 125, 160);
pub const TRAINABLE: Color32 = Color32::from_rgb(230, 140, 40);
pub const CUT_AWAY: Color32 = Color32::from_rgb(200, 200, 200);
pub const NEW_HEAD: Color32 = Color32::from_rgb(70, 170, 90);

/// One colour per run, so that overlaid runs stay apart (training solid, validation dashed).
const RUN_COLOURS: [Color32; 6] = [
    Color32::from_rgb(66, 133, 244),
    Color32::from_rgb(230, 140, 40),
    Color32::from_rgb(70, 170, 90),
    Color32::from_rgb(200, 70, 160),
    Color32::from_rgb(150, 110, 60),
    Color32::from_rgb(120, 120, 220),
];

fn run_colour(index: usize) -> Color32 {
    RUN_COLOURS[index % RUN_COLOURS.len()]
}

/// Tags a widget with a stable id for tests and assistive tools.
fn tag(ui: &egui::Ui, response: &egui::Response, id: &str) {
    let id_owned = id.to_owned();
    ui.ctx()
        .accesskit_node_builder(response.id, move |node| node.set_author_id(id_owned));
}

/// The whole window.
pub fn show(ui: &mut egui::Ui, app: &StudioApp) -> Vec<Command> {
    let mut out = Vec::new();
    egui::Panel::top("tabs").show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.heading("Transfer Studio");
            ui.separator();
            for tab in Tab::ALL {
                if ui
                    .selectable_label(app.settings.tab == tab, tab.title())
                    .clicked()
                {
                    out.push(Command::ShowTab(tab));
                }
            }
            ui.separator();
            ui.label(RichText::new(crate::runtime::describe_device(&app.device)).weak());
            if let Some(secs) = app.frame_secs {
                ui.label(RichText::new(format!("frame {:.1} ms", secs * 1000.0)).weak())
                    .on_hover_text("CPU time of the last frame's layout");
            }
        });
    });
    if !app.errors.is_empty() || !app.notices.is_empty() {
        egui::Panel::bottom("messages").show(ui, |ui| {
            for (i, e) in app.errors.iter().enumerate() {
                ui.horizontal(|ui| {
                    ui.colored_label(Color32::from_rgb(200, 40, 40), e);
                    if ui.small_button("dismiss").clicked() {
                        out.push(Command::DismissError(i));
                    }
                });
            }
            if let Some(n) = app.notices.last() {
                ui.label(RichText::new(n).weak());
            }
        });
    }
    egui::CentralPanel::default().show(ui, |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| match app.settings.tab {
            Tab::Data => data_panel(ui, app, &mut out),
            Tab::Guide => guide_panel(ui, app, &mut out),
            Tab::Train => train_panel(ui, app, &mut out),
            Tab::Results => results_panel(ui, app, &mut out),
            Tab::Predict => predict_panel(ui, app, &mut out),
        });
    });
    out
}

fn data_panel(ui: &mut egui::Ui, app: &StudioApp, out: &mut Vec<Command>) {
    ui.heading("Data");
    ui.label("One sub-folder per class, images inside. Drop a folder onto the window, or:");
    ui.horizontal(|ui| {
        if ui.button("Choose training folder…").clicked() {
            out.push(Command::PickFolder(FolderPurpose::Train));
        }
        if let Some(dir) = &app.settings.train_dir {
            ui.monospace(dir.display().to_string());
        }
    });
    ui.horizontal(|ui| {
        if ui.button("Choose validation folder…").clicked() {
            out.push(Command::PickFolder(FolderPurpose::Validation));
        }
        match &app.settings.val_dir {
            Some(dir) => {
                ui.monospace(dir.display().to_string());
                if ui.small_button("use a split instead").clicked() {
                    out.push(Command::ClearValidation);
                }
            }
            None => {
                ui.label(format!(
                    "none: {:.0} % of each class is held out",
                    app.settings.plan.val_fraction * 100.0
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
    if let Some(progress) = &app.jobs.loading {
        let done = progress.done.load(std::sync::atomic::Ordering::Relaxed);
        let total = progress.total.load(std::sync::atomic::Ordering::Relaxed);
        ui.add(
            egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                .text(format!("decoding {done} / {total} images")),
        );
    }
    if let Some(e) = &app.data_error {
        ui.colored_label(Color32::from_rgb(200, 40, 40), e);
    }
    let Some(dataset) = &app.dataset else { return };
    ui.separator();
    let mut percent = app.settings.use_percent;
    if ui
        .add(egui::Slider::new(&mut percent, 1..=100).text("% of the training images used"))
        .changed()
    {
        out.push(Command::SetUsePercent(percent));
    }
    let used = app.training_dataset().map_or(0, |d| d.train.len());
    ui.label(format!(
        "{} classes; {} training images in use ({:.0} per class), {} validation images; \
         {} held in memory",
        dataset.classes.len(),
        used,
        used as f64 / dataset.classes.len().max(1) as f64,
        dataset.val.len(),
        dataset.cached_count()
    ));
    egui::Grid::new("class-counts")
        .striped(true)
        .show(ui, |ui| {
            ui.strong("class");
            ui.strong("train");
            ui.strong("validation");
            ui.strong("examples");
            ui.end_row();
            for (c, count) in dataset.counts().iter().enumerate() {
                ui.label(&count.class);
                ui.label(count.train.to_string());
                ui.label(count.val.to_string());
                ui.horizontal(|ui| {
                    for sample in dataset.train.iter().filter(|s| s.label == c).take(6) {
                        if let Some(t) = app.thumbnails.get(&sample.path) {
                            ui.add(egui::Image::new(t).fit_to_exact_size(Vec2::splat(48.0)));
                        }
                    }
                });
                ui.end_row();
            }
        });
    if !dataset.skipped.is_empty() {
        egui::CollapsingHeader::new(format!("{} files skipped", dataset.skipped.len())).show(
            ui,
            |ui| {
                for s in &dataset.skipped {
                    ui.label(format!("{}: {}", s.path.display(), s.reason));
                }
            },
        );
    }
}

fn guide_panel(ui: &mut egui::Ui, app: &StudioApp, out: &mut Vec<Command>) {
    ui.heading("Which case is yours?");
    let current = Case::matching(&app.settings.plan);
    let measured = app.shown_recommendation.as_ref().map(|r| r.case());
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
    recommendation_section(ui, app, out);
    match current {
        Some(case) => ui.label(format!("Selected: {} ({case}).", case.title())),
        None => ui.colored_label(
            TRAINABLE,
            "Edited: the plan no longer matches a preset. Click a cell to reset it.",
        ),
    };
    let offers_retrain =
        current == Some(Case::LargeDifferent) || app.settings.plan.init == Init::Random;
    let retraining = app.settings.plan.init == Init::Random;
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
    block_strip(ui, app, out);
    ui.separator();
    advanced(ui, &app.settings.plan, out);
    ui.separator();
    ui.label(app.settings.plan.summary());
    let can_train = app.dataset.is_some() && !app.is_training();
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
        if !app.compare_queue.is_empty() {
            ui.label(format!("{} more to train", app.compare_queue.len()));
        }
    });
    ui.separator();
    probe_section(ui, app, out);
}

/// The measured place of the data on the grid, its explanation and the thresholds.
fn recommendation_section(ui: &mut egui::Ui, app: &StudioApp, out: &mut Vec<Command>) {
    if app.dataset.is_none() {
        ui.label("Load a training folder (Data) to see where it sits on the grid.");
        return;
    }
    if app.recommending {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Measuring your data against ImageNet…");
        });
    }
    if let Some(r) = &app.shown_recommendation {
        ui.label(
            RichText::new(format!("Your data: {} ({})", r.case().title(), r.case))
                .strong()
                .color(NEW_HEAD),
        );
        ui.label(&r.explanation);
        if ui.button("Use this case").clicked() {
            out.push(Command::SelectCase(r.case()));
        }
    }
    ui.collapsing("Thresholds", |ui| {
        let mut t = app.settings.thresholds;
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

/// Linear-probe accuracy after several depths of the pretrained network.
fn probe_section(ui: &mut egui::Ui, app: &StudioApp, out: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.strong("Depth probe");
        if ui
            .add_enabled(
                app.dataset.is_some() && !app.probing,
                egui::Button::new("Run"),
            )
            .on_hover_text("Train a linear classifier on the features after several blocks")
            .clicked()
        {
            out.push(Command::RunProbe);
        }
        if app.probing {
            ui.spinner();
        }
    });
    match &app.probe {
        Some(Ok(points)) if !points.is_empty() => {
            let val: PlotPoints<'_> = points
                .iter()
                .filter_map(|p| p.val_accuracy.map(|a| [p.unit_index as f64, a]))
                .collect();
            let train: PlotPoints<'_> = points
                .iter()
                .map(|p| [p.unit_index as f64, p.train_accuracy])
                .collect();
            let names: Vec<(f64, String)> = points
                .iter()
                .map(|p| (p.unit_index as f64, p.unit.clone()))
                .collect();
            Plot::new("depth-probe")
                .height(180.0)
                .legend(Legend::default())
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
                    plot.line(Line::new("validation accuracy", val).color(NEW_HEAD));
                    plot.line(
                        Line::new("training accuracy", train)
                            .color(FROZEN)
                            .style(LineStyle::dashed_loose()),
                    );
                });
            let best = points
                .iter()
                .filter_map(|p| p.val_accuracy.map(|a| (a, p)))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((acc, p)) = best {
                ui.label(format!(
                    "Best linear probe: after {} ({} features), {:.1} % validation accuracy.",
                    p.unit,
                    p.features,
                    acc * 100.0
                ));
            }
        }
        Some(Ok(_)) => {
            ui.label("The probe needs validation images.");
        }
        Some(Err(e)) => {
            ui.colored_label(Color32::RED, e);
        }
        None => {
            ui.label("How well do the features after each depth separate your classes?");
        }
    }
}

/// The network as a strip of blocks: frozen, trainable, cut away, and the new head.
fn block_strip(ui: &mut egui::Ui, app: &StudioApp, out: &mut Vec<Command>) {
    let (cut, trainable) = app.plan_units();
    let first_trainable = app.settings.plan.first_trainable_unit();
    ui.label("The network, input on the left (click a block to cut after it):");
    let block = Vec2::new(34.0, 44.0);
    ui.horizontal(|ui| {
        for unit in Unit::all() {
            let i = unit.index();
            let color = if i > cut.index() {
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
                unit.short_label(),
                egui::FontId::proportional(11.0),
                Color32::BLACK,
            );
            let response = response.on_hover_text(format!(
                "{unit}: {} channels, stride {}",
                unit.out_channels(),
                unit.output_stride()
            ));
            tag(ui, &response, &format!("block-{unit}"));
            if response.clicked() {
                let plan = TrainPlan {
                    cut_after: unit,
                    ..app.settings.plan.clone()
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
    let mut cut_index = cut.index();
    let mut trainable_units = trainable;
    ui.horizontal(|ui| {
        let changed_cut = ui
            .add(
                egui::Slider::new(&mut cut_index, 0..=UNIT_COUNT - 1)
                    .custom_formatter(|v, _| Unit::from_index(v as usize).to_string())
                    .text("cut after"),
            )
            .changed();
        let kept = cut_index + 1;
        let changed_trainable = ui
            .add(egui::Slider::new(&mut trainable_units, 0..=kept).text("trainable blocks"))
            .changed();
        if changed_cut || changed_trainable {
            out.push(Command::SetPlan(TrainPlan {
                cut_after: Unit::from_index(cut_index),
                trainable_units: trainable_units.min(kept),
                ..app.settings.plan.clone()
            }));
        }
    });
}

fn advanced(ui: &mut egui::Ui, plan: &TrainPlan, out: &mut Vec<Command>) {
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
                    .range(32..=512)
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

/// Per run: the training series solid, the validation series dashed, in the run's colour.
fn epoch_lines(
    plot: &mut egui_plot::PlotUi<'_>,
    app: &StudioApp,
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

fn train_panel(ui: &mut egui::Ui, app: &StudioApp, out: &mut Vec<Command>) {
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
    ui.horizontal(|ui| {
        let training = app.is_training();
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
            out.push(Command::SaveModel);
        }
        if ui.button("Open model…").clicked() {
            out.push(Command::OpenModel);
        }
    });
    if app.dataset.is_none() {
        ui.label("Choose a training folder in Data first.");
    }
    if let Some(run) = app.runs.last() {
        let p = &app.progress;
        let text = match &run.status {
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
                .map_or_else(|| "finished".into(), |r| r.stop_reason.clone()),
            RunStatus::Failed(e) => format!("failed: {e}"),
            RunStatus::Cancelled => "stopped".into(),
        };
        ui.add(egui::ProgressBar::new(p.fraction).text(text));
    }
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

fn results_panel(ui: &mut egui::Ui, app: &StudioApp, out: &mut Vec<Command>) {
    ui.heading("Results");
    let Some(eval) = app
        .trained_report
        .as_ref()
        .and_then(|r| r.evaluation.as_ref())
    else {
        ui.label("Train a model to see its confusion matrix and mistakes.");
        return;
    };
    ui.label(format!(
        "validation accuracy {:.1} % on {} images",
        eval.accuracy * 100.0,
        eval.images
    ));
    ui.label(
        "Confusion matrix (rows: true class, columns: predicted). Click a cell to see its images.",
    );
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
                    let selected = app.selected_cell == Some((t, p));
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
    if let Some((t, p)) = app.selected_cell {
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
                .take(60)
            {
                match app.thumbnails.get(path) {
                    Some(tex) => {
                        ui.add(egui::Image::new(tex).fit_to_exact_size(Vec2::splat(64.0)))
                            .on_hover_text(path.display().to_string());
                    }
                    None => {
                        ui.spinner();
                    }
                }
            }
        });
    }
    ui.separator();
    egui::Grid::new("per-class").striped(true).show(ui, |ui| {
        ui.strong("class");
        ui.strong("precision");
        ui.strong("recall");
        ui.strong("images");
        ui.end_row();
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} %", v * 100.0));
        for m in &eval.per_class {
            ui.label(&m.class);
            ui.label(pct(m.precision));
            ui.label(pct(m.recall));
            ui.label(m.support.to_string());
            ui.end_row();
        }
    });
    ui.separator();
    ui.label(format!(
        "Misclassified validation images ({}):",
        eval.misclassified.len()
    ));
    ui.horizontal_wrapped(|ui| {
        for m in eval.misclassified.iter().take(24) {
            ui.vertical(|ui| {
                match app.thumbnails.get(&m.path) {
                    Some(tex) => {
                        ui.add(egui::Image::new(tex).fit_to_exact_size(Vec2::splat(72.0)));
                    }
                    None => {
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

fn predict_panel(ui: &mut egui::Ui, app: &StudioApp, out: &mut Vec<Command>) {
    ui.heading("Predict");
    match &app.trained {
        Some(m) => ui.label(format!(
            "Using your trained classifier ({} classes: {}).",
            m.classes.len(),
            m.classes.join(", ")
        )),
        None => ui.label(
            "No model trained yet: showing what the pretrained network sees (ImageNet's 1000 classes).",
        ),
    };
    ui.horizontal(|ui| {
        if ui.button("Add images…").clicked() {
            out.push(Command::PickImages);
        }
        if ui
            .add_enabled(!app.predictions.is_empty(), egui::Button::new("Clear"))
            .clicked()
        {
            out.push(Command::ClearImages);
        }
        ui.label("or drop images onto the window");
    });
    for item in &app.predictions {
        ui.separator();
        ui.horizontal(|ui| {
            match app.thumbnails.get(&item.path) {
                Some(tex) => {
                    ui.add(egui::Image::new(tex).fit_to_exact_size(Vec2::splat(96.0)));
                }
                None => {
                    ui.allocate_exact_size(Vec2::splat(96.0), Sense::hover());
                }
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
                    Some(Ok(top)) => {
                        for class in top {
                            ui.horizontal(|ui| {
                                ui.add(
                                    egui::ProgressBar::new(class.prob)
                                        .desired_width(160.0)
                                        .text(format!("{:.1} %", class.prob * 100.0)),
                                );
                                ui.label(&class.label);
                            });
                        }
                    }
                }
            });
        });
    }
}
