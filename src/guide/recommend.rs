//! Where a dataset sits on the guide's grid: its size (images per class) and its similarity
//! to ImageNet, measured with the pretrained network.
//!
//! **What the similarity score measures.** Every BatchNorm layer of the pretrained network
//! stores the mean and variance its input had over ImageNet; after normalisation, an output
//! channel `c` of a BatchNorm that is not followed by an activation has, on ImageNet-like
//! images, mean `β_c` and variance `γ_c²`. We run up to [`RecommendOptions::max_images`] of
//! the dataset through the pretrained network and read the actual mean `m_c` and variance
//! `s_c²` at the output of the seven blocks that end without an activation or a skip
//! connection (the first block of every stage, from 112×112 down to 7×7 resolution). Per
//! channel, the divergence is KL(N(m, s²) ‖ N(β, γ²)); a layer's divergence is the median over
//! its channels (dead and odd channels do not dominate); `D` is the mean over the seven layers.
//! The score is `1 / (1 + D / 0.1)`: 1 for data whose statistics match ImageNet's exactly,
//! 0.5 at D = 0.1, towards 0 the further they drift. Measured (release, 224 px, ≤ 192 images):
//! crops of natural photos D = 0.08 (score 0.55); Fashion-MNIST D = 0.19 (0.34); generated
//! clip art D = 0.31 (0.24); generated line art D = 0.35 (0.22). The default threshold, 0.45
//! (D = 0.12), sits between photos and the rest. Grey, flat-background, upscaled or line images move the early layers'
//! statistics far from ImageNet's; natural photos stay close. No labels are needed.

use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::data::dataset::Dataset;
use crate::model::network::ChannelSums;
use crate::model::{Backbone, HeadInit, ModelError, Network, NetworkSpec, Unit};
use crate::train::Case;
use crate::train::features::eval_crops;

/// The network whose BatchNorm statistics the score compares with (the bundled Lite0).
pub const MEASURING_BACKBONE: &str = "efficientnet-lite0";

/// Why a dataset could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    #[error("no readable image to measure the dataset with")]
    NoReadableImage,
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl From<candle_core::Error> for RecommendError {
    fn from(e: candle_core::Error) -> Self {
        RecommendError::Model(ModelError::Candle(e))
    }
}

/// The divergence that scores 0.5.
pub const DIVERGENCE_SCALE: f64 = 0.1;

/// The blocks whose output is a bare BatchNorm output (no skip connection): the first of each
/// stage.
pub const MEASURED_BLOCKS: [usize; 7] = [0, 1, 3, 5, 8, 11, 15];

/// The thresholds of the grid (shown and adjustable in the app and the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Datasets with at least this many training images per class are *large*.
    pub large_images_per_class: usize,
    /// Datasets scoring at least this are *similar*.
    pub similar_min_score: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            large_images_per_class: 200,
            similar_min_score: 0.45,
        }
    }
}

/// How much of the dataset to look at.
#[derive(Debug, Clone, Copy)]
pub struct RecommendOptions {
    pub thresholds: Thresholds,
    /// Images run through the network for the statistics (spread over classes).
    pub max_images: usize,
    /// Side of the network's input (the statistics are those of 224 px ImageNet crops).
    pub image_size_px: u32,
}

impl Default for RecommendOptions {
    fn default() -> Self {
        Self {
            thresholds: Thresholds::default(),
            max_images: 192,
            image_size_px: 224,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Large,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    Similar,
    Different,
}

/// The divergence measured at one block.
#[derive(Debug, Clone, Serialize)]
pub struct LayerDivergence {
    pub block: usize,
    /// Median over channels of KL(data ‖ ImageNet).
    pub divergence: f64,
}

/// The recommendation: `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    /// Median over classes of the training images per class.
    pub images_per_class: usize,
    pub size: Size,
    pub similarity_score: f64,
    pub similarity: Similarity,
    /// `D`, the mean over layers of the median channel divergence.
    pub divergence: f64,
    pub case: Case,
    pub thresholds: Thresholds,
    pub images_measured: usize,
    pub layers: Vec<LayerDivergence>,
    /// What was measured on the data, one fact per line (size, similarity).
    pub measured: Vec<String>,
    /// The guide's rule that turns those facts into a case, and why.
    pub rule: String,
    /// Both in one paragraph.
    pub explanation: String,
}

impl Recommendation {
    /// The cell for the measured size and similarity.
    pub fn case(&self) -> Case {
        Case::from_axes(
            self.size == Size::Large,
            self.similarity == Similarity::Similar,
        )
    }

    /// Re-classifies with other thresholds (the measurement stays).
    pub fn with_thresholds(&self, thresholds: Thresholds) -> Self {
        self.reclassified(self.images_per_class, thresholds)
    }

