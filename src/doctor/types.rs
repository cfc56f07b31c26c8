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

/// Test rows: `per_class` images of each class whose feature `d` carries `signal` where
/// `d % classes` is the class, plus seeded uniform noise in ±1; with their labels.
#[cfg(test)]
pub(super) fn separable_features(
    classes: usize,
    per_class: usize,
    dim: usize,
    signal: f32,
    seed: u64,
) -> (Vec<f32>, Vec<usize>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for c in 0..classes {
        for _ in 0..per_class {
            for d in 0..dim {
                let s = if d % classes == c { signal } else { 0.0 };
                features.push(s + rng.random_range(-1.0f32..1.0));
            }
            labels.push(c);
        }
    }
    (features, labels)
}

/// Features standardised with the training rows' mean and deviation (depths differ in scale).
#[derive(Debug)]
pub(super) struct Standardised {
    pub(super) train: Vec<f32>,
    pub(super) val: Vec<f32>,
}

/// Standardises `train` and `val` rows (`dim` values each) with `train`'s statistics.
pub(super) fn standardise(mut train: Vec<f32>, mut val: Vec<f32>, dim: usize) -> Standardised {
    let dim = dim.max(1);
    let rows = (train.len() / dim).max(1) as f64;
    for d in 0..dim {
        let column = |v: &Vec<f32>| {
            v.iter()
                .skip(d)
                .step_by(dim)
                .map(|&x| f64::from(x))
                .collect::<Vec<_>>()
        };
        let values = column(&train);
        let mean = values.iter().sum::<f64>() / rows;
        let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / rows;
        let inv = 1.0 / (var.sqrt() + 1e-6);
        for x in train.iter_mut().chain(val.iter_mut()).skip(d).step_by(dim) {
            *x = ((f64::from(*x) - mean) * inv) as f32;
        }
    }
    Standardised { train, val }
}
