//! The doctor's map: every image a point at its t-SNE place, coloured by class, at a chosen
//! cut (how often neighbours share a class says how separated the classes are there). Hover
//! shows the image, a click selects it, a double click opens it in Predict, dragging draws a
//! lasso that selects a group; the selection is what keys 1–9 and Delete act on.

use std::path::PathBuf;

use egui::{Color32, RichText};
use egui_plot::{Legend, Line, MarkerShape, Plot, PlotPoints, Points};

use super::widgets::tag;
use crate::doctor::{CutMap, Report};
use crate::ui::command::{Command, DoctorCommand};
use crate::ui::state::AppState;

const MAP_HEIGHT_PX: f32 = 420.0;
/// A point is hovered within this distance of the pointer.
const HOVER_PX: f32 = 8.0;
const LASSO: Color32 = Color32::from_rgb(66, 133, 244);

fn class_colour(class: usize) -> Color32 {
    let c = colorous::TABLEAU10[class % colorous::TABLEAU10.len()];
    Color32::from_rgb(c.r, c.g, c.b)
}

/// Whether `p` is inside the polygon (even-odd rule).
fn inside(polygon: &[[f64; 2]], p: [f64; 2]) -> bool {
    let mut inside = false;
    let mut j = polygon.len().wrapping_sub(1);
    for (i, a) in polygon.iter().enumerate() {
        let b = polygon[j];
        if (a[1] > p[1]) != (b[1] > p[1])
            && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0]
        {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// What happened on the map this frame.
#[derive(Default)]
struct MapInput {
    hovered: Option<usize>,
    pointer: Option<[f64; 2]>,
    drag_started: bool,
    dragging: bool,
    drag_stopped: bool,
    clicked: bool,
    double_clicked: bool,
}

fn cut_picker_ui(ui: &mut egui::Ui, report: &Report, shown: &CutMap, out: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.label("Map of the features at");
        let combo = egui::ComboBox::from_id_salt("doctor-cut")
            .selected_text(shown.unit.to_string())
            .show_ui(ui, |ui| {
                for &unit in report.cuts.iter().rev() {
                    let text = match report.map_at(unit) {
                        Some(m) => format!(
                            "{unit}: {:.0} % of neighbours agree",
                            m.neighbour_agreement * 100.0
                        ),
                        None => format!("{unit}: still drawing…"),
                    };
                    let enabled = report.map_at(unit).is_some();
                    let item =
                        ui.add_enabled(enabled, egui::Button::selectable(unit == shown.unit, text));
                    if item.clicked() {
                        out.push(Command::Doctor(DoctorCommand::ShowCut(unit)));
                    }
                }
            });
        tag(ui, &combo.response, "doctor-cut");
        ui.label(format!(
            "{:.0} % of each image's 10 nearest neighbours share its class here",
            shown.neighbour_agreement * 100.0
        ));
    });
}

