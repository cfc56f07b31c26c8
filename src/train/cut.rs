//! Where *Start of ConvNet* cuts, chosen from the data. The lecture's rule — keep only the
//! early, generic layers for small data unlike ImageNet — is a heuristic; its idea is to cut
//! where the pretrained features stop transferring. That is measured here on the *training*
//! split only: a linear probe (the head the run will train) at each candidate cut, the network's
//! last unit included, scored by stratified, seeded k-fold cross-validation. The network is cut
//! after the last unit that the folds cannot tell from the best: only where the later layers
//! are measurably worse (see [`latest_tied`]).

use candle_core::Device;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::features::{FeatureSet, extract_multi};
use super::head::{AdamWConfig, LinearHead};
use super::schedule::cosine_factor;
use crate::data::dataset::Sample;
use crate::data::preprocess::Preprocessing;
use crate::model::{Backbone, FoldedNetwork, Unit};
use crate::stats::mean;

/// Folds at most (fewer when the smallest class has fewer training images).
pub const MAX_FOLDS: usize = 5;
/// Training images the probe looks at, at most (spread over the classes).
pub const MAX_PROBE_IMAGES: usize = 2000;

/// The probe at one candidate cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CutPoint {
    pub unit: Unit,
    pub features: usize,
    /// Mean held-out accuracy over the folds.
    pub cv_accuracy: f64,
    /// Mean held-out cross-entropy over the folds (nats).
    pub cv_loss: f64,
    /// Held-out accuracy of each fold (the same folds at every cut, so cuts compare fold by fold).
    #[serde(default)]
    pub fold_accuracy: Vec<f64>,
    /// Held-out cross-entropy of each fold (nats).
    #[serde(default)]
    pub fold_loss: Vec<f64>,
}

/// The cut chosen from the data, and the measurements behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CutChoice {
    pub chosen: Unit,
    /// The network's last unit (cutting there keeps every layer).
    pub last: Unit,
    pub folds: usize,
    /// Training images probed.
    pub images: usize,
    pub points: Vec<CutPoint>,
}

impl CutChoice {
    /// The choice in words.
    pub fn sentence(&self) -> String {
        let best = self.points.iter().find(|p| p.unit == self.chosen);
        let accuracy = best.map_or(String::new(), |p| {
            format!(
                " ({:.1} % cross-validated on {} training images, {}-fold)",
                p.cv_accuracy * 100.0,
                self.images,
                self.folds
            )
        });
        if self.chosen == self.last {
            format!(
                "For your data the pretrained features keep transferring all the way to the \
                 {}{accuracy}: here Start of ConvNet becomes End of ConvNet.",
                self.last
            )
        } else {
            format!(
                "For your data, features keep transferring up to {}{accuracy}; later layers do \
                 measurably worse, so the network is cut there.",
                self.chosen
            )
        }
    }
}

/// How each linear probe trains (batch 32, AdamW, cosine decay).
#[derive(Debug, Clone, Copy)]
pub struct ProbeFit {
    pub epochs: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for ProbeFit {
    fn default() -> Self {
        Self {
            epochs: 60,
            lr: 3e-3,
            seed: 0,
        }
    }
}

/// Features standardised with the training rows' mean and deviation (depths differ in scale).
#[derive(Debug)]
pub struct Standardised {
    pub train: Vec<f32>,
    pub val: Vec<f32>,
    pub dim: usize,
}

/// Standardises `train` and `val` rows (`dim` values each) with `train`'s statistics.
pub fn standardise(mut train: Vec<f32>, mut val: Vec<f32>, dim: usize) -> Standardised {
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
    Standardised { train, val, dim }
}

/// Trains a linear head on standardised rows and returns (train accuracy, validation accuracy)
/// of the final weights.
pub fn fit_probe(
    data: &Standardised,
    train_labels: &[usize],
    val_labels: &[usize],
    classes: usize,
    fit: &ProbeFit,
) -> (f64, Option<f64>) {
    let head = fit_head(data, train_labels, classes, fit);
    let train_acc = head.accuracy(&data.train, train_labels);
    let val_acc = (!val_labels.is_empty()).then(|| head.accuracy(&data.val, val_labels));
    (train_acc, val_acc)
}

/// A linear head trained on the standardised training rows.
pub(crate) fn fit_head(
    data: &Standardised,
    train_labels: &[usize],
    classes: usize,
    fit: &ProbeFit,
) -> LinearHead {
    let mut head = LinearHead::zeros(classes, data.dim, AdamWConfig::new(fit.lr, 1e-4));
    let rows = train_labels.len();
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(fit.seed);
    let steps_total = fit.epochs * rows.div_ceil(32);
    let mut step = 0;
    let mut x = Vec::with_capacity(32 * data.dim);
    let mut y = Vec::with_capacity(32);
    for _ in 0..fit.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(32) {
            head.set_learning_rate(fit.lr * cosine_factor(step, steps_total));
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
    head
}

/// A fold for each sample: each class's samples shuffled (seeded) and dealt round the folds,
/// so that every fold holds about the same share of every class.
pub fn stratified_folds(labels: &[usize], folds: usize, seed: u64) -> Vec<usize> {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold_of = vec![0; labels.len()];
    let mut next = 0;
    for class in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        for i in members {
            fold_of[i] = next % folds.max(1);
            next += 1;
        }
    }
    fold_of
}

/// The folds the data allows: [`MAX_FOLDS`], fewer when the smallest class is smaller (each
/// fold must hold out at least one image of every class); `None` below 2.
pub fn fold_count(labels: &[usize]) -> Option<usize> {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let smallest = (0..classes)
        .map(|c| labels.iter().filter(|&&l| l == c).count())
        .min()
        .unwrap_or(0);
    let folds = smallest.min(MAX_FOLDS);
    (folds >= 2).then_some(folds)
}

/// Rows `rows` of a row-major `[N, dim]` matrix.
pub(crate) fn gather(values: &[f32], dim: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * dim);
    for &r in rows {
        out.extend_from_slice(&values[r * dim..(r + 1) * dim]);
    }
    out
}

