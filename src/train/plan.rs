//! Training plans: the four cells of the transfer-learning guide as plain, inspectable presets.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use candle_core::Device;

pub use super::class_weights::{ClassWeights, IMBALANCE_RATIO, imbalanced};
use crate::data::dataset::LoadOptions;
use crate::data::preprocess::Preprocessing;
use crate::model::{
    Backbone, HeadInit, Init, ModelError, Network, NetworkSpec, Unit, Weights, WeightsSource,
};

/// The input sizes a plan may use (the window's slider, the command line and validation all
/// take this one range): from the smallest crop the networks still run on to what fits memory.
pub const IMAGE_SIZE_RANGE_PX: std::ops::RangeInclusive<u32> = 16..=1024;

/// A cell of the 2×2 guide: dataset size × similarity to the pretraining data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    SmallSimilar,
    SmallDifferent,
    LargeSimilar,
    LargeDifferent,
}

impl Case {
    pub const ALL: [Case; 4] = [
        Case::SmallSimilar,
        Case::SmallDifferent,
        Case::LargeSimilar,
        Case::LargeDifferent,
    ];

    /// The guide's name for the cell.
    pub fn title(self) -> &'static str {
        match self {
            Case::SmallSimilar => "End of ConvNet",
            Case::SmallDifferent => "Start of ConvNet",
            Case::LargeSimilar => "Fine-tune",
            Case::LargeDifferent => "Fine-tune or retrain",
        }
    }

    /// The cell's one-line rule.
    pub fn rule(self) -> &'static str {
        match self {
            Case::SmallSimilar => "Freeze the whole pretrained base; train only a new final layer.",
            Case::SmallDifferent => {
                "Cut back to the early, generic layers; freeze them; train a new final layer."
            }
            Case::LargeSimilar => {
                "Start from pretrained weights with a new final layer; train all layers gently."
            }
            Case::LargeDifferent => {
                "Fine-tune everything from pretrained weights, or re-initialise and retrain."
            }
        }
    }

    pub fn is_large(self) -> bool {
        matches!(self, Case::LargeSimilar | Case::LargeDifferent)
    }

    pub fn is_similar(self) -> bool {
        matches!(self, Case::SmallSimilar | Case::LargeSimilar)
    }

    /// The cell for a dataset's place on the two axes.
    pub fn from_axes(large: bool, similar: bool) -> Case {
        match (large, similar) {
            (false, true) => Case::SmallSimilar,
            (false, false) => Case::SmallDifferent,
            (true, true) => Case::LargeSimilar,
            (true, false) => Case::LargeDifferent,
        }
    }

    /// The preset plan for this cell on the default backbone (pretrained start).
    pub fn plan(self) -> TrainPlan {
        self.plan_for(Backbone::default())
    }

    /// The preset plan for this cell on `backbone` (pretrained start).
    pub fn plan_for(self, backbone: Backbone) -> TrainPlan {
        let all_units = backbone.unit_count();
        let base = TrainPlan {
            backbone,
            weights: None,
            cut_after: backbone.last_unit(),
            trainable_units: 0,
            init: Init::Pretrained,
            head_epochs: 0,
            epochs: HEAD_EPOCHS_BEFORE_FINE_TUNING,
            image_size_px: 224,
            batch_size: 32,
            head_lr: HEAD_ONLY_LR,
            backbone_lr_mult: 0.1,
            weight_decay: 1e-4,
            augment: false,
            dropout: 0.2,
            patience: 10,
            bn_momentum: 0.1,
            seed: 0,
            val_fraction: crate::data::dataset::DEFAULT_VAL_FRACTION,
            class_weights: ClassWeights::Auto,
            auto_cut: false,
        };
        match self {
            // Only the new FC trains, on features computed once (milliseconds per epoch).
            Case::SmallSimilar => base,
            // Generic low/mid-level features (Lite0: the end of stage 5, block 10). The depth
            // probe shows the trade-off on your data.
            // The cut where the features stop transferring, measured on the training split
            // (the generic cut if the data is too small to cross-validate).
            Case::SmallDifferent => TrainPlan {
                cut_after: backbone.generic_cut(),
                auto_cut: true,
                ..base
            },
            // Two phases: the new head trained on cached features as End of ConvNet trains
            // it (`head_phase_plan`), then every layer with the backbone at a tenth of the
            // head's rate. A converged head keeps fine-tuning from distorting the pretrained
            // features (Kumar et al., 2022, LP-FT); the best epoch of either phase is kept
            // (fine-tuning that does not help costs nothing). 160 px: practical on a CPU.
            Case::LargeSimilar => TrainPlan {
                trainable_units: all_units,
                head_epochs: HEAD_EPOCHS_BEFORE_FINE_TUNING,
                epochs: 6,
                image_size_px: 160,
                head_lr: 1e-3,
                backbone_lr_mult: 0.1,
                augment: true,
                patience: 4,
                ..base
            },
            // Features must move further from ImageNet's: a larger backbone rate, more epochs.
            Case::LargeDifferent => TrainPlan {
                trainable_units: all_units,
                head_epochs: HEAD_EPOCHS_BEFORE_FINE_TUNING,
                epochs: 8,
                image_size_px: 160,
                head_lr: 1e-3,
                backbone_lr_mult: 0.3,
                augment: true,
                patience: 4,
                ..base
            },
        }
    }

    /// The large-different cell's other option on the default backbone.
    pub fn retrain_plan() -> TrainPlan {
        Self::retrain_plan_for(Backbone::default())
    }

    /// The large-different cell's other option: re-initialise everything and train from
    /// scratch (only sensible with plenty of data and time).
    pub fn retrain_plan_for(backbone: Backbone) -> TrainPlan {
        TrainPlan {
            init: Init::Random,
            head_epochs: 0,
            epochs: 20,
            head_lr: 2e-3,
            backbone_lr_mult: 1.0,
            patience: 6,
            // Random-init running statistics must catch up fast (0.01 left test accuracy at
            // chance in PyTorch's runs of the same recipe).
            bn_momentum: 0.1,
            ..Case::LargeDifferent.plan_for(backbone)
        }
    }

    /// The preset whose plan equals `plan` (seed and split aside), if any.
    pub fn matching(plan: &TrainPlan) -> Option<Case> {
        let normalized = |p: &TrainPlan| TrainPlan {
            seed: 0,
            val_fraction: 0.0,
            weights: None,
            ..p.as_chosen()
        };
        let target = normalized(plan);
        let backbone = plan.backbone;
        Case::ALL
            .into_iter()
            .find(|c| normalized(&c.plan_for(backbone)) == target)
            .or_else(|| {
                (normalized(&Case::retrain_plan_for(backbone)) == target)
                    .then_some(Case::LargeDifferent)
            })
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Case::SmallSimilar => "small-similar",
            Case::SmallDifferent => "small-different",
            Case::LargeSimilar => "large-similar",
            Case::LargeDifferent => "large-different",
        })
    }
}

