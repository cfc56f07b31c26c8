//! Evaluation: of the classifier on cached features, of a network on images, and of a saved
//! model on a dataset.

use super::features::{FeatureSet, eval_crops, extract_features};
use super::metrics::Evaluation;
use super::saved::TrainedModel;
use crate::data::dataset::{Dataset, Sample};
use crate::data::preprocess::Preprocessing;
use crate::model::{ModelError, Network};
use crate::predict::Predictor;

/// Images per forward pass when computing features or validating.
pub const EVAL_BATCH: usize = 32;

/// Why a model could not be evaluated on a dataset.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(
        "the data has a class {class:?} the model was not trained on (model classes: {model_classes})"
    )]
    UnknownClass {
        class: String,
        model_classes: String,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Evaluates the classifier on cached features.
pub(super) fn evaluate_features(
    network: &Network,
    features: &FeatureSet,
    classes: &[String],
) -> Result<Evaluation, ModelError> {
    let logits = network.classifier.forward(&features.features)?;
    let probs: Vec<Vec<f32>> = crate::model::softmax(&logits)?.to_vec2()?;
    let rows = features
        .paths
        .iter()
        .zip(&features.label_values)
        .zip(probs)
        .map(|((p, &l), pr)| (p.clone(), l, pr))
        .collect();
    Ok(Evaluation::from_probabilities(classes, rows))
}

/// Evaluates a network (current weights, inference mode) on samples.
pub(super) fn evaluate_samples(
    network: &Network,
    samples: &[Sample],
    classes: &[String],
    pre: &Preprocessing,
) -> Result<Evaluation, ModelError> {
    let predictor = Predictor::from_network(network, classes.to_vec(), pre.clone())?;
    let mut rows = Vec::with_capacity(samples.len());
    let groups: Vec<&[Sample]> = samples.chunks(EVAL_BATCH).collect();
    // The next groups are read and cropped on a helper thread while this one runs.
    let prepare = |g: usize| -> (Vec<image::RgbImage>, Vec<&Sample>) {
        let crops = eval_crops(groups[g], pre);
        groups[g]
            .iter()
            .zip(crops)
            .filter_map(|(s, c)| c.ok().map(|c| (c, s)))
            .unzip()
    };
    crate::data::prefetch::prefetched(groups.len(), prepare, |prepared| {
        for (good, kept) in prepared {
            for (probs, sample) in predictor.probabilities(&good)?.into_iter().zip(kept) {
                rows.push((sample.path.clone(), sample.label, probs));
            }
        }
        Ok::<(), ModelError>(())
    })?;
    Ok(Evaluation::from_probabilities(classes, rows))
}

/// Evaluates a trained model on every image of a dataset (train and validation splits
/// together, classes matched by name).
/// The first of `classes` that is not among `known` (a model's classes): such data cannot be
/// evaluated.
pub fn unknown_class<'a>(classes: &'a [String], known: &[String]) -> Option<&'a String> {
    classes.iter().find(|c| !known.contains(c))
}

pub fn evaluate_dataset(
    model: &TrainedModel,
    dataset: &Dataset,
) -> Result<Evaluation, EvaluateError> {
    if let Some(class) = unknown_class(&dataset.classes, &model.classes) {
        return Err(EvaluateError::UnknownClass {
            class: class.clone(),
            model_classes: model.classes.join(", "),
        });
    }
    let mapping: Vec<Option<usize>> = dataset
        .classes
        .iter()
        .map(|c| model.classes.iter().position(|m| m == c))
        .collect();
    let samples: Vec<Sample> = dataset
        .train
        .iter()
        .chain(&dataset.val)
        .map(|s| {
            let mut s = s.clone();
            s.label = mapping[s.label].unwrap_or(0);
            s
        })
        .collect();
    Ok(evaluate_samples(
        &model.network,
        &samples,
        &model.classes,
        &model.preprocessing,
    )?)
}

/// Pooled features of `samples` from a network's kept units (inference mode).
pub fn network_features(
    network: &Network,
    samples: &[Sample],
    pre: &Preprocessing,
) -> Result<FeatureSet, ModelError> {
    let folded = network.folded()?;
    let (set, _) = extract_features::<ModelError>(
        samples,
        pre,
        EVAL_BATCH,
        network.device(),
        |x| folded.features(x),
        |_, _| Ok(()),
    )?;
    Ok(set)
}
