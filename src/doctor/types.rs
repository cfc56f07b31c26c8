//! What the doctor's parts share: the options, and the images with their side of the split.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::dataset::{Dataset, Sample};
use crate::model::{Backbone, WeightsSource};

/// What the doctor looks with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoctorOptions {
    pub backbone: Backbone,
    /// `None`: the backbone's default weights.
    pub weights: Option<WeightsSource>,
    pub image_size_px: u32,
    /// Folds, probes and the map's start are seeded: the same folder gives the same report.
    pub seed: u64,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        Self {
            backbone: Backbone::default(),
            weights: None,
            image_size_px: 224,
            seed: 0,
        }
    }
}

/// Which side of the split an image is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Train,
    Validation,
}

/// One image the doctor examined; the report's other parts refer to images by their index here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub path: PathBuf,
    pub class: usize,
    pub side: Side,
}

/// Samples of both splits with their side, training first.
pub(super) fn sides(dataset: &Dataset) -> Vec<(&Sample, Side)> {
    (dataset.train.iter().map(|s| (s, Side::Train)))
        .chain(dataset.val.iter().map(|s| (s, Side::Validation)))
        .collect()
}
