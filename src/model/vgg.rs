//! VGG16 (no BatchNorm) exactly as torchvision builds it: 13 3×3 convolutions with biases and
//! ReLU in five stages, each stage ending in 2×2 max pooling, then adaptive average pooling
//! to 7×7, fc6 and fc7 (4096, ReLU) and fc8. Weight names are torchvision's (`features.N`,
//! `classifier.{0,3,6}`); timm's (`pre_logits.fc1` and `fc2` stored as convolutions,
//! `head.fc`) are renamed on loading.
//!
//! Units: the 13 convolutions (`block0`–`block12`, a stage's pooling inside its last one),
//! then `fc6` and `fc7`; fc8 is the classifier that training replaces. Dropout after fc6 and
//! fc7 is left out when they train (the new classifier has its own).

use std::sync::{Arc, OnceLock};

use candle_core::{Result as CandleResult, Tensor};

use super::architecture::{Architecture, BackboneUnit, FoldedUnit, missing_unit};
use super::error::ModelError;
use super::layers::{Act, ConvBias, ConvKind, FoldedConv, Layer, Linear, ParamPath, ParamSource};
use super::onnx::{OnnxGraph, Port};
use super::source::WeightsSource;
use super::unit::{Unit, UnitInfo};
use super::weights::IMAGENET_CLASSES;
use super::weights::Weights;
use crate::data::preprocess::Preprocessing;
use crate::ops::{self, Padding};

/// Output channels of the 13 convolutions, and whether a max pooling follows each.
const CONVS: [(usize, bool); 13] = [
    (64, false),
    (64, true),
    (128, false),
    (128, true),
    (256, false),
    (256, false),
    (256, true),
    (512, false),
    (512, false),
    (512, true),
    (512, false),
    (512, false),
    (512, true),
];
/// The side of the map fc6 reads (after adaptive average pooling).
const POOLED_SIDE: usize = 7;
const FC_WIDTH: usize = 4096;

/// VGG16 (see the module docs).
#[derive(Debug)]
pub struct Vgg16;

/// Index of each convolution in torchvision's `features` sequence (ReLUs and poolings count).
fn feature_index(conv: usize) -> usize {
    let pools_before = CONVS[..conv].iter().filter(|(_, pool)| *pool).count();
    2 * conv + pools_before
}

impl Architecture for Vgg16 {
    fn name(&self) -> &'static str {
        "vgg16"
    }

    fn title(&self) -> &'static str {
        "VGG16"
    }

    fn units(&self) -> &[UnitInfo] {
        static UNITS: OnceLock<Vec<UnitInfo>> = OnceLock::new();
        UNITS.get_or_init(|| {
            let mut stride = 1;
            let mut units: Vec<UnitInfo> = CONVS
                .iter()
                .enumerate()
                .map(|(i, &(channels, pool))| {
                    if pool {
                        stride *= 2;
                    }
                    UnitInfo {
                        unit: Unit::Block(i),
                        out_channels: channels,
                        output_stride: stride,
                    }
                })
                .collect();
            for n in [6, 7] {
                units.push(UnitInfo {
                    unit: Unit::Fc(n),
                    out_channels: FC_WIDTH,
                    output_stride: stride,
                });
            }
            units
        })
    }

    /// `c1_1` … `c5_3` as in the VGG paper (stage, then convolution within the stage).
    fn unit_label(&self, unit: Unit) -> String {
        match unit {
            Unit::Block(i) if i < CONVS.len() => {
                let stage = CONVS[..i].iter().filter(|(_, pool)| *pool).count() + 1;
                let first = CONVS[..i]
                    .iter()
                    .rposition(|(_, pool)| *pool)
                    .map_or(0, |p| p + 1);
                format!("c{stage}_{}", i - first + 1)
            }
            other => other.short_label(),
        }
    }

    fn unit_note(&self, unit: Unit) -> Option<String> {
        match unit {
            Unit::Block(i) if CONVS.get(i).is_some_and(|(_, pool)| *pool) => {
                Some("ends its stage: 2×2 max pooling follows".into())
            }
            Unit::Fc(6) => Some("pools the map to 7×7, flattens it, 4096 outputs".into()),
            _ => None,
        }
    }

    fn preprocessing(&self, image_size_px: u32) -> Preprocessing {
        Preprocessing::imagenet(image_size_px)
    }

    /// The end of stage 4 (conv4_3 and its pooling, stride 16).
    fn generic_cut(&self) -> Unit {
        Unit::Block(9)
    }

    fn probe_units(&self) -> Vec<Unit> {
        [1, 3, 6, 9, 12]
            .into_iter()
            .map(Unit::Block)
            .chain([Unit::Fc(6), Unit::Fc(7)])
            .collect()
    }

    fn classifier_names(&self) -> (&'static str, &'static str) {
        ("classifier.6.weight", "classifier.6.bias")
    }

    fn pretrained_classes(&self) -> usize {
        IMAGENET_CLASSES
    }

    fn default_weights(&self) -> WeightsSource {
        WeightsSource::Hub("timm/vgg16.tv_in1k".into())
    }

    /// timm's names: fc6/fc7 stored as 7×7 and 1×1 convolutions, fc8 as `head.fc`.
    fn adapt_weights(&self, weights: Weights) -> Result<Weights, ModelError> {
        let renames = [
            ("pre_logits.fc1", "classifier.0"),
            ("pre_logits.fc2", "classifier.3"),
            ("head.fc", "classifier.6"),
        ];
        weights.renamed(|name| {
            renames
                .iter()
                .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")))
        })
    }

    fn build_unit(
        &self,
        unit: Unit,
        src: &mut ParamSource<'_>,
        trainable: bool,
    ) -> Result<Box<dyn BackboneUnit>, ModelError> {
        let classifier = ParamPath::root().pp("classifier");
        match unit {
            Unit::Block(i) if i < CONVS.len() => {
                let c_in = if i == 0 { 3 } else { CONVS[i - 1].0 };
                let (c_out, pool) = CONVS[i];
                let kind = ConvKind::Dense {
                    kernel: 3,
                    stride: 1,
                    padding: Padding::Symmetric(1),
                };
                let path = ParamPath::root().pp("features").pp(feature_index(i));
                let conv = ConvBias::build(&path, kind, (c_in, c_out), Act::Relu, src, trainable)?;
                Ok(Box::new(VggConv { conv, pool }))
            }
            Unit::Fc(6) => {
                let c_in = CONVS[CONVS.len() - 1].0 * POOLED_SIDE * POOLED_SIDE;
                let linear =
                    Linear::build(&classifier.pp(0), c_in, FC_WIDTH, Act::Relu, src, trainable)?;
                Ok(Box::new(Fc {
                    linear,
                    first: true,
                }))
            }
            Unit::Fc(7) => {
                let linear = Linear::build(
                    &classifier.pp(3),
                    FC_WIDTH,
                    FC_WIDTH,
                    Act::Relu,
                    src,
                    trainable,
                )?;
                Ok(Box::new(Fc {
                    linear,
                    first: false,
                }))
            }
            _ => Err(missing_unit(self, unit)),
        }
    }
}

