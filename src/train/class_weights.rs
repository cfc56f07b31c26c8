//! Weighting the loss by class, for imbalanced data.

use serde::{Deserialize, Serialize};

/// The largest class having more than this many times the training images of the smallest
/// makes the data imbalanced (and `ClassWeights::Auto` weight the loss).
pub const IMBALANCE_RATIO: usize = 3;

/// Whether classes of these sizes are imbalanced (see [`IMBALANCE_RATIO`]).
pub fn imbalanced(counts: &[usize]) -> bool {
    let largest = counts.iter().copied().max().unwrap_or(0);
    let smallest = counts.iter().copied().min().unwrap_or(0);
    smallest > 0 && largest > IMBALANCE_RATIO * smallest
}

/// Whether the training loss weights each class by `N / (K · n_c)` (N images, K classes, n_c
/// in class c), so that a small class counts as much as a large one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassWeights {
    /// On when the largest class has more than [`IMBALANCE_RATIO`]× the smallest's images.
    #[default]
    Auto,
    On,
    Off,
}

impl ClassWeights {
    pub const ALL: [ClassWeights; 3] = [Self::Auto, Self::On, Self::Off];

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }

    /// The weight of each class given its training images (`None`: an unweighted loss).
    pub fn resolve(self, counts: &[usize]) -> Option<Vec<f32>> {
        if counts.is_empty() {
            return None;
        }
        let on = match self {
            Self::On => true,
            Self::Off => false,
            Self::Auto => imbalanced(counts),
        };
        let total: usize = counts.iter().sum();
        let k = counts.len() as f64;
        on.then(|| {
            counts
                .iter()
                .map(|&n| (total as f64 / (k * n.max(1) as f64)) as f32)
                .collect()
        })
    }
}

impl std::str::FromStr for ClassWeights {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("class weights {s:?}: use auto, on or off"))
    }
}