impl FromStr for Case {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Case::ALL
            .into_iter()
            .find(|c| c.to_string() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!(
                    "unknown case {s:?}: use small-similar, small-different, large-similar or \
                     large-different"
                )
            })
    }
}

/// Everything that decides a training run. Every field can be overridden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainPlan {
    /// The network (plans saved before there was a choice are Lite0's).
    #[serde(default)]
    pub backbone: Backbone,
    /// Where the pretrained weights come from (`None`: the backbone's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<WeightsSource>,
    /// Last backbone unit kept; pooling and the new classifier follow it. With `auto_cut`, the
    /// fallback until the run has chosen (then the chosen unit).
    pub cut_after: Unit,
    /// The run chooses the cut from the training data (cross-validated probe, [`super::cut`]).
    #[serde(default)]
    pub auto_cut: bool,
    /// Backbone units that train in the main phase, counted down from the cut
    /// (0: only the classifier trains, on cached features).
    pub trainable_units: usize,
    pub init: Init,
    /// Phase 1 of fine-tuning: epochs of classifier-only training on cached features before
    /// the backbone is unfrozen (ignored when nothing else trains or the init is random).
    pub head_epochs: usize,
    /// Epochs of the main phase.
    pub epochs: usize,
    pub image_size_px: u32,
    pub batch_size: usize,
    /// AdamW learning rate of the classifier (cosine-decayed within each phase).
    pub head_lr: f64,
    /// Backbone learning rate as a fraction of `head_lr`.
    pub backbone_lr_mult: f64,
    /// AdamW weight decay (not applied to BatchNorm parameters or biases).
    pub weight_decay: f64,
    /// Random resized crops and horizontal flips in phases that run the backbone.
    pub augment: bool,
    /// Dropout on the pooled features before the classifier.
    pub dropout: f64,
    /// Early stopping: epochs without a better validation result (0: never stop early).
    pub patience: usize,
    /// BatchNorm running-average momentum for trainable units.
    pub bn_momentum: f64,
    pub seed: u64,
    /// Validation share when no validation folder is given.
    pub val_fraction: f64,
    /// Whether the training loss weights classes by their size (plans saved before: auto).
    #[serde(default)]
    pub class_weights: ClassWeights,
}

/// Classifier-only epochs (on cached features) before the fine-tuning presets unfreeze the
/// backbone: End of ConvNet's, so that phase 1 is End of ConvNet's classifier.
pub const HEAD_EPOCHS_BEFORE_FINE_TUNING: usize = 40;