/// Held-out accuracy and cross-entropy of each fold for one candidate's features `[N, dim]`.
fn cross_validate(
    values: &[f32],
    dim: usize,
    labels: &[usize],
    fold_of: &[usize],
    folds: usize,
    classes: usize,
    fit: &ProbeFit,
) -> (Vec<f64>, Vec<f64>) {
    let (mut accuracy, mut loss) = (Vec::with_capacity(folds), Vec::with_capacity(folds));
    for fold in 0..folds {
        let (held, kept): (Vec<usize>, Vec<usize>) =
            (0..labels.len()).partition(|&i| fold_of[i] == fold);
        let data = standardise(gather(values, dim, &kept), gather(values, dim, &held), dim);
        let kept_labels: Vec<usize> = kept.iter().map(|&i| labels[i]).collect();
        let held_labels: Vec<usize> = held.iter().map(|&i| labels[i]).collect();
        let head = fit_head(&data, &kept_labels, classes, fit);
        accuracy.push(head.accuracy(&data.val, &held_labels));
        loss.push(head.cross_entropy(&data.val, &held_labels));
    }
    (accuracy, loss)
}

/// Whether `worse`'s fold-by-fold deficits (`worse[f] - better[f]`, positive when `worse` is
/// worse) are within one standard error of zero: the folds cannot tell the two apart.
fn within_one_standard_error(deficits: &[f64]) -> bool {
    let k = deficits.len();
    let gap = mean(deficits);
    if k < 2 {
        return gap <= 0.0;
    }
    let variance = deficits.iter().map(|d| (d - gap).powi(2)).sum::<f64>() / (k - 1) as f64;
    gap <= (variance / k as f64).sqrt()
}

/// Whether cut `a` is tied with cut `best`: neither its accuracy deficit nor its loss excess,
/// fold by fold, is larger than one standard error.
fn tied_with(a: &CutPoint, best: &CutPoint) -> bool {
    let accuracy: Vec<f64> = (best.fold_accuracy.iter().zip(&a.fold_accuracy))
        .map(|(b, a)| b - a)
        .collect();
    let loss: Vec<f64> = (a.fold_loss.iter().zip(&best.fold_loss))
        .map(|(a, b)| a - b)
        .collect();
    within_one_standard_error(&accuracy) && within_one_standard_error(&loss)
}

/// The latest cut tied with the best: where the features stop transferring. The best is the
/// most accurate cut (the lower held-out cross-entropy among equally accurate ones: accuracy
/// saturates on easy data, the loss still tells confident features from barely separating
/// ones). "Tied" is the one-standard-error rule of cross-validated model choice (Hastie et
/// al., *Elements of Statistical Learning* §7.10), on paired fold-by-fold differences in
/// accuracy and in loss. Ties go to the *later* cut: with few images nearly every cut is
/// within the folds' noise, and taking the earliest of them cut small data back to early
/// layers on noise alone (clip art, 16 images a class: block 7, 10.7 points below keeping
/// every layer on held-out images); a cut has to be earned by later layers that measurably
/// transfer worse.
fn latest_tied(points: &[CutPoint]) -> Option<Unit> {
    let best = points.iter().max_by(|a, b| {
        a.cv_accuracy
            .total_cmp(&b.cv_accuracy)
            .then(b.cv_loss.total_cmp(&a.cv_loss))
    })?;
    points
        .iter()
        .rev()
        .find(|p| tied_with(p, best))
        .map(|p| p.unit)
}

