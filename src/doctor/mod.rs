//! The dataset doctor: what is wrong with a folder of labelled images before a network is
//! trained on it. People who train on their own folders most often fail on the data: the same
//! photo twice (once in validation, flattering the score), resized or re-encoded copies, images
//! in the wrong class folder. The doctor finds
//!
//! - exact copies (the same bytes) and near copies (the same picture resized, re-encoded or
//!   slightly cropped: a close perceptual hash *and* close pretrained features), grouped, and
//!   the copies that sit on both sides of the training/validation split (leakage);
//! - likely mislabels: each image's out-of-fold probability of its own label from a linear
//!   probe on the features the run would use, ranked (confident learning, Northcutt et al.
//!   2021);
//! - class health: counts, imbalance, near-empty classes and the pairs of classes the
//!   features confuse most;
//! - a 2-D map (t-SNE) of the images' features at each cut, coloured by class, with how often
//!   an image's nearest neighbours share its class: separation growing with depth.
//!
//! Everything comes from one forward pass over the images at every candidate cut.

mod cache;
mod duplicates;
mod labels;
mod map;
mod types;

use candle_core::Device;
use serde::{Deserialize, Serialize};

pub use duplicates::{
    DuplicateGroup, DuplicateKind, LeakPair, NEAR_MAX_HASH_BITS, NEAR_MIN_COSINE,
};
pub use labels::{ClassCount, ClassHealth, ConfusedPair, NEAR_EMPTY_IMAGES, Suspect};
pub use map::{CutMap, MAX_MAP_IMAGES};
pub use types::{DoctorOptions, ImageEntry, Side};

use crate::data::dataset::{Dataset, Sample, SkippedFile};
use crate::model::{ModelError, Network, Unit};
use crate::train::cut::candidate_units;
use crate::train::features::extract_multi;
use types::sides;

/// What the doctor found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub classes: Vec<String>,
    pub images: Vec<ImageEntry>,
    /// Groups of copies, those that leak across the split first.
    pub duplicates: Vec<DuplicateGroup>,
    /// Copies with one image in training and one in validation.
    pub leakage: Vec<LeakPair>,
    /// Likely mislabels, most suspicious first.
    pub suspects: Vec<Suspect>,
    pub health: ClassHealth,
    /// The cuts a map can be drawn at, earliest first (the last is the one the run uses).
    pub cuts: Vec<Unit>,
    /// Maps made so far (one per cut, in the order they were made).
    pub maps: Vec<CutMap>,
    /// Files that could not be read.
    pub skipped: Vec<SkippedFile>,
}

impl Report {
    /// The map at `unit`, when it has been made.
    pub fn map_at(&self, unit: Unit) -> Option<&CutMap> {
        self.maps.iter().find(|m| m.unit == unit)
    }

    /// The findings in a few words.
    pub fn summary(&self) -> String {
        let copies: usize = self.duplicates.iter().map(|g| g.images.len() - 1).sum();
        format!(
            "{} images: {} duplicate groups ({copies} extra copies), {} leaking across the \
             split, {} likely mislabels",
            self.images.len(),
            self.duplicates.len(),
            self.leakage.len(),
            self.suspects.len()
        )
    }
}

/// Stages of an examination, for progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the files: their bytes' digests and perceptual hashes.
    Reading,
    /// The pretrained network over every image, features at every cut.
    Features,
    /// Copies, probes and class health.
    Checking,
    /// The t-SNE map at one cut.
    Map(Unit),
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::Reading => write!(f, "reading the files"),
            Stage::Features => write!(f, "computing features"),
            Stage::Checking => write!(f, "looking for copies and mislabels"),
            Stage::Map(unit) => write!(f, "drawing the map at {unit}"),
        }
    }
}

/// What an examination reports as it goes: documented once, rendered by the CLI (terminal or
/// JSON) and the window.
#[derive(Debug, Clone)]
pub enum DoctorEvent {
    Progress {
        stage: Stage,
        done: usize,
        total: usize,
    },
    /// Copies, suspects and class health: everything but the maps.
    Report(Box<Report>),
    /// The map at one more cut.
    Map(CutMap),
}

#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the doctor was stopped")]
    Cancelled,
    #[error("no image could be read")]
    NoImages,
}

impl From<candle_core::Error> for DoctorError {
    fn from(e: candle_core::Error) -> Self {
        DoctorError::Model(ModelError::from(e))
    }
}

