//! The guide's measurements: where a dataset sits on the 2×2 grid ([`recommend`]), how
//! linear-probe accuracy changes with depth ([`probe`]), and the four presets trained side by
//! side ([`compare`]).

pub mod compare;
pub mod probe;
pub mod recommend;

use crate::data::dataset::Sample;

/// Up to `max` samples, spread evenly over classes (round-robin in each class's order), so
/// that a measurement on a subset sees every class.
pub fn balanced_subset(samples: &[Sample], classes: usize, max: usize) -> Vec<Sample> {
    let mut per_class: Vec<Vec<&Sample>> = vec![Vec::new(); classes];
    for s in samples {
        if let Some(list) = per_class.get_mut(s.label) {
            list.push(s);
        }
    }
    let mut out = Vec::with_capacity(max.min(samples.len()));
    let mut round = 0;
    while out.len() < max {
        let mut added = false;
        for list in &per_class {
            if let Some(s) = list.get(round)
                && out.len() < max
            {
                out.push((*s).clone());
                added = true;
            }
        }
        if !added {
            break;
        }
        round += 1;
    }
    out
}
