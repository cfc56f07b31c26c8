//! The Inspect view's state: the image looked at, the two units, and their maps.

use std::path::PathBuf;

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
