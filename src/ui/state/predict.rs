//! The Predict panel's state: the images dropped or opened, and their answers.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::predict::ClassProb;

/// What Predict shows.
#[derive(Default)]
pub struct PredictState {
    pub items: Vec<PredictItem>,
    /// Grad-CAM overlays by image with what they explain, made with the current model
    /// (`Err`: why not); the mistakes gallery in Results shows them too.
    pub explanations: HashMap<PathBuf, Result<(egui::TextureHandle, String), String>>,
}

/// An image in the Predict panel.
#[derive(Debug)]
pub struct PredictItem {
    pub path: PathBuf,
    pub result: Option<Result<Vec<ClassProb>, String>>,
}

impl std::fmt::Debug for PredictState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictState")
            .field("items", &self.items)
            .field("explanations", &self.explanations.len())
            .finish()
    }
}
