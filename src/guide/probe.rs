//! The depth probe: how well a linear classifier does on the pretrained network's features
//! cut after different units. Features are computed once for every cut (one pass), so the
//! probe costs little more than caching features once. It shows why small data far from
//! ImageNet should cut early: there, late (ImageNet-specific) features stop helping.

use candle_core::Device;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::dataset::Dataset;
use crate::model::{Backbone, HeadInit, ModelError, Network, NetworkSpec, Unit, WeightsSource};
use crate::train::features::{FeatureSet, extract_multi};
use crate::train::head::{AdamWConfig, LinearHead};
use crate::train::schedule::cosine_factor;

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

/// Features standardised with the training set's mean and deviation (depths differ in scale).
struct Standardised {
    train: Vec<f32>,
    val: Vec<f32>,
    dim: usize,
}

fn standardise(train: &FeatureSet, val: Option<&FeatureSet>) -> candle_core::Result<Standardised> {
    let dim = train.dim();
    let mut t: Vec<f32> = train.features.flatten_all()?.to_vec1()?;
    let mut v: Vec<f32> = match val {
        Some(v) if !v.is_empty() => v.features.flatten_all()?.to_vec1()?,
        _ => Vec::new(),
    };
    let rows = t.len() / dim.max(1);
    for d in 0..dim {
        let mean = (0..rows).map(|r| f64::from(t[r * dim + d])).sum::<f64>() / rows.max(1) as f64;
        let var = (0..rows)
            .map(|r| (f64::from(t[r * dim + d]) - mean).powi(2))
            .sum::<f64>()
            / rows.max(1) as f64;
        let inv = 1.0 / (var.sqrt() + 1e-6);
        for x in t.iter_mut().skip(d).step_by(dim.max(1)) {
            *x = ((f64::from(*x) - mean) * inv) as f32;
        }
        for x in v.iter_mut().skip(d).step_by(dim.max(1)) {
            *x = ((f64::from(*x) - mean) * inv) as f32;
        }
    }
    Ok(Standardised {
        train: t,
        val: v,
        dim,
    })
}

/// Trains a linear head on standardised features (batch 32, AdamW, cosine decay) and returns
/// (train accuracy, validation accuracy) of the final weights.
fn fit(
    data: &Standardised,
    train_labels: &[usize],
    val_labels: &[usize],
    classes: usize,
    options: &ProbeOptions,
) -> (f64, Option<f64>) {
    let mut head = LinearHead::zeros(classes, data.dim, AdamWConfig::new(options.lr, 1e-4));
    let rows = train_labels.len();
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let steps_total = options.epochs * rows.div_ceil(32);
    let mut step = 0;
    let mut x = Vec::with_capacity(32 * data.dim);
    let mut y = Vec::with_capacity(32);
    for _ in 0..options.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(32) {
            head.set_learning_rate(options.lr * cosine_factor(step, steps_total));
            step += 1;
            x.clear();
            y.clear();
            for &i in chunk {
                x.extend_from_slice(&data.train[i * data.dim..(i + 1) * data.dim]);
                y.push(train_labels[i]);
            }
            head.step(&x, &y);
        }
    }
    let train_acc = head.accuracy(&data.train, train_labels);
    let val_acc = (!val_labels.is_empty()).then(|| head.accuracy(&data.val, val_labels));
    (train_acc, val_acc)
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
    let source = options
        .weights
        .clone()
        .unwrap_or_else(|| backbone.default_weights());
    let loaded = backbone.load_weights(&source, device)?;
    let network = Network::build(
        NetworkSpec::pretrained(backbone),
        Some(&loaded.weights),
        HeadInit::FromWeights,
        0,
        device,
    )?;
    let folded = network.folded()?;
    let pre = loaded.preprocessing(backbone, options.image_size_px);
    let units = backbone.probe_units();
    let indices: Vec<usize> = units.iter().map(|&u| backbone.index_of(u)).collect();
    let last = indices.iter().copied().max().unwrap_or(0);
    let total = dataset.train.len() + dataset.val.len();
    let forward = |x: &candle_core::Tensor| {
        let all = folded.features_at_each_unit(x, last)?;
        Ok(indices
            .iter()
            .filter_map(|&i| all.get(i).cloned())
            .collect())
    };
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
        let data = standardise(train, val)?;
        let val_labels = val.map_or(&[][..], |v| &v.label_values[..]);
        let (train_accuracy, val_accuracy) = fit(
            &data,
            &train.label_values,
            val_labels,
            dataset.classes.len(),
            options,
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
