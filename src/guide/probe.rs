//! The depth probe: how well a linear classifier does on the pretrained network's features
//! cut after different units. Features are computed once for every cut (one pass), so the
//! probe costs little more than caching features once. It shows why small data far from
//! ImageNet should cut early: there, late (ImageNet-specific) features stop helping.

use candle_core::Device;
use serde::Serialize;

use crate::data::dataset::Dataset;
use crate::data::preprocess::Preprocessing;
use crate::model::{Backbone, FoldedNetwork, ModelError, Network, Unit, WeightsSource};
use crate::train::cut::{CutChoice, ProbeFit, Standardised, choose_cut, fit_probe, standardise};
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
            epochs: 60,
            lr: 3e-3,
            seed: 0,
        }
    }
}

impl ProbeOptions {
    /// How each linear probe trains.
    fn fit(&self) -> ProbeFit {
        ProbeFit {
            epochs: self.epochs,
            lr: self.lr,
            seed: self.seed,
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

/// Standardised rows of a training and an optional validation feature set.
fn standardised(train: &FeatureSet, val: Option<&FeatureSet>) -> candle_core::Result<Standardised> {
    let train_rows: Vec<f32> = train.features.flatten_all()?.to_vec1()?;
    let val_rows: Vec<f32> = match val {
        Some(v) if !v.is_empty() => v.features.flatten_all()?.to_vec1()?,
        _ => Vec::new(),
    };
    Ok(standardise(train_rows, val_rows, train.dim()))
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
        let data = standardised(train, val)?;
        let val_labels = val.map_or(&[][..], |v| &v.label_values[..]);
        let (train_accuracy, val_accuracy) = fit_probe(
            &data,
            &train.label_values,
            val_labels,
            dataset.classes.len(),
            &options.fit(),
        );
        points.push(ProbePoint {
            unit,
            unit_index,
            features: data.dim,
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
