//! Tests of the cut's choice (a file of their own: the generators are long).

use super::*;
use candle_core::{Device, Tensor};

/// Features of `n` images per class: class-separating (the class's mean plus noise) or
/// pure noise.
fn features(classes: usize, n: usize, dim: usize, separating: bool, seed: u64) -> FeatureSet {
    let signal_dims = if separating { dim } else { 0 };
    features_with(classes, n, dim, signal_dims, 3.0, seed)
}

/// Features whose first `signal_dims` carry `signal` for the class they belong to
/// (`d % classes`), all with uniform noise in ±1.
fn features_with(
    classes: usize,
    n: usize,
    dim: usize,
    signal_dims: usize,
    signal: f32,
    seed: u64,
) -> FeatureSet {
    misleading(classes, n, dim, signal_dims, signal, (0, 0.0), seed)
}

/// As [`features_with`], but the first `odd.0` images of each class carry signal `odd.1`
/// for the *next* class instead of their own (atypical images: 0 makes them plain noise).
fn misleading(
    classes: usize,
    n: usize,
    dim: usize,
    signal_dims: usize,
    signal: f32,
    odd: (usize, f32),
    seed: u64,
) -> FeatureSet {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for class in 0..classes {
        for i in 0..n {
            let (looks_like, strength) = if i < odd.0 {
                ((class + 1) % classes, odd.1)
            } else {
                (class, signal)
            };
            for d in 0..dim {
                let s = if d < signal_dims && d % classes == looks_like {
                    strength
                } else {
                    0.0
                };
                values.push(s + rng.random_range(-1.0f32..1.0));
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
fn a_wide_probe_tied_on_accuracy_but_with_an_inflated_loss_does_not_cut() {
    // Block 6: 16 features that carry the classes. The head: the same signal in 16 of 1 024
    // features, the rest noise, so its probe also fits noise and is overconfident: its
    // held-out loss is well above block 6's at the same accuracy within the folds' noise.
    let sets = vec![
        features_with(4, 16, 16, 0, 0.0, 0),
        misleading(4, 16, 16, 16, 1.5, (2, 0.0), 1),
        misleading(4, 16, 1024, 1024, 0.6, (2, 1.2), 1),
    ];
    let fit = ProbeFit::default();
    let choice = choose_from_features(&UNITS, &sets, Unit::Head, 4, &fit)
        .expect("probe")
        .expect("enough images");
    let (block6, head) = (&choice.points[1], &choice.points[2]);
    let excess: Vec<f64> = (head.fold_loss.iter().zip(&block6.fold_loss))
        .map(|(h, b)| h - b)
        .collect();
    // Judged by its loss too, the head would have been cut away.
    assert!(!within_one_standard_error(&excess), "{choice:?}");
    assert!(head.cv_loss > block6.cv_loss * 1.3, "{choice:?}");
    assert_eq!(choice.chosen, Unit::Head, "{choice:?}");
    assert!(choice.kept_whole_by_noise(), "{choice:?}");
    assert!(
        choice.sentence().contains("differ by less than the noise"),
        "{}",
        choice.sentence()
    );
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
