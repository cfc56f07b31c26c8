//! The Guide panel's state: the dataset's place on the grid and the depth probe.

use crate::guide::recommend::Recommendation;
use crate::train::cut::CutChoice;

use super::job::Job;

/// What the Guide shows besides the plan (which is in the settings).
#[derive(Debug, Default)]
pub struct GuideState {
    /// The measurement of the loaded dataset.
    pub recommendation: Job<Recommendation>,
    /// The measurement classified for the data training would use (size slider, thresholds).
    pub shown: Option<Recommendation>,
    /// The cross-validated choice of the cut (the Guide's probe, or the last run's).
    pub probe: Job<CutChoice>,
}