    /// Re-classifies for another number of images per class (the size slider) and thresholds.
    pub fn reclassified(&self, images_per_class: usize, thresholds: Thresholds) -> Self {
        let mut r = self.clone();
        r.images_per_class = images_per_class;
        r.thresholds = thresholds;
        r.size = size_of(r.images_per_class, &thresholds);
        r.similarity = similarity_of(r.similarity_score, &thresholds);
        r.case = r.case();
        (r.measured, r.rule) = explain(&r);
        r.explanation = format!("Measured: {}. Rule: {}", r.measured.join("; "), r.rule);
        r
    }
}

fn size_of(images_per_class: usize, t: &Thresholds) -> Size {
    if images_per_class >= t.large_images_per_class {
        Size::Large
    } else {
        Size::Small
    }
}

fn similarity_of(score: f64, t: &Thresholds) -> Similarity {
    if score >= t.similar_min_score {
        Similarity::Similar
    } else {
        Similarity::Different
    }
}

fn explain(r: &Recommendation) -> (Vec<String>, String) {
    let t = &r.thresholds;
    let measured = vec![
        format!(
            "{} training images per class (large from {}): {}",
            r.images_per_class,
            t.large_images_per_class,
            match r.size {
                Size::Small => "small",
                Size::Large => "large",
            }
        ),
        format!(
            "similarity to ImageNet {:.2} (similar from {:.2}; how the pretrained network's \
             BatchNorm statistics shift on {} of your images): {}",
            r.similarity_score,
            t.similar_min_score,
            r.images_measured,
            match r.similarity {
                Similarity::Similar => "similar",
                Similarity::Different => "different",
            }
        ),
    ];
    let size = match r.size {
        Size::Small => "small data would overfit if many weights trained",
        Size::Large => "large data can adjust the whole network",
    };
    let sim = match r.similarity {
        Similarity::Similar => "on similar data the pretrained features fit as they are",
        Similarity::Different => {
            "on different data the later, ImageNet-specific features fit less well"
        }
    };
    let case = r.case();
    let measured_cut = if case == Case::SmallDifferent {
        " Where to cut is measured on your training images when training starts \
         (cross-validated depth probe)."
    } else {
        ""
    };
    let rule = format!(
        "{size} and {sim}, so {}: {}{measured_cut}",
        case.title(),
        case.rule()
    );
    (measured, rule)
}

/// KL(N(m, s²) ‖ N(β, γ²)) per channel, with small floors so that a dead channel stays finite.
fn channel_divergence(m: f64, s2: f64, beta: f64, gamma: f64) -> f64 {
    let g2 = (gamma * gamma).max(1e-4);
    let s2 = s2.max(1e-6);
    0.5 * ((s2 + (m - beta).powi(2)) / g2 - 1.0 + (g2 / s2).ln())
}

/// Measures the dataset (see the module docs). `progress(done, total)` after each batch.
pub fn recommend(
    dataset: &Dataset,
    options: &RecommendOptions,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<Recommendation, RecommendError> {
    // Whatever network trains, similarity is measured with Lite0's BatchNorm statistics.
    let lite0 = Backbone::by_name(MEASURING_BACKBONE).ok_or_else(|| {
        RecommendError::Model(ModelError::UnknownBackbone(MEASURING_BACKBONE.into()))
    })?;
    let weights = lite0.pretrained_weights(device)?;
    let spec = NetworkSpec {
        cut_after: Unit::Block(MEASURED_BLOCKS[MEASURED_BLOCKS.len() - 1]),
        ..NetworkSpec::pretrained(lite0)
    };
    let network = Network::build(spec, Some(&weights), HeadInit::Random, 0, device)?;
    let folded = network.folded()?;
    let unit_indices: Vec<usize> = MEASURED_BLOCKS
        .iter()
        .map(|&b| lite0.index_of(Unit::Block(b)))
        .collect();
    let mut pool: Vec<_> = dataset.train.iter().chain(&dataset.val).cloned().collect();
    pool.sort_by_key(|s| s.label);
    let subset = super::balanced_subset(&pool, dataset.classes.len(), options.max_images);
    let pre = lite0.preprocessing(options.image_size_px);
    let mut totals: Vec<ChannelSums> = Vec::new();
    let mut measured = 0;
    for (i, group) in subset.chunks(32).enumerate() {
        let crops: Vec<_> = eval_crops(group, &pre).into_iter().flatten().collect();
        if !crops.is_empty() {
            let input = pre.batch_tensor(&crops, device)?;
            let sums = folded.channel_sums_at_units(&input, &unit_indices)?;
            measured += crops.len();
            if totals.is_empty() {
                totals = sums;
            } else {
                for (t, s) in totals.iter_mut().zip(sums) {
                    t.sum.iter_mut().zip(&s.sum).for_each(|(a, b)| *a += b);
                    t.sum_sq
                        .iter_mut()
                        .zip(&s.sum_sq)
                        .for_each(|(a, b)| *a += b);
                    t.count += s.count;
                }
            }
        }
        progress(((i + 1) * 32).min(subset.len()), subset.len());
    }
    if measured == 0 {
        return Err(RecommendError::NoReadableImage);
    }
    let mut layers = Vec::with_capacity(MEASURED_BLOCKS.len());
    for (&block, sums) in MEASURED_BLOCKS.iter().zip(&totals) {
        // The block's last layer: the projection's BatchNorm, with no activation after it.
        let index = lite0.index_of(Unit::Block(block));
        let Some(bn) = network
            .units
            .get(index)
            .and_then(|u| u.layers().last().and_then(|l| l.batch_norm()))
        else {
            return Err(RecommendError::Model(
                lite0.missing_unit(Unit::Block(block)),
            ));
        };
        let gamma = bn.weight.tensor().to_vec1::<f32>()?;
        let beta = bn.bias.tensor().to_vec1::<f32>()?;
        let n = sums.count.max(1) as f64;
        let mut per_channel: Vec<f64> = (0..gamma.len())
            .map(|c| {
                let m = f64::from(sums.sum[c]) / n;
                let s2 = (f64::from(sums.sum_sq[c]) / n - m * m).max(0.0);
                channel_divergence(m, s2, f64::from(beta[c]), f64::from(gamma[c]))
            })
            .collect();
        layers.push(LayerDivergence {
            block,
            divergence: crate::stats::median(&mut per_channel),
        });
    }
    let d = layers.iter().map(|l| l.divergence).sum::<f64>() / layers.len().max(1) as f64;
    let images_per_class = images_per_class(dataset);
    let partial = Recommendation {
        images_per_class,
        size: Size::Small,
        similarity_score: 1.0 / (1.0 + d / DIVERGENCE_SCALE),
        divergence: d,
        similarity: Similarity::Similar,
        case: Case::SmallSimilar,
        thresholds: options.thresholds,
        images_measured: measured,
        layers,
        measured: Vec::new(),
        rule: String::new(),
        explanation: String::new(),
    };
    Ok(partial.with_thresholds(options.thresholds))
}

/// Median over classes of the training images per class.
pub fn images_per_class(dataset: &Dataset) -> usize {
    let mut per_class = vec![0usize; dataset.classes.len()];
    for s in &dataset.train {
        if let Some(c) = per_class.get_mut(s.label) {
            *c += 1;
        }
    }
    per_class.sort_unstable();
    per_class.get(per_class.len() / 2).copied().unwrap_or(0)
}

/// [`recommend`] on a shared dataset (for background threads).
pub fn recommend_shared(
    dataset: Arc<Dataset>,
    options: RecommendOptions,
    device: Device,
) -> Result<Recommendation, RecommendError> {
    recommend(&dataset, &options, &device, |_, _| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_statistics_have_zero_divergence_and_drift_grows_it() {
        assert!(channel_divergence(0.5, 4.0, 0.5, 2.0).abs() < 1e-12);
        let near = channel_divergence(0.7, 4.4, 0.5, 2.0);
        let far = channel_divergence(3.0, 0.1, 0.5, 2.0);
        assert!(near > 0.0 && far > near * 10.0);
        assert!(channel_divergence(0.0, 0.0, 0.0, 0.0).is_finite());
    }

    #[test]
    fn thresholds_move_the_case() {
        let r = Recommendation {
            images_per_class: 50,
            size: Size::Small,
            similarity_score: 0.6,
            similarity: Similarity::Similar,
            divergence: 0.07,
            case: Case::SmallSimilar,
            thresholds: Thresholds::default(),
            images_measured: 10,
            layers: Vec::new(),
            measured: Vec::new(),
            rule: String::new(),
            explanation: String::new(),
        };
        let a = r.with_thresholds(Thresholds::default());
        assert_eq!(a.case, Case::SmallSimilar);
        let b = r.with_thresholds(Thresholds {
            large_images_per_class: 40,
            similar_min_score: 0.7,
        });
        assert_eq!(b.case, Case::LargeDifferent);
        assert!(b.explanation.contains("Fine-tune or retrain"));
        assert!(b.rule.starts_with("large data"), "{}", b.rule);
        assert!(b.measured[0].starts_with("50 training images per class (large from 40)"));
        assert!(b.measured[1].ends_with(": different"), "{}", b.measured[1]);
        assert!(a.explanation.starts_with("Measured: "), "{}", a.explanation);
        for explanation in [&a.explanation, &b.explanation] {
            assert!(explanation.ends_with('.'), "{explanation}");
            assert!(!explanation.contains(".."), "{explanation}");
        }
    }
}