/// The classifier's learning rate when it trains alone on cached features: End of ConvNet's,
/// and phase 1 of the fine-tuning plans (whose `head_lr` is the classifier's rate while the
/// backbone trains with it).
pub const HEAD_ONLY_LR: f64 = 3e-3;

impl Default for TrainPlan {
    fn default() -> Self {
        Case::SmallSimilar.plan()
    }
}

/// A plan that cannot run, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid plan: {0}")]
pub struct PlanError(pub String);

impl TrainPlan {
    /// Backbone units kept (stem through the cut).
    pub fn kept_units(&self) -> usize {
        self.backbone.index_of(self.cut_after) + 1
    }

    /// Trainable backbone units, capped at the units kept.
    pub fn effective_trainable_units(&self) -> usize {
        self.trainable_units.min(self.kept_units())
    }

    /// Whether only the classifier trains (on cached features).
    pub fn is_head_only(&self) -> bool {
        self.effective_trainable_units() == 0
    }

    /// Whether phase 1 (classifier on cached features) runs before fine-tuning.
    pub fn has_head_phase(&self) -> bool {
        !self.is_head_only() && self.init == Init::Pretrained && self.head_epochs > 0
    }

    /// Index of the first trainable unit.
    pub fn first_trainable_unit(&self) -> usize {
        self.kept_units() - self.effective_trainable_units()
    }

    /// The plan phase 1 trains the classifier with: End of ConvNet's ([`HEAD_ONLY_LR`]); a
    /// fine-tuning plan's own `head_lr` is for the classifier beside the backbone.
    pub fn head_phase_plan(&self) -> TrainPlan {
        if self.has_head_phase() {
            TrainPlan {
                head_lr: HEAD_ONLY_LR,
                ..self.clone()
            }
        } else {
            self.clone()
        }
    }

    /// Epochs of the classifier-only phase on cached features (all of them when nothing
    /// else trains).
    pub fn head_only_epochs(&self) -> usize {
        if self.is_head_only() {
            self.epochs
        } else if self.has_head_phase() {
            self.head_epochs
        } else {
            0
        }
    }

    /// Epochs of the whole run, both phases.
    pub fn total_epochs(&self) -> usize {
        if self.is_head_only() {
            self.epochs
        } else {
            self.head_only_epochs() + self.epochs
        }
    }

    /// Where this plan's pretrained weights come from.
    pub fn weights_source(&self) -> WeightsSource {
        self.backbone.weights_or_default(self.weights.as_ref())
    }

    /// How to load the training folder for this plan: its validation split (or `val_dir`),
    /// decoded images cached with their shorter side at most `cache_short_side_px` (the
    /// preprocessing's resize side, so that nothing is enlarged from a smaller copy).
    pub fn load_options(&self, val_dir: Option<PathBuf>, cache_short_side_px: u32) -> LoadOptions {
        LoadOptions {
            val_dir,
            val_fraction: self.val_fraction,
            seed: self.seed,
            cache_short_side_px,
            ..LoadOptions::default()
        }
    }

    /// Input preprocessing at this plan's image size, as the backbone expects it.
    pub fn preprocessing(&self) -> Preprocessing {
        self.backbone.preprocessing(self.image_size_px)
    }

    pub fn network_spec(&self, num_classes: usize) -> NetworkSpec {
        NetworkSpec {
            backbone: self.backbone,
            cut_after: self.cut_after,
            num_classes,
            trainable_units: self.effective_trainable_units(),
            bn_momentum: self.bn_momentum,
        }
    }

    /// The network this plan trains: its cut and freezing, a new randomly initialised
    /// classifier for `num_classes` (seeded by the plan), the backbone from `weights` or, with
    /// `None`, randomly initialised.
    pub fn build_network(
        &self,
        num_classes: usize,
        weights: Option<&Weights>,
        device: &Device,
    ) -> Result<Network, ModelError> {
        Network::build(
            self.network_spec(num_classes),
            weights,
            HeadInit::Random,
            self.seed,
            device,
        )
    }