/// Chooses among candidate cuts from their features (one [`FeatureSet`] per unit, same images
/// in the same order). `None` when a class has fewer than 2 images (nothing to hold out).
pub fn choose_from_features(
    units: &[Unit],
    sets: &[FeatureSet],
    last: Unit,
    classes: usize,
    fit: &ProbeFit,
) -> candle_core::Result<Option<CutChoice>> {
    let Some(labels) = sets.first().map(|s| s.label_values.clone()) else {
        return Ok(None);
    };
    let Some(folds) = fold_count(&labels) else {
        return Ok(None);
    };
    let fold_of = stratified_folds(&labels, folds, fit.seed);
    let mut points = Vec::with_capacity(units.len());
    for (&unit, set) in units.iter().zip(sets) {
        let dim = set.dim();
        let values: Vec<f32> = set.features.flatten_all()?.to_vec1()?;
        let (fold_accuracy, fold_loss) =
            cross_validate(&values, dim, &labels, &fold_of, folds, classes, fit);
        points.push(CutPoint {
            unit,
            features: dim,
            cv_accuracy: mean(&fold_accuracy),
            cv_loss: mean(&fold_loss),
            fold_accuracy,
            fold_loss,
        });
    }
    let chosen = latest_tied(&points).unwrap_or(last);
    Ok(Some(CutChoice {
        chosen,
        last,
        folds,
        images: labels.len(),
        points,
    }))
}

/// The candidate cuts of a backbone: its probe units, ending with its last unit.
pub fn candidate_units(backbone: Backbone) -> Vec<Unit> {
    let mut units = backbone.probe_units();
    let last = backbone.last_unit();
    if !units.contains(&last) {
        units.push(last);
    }
    units
}

