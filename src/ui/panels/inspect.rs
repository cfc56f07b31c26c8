//! The Inspect view: what the network's units respond to on one image, an early and a late
//! unit side by side (the course's Zeiler & Fergus pictures, on the class's own images).

use egui::{Color32, RichText, Sense, Vec2};

use super::widgets::tag;
use crate::ui::command::Command;
use crate::ui::state::AppState;
use crate::ui::state::inspect::InspectedUnit;

/// Images offered per class of the loaded data.
const IMAGES_PER_CLASS: usize = 1;
/// Images offered at most.
const MAX_IMAGES: usize = 24;
const PICK_PX: f32 = 56.0;
const SIDE_NAMES: [&str; 2] = ["left", "right"];
const SIDE_COLOURS: [Color32; 2] = [
    Color32::from_rgb(66, 133, 244),
    Color32::from_rgb(230, 140, 40),
];

pub(super) fn inspect_panel_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    ui.heading("Inspect: what each layer responds to");
    ui.label(
        "The strongest activation maps of one image at two units: early units respond to \
         edges, colours and textures, late ones to parts of objects (Zeiler & Fergus). That \
         is why the guide keeps early layers for data unlike ImageNet and late ones for \
         similar data.",
    );
    let model = match &state.model.trained {
        Some(m) => format!("your trained model ({} classes)", m.classes.len()),
        None => "the pretrained network".to_owned(),
    };
    ui.label(RichText::new(format!("Looking inside {model}.")).weak());
    image_picker_ui(ui, state, out);
    ui.add_space(6.0);
    unit_strip_ui(ui, state, out);
    ui.add_space(6.0);
    let inspect = &state.inspect;
    if let Some(e) = &inspect.error {
        ui.colored_label(Color32::from_rgb(200, 40, 40), e);
    }
    if inspect.busy {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("computing the maps…");
        });
    }
    if inspect.image.is_none() {
        ui.label("Pick an image above (add images in Predict, or load training data).");
        return;
    }
    ui.horizontal_top(|ui| {
        if let Some(crop) = &inspect.crop {
            ui.vertical(|ui| {
                ui.label("What the network sees");
                ui.add(egui::Image::new(crop).fit_to_exact_size(Vec2::splat(160.0)));
            });
        }
        let width_px = ((ui.available_width() - 24.0) / 2.0).clamp(160.0, 520.0);
        for (side, shown) in inspect.shown.iter().enumerate() {
            ui.vertical(|ui| maps_ui(ui, state, side, shown, width_px));
        }
    });
}

/// Thumbnails of Predict's images and of the first images of each class.
fn image_picker_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    let mut paths: Vec<&std::path::PathBuf> = state.predict.items.iter().map(|i| &i.path).collect();
    if let Some(dataset) = &state.data.dataset {
        // Classes only until the picker is full: a large folder is not scanned every frame.
        let examples = (0..dataset.classes.len())
            .flat_map(|class| dataset.examples(class, IMAGES_PER_CLASS))
            .map(|s| &s.path);
        paths.extend(examples.take(MAX_IMAGES.saturating_sub(paths.len())));
    }
    paths.truncate(MAX_IMAGES);
    if paths.is_empty() {
        return;
    }
    ui.label("Image (click one):");
    egui::ScrollArea::horizontal()
        .id_salt("inspect-images")
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                for (i, path) in paths.into_iter().enumerate() {
                    let selected = state.inspect.image.as_ref() == Some(path);
                    let response = match state.shell.thumbnails.get(path) {
                        Some(tex) => ui.add(
                            egui::Image::new(tex)
                                .fit_to_exact_size(Vec2::splat(PICK_PX))
                                .sense(Sense::click()),
                        ),
                        None => {
                            let name = path.file_name().unwrap_or_default().to_string_lossy();
                            ui.add_sized(Vec2::splat(PICK_PX), egui::Button::new(name))
                        }
                    };
                    if selected {
                        ui.painter().rect_stroke(
                            response.rect.expand(2.0),
                            2.0,
                            egui::Stroke::new(2.0, Color32::from_rgb(66, 133, 244)),
                            egui::StrokeKind::Outside,
                        );
                    }
                    let response = response.on_hover_text(path.display().to_string());
                    tag(ui, &response, &format!("inspect-image-{i}"));
                    if response.clicked() {
                        out.push(Command::InspectImage(path.clone()));
                    }
                }
            });
        });
}

/// The units with maps as a strip; a click puts the unit on the chosen side.
fn unit_strip_ui(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Command>) {
    let inspect = &state.inspect;
    let chosen = inspect.chosen_units();
    ui.horizontal(|ui| {
        ui.label("A click on a unit shows it on the");
        for (side, name) in SIDE_NAMES.iter().enumerate() {
            if ui.radio(inspect.side == side, *name).clicked() {
                out.push(Command::InspectSide(side));
            }
        }
    });
    let backbone = shown_backbone(state);
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 3.0;
        for &unit in &inspect.available {
            let side = chosen.iter().position(|&u| u == unit);
            let text = RichText::new(backbone.unit_label(unit));
            let button = match side {
                Some(s) => egui::Button::new(text.color(Color32::WHITE)).fill(SIDE_COLOURS[s]),
                None => egui::Button::new(text),
            };
            let response = ui.add(button.min_size(Vec2::new(30.0, 24.0)));
            tag(ui, &response, &format!("inspect-unit-{unit}"));
            if response.clicked() {
                out.push(Command::InspectUnit {
                    side: inspect.side,
                    unit,
                });
            }
        }
    });
}

fn maps_ui(ui: &mut egui::Ui, state: &AppState, side: usize, shown: &InspectedUnit, width_px: f32) {
    let maps = &shown.maps;
    let backbone = shown_backbone(state);
    let info = backbone.info(maps.unit);
    ui.label(
        RichText::new(format!(
            "{} ({}): the {} strongest of {} channels",
            maps.unit,
            SIDE_NAMES[side],
            maps.channels.len(),
            maps.channels_total
        ))
        .color(SIDE_COLOURS[side]),
    );
    ui.label(
        RichText::new(format!(
            "{} x {} map: one cell per {} x {} input pixels",
            maps.rows, maps.columns, info.output_stride, info.output_stride
        ))
        .weak(),
    );
    let size = shown.texture.size_vec2();
    let scale = width_px / size.x.max(1.0);
    let response = ui.add(egui::Image::new(&shown.texture).fit_to_exact_size(size * scale));
    tag(ui, &response, &format!("inspect-maps-{}", maps.unit));
    response.on_hover_text(
        maps.channels
            .iter()
            .map(|c| format!("channel {}: mean {:.2}", c.channel, c.mean_activation))
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

/// The network of the model in use (the trained one, else the bundled pretrained one).
fn shown_backbone(state: &AppState) -> crate::model::Backbone {
    state
        .model
        .trained
        .as_ref()
        .map_or(crate::model::Backbone::default(), |m| {
            m.network.spec.backbone
        })
}