    pub fn validate(&self) -> Result<(), PlanError> {
        let fail = |m: &str| Err(PlanError(m.into()));
        if self.auto_cut && self.init == Init::Random {
            return fail("choosing the cut from the data needs pretrained weights");
        }
        if !self.backbone.has_unit(self.cut_after) {
            return Err(PlanError(
                self.backbone.missing_unit(self.cut_after).to_string(),
            ));
        }
        if self.epochs == 0 && self.head_epochs == 0 {
            return fail("at least one epoch is needed");
        }
        if self.batch_size == 0 {
            return fail("batch size must be at least 1");
        }
        if !IMAGE_SIZE_RANGE_PX.contains(&self.image_size_px) {
            return fail(&format!(
                "image size must be between {} and {} px",
                IMAGE_SIZE_RANGE_PX.start(),
                IMAGE_SIZE_RANGE_PX.end()
            ));
        }
        if !(self.head_lr > 0.0 && self.head_lr.is_finite()) {
            return fail("learning rate must be a positive number");
        }
        if !(self.backbone_lr_mult >= 0.0 && self.backbone_lr_mult.is_finite()) {
            return fail("backbone learning-rate multiplier must be 0 or more");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail("dropout must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.bn_momentum) {
            return fail("BatchNorm momentum must be in [0, 1]");
        }
        if !(0.0..0.95).contains(&self.val_fraction) {
            return fail("validation fraction must be in [0, 0.95)");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return fail("weight decay must be 0 or more");
        }
        Ok(())
    }

    /// The plan as chosen, before a run resolved it: a cut chosen from the data is shown as
    /// the preset's fallback, so that the chosen plan and its model's plan compare equal.
    pub fn as_chosen(&self) -> TrainPlan {
        TrainPlan {
            cut_after: if self.auto_cut {
                self.backbone.generic_cut()
            } else {
                self.cut_after
            },
            ..self.clone()
        }
    }

    /// A one-line description for logs and the window.
    pub fn summary(&self) -> String {
        let training = if self.is_head_only() {
            "only the new classifier trains (cached features)".to_string()
        } else {
            format!(
                "{} of {} units train{}",
                self.effective_trainable_units(),
                self.kept_units(),
                if self.has_head_phase() {
                    format!(" after {} classifier-only epochs", self.head_epochs)
                } else {
                    String::new()
                }
            )
        };
        let cut = if self.auto_cut {
            "cut chosen from the data".to_owned()
        } else {
            format!("cut after {}", self.cut_after)
        };
        format!(
            "{cut}, {} init, {training}; {} epochs at {} px, batch {}, lr {:.0e}",
            match self.init {
                Init::Pretrained => "pretrained",
                Init::Random => "random",
            },
            self.epochs,
            self.image_size_px,
            self.batch_size,
            self.head_lr
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_weights_turn_on_for_imbalanced_classes_and_balance_them() {
        assert_eq!(
            ClassWeights::Auto.resolve(&[30, 10, 12]),
            None,
            "3x is not more than 3x"
        );
        let w = ClassWeights::Auto.resolve(&[40, 10]).expect("imbalanced");
        assert_eq!(w, [0.625, 2.5]);
        // Each class then carries the same total weight.
        assert!((40.0 * w[0] - 10.0 * w[1]).abs() < 1e-6);
        assert_eq!(ClassWeights::Off.resolve(&[40, 10]), None);
        assert_eq!(ClassWeights::On.resolve(&[5, 5]), Some(vec![1.0, 1.0]));
        assert_eq!("on".parse::<ClassWeights>(), Ok(ClassWeights::On));
        assert!("maybe".parse::<ClassWeights>().is_err());
    }

    #[test]
    fn presets_follow_the_guide() {
        let ss = Case::SmallSimilar.plan();
        let all_units = ss.backbone.unit_count();
        assert_eq!(ss.cut_after, Unit::Head);
        assert!(ss.is_head_only());
        let sd = Case::SmallDifferent.plan();
        assert!(sd.cut_after < Unit::Block(15));
        assert!(sd.is_head_only());
        let ls = Case::LargeSimilar.plan();
        assert_eq!(ls.effective_trainable_units(), all_units);
        assert!(ls.has_head_phase() && ls.backbone_lr_mult < 1.0);
        let ld = Case::LargeDifferent.plan();
        assert_eq!(ld.init, Init::Pretrained);
        assert_eq!(Case::retrain_plan().init, Init::Random);
        // Phase 1 of fine-tuning is End of ConvNet's classifier; fine-tuning keeps its rate.
        for plan in [&ls, &ld] {
            let phase_1 = plan.head_phase_plan();
            assert_eq!(phase_1.head_lr, ss.head_lr);
            assert_eq!(plan.head_only_epochs(), ss.head_only_epochs());
            assert!(plan.head_lr < ss.head_lr);
        }
        assert_eq!(ss.head_phase_plan(), ss);
        for case in Case::ALL {
            case.plan().validate().expect("valid preset");
            assert_eq!(Case::matching(&case.plan()), Some(case));
            assert_eq!(case.to_string().parse::<Case>(), Ok(case));
        }
    }

    #[test]
    fn edits_leave_the_preset() {
        let mut plan = Case::LargeSimilar.plan();
        plan.seed = 42;
        assert_eq!(Case::matching(&plan), Some(Case::LargeSimilar));
        plan.trainable_units = 3;
        assert_eq!(Case::matching(&plan), None);
    }
}