/// Examines every image of `dataset` (both splits). Events go to `on_event` as they are ready:
/// progress, then the report, then a map per cut (from the last cut back: the one the run uses
/// first). An error from `on_event` (a stop request) ends the examination.
pub fn examine(
    dataset: &Dataset,
    options: &DoctorOptions,
    device: &Device,
    mut on_event: impl FnMut(DoctorEvent) -> Result<(), DoctorError>,
) -> Result<Report, DoctorError> {
    let backbone = options.backbone;
    let source = backbone.weights_or_default(options.weights.as_ref());
    let loaded = backbone.load_weights(&source, device)?;
    let folded = Network::pretrained_from(backbone, &loaded.weights, device)?.folded()?;
    let pre = backbone.preprocessing_with(&loaded, options.image_size_px);
    let all = sides(dataset);
    let (read, mut skipped) = duplicates::read_all(&all, pre.resize_px, |done, total| {
        on_event(DoctorEvent::Progress {
            stage: Stage::Reading,
            done,
            total,
        })
    })?;
    let kept: Vec<Sample> = read.iter().map(|r| all[r.index].0.clone()).collect();
    if kept.is_empty() {
        return Err(DoctorError::NoImages);
    }
    let units = candidate_units(backbone);
    let indices: Vec<usize> = units.iter().map(|&u| backbone.index_of(u)).collect();
    let forward = |x: &candle_core::Tensor| folded.features_at_units(x, &indices);
    let (sets, unread) = extract_multi(&kept, &pre, 32, device, forward, |done, total| {
        on_event(DoctorEvent::Progress {
            stage: Stage::Features,
            done,
            total,
        })
    })?;
    skipped.extend(unread);
    // Only images with both hashes and features go on (a file that vanished in between is
    // skipped).
    let with_features: std::collections::HashSet<&std::path::PathBuf> = sets
        .first()
        .map(|s| s.paths.iter().collect())
        .unwrap_or_default();
    let read: Vec<_> = read
        .into_iter()
        .filter(|r| with_features.contains(&all[r.index].0.path))
        .collect();
    let images: Vec<ImageEntry> = read
        .iter()
        .map(|r| {
            let (sample, side) = all[r.index];
            ImageEntry {
                path: sample.path.clone(),
                class: sample.label,
                side,
            }
        })
        .collect();
    on_event(DoctorEvent::Progress {
        stage: Stage::Checking,
        done: 0,
        total: 1,
    })?;
    let features: Vec<Vec<f32>> = sets
        .iter()
        .map(|s| s.features.flatten_all().and_then(|t| t.to_vec1()))
        .collect::<candle_core::Result<_>>()?;
    let dims: Vec<usize> = sets.iter().map(|s| s.dim()).collect();
    let last = features.len().saturating_sub(1);
    let (head, head_dim) = (&features[last], dims[last]);
    let (duplicates, leakage) = duplicates::find(&images, &read, head, head_dim);
    let classes = dataset.classes.len();
    let labels: Vec<usize> = images.iter().map(|i| i.class).collect();
    let probe = labels::out_of_fold(head, head_dim, &labels, classes, options.seed);
    let mut report = Report {
        classes: dataset.classes.clone(),
        suspects: labels::suspects(&probe, &labels),
        health: labels::health(&images, &probe, classes),
        images,
        duplicates,
        leakage,
        cuts: units.clone(),
        maps: Vec::new(),
        skipped,
    };
    on_event(DoctorEvent::Report(Box::new(report.clone())))?;
    draw_maps(
        &mut report,
        &features,
        &dims,
        &labels,
        classes,
        options.seed,
        &mut on_event,
    )?;
    Ok(report)
}

/// Maps at every cut of the report, from the last cut back, each reported as it is made.
fn draw_maps(
    report: &mut Report,
    features: &[Vec<f32>],
    dims: &[usize],
    labels: &[usize],
    classes: usize,
    seed: u64,
    on_event: &mut impl FnMut(DoctorEvent) -> Result<(), DoctorError>,
) -> Result<(), DoctorError> {
    let units = report.cuts.clone();
    let chosen = map::map_images(labels, classes, seed);
    for k in (0..units.len()).rev() {
        on_event(DoctorEvent::Progress {
            stage: Stage::Map(units[k]),
            done: 0,
            total: 1,
        })?;
        let made = map::cut_map(units[k], &features[k], dims[k], labels, &chosen, seed);
        if let Some(made) = made {
            on_event(DoctorEvent::Map(made.clone()))?;
            report.maps.push(made);
        }
    }
    Ok(())
}

/// [`examine`], unless the folder is unchanged since a report was stored for it with these
/// options (`fresh`: examine anyway). A stored report is sent whole as one `Report` event, maps
/// included; a finished examination is stored. Also says whether the report came from the
/// store.
pub fn examine_cached(
    dataset: &Dataset,
    options: &DoctorOptions,
    fresh: bool,
    device: &Device,
    mut on_event: impl FnMut(DoctorEvent) -> Result<(), DoctorError>,
) -> Result<(Report, bool), DoctorError> {
    let key = cache::fingerprint(dataset, options);
    if !fresh && let Some(report) = cache::load::<Report>(&key) {
        on_event(DoctorEvent::Report(Box::new(report.clone())))?;
        return Ok((report, true));
    }
    let report = examine(dataset, options, device, on_event)?;
    cache::store(&key, &report);
    Ok((report, false))
}