/// Runs the pretrained network (`folded`, all of it) over up to [`MAX_PROBE_IMAGES`] training
/// samples once, and chooses the cut. `progress(done, total)` after each batch; an error from
/// it (a stop request) ends the probe.
#[allow(clippy::too_many_arguments)]
pub fn choose_cut<E: From<candle_core::Error>>(
    samples: &[Sample],
    classes: usize,
    backbone: Backbone,
    folded: &FoldedNetwork,
    pre: &Preprocessing,
    device: &Device,
    fit: &ProbeFit,
    progress: impl FnMut(usize, usize) -> Result<(), E>,
) -> Result<Option<CutChoice>, E> {
    let units = candidate_units(backbone);
    let indices: Vec<usize> = units.iter().map(|&u| backbone.index_of(u)).collect();
    let subset = crate::data::dataset::balanced_subset(samples, classes, MAX_PROBE_IMAGES);
    let forward = |x: &candle_core::Tensor| folded.features_at_units(x, &indices);
    let (sets, _) = extract_multi::<E>(&subset, pre, 32, device, forward, progress)?;
    Ok(choose_from_features(
        &units,
        &sets,
        backbone.last_unit(),
        classes,
        fit,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Features of `n` images per class: class-separating (the class's mean plus noise) or
    /// pure noise.
    fn features(classes: usize, n: usize, dim: usize, separating: bool, seed: u64) -> FeatureSet {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for class in 0..classes {
            for _ in 0..n {
                for d in 0..dim {
                    let signal = if separating && d % classes == class {
                        3.0
                    } else {
                        0.0
                    };
                    values.push(signal + rng.random_range(-1.0f32..1.0));
                }
                labels.push(class);
            }
        }
        let rows = labels.len();
        FeatureSet {
            features: Tensor::from_vec(values, (rows, dim), &Device::Cpu).expect("features"),
            labels: Tensor::from_vec(
                labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
                rows,
                &Device::Cpu,
            )
            .expect("labels"),
            label_values: labels,
            paths: Vec::new(),
        }
    }

    const UNITS: [Unit; 3] = [Unit::Block(2), Unit::Block(6), Unit::Head];

    fn choose(separating: [bool; 3]) -> CutChoice {
        choose_seeded(separating, [0, 1, 2])
    }

    fn choose_seeded(separating: [bool; 3], seeds: [u64; 3]) -> CutChoice {
        let sets: Vec<FeatureSet> = separating
            .iter()
            .zip(seeds)
            .map(|(&s, seed)| features(3, 12, 16, s, seed))
            .collect();
        let fit = ProbeFit {
            epochs: 30,
            ..ProbeFit::default()
        };
        choose_from_features(&UNITS, &sets, Unit::Head, 3, &fit)
            .expect("probe")
            .expect("enough images")
    }

    #[test]
    fn early_features_that_separate_the_classes_are_cut_after() {
        let choice = choose([true, false, false]);
        assert_eq!(choice.chosen, Unit::Block(2), "{choice:?}");
        assert_eq!(choice.folds, 5);
        assert_eq!(choice.images, 36);
        assert!(choice.points[0].cv_accuracy > 0.9, "{choice:?}");
        assert!(choice.points[2].cv_accuracy < 0.7, "{choice:?}");
        assert!(
            choice.sentence().contains("up to block2"),
            "{}",
            choice.sentence()
        );
    }

    #[test]
    fn when_only_late_features_separate_the_head_is_kept() {
        let choice = choose([false, false, true]);
        assert_eq!(choice.chosen, Unit::Head, "{choice:?}");
        assert!(choice.sentence().contains("becomes End of ConvNet"));
    }

    #[test]
    fn ties_go_to_the_later_cut() {
        // The first two cuts see the same separating features, the last only noise: the
        // features transfer up to the middle cut and stop after it.
        let choice = choose_seeded([true, true, false], [0, 0, 2]);
        assert_eq!(choice.chosen, Unit::Block(6), "{choice:?}");
        // The middle and the last cut see the same separating features: nothing to cut.
        let choice = choose_seeded([false, true, true], [0, 1, 1]);
        assert_eq!(choice.chosen, Unit::Head, "{choice:?}");
    }

    fn point(unit: Unit, fold_accuracy: &[f64], fold_loss: &[f64]) -> CutPoint {
        CutPoint {
            unit,
            features: 8,
            cv_accuracy: mean(fold_accuracy),
            cv_loss: mean(fold_loss),
            fold_accuracy: fold_accuracy.to_vec(),
            fold_loss: fold_loss.to_vec(),
        }
    }

    #[test]
    fn among_equally_accurate_cuts_a_consistently_lower_loss_decides() {
        // Saturated data: every cut is right on every fold. The head's loss is slightly but
        // consistently above block 6's on every fold, so block 6 is measurably surer and the
        // network is cut there; block 2 is worse still.
        let perfect = [1.0; 5];
        let points = [
            point(Unit::Block(2), &perfect, &[0.30, 0.25, 0.35, 0.28, 0.32]),
            point(
                Unit::Block(6),
                &perfect,
                &[0.015, 0.014, 0.016, 0.015, 0.015],
            ),
            point(Unit::Head, &perfect, &[0.021, 0.020, 0.023, 0.019, 0.022]),
        ];
        assert_eq!(latest_tied(&points), Some(Unit::Block(6)));
    }

    #[test]
    fn a_cut_is_made_only_where_later_layers_are_measurably_worse() {
        // The head is on average a little behind block 6 in accuracy and loss, but ahead on
        // some folds: within one standard error, a tie, and nothing is cut.
        let points = [
            point(
                Unit::Block(2),
                &[0.6, 0.5, 0.55, 0.6, 0.5],
                &[1.2, 1.3, 1.1, 1.2, 1.3],
            ),
            point(
                Unit::Block(6),
                &[1.0, 0.9, 0.95, 0.9, 0.95],
                &[0.2, 0.3, 0.1, 0.3, 0.2],
            ),
            point(
                Unit::Head,
                &[0.9, 1.0, 0.85, 0.95, 0.9],
                &[0.3, 0.1, 0.4, 0.2, 0.3],
            ),
        ];
        assert_eq!(latest_tied(&points), Some(Unit::Head));
        // The head consistently behind (one image in ten on every fold): cut before it.
        let points = [
            point(Unit::Block(6), &[1.0; 5], &[0.2; 5]),
            point(Unit::Head, &[0.9, 0.9, 0.9, 0.9, 0.9], &[0.2; 5]),
        ];
        assert_eq!(latest_tied(&points), Some(Unit::Block(6)));
    }

    #[test]
    fn folds_are_stratified_seeded_and_limited_by_the_smallest_class() {
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2];
        assert_eq!(fold_count(&labels), Some(3));
        assert_eq!(fold_count(&[0, 0, 1]), None);
        let folds = stratified_folds(&labels, 3, 7);
        assert_eq!(folds, stratified_folds(&labels, 3, 7));
        for class in 0..3 {
            for fold in 0..3 {
                let held = (0..labels.len())
                    .filter(|&i| labels[i] == class && folds[i] == fold)
                    .count();
                assert!(held >= 1, "class {class} has no image in fold {fold}");
            }
        }
    }
}
