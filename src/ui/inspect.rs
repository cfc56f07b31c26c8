//! Looking inside the network from the window: the Inspect view's activation maps and the
//! Grad-CAM overlays of Predict and the mistakes gallery. The work runs on job threads; this
//! file decides what to ask for and files the answers.

use std::path::PathBuf;

use super::app::StudioApp;
use super::command::Command;
use super::jobs::{Explained, Inspection, JobError};
use super::state::MISTAKE_THUMBNAILS;
use crate::inspect::ActivationMaps;
use crate::model::Unit;

/// One side of the Inspect view.
pub struct InspectedUnit {
    pub maps: ActivationMaps,
    pub texture: egui::TextureHandle,
}

/// What the Inspect view shows and is asked to show.
#[derive(Default)]
pub struct InspectState {
    /// The image looked at.
    pub image: Option<PathBuf>,
    /// The units shown side by side (`None`: that side's default, the first or last unit).
    pub units: [Option<Unit>; 2],
    /// The side a click on the unit strip sets (0: left).
    pub side: usize,
    /// The units of the model in use that have maps, in order.
    pub available: Vec<Unit>,
    /// The image's crop as the network sees it.
    pub crop: Option<egui::TextureHandle>,
    pub shown: Vec<InspectedUnit>,
    pub error: Option<String>,
    pub busy: bool,
}

impl std::fmt::Debug for InspectedUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InspectedUnit")
            .field("maps", &self.maps)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for InspectState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InspectState")
            .field("image", &self.image)
            .field("units", &self.chosen_units())
            .field("shown", &self.shown.len())
            .finish_non_exhaustive()
    }
}

impl InspectState {
    /// The units to show: the chosen ones, else the first and the last unit with a map.
    pub fn chosen_units(&self) -> Vec<Unit> {
        let defaults = [self.available.first(), self.available.last()];
        self.units
            .iter()
            .zip(defaults)
            .filter_map(|(chosen, default)| {
                chosen
                    .filter(|u| self.available.contains(u))
                    .or(default.copied())
            })
            .collect()
    }
}

/// Answers of the inspection jobs, waiting for the UI thread's context to become textures.
pub(super) enum PendingImages {
    Inspected(Inspection),
    Explained {
        path: PathBuf,
        result: Result<(egui::ColorImage, String), String>,
    },
}

impl StudioApp {
    /// The Inspect view's and the overlays' commands.
    pub(super) fn apply_inspect_command(&mut self, command: Command) {
        let state = self.state_mut();
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
        let state = self.state_mut();
        state.explanations.clear();
        state.inspect.available = available;
        self.request_inspection();
        self.request_explanations();
    }

    /// Computes the Inspect view's maps for its image and units (if an image is chosen).
    pub(super) fn request_inspection(&mut self) {
        let inspect = &self.state().inspect;
        let (Some(image), Some(predictor)) = (inspect.image.clone(), self.active_predictor())
        else {
            return;
        };
        let units = inspect.chosen_units();
        self.state_mut().inspect.busy = true;
        self.jobs.inspect(predictor, image, units);
    }

    /// Grad-CAM for the shown images that lack it (Predict's, and the mistakes of the current
    /// model's results), when the overlays are on.
    pub(super) fn request_explanations(&mut self) {
        let state = self.state();
        if !state.settings.show_grad_cam {
            return;
        }
        let mut paths: Vec<PathBuf> = state.predictions.iter().map(|i| i.path.clone()).collect();
        if state.results_run.is_none()
            && let Some(eval) = state
                .trained_report
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
        paths.retain(|p| !state.explanations.contains_key(p));
        paths.dedup();
        if paths.is_empty() {
            return;
        }
        if let Some(predictor) = self.active_predictor() {
            self.jobs.explain(predictor, paths, self.explain_generation);
        }
    }

    pub(super) fn on_inspected(&mut self, result: Result<Inspection, JobError>) {
        let inspect = &mut self.state_mut().inspect;
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
            let state = self.state_mut();
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
                    state.explanations.insert(path, overlay);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_default_to_the_first_and_last_unit_and_forget_units_a_model_lacks() {
        let mut inspect = InspectState {
            available: vec![Unit::Stem, Unit::Block(0), Unit::Block(5)],
            ..InspectState::default()
        };
        assert_eq!(inspect.chosen_units(), [Unit::Stem, Unit::Block(5)]);
        inspect.units = [Some(Unit::Block(0)), Some(Unit::Block(9))];
        assert_eq!(inspect.chosen_units(), [Unit::Block(0), Unit::Block(5)]);
        inspect.available.clear();
        assert!(inspect.chosen_units().is_empty());
    }
}
