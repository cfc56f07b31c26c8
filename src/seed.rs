//! Seeds for the many random streams of a run (shuffles, crops, dropout, the new classifier),
//! all derived from the one seed a plan carries, so that the same seed repeats a run exactly.

/// 2⁶⁴ / φ: multiplying a stream number by it spreads consecutive numbers over the word.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
/// A second odd multiplier (from MurmurHash3's finaliser) for a second stream number.
const SECOND_GAMMA: u64 = 0xc2b2_ae3d_27d4_eb4f;
/// The 32-bit golden ratio the stratified split has always used (kept: splits stay as saved).
const SPLIT_GAMMA: u64 = 0x9e37_79b9;

/// `seed` mixed with a stream number, so that streams do not repeat each other's draws.
pub fn mix(seed: u64, stream: u64) -> u64 {
    seed ^ stream.wrapping_mul(GOLDEN_GAMMA)
}

/// `seed` mixed with two stream numbers (an epoch and a sample, say).
pub fn mix2(seed: u64, a: u64, b: u64) -> u64 {
    mix(seed, a) ^ b.wrapping_mul(SECOND_GAMMA)
}

/// The stream of the validation split of class `class`.
pub fn split_stream(seed: u64, class: u64) -> u64 {
    seed ^ class.wrapping_mul(SPLIT_GAMMA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_repeat() {
        assert_eq!(mix(7, 3), mix(7, 3));
        assert_ne!(mix(7, 3), mix(7, 4));
        assert_ne!(mix2(7, 1, 2), mix2(7, 2, 1));
        assert_eq!(mix(5, 0), 5);
    }
}
