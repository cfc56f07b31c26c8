//! Likely mislabels and class health, from out-of-fold probabilities: a linear probe (the head
//! the run trains) on the features the run would use, trained on the other folds, scores each
//! image it never saw. An image whose own label gets a low probability there, while another
//! class clears that class's own typical confidence, is a likely mislabel (confident learning:
//! Northcutt, Jiang & Chuang, JAIR 2021, with per-class thresholds).

use serde::{Deserialize, Serialize};

use super::types::{ImageEntry, Side, standardise};
use crate::train::cut::{ProbeFit, fit_head, fold_count, gather, stratified_folds};

/// A class with fewer images than this is reported as near-empty.
pub const NEAR_EMPTY_IMAGES: usize = 10;
/// Pairs of classes reported as confused, at most.
const MAX_CONFUSED_PAIRS: usize = 5;
/// A pair is reported when at least this share of its images goes to the other class.
const MIN_CONFUSED_SHARE: f64 = 0.02;

/// Out-of-fold class probabilities of every image (`[N, classes]`, row-major).
#[derive(Debug, Clone)]
pub(super) struct OutOfFold {
    pub probs: Vec<f32>,
    pub classes: usize,
    /// Per class: whether it has enough images (2) to be held out and still learned.
    pub judged: Vec<bool>,
}

impl OutOfFold {
    fn row(&self, i: usize) -> &[f32] {
        &self.probs[i * self.classes..(i + 1) * self.classes]
    }
}

fn softmax_rows(logits: &mut [f32], classes: usize) {
    for row in logits.chunks_exact_mut(classes.max(1)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        row.iter_mut().for_each(|v| *v /= sum);
    }
}

/// Out-of-fold probabilities from a stratified, seeded k-fold linear probe.
pub(super) fn out_of_fold(
    features: &[f32],
    dim: usize,
    labels: &[usize],
    classes: usize,
    seed: u64,
) -> OutOfFold {
    let count = |c: usize| labels.iter().filter(|&&l| l == c).count();
    let judged: Vec<bool> = (0..classes).map(|c| count(c) >= 2).collect();
    let folds = fold_count(labels).unwrap_or(2);
    let fold_of = stratified_folds(labels, folds, seed);
    // Standardised features and no dropout: the probe that was measured on the fault sets
    // (mislabels found out of fold), not the run's classifier.
    let fit = ProbeFit {
        epochs: 60,
        lr: 3e-3,
        dropout: 0.0,
        seed,
    };
    let mut probs = vec![1.0 / classes.max(1) as f32; labels.len() * classes];
    for fold in 0..folds {
        let (held, kept): (Vec<usize>, Vec<usize>) =
            (0..labels.len()).partition(|&i| fold_of[i] == fold);
        if held.is_empty() || kept.is_empty() {
            continue;
        }
        let data = standardise(
            gather(features, dim, &kept),
            gather(features, dim, &held),
            dim,
        );
        let kept_labels: Vec<usize> = kept.iter().map(|&i| labels[i]).collect();
        let head = fit_head(&data.train, dim, &kept_labels, classes, &fit);
        let mut out = head.logits(&data.val);
        softmax_rows(&mut out, classes);
        for (k, &i) in held.iter().enumerate() {
            probs[i * classes..(i + 1) * classes]
                .copy_from_slice(&out[k * classes..(k + 1) * classes]);
        }
    }
    OutOfFold {
        probs,
        classes,
        judged,
    }
}

/// An image that is probably in the wrong class folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    /// Index into the report's images.
    pub image: usize,
    /// The class the features point to.
    pub suggested: usize,
    /// Out-of-fold probability of its own label (lower is more suspicious).
    pub self_confidence: f32,
    /// Out-of-fold probability of the suggested class.
    pub suggested_probability: f32,
    /// In the confident joint's off-diagonal: the suggested class clears its own threshold
    /// (the mean probability its labelled images get), not just the plain arg-max.
    pub confident: bool,
}

fn arg_max_except(row: &[f32], except: usize) -> (usize, f32) {
    row.iter().enumerate().filter(|&(c, _)| c != except).fold(
        (except, f32::NEG_INFINITY),
        |best, (c, &p)| {
            if p > best.1 { (c, p) } else { best }
        },
    )
}

