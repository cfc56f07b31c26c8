//! The model in use: trained here or opened, its report, and the data it was trained on.

use crate::train::{TrainReport, TrainedModel};

use super::settings::DataChoice;

/// The current model (Results, Predict, Inspect and saving read it).
#[derive(Debug, Default)]
pub struct ModelState {
    pub trained: Option<TrainedModel>,
    pub report: Option<TrainReport>,
    /// The data it was trained on (`None`: opened from disk).
    pub data: Option<DataChoice>,
}
