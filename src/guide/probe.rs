//! The depth probe: how well a linear classifier does on the pretrained network's features
//! cut after different units. Features are computed once for every cut (one pass), so the
//! probe costs little more than caching features once. It shows why small data far from
//! ImageNet should cut early: there, late (ImageNet-specific) features stop helping.

use candle_core::Device;
use serde::Serialize;

use crate::data::dataset::Dataset;
use crate::data::preprocess::Preprocessing;
use crate::model::{Backbone, FoldedNetwork, ModelError, Network, Unit, WeightsSource};
use crate::train::cut::{CutChoice, ProbeFit, choose_cut, fit_probe};
use crate::train::features::{FeatureSet, extract_multi};

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The network probed, at its [`crate::model::Architecture::probe_units`].
    pub backbone: Backbone,
    /// Its weights (`None`: the backbone's default).
    pub weights: Option<WeightsSource>,
    pub image_size_px: u32,
    pub epochs: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            backbone: Backbone::default(),
            weights: None,
            image_size_px: 224,
            epochs: ProbeFit::default().epochs,
            lr: ProbeFit::default().lr,
            seed: 0,
        }
    }
}

impl ProbeOptions {
    /// How each linear probe trains (as the run trains its classifier, with these epochs,
    /// rate and seed).
    fn fit(&self) -> ProbeFit {
        ProbeFit {
            epochs: self.epochs,
            lr: self.lr,
            seed: self.seed,
            ..ProbeFit::default()
        }
    }
}

/// The linear probe's result at one cut.
#[derive(Debug, Clone, Serialize)]
pub struct ProbePoint {
    pub unit: Unit,
    pub unit_index: usize,
    pub features: usize,
    pub train_accuracy: f64,
    /// `None` without validation images.
    pub val_accuracy: Option<f64>,
}

/// The rows of a feature set, row-major (empty for an empty set).
fn rows_of(set: Option<&FeatureSet>) -> candle_core::Result<Vec<f32>> {
    match set {
        Some(s) if !s.is_empty() => s.features.flatten_all()?.to_vec1(),
        _ => Ok(Vec::new()),
    }
}

/// Runs the probe at every cut the backbone names. `progress(done, total)` while computing
/// features (training the probes takes a fraction of that).
pub fn depth_probe(
    dataset: &Dataset,
    options: &ProbeOptions,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<ProbePoint>, ModelError> {
    let backbone = options.backbone;
    let (folded, pre) = pretrained(options, device)?;
    let units = backbone.probe_units();
    let indices: Vec<usize> = units.iter().map(|&u| backbone.index_of(u)).collect();
    let total = dataset.train.len() + dataset.val.len();
    let forward = |x: &candle_core::Tensor| folded.features_at_units(x, &indices);
    let (train_sets, _) =
        extract_multi::<ModelError>(&dataset.train, &pre, 32, device, forward, |done, _| {
            progress(done, total);
            Ok(())
        })?;
    let (val_sets, _) =
        extract_multi::<ModelError>(&dataset.val, &pre, 32, device, forward, |done, _| {
            progress(dataset.train.len() + done, total);
            Ok(())
        })?;
    let mut points = Vec::with_capacity(units.len());
    for (k, (&unit, &unit_index)) in units.iter().zip(&indices).enumerate() {
        let Some(train) = train_sets.get(k) else {
            continue;
        };
        let val = val_sets.get(k);
        let val_labels = val.map_or(&[][..], |v| &v.label_values[..]);
        let (train_accuracy, val_accuracy) = fit_probe(
            &rows_of(Some(train))?,
            &rows_of(val)?,
            train.dim(),
            &train.label_values,
            val_labels,
            dataset.classes.len(),
            &options.fit(),
        );
        points.push(ProbePoint {
            unit,
            unit_index,
            features: train.dim(),
            train_accuracy,
            val_accuracy,
        });
    }
    Ok(points)
}

/// The pretrained network of `options`, folded, and its preprocessing at the probe's size.
fn pretrained(
    options: &ProbeOptions,
    device: &Device,
) -> Result<(FoldedNetwork, Preprocessing), ModelError> {
    let backbone = options.backbone;
    let source = backbone.weights_or_default(options.weights.as_ref());
    let loaded = backbone.load_weights(&source, device)?;
    let network = Network::pretrained_from(backbone, &loaded.weights, device)?;
    Ok((
        network.folded()?,
        backbone.preprocessing_with(&loaded, options.image_size_px),
    ))
}

/// The cross-validated choice of the cut on the dataset's *training* split: what a plan that
/// chooses its cut from the data (*Start of ConvNet*) does when its run starts. `None`: a class
/// has fewer than 2 training images.
pub fn cross_validated_cut(
    dataset: &Dataset,
    options: &ProbeOptions,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<Option<CutChoice>, ModelError> {
    let (folded, pre) = pretrained(options, device)?;
    choose_cut::<ModelError>(
        &dataset.train,
        dataset.classes.len(),
        options.backbone,
        &folded,
        &pre,
        device,
        &options.fit(),
        |done, total| {
            progress(done, total);
            Ok(())
        },
    )
}
