//! A large confusion matrix as one heat-map image (built once per evaluation and kept as a
//! texture), with the cell under the pointer named on hover, a click selecting it, and the most
//! frequent confusions listed beside it.

use std::hash::{Hash, Hasher};

use egui::{Color32, ColorImage, Rect, Sense, Stroke, TextureHandle, TextureOptions, Vec2, pos2};

use super::widgets::tag;
use crate::train::Evaluation;
use crate::ui::command::Command;

/// The widest the map is drawn.
const MAX_SIDE_PX: f32 = 640.0;
/// Room left beside the map for the list of confusions.
const LIST_WIDTH_PX: f32 = 300.0;
/// How many confusions the list beside the map names.
const TOP_CONFUSIONS: usize = 10;

/// A fingerprint of the matrix: a new evaluation builds a new texture, an old one is reused.
fn fingerprint(eval: &Evaluation) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    eval.confusion.hash(&mut hasher);
    eval.classes.hash(&mut hasher);
    hasher.finish()
}

/// Cell colours: the diagonal in green scaled by the largest diagonal count, the rest in red
/// scaled by the largest off-diagonal count (square-root scaled so that single mistakes show).
fn heatmap_image(eval: &Evaluation) -> ColorImage {
    let n = eval.classes.len();
    let cells = |diagonal: bool| {
        eval.confusion.iter().enumerate().flat_map(move |(t, row)| {
            row.iter()
                .enumerate()
                .filter(move |(p, _)| (*p == t) == diagonal)
                .map(|(_, &c)| c)
        })
    };
    let max_diagonal = cells(true).max().unwrap_or(1).max(1) as f32;
    let max_off = cells(false).max().unwrap_or(1).max(1) as f32;
    let mut pixels = Vec::with_capacity(n * n);
    for (t, row) in eval.confusion.iter().enumerate() {
        for (p, &count) in row.iter().enumerate() {
            pixels.push(if t == p {
                let s = (count as f32 / max_diagonal).sqrt();
                Color32::from_rgb(
                    (255.0 - 200.0 * s) as u8,
                    (255.0 - 80.0 * s) as u8,
                    (255.0 - 200.0 * s) as u8,
                )
            } else if count == 0 {
                Color32::WHITE
            } else {
                let s = (count as f32 / max_off).sqrt();
                Color32::from_rgb(255, (230.0 - 200.0 * s) as u8, (230.0 - 200.0 * s) as u8)
            });
        }
    }
    ColorImage::new([n, n], pixels)
}

/// The texture of `eval`'s map, made on first use and kept in egui's memory under `slot`.
pub(super) fn texture(ctx: &egui::Context, eval: &Evaluation, slot: &str) -> TextureHandle {
    let id = egui::Id::unique(("confusion-heatmap", slot));
    let key = fingerprint(eval);
    if let Some((cached, handle)) = ctx.data(|d| d.get_temp::<(u64, TextureHandle)>(id))
        && cached == key
    {
        return handle;
    }
    let handle = ctx.load_texture(
        "confusion-heatmap",
        heatmap_image(eval),
        TextureOptions::NEAREST,
    );
    ctx.data_mut(|d| d.insert_temp(id, (key, handle.clone())));
    handle
}

/// The map; hovering names the cell, a click shows its images.
pub(super) fn heatmap_ui(
    ui: &mut egui::Ui,
    selected: Option<(usize, usize)>,
    eval: &Evaluation,
    out: &mut Vec<Command>,
) {
    let n = eval.classes.len();
    let texture = texture(ui.ctx(), eval, "results");
    let side_px = (ui.available_width() - LIST_WIDTH_PX).clamp(160.0, MAX_SIDE_PX);
    let (rect, response) = ui.allocate_exact_size(Vec2::splat(side_px), Sense::click());
    let uv = Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0));
    ui.painter().image(texture.id(), rect, uv, Color32::WHITE);
    ui.painter().rect_stroke(
        rect,
        0.0,
        Stroke::new(1.0, Color32::GRAY),
        egui::StrokeKind::Outside,
    );
    let cell_px = side_px / n as f32;
    let cell_at = |pos: egui::Pos2| {
        let t = ((pos.y - rect.top()) / cell_px).floor() as usize;
        let p = ((pos.x - rect.left()) / cell_px).floor() as usize;
        (t < n && p < n).then_some((t, p))
    };
    if let Some((t, p)) = selected.filter(|(t, p)| *t < n && *p < n) {
        let min = rect.min + Vec2::new(p as f32 * cell_px, t as f32 * cell_px);
        let cell = Rect::from_min_size(min, Vec2::splat(cell_px)).expand(2.0);
        ui.painter().rect_stroke(
            cell,
            0.0,
            Stroke::new(2.0, Color32::BLACK),
            egui::StrokeKind::Outside,
        );
    }
    tag(ui, &response, "confusion-heatmap");
    if response.clicked()
        && let Some((t, p)) = response.interact_pointer_pos().and_then(cell_at)
    {
        out.push(Command::ShowCell {
            truth: t,
            predicted: p,
        });
    }
    if let Some((t, p)) = response.hover_pos().and_then(cell_at) {
        response.on_hover_text(format!(
            "true {} -> predicted {}: {}",
            eval.classes[t], eval.classes[p], eval.confusion[t][p]
        ));
    }
}

/// The most frequent confusions (true -> predicted, count), each a link to its images.
pub(super) fn top_confusions_ui(ui: &mut egui::Ui, eval: &Evaluation, out: &mut Vec<Command>) {
    let mut pairs: Vec<(usize, usize, usize)> = eval
        .confusion
        .iter()
        .enumerate()
        .flat_map(|(t, row)| {
            row.iter()
                .enumerate()
                .filter(move |&(p, &c)| p != t && c > 0)
                .map(move |(p, &c)| (c, t, p))
        })
        .collect();
    // Most frequent first; ties in class order.
    pairs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    ui.label(format!(
        "Most frequent confusions ({} pairs in all):",
        pairs.len()
    ));
    for &(count, t, p) in pairs.iter().take(TOP_CONFUSIONS) {
        let text = format!("{} -> {}: {count}", eval.classes[t], eval.classes[p]);
        if ui.link(text).clicked() {
            out.push(Command::ShowCell {
                truth: t,
                predicted: p,
            });
        }
    }
}
