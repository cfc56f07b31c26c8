//! The seeded, stratified split of a training folder into training and validation images.

use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Per class: a seeded shuffle, then `round(fraction · n)` images to validation, at least one
/// when the class has two or more (a class of one image stays in training).
pub(crate) fn stratified_split<T>(
    per_class: Vec<Vec<T>>,
    fraction: f64,
    seed: u64,
    path: impl Fn(&T) -> &Path,
) -> (Vec<T>, Vec<T>) {
    let fraction = fraction.clamp(0.0, 0.9);
    let mut train = Vec::new();
    let mut val = Vec::new();
    for (c, mut samples) in per_class.into_iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(crate::seed::split_stream(seed, c as u64));
        samples.shuffle(&mut rng);
        let n = samples.len();
        let mut n_val = (fraction * n as f64).round() as usize;
        if fraction > 0.0 && n >= 2 {
            n_val = n_val.clamp(1, n - 1);
        } else {
            n_val = n_val.min(n.saturating_sub(1));
        }
        val.extend(samples.drain(..n_val));
        train.extend(samples);
    }
    train.sort_by(|a, b| path(a).cmp(path(b)));
    val.sort_by(|a, b| path(a).cmp(path(b)));
    (train, val)
}