/// A 3×3 convolution with bias and ReLU, and the stage's 2×2 max pooling if it ends one.
#[derive(Debug)]
struct VggConv {
    conv: ConvBias,
    pool: bool,
}

impl BackboneUnit for VggConv {
    fn forward_train(&self, x: &Tensor, _bn_momentum: f64) -> CandleResult<Tensor> {
        self.conv.forward_train(x, self.pool)
    }

    fn fold(&self) -> CandleResult<Arc<dyn FoldedUnit>> {
        Ok(Arc::new(FoldedVggConv {
            conv: self.conv.fold(),
            pool: self.pool,
        }))
    }

    fn layers(&self) -> Vec<&dyn Layer> {
        vec![&self.conv]
    }
}

#[derive(Debug)]
struct FoldedVggConv {
    conv: FoldedConv,
    pool: bool,
}

impl FoldedUnit for FoldedVggConv {
    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        let y = self.conv.forward(x, None)?;
        if self.pool {
            ops::max_pool_2x2(&y)
        } else {
            Ok(y)
        }
    }

    fn export_onnx(&self, g: &mut OnnxGraph, x: &Port) -> Result<Port, ModelError> {
        let y = self.conv.export_onnx(g, x, None)?;
        Ok(if self.pool {
            g.max_pool(&y, 2, 2, 0)
        } else {
            y
        })
    }
}

/// fc6 (which first pools the map to 7×7 and flattens it in PyTorch's NCHW order) or fc7.
#[derive(Debug)]
struct Fc {
    linear: Linear,
    first: bool,
}

fn fc_forward(linear: &Linear, first: bool, x: &Tensor) -> CandleResult<Tensor> {
    if first {
        let pooled = ops::adaptive_avg_pool(x, POOLED_SIDE, POOLED_SIDE)?;
        linear.forward(&ops::flatten_nchw(&pooled)?)
    } else {
        linear.forward(x)
    }
}

impl BackboneUnit for Fc {
    fn forward_train(&self, x: &Tensor, _bn_momentum: f64) -> CandleResult<Tensor> {
        fc_forward(&self.linear, self.first, x)
    }

    fn fold(&self) -> CandleResult<Arc<dyn FoldedUnit>> {
        Ok(Arc::new(FoldedFc {
            linear: self.linear.frozen(),
            first: self.first,
        }))
    }

    fn layers(&self) -> Vec<&dyn Layer> {
        vec![&self.linear]
    }
}

#[derive(Debug)]
struct FoldedFc {
    linear: Linear,
    first: bool,
}

impl FoldedUnit for FoldedFc {
    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        fc_forward(&self.linear, self.first, x)
    }

    fn export_onnx(&self, g: &mut OnnxGraph, x: &Port) -> Result<Port, ModelError> {
        let x = if self.first {
            g.pool_and_flatten(x, POOLED_SIDE)?
        } else {
            x.clone()
        };
        self.linear.export_onnx(g, &x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_indices_follow_torchvision() {
        let indices: Vec<usize> = (0..13).map(feature_index).collect();
        assert_eq!(indices, [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]);
        let labels: Vec<String> = (0..13).map(|i| Vgg16.unit_label(Unit::Block(i))).collect();
        assert_eq!(labels[0], "c1_1");
        assert_eq!(labels[1], "c1_2");
        assert_eq!(labels[2], "c2_1");
        assert_eq!(labels[12], "c5_3");
    }
}
