//! Looking inside the network from the window: the Inspect view's activation maps and the
//! Grad-CAM overlays of Predict and the mistakes gallery. The work runs on job threads; this
//! file decides what to ask for and files the answers.

use std::path::PathBuf;

use super::app::StudioApp;
use super::command::Command;
use super::jobs::{Explained, Inspection, JobError, PendingImages};
use super::state::MISTAKE_THUMBNAILS;
use super::state::inspect::InspectedUnit;

impl StudioApp {
    /// The Inspect view's and the overlays' commands.
    pub(super) fn apply_inspect_command(&mut self, command: Command) {
        let state = &mut self.state;
        match command {
            Command::InspectImage(path) => {
                state.inspect.image = Some(path);
                self.request_inspection();
            }
            Command::InspectUnit { side, unit } => {
                if let Some(slot) = state.inspect.units.get_mut(side) {
                    *slot = Some(unit);
                    self.request_inspection();
                }
            }
            Command::InspectSide(side) => state.inspect.side = side.min(1),
            Command::ShowGradCam(on) => {
                state.settings.show_grad_cam = on;
                self.request_explanations();
                self.live_explain(on);
            }
            _ => {}
        }
    }

    /// The model in use changed: the units on offer follow it, old overlays go, and what is
    /// shown is computed again.
    pub(super) fn inspection_follows_model(&mut self) {
        self.explain_generation += 1;
        let available = self
            .active_predictor()
            .map(|p| crate::inspect::spatial_units(&p))
            .unwrap_or_default();
        let state = &mut self.state;
        state.predict.explanations.clear();
        state.inspect.available = available;
        self.request_inspection();
        self.request_explanations();
    }

    /// Computes the Inspect view's maps for its image and units (if an image is chosen).
    pub(super) fn request_inspection(&mut self) {
        let inspect = &self.state.inspect;
        let (Some(image), Some(predictor)) = (inspect.image.clone(), self.active_predictor())
        else {
            return;
        };
        let units = inspect.chosen_units();
        self.state.inspect.busy = true;
        self.jobs.inspect(predictor, image, units);
    }

    /// Grad-CAM for the shown images that lack it (Predict's, and the mistakes of the current
    /// model's results), when the overlays are on.
    pub(super) fn request_explanations(&mut self) {
        let state = &self.state;
        if !state.settings.show_grad_cam {
            return;
        }
        let mut paths: Vec<PathBuf> = state.predict.items.iter().map(|i| i.path.clone()).collect();
        if state.results.run.is_none()
            && let Some(eval) = state
                .model
                .report
                .as_ref()
                .and_then(|r| r.evaluation.as_ref())
        {
            paths.extend(
                eval.misclassified
                    .iter()
                    .take(MISTAKE_THUMBNAILS)
                    .map(|m| m.path.clone()),
            );
        }
        paths.retain(|p| !state.predict.explanations.contains_key(p));
        paths.dedup();
        if paths.is_empty() {
            return;
        }
        if let Some(predictor) = self.active_predictor() {
            self.jobs.explain(predictor, paths, self.explain_generation);
        }
    }

    pub(super) fn on_inspected(&mut self, result: Result<Inspection, JobError>) {
        let inspect = &mut self.state.inspect;
        match result {
            // An answer for an earlier choice: the one for the current choice follows.
            Ok(inspection)
                if Some(&inspection.path) != inspect.image.as_ref()
                    || inspection.units() != inspect.chosen_units() => {}
            Ok(inspection) => {
                inspect.busy = false;
                inspect.error = None;
                self.pending_images
                    .push(PendingImages::Inspected(inspection));
            }
            Err(e) => {
                inspect.busy = false;
                inspect.shown.clear();
                inspect.error = Some(e.to_string());
            }
        }
    }

    pub(super) fn on_explained(&mut self, explained: Explained) {
        if explained.generation == self.explain_generation {
            self.pending_images.push(PendingImages::Explained {
                path: explained.path,
                result: explained.result.map_err(|e| e.to_string()),
            });
        }
    }

    /// Turns the pending answers into textures (needs the context, so it runs in `drain`).
    pub(super) fn load_inspection_textures(&mut self, ctx: &egui::Context) {
        let options = egui::TextureOptions::NEAREST;
        for pending in std::mem::take(&mut self.pending_images) {
            let state = &mut self.state;
            match pending {
                PendingImages::Inspected(inspection) => {
                    let inspect = &mut state.inspect;
                    inspect.crop = Some(ctx.load_texture(
                        "inspect-crop",
                        inspection.crop,
                        egui::TextureOptions::LINEAR,
                    ));
                    inspect.shown = inspection
                        .maps
                        .into_iter()
                        .enumerate()
                        .map(|(i, (maps, grid))| InspectedUnit {
                            texture: ctx.load_texture(format!("inspect-{i}"), grid, options),
                            maps,
                        })
                        .collect();
                }
                PendingImages::Explained { path, result } => {
                    let name = format!("grad-cam-{}", path.display());
                    let overlay = result.map(|(image, caption)| {
                        let texture = ctx.load_texture(name, image, egui::TextureOptions::LINEAR);
                        (texture, caption)
                    });
                    state.predict.explanations.insert(path, overlay);
                }
            }
        }
    }
}