/// Likely mislabels, lowest self-confidence first: images whose out-of-fold arg-max is another
/// class, or whose confident-joint class (the most probable of the classes that clear their
/// per-class threshold) is another class.
pub(super) fn suspects(probe: &OutOfFold, labels: &[usize]) -> Vec<Suspect> {
    let classes = probe.classes;
    let mut thresholds = vec![0.0f32; classes];
    let mut counts = vec![0usize; classes];
    for (i, &l) in labels.iter().enumerate() {
        thresholds[l] += probe.row(i)[l];
        counts[l] += 1;
    }
    for (t, &n) in thresholds.iter_mut().zip(&counts) {
        *t /= n.max(1) as f32;
    }
    let mut out: Vec<Suspect> = labels
        .iter()
        .enumerate()
        .filter(|&(_, &l)| probe.judged[l])
        .filter_map(|(i, &label)| {
            let row = probe.row(i);
            let (suggested, suggested_probability) = arg_max_except(row, label);
            let confident_class = (0..classes)
                .filter(|&c| probe.judged[c] && row[c] >= thresholds[c])
                .max_by(|&a, &b| row[a].total_cmp(&row[b]));
            let confident = confident_class.is_some_and(|c| c != label);
            let outvoted = suggested_probability > row[label];
            (confident || outvoted).then_some(Suspect {
                image: i,
                suggested,
                self_confidence: row[label],
                suggested_probability,
                confident,
            })
        })
        .collect();
    out.sort_by(|a, b| a.self_confidence.total_cmp(&b.self_confidence));
    out
}

/// Images of one class in each split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassCount {
    pub train: usize,
    pub validation: usize,
}

/// Two classes the features mix up (out of fold), in both directions together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfusedPair {
    pub a: usize,
    pub b: usize,
    /// Images of either class predicted as the other.
    pub count: usize,
    /// `count` over the two classes' images.
    pub share: f64,
}

/// How the classes stand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassHealth {
    pub counts: Vec<ClassCount>,
    /// Largest over smallest class (training images); 1 is balanced.
    pub imbalance: f64,
    /// Classes with fewer than [`NEAR_EMPTY_IMAGES`] images.
    pub near_empty: Vec<usize>,
    /// The pairs of classes confused most, most first.
    pub confused: Vec<ConfusedPair>,
    /// The out-of-fold probe's accuracy over every image (labels as they are).
    pub probe_accuracy: f64,
}

/// Counts, imbalance, near-empty classes and confusions.
pub(super) fn health(images: &[ImageEntry], probe: &OutOfFold, classes: usize) -> ClassHealth {
    let mut counts = vec![ClassCount::default(); classes];
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut hits = 0;
    for (i, image) in images.iter().enumerate() {
        let count = &mut counts[image.class];
        match image.side {
            Side::Train => count.train += 1,
            Side::Validation => count.validation += 1,
        }
        let row = probe.row(i);
        let predicted = (0..classes)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap_or(0);
        confusion[image.class][predicted] += 1;
        hits += usize::from(predicted == image.class);
    }
    let train: Vec<usize> = counts.iter().map(|c| c.train).collect();
    let largest = train.iter().copied().max().unwrap_or(0);
    let smallest = train.iter().copied().min().unwrap_or(0);
    let mut confused = Vec::new();
    for a in 0..classes {
        for b in a + 1..classes {
            let count = confusion[a][b] + confusion[b][a];
            let total =
                counts[a].train + counts[a].validation + counts[b].train + counts[b].validation;
            let share = count as f64 / total.max(1) as f64;
            if count > 0 && share >= MIN_CONFUSED_SHARE {
                confused.push(ConfusedPair { a, b, count, share });
            }
        }
    }
    confused.sort_by(|x, y| y.share.total_cmp(&x.share));
    confused.truncate(MAX_CONFUSED_PAIRS);
    ClassHealth {
        near_empty: (0..classes)
            .filter(|&c| counts[c].train + counts[c].validation < NEAR_EMPTY_IMAGES)
            .collect(),
        counts,
        imbalance: largest as f64 / smallest.max(1) as f64,
        confused,
        probe_accuracy: hits as f64 / images.len().max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_outvoted_by_another_class_is_suspected_and_ranked_by_its_own_probability() {
        let probe = OutOfFold {
            // Labels 0, 0, 1, 1: image 1 looks like class 1, image 2 is unsure.
            probs: vec![0.9, 0.1, 0.2, 0.8, 0.45, 0.55, 0.1, 0.9],
            classes: 2,
            judged: vec![true, true],
        };
        let labels = [0, 0, 1, 1];
        let found = suspects(&probe, &labels);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].image, found[0].suggested), (1, 1));
        assert!(found[0].confident);
    }

    #[test]
    fn separable_features_leave_only_the_flipped_label() {
        let (classes, dim) = (3, 8);
        let (features, mut labels) =
            crate::doctor::types::separable_features(classes, 20, dim, 4.0, 3);
        labels[5] = 2; // a class-0 image filed under class 2
        let probe = out_of_fold(&features, dim, &labels, classes, 0);
        let found = suspects(&probe, &labels);
        assert_eq!(
            found.first().map(|s| (s.image, s.suggested)),
            Some((5, 0)),
            "{found:?}"
        );
    }
}