pub(super) fn map_ui(ui: &mut egui::Ui, state: &AppState, report: &Report, out: &mut Vec<Command>) {
    let shown = state
        .doctor
        .cut
        .and_then(|u| report.map_at(u))
        .or_else(|| report.maps.first());
    ui.separator();
    let Some(map) = shown else {
        if state.doctor.is_running() {
            ui.label("The map is being drawn…");
        }
        return;
    };
    cut_picker_ui(ui, report, map, out);
    ui.label(
        RichText::new(
            "Drag to draw a lasso round a group (Ctrl adds to the selection); 1–9 then moves it \
             to a class, Delete removes it. Hover a point to see its image, double-click to \
             open it in Predict. Crosses: likely mislabels.",
        )
        .weak(),
    );
    let lasso_id = ui.scope_id().with("doctor-lasso");
    let mut lasso: Vec<[f64; 2]> = ui.data(|d| d.get_temp(lasso_id)).unwrap_or_default();
    let position = |k: usize| [f64::from(map.points[k][0]), f64::from(map.points[k][1])];
    let response = Plot::new("doctor-map")
        .height(MAP_HEIGHT_PX)
        .data_aspect(1.0)
        .allow_drag(false)
        .allow_boxed_zoom(false)
        .show_axes(false)
        .show_grid(false)
        .legend(Legend::default())
        .show(ui, |plot| points_ui(plot, state, report, map, &lasso));
    tag(ui, &response.response, "doctor-map");
    let input = response.inner;
    let add = ui.input(|i| i.modifiers.command || i.modifiers.shift);
    if input.drag_started {
        lasso.clear();
    }
    if let (true, Some(p)) = (input.dragging, input.pointer) {
        lasso.push(p);
    }
    if input.drag_stopped && lasso.len() > 2 {
        let paths: Vec<PathBuf> = (0..map.images.len())
            .filter(|&k| inside(&lasso, position(k)))
            .map(|k| report.images[map.images[k]].path.clone())
            .collect();
        out.push(Command::SelectImages { paths, add });
        lasso.clear();
    }
    ui.data_mut(|d| d.insert_temp(lasso_id, lasso));
    let Some(k) = input.hovered else {
        return;
    };
    let image = &report.images[map.images[k]];
    if input.double_clicked {
        out.push(Command::AddImages(vec![image.path.clone()]));
    } else if input.clicked {
        out.push(Command::SelectImage {
            path: image.path.clone(),
            add,
        });
    }
    let texture = state.shell.thumbnails.get(&image.path);
    if texture.is_none() && !state.doctor.thumbnails_asked.contains(&image.path) {
        out.push(Command::Doctor(DoctorCommand::Thumbnails(vec![
            image.path.clone(),
        ])));
    }
    let class = report.classes.get(image.class).cloned().unwrap_or_default();
    response.response.on_hover_ui_at_pointer(|ui| {
        if let Some(texture) = texture {
            ui.add(egui::Image::new(texture).fit_to_exact_size(egui::Vec2::splat(96.0)));
        }
        ui.label(format!("{class}\n{}", image.path.display()));
    });
}

/// The points by class, the suspects, the selection and the lasso; what the pointer does.
fn points_ui(
    plot: &mut egui_plot::PlotUi<'_>,
    state: &AppState,
    report: &Report,
    map: &CutMap,
    lasso: &[[f64; 2]],
) -> MapInput {
    let position = |k: usize| [f64::from(map.points[k][0]), f64::from(map.points[k][1])];
    for (c, name) in report.classes.iter().enumerate() {
        let points: Vec<[f64; 2]> = (0..map.images.len())
            .filter(|&k| report.images[map.images[k]].class == c)
            .map(position)
            .collect();
        plot.points(
            Points::new(name.clone(), points)
                .color(class_colour(c))
                .radius(2.5),
        );
    }
    let flagged: std::collections::HashSet<usize> =
        report.suspects.iter().map(|s| s.image).collect();
    let suspects: Vec<[f64; 2]> = (0..map.images.len())
        .filter(|&k| flagged.contains(&map.images[k]))
        .map(position)
        .collect();
    plot.points(
        Points::new("likely mislabels", suspects)
            .shape(MarkerShape::Cross)
            .radius(5.0)
            .color(Color32::GRAY),
    );
    let selected: Vec<[f64; 2]> = (0..map.images.len())
        .filter(|&k| {
            state
                .data
                .selection
                .contains(&report.images[map.images[k]].path)
        })
        .map(position)
        .collect();
    plot.points(
        Points::new("selected", selected)
            .filled(false)
            .radius(5.0)
            .color(LASSO),
    );
    if lasso.len() > 1 {
        plot.line(Line::new("", PlotPoints::from(lasso.to_vec())).color(LASSO));
    }
    let pointer = plot.pointer_coordinate();
    let hovered = pointer.and_then(|p| {
        let at = plot.screen_from_plot(p);
        (0..map.points.len())
            .map(|k| {
                let [x, y] = position(k);
                (
                    k,
                    plot.screen_from_plot(egui_plot::PlotPoint::new(x, y))
                        .distance(at),
                )
            })
            .filter(|&(_, d)| d <= HOVER_PX)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(k, _)| k)
    });
    let response = plot.response();
    MapInput {
        hovered,
        pointer: pointer.map(|p| [p.x, p.y]),
        drag_started: response.drag_started(),
        dragging: response.dragged(),
        drag_stopped: response.drag_stopped(),
        clicked: response.clicked(),
        double_clicked: response.double_clicked(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_point_is_inside_a_square_lasso_and_outside_beyond_it() {
        let square = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        assert!(super::inside(&square, [0.5, 0.5]));
        assert!(!super::inside(&square, [1.5, 0.5]));
        assert!(!super::inside(&[], [0.0, 0.0]));
    }
}
