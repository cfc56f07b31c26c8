//! The schedule of a run's randomness and rates: cosine learning-rate decay, the per-epoch
//! shuffle, and seeded dropout masks.

use candle_core::Tensor;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Cosine decay factor from 1 to 0 over `total` steps.
pub fn cosine_factor(step: usize, total: usize) -> f64 {
    let t = step as f64 / total.max(1) as f64;
    0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

/// The order of `len` samples in `epoch`, seeded.
pub fn shuffled(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(crate::seed::mix(seed, epoch as u64));
    order.shuffle(&mut rng);
    order
}

/// An inverted-dropout mask (`0` or `1/(1-p)` per element), seeded, or `None` for `p <= 0`.
/// It comes from one bulk fill of random words by a fast generator seeded from `rng`:
/// drawing per element from ChaCha dominated head-only epochs.
pub fn dropout_mask(len: usize, p: f64, rng: &mut ChaCha8Rng) -> Option<Vec<f32>> {
    if p <= 0.0 {
        return None;
    }
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    // P(word < threshold) = keep, for words uniform over 0..2^32.
    let threshold = (keep * 4_294_967_296.0) as u64;
    let mut words = vec![0u32; len];
    let mut fast = rand::rngs::SmallRng::seed_from_u64(rand::RngCore::next_u64(rng));
    rand::Rng::fill(&mut fast, &mut words[..]);
    Some(
        words
            .iter()
            .map(|&w| if u64::from(w) < threshold { scale } else { 0.0 })
            .collect(),
    )
}

/// Inverted dropout with a seeded mask (candle's own dropout is not seedable).
pub fn dropout(x: &Tensor, p: f64, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
    match dropout_mask(x.elem_count(), p, rng) {
        None => Ok(x.clone()),
        Some(mask) => x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_decays_from_one_to_zero() {
        assert_eq!(cosine_factor(0, 10), 1.0);
        assert!((cosine_factor(5, 10) - 0.5).abs() < 1e-12);
        assert!(cosine_factor(10, 10).abs() < 1e-12);
    }

    #[test]
    fn shuffles_repeat_per_seed_and_epoch() {
        assert_eq!(shuffled(20, 3, 1), shuffled(20, 3, 1));
        assert_ne!(shuffled(20, 3, 1), shuffled(20, 3, 2));
        let mut sorted = shuffled(20, 3, 1);
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn dropout_keeps_the_expected_share() {
        let mask = dropout_mask(10_000, 0.2, &mut ChaCha8Rng::seed_from_u64(1)).expect("mask");
        let kept = mask.iter().filter(|&&m| m > 0.0).count();
        assert!((7_700..8_300).contains(&kept), "{kept}");
        assert!(dropout_mask(10, 0.0, &mut ChaCha8Rng::seed_from_u64(1)).is_none());
    }
}
