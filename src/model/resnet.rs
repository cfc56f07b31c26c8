//! ResNet-18 and ResNet-50 exactly as torchvision builds them (v1.5: the stride sits in the
//! 3×3 convolution of the bottleneck), with torchvision's weight names (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer1.0.downsample.0`, …, `fc`), which timm's ResNets share.
//!
//! Units: the stem (7×7 convolution, BatchNorm, ReLU, 3×3 max pooling), then every residual
//! block of `layer1`–`layer4` in order; the network ends with the last block.

use std::sync::{Arc, OnceLock};

use candle_core::{Result as CandleResult, Tensor};

use super::architecture::{Architecture, BackboneUnit, FoldedUnit, missing_unit};
use super::error::ModelError;
use super::layers::{
    Act, ConvBn, ConvBnSpec, ConvKind, FoldedConv, Layer, ParamPath, ParamSource, train_block,
};
use super::onnx::{OnnxGraph, Port};
use super::source::WeightsSource;
use super::unit::{Unit, UnitInfo};
use super::weights::IMAGENET_CLASSES;
use crate::data::preprocess::Preprocessing;
use crate::ops::{self, Padding};

const BN_EPS: f64 = 1e-5;
const STEM_CHANNELS: usize = 64;
/// Output widths of `layer1`–`layer4` before the bottleneck's expansion.
const PLANES: [usize; 4] = [64, 128, 256, 512];

/// A torchvision ResNet.
#[derive(Debug)]
pub struct ResNet {
    name: &'static str,
    title: &'static str,
    /// Residual blocks in `layer1`–`layer4`.
    depths: [usize; 4],
    /// Bottleneck blocks (1×1, 3×3, 1×1, four-fold expansion) instead of basic ones.
    bottleneck: bool,
    default_hub: &'static str,
    /// The unit table, computed once per network (each ResNet holds its own).
    units: OnceLock<Vec<UnitInfo>>,
}

/// ResNet-18: basic blocks, 2-2-2-2.
pub static RESNET18: ResNet = ResNet {
    name: "resnet18",
    title: "ResNet-18",
    depths: [2, 2, 2, 2],
    bottleneck: false,
    default_hub: "timm/resnet18.tv_in1k",
    units: OnceLock::new(),
};

/// ResNet-50: bottleneck blocks, 3-4-6-3.
pub static RESNET50: ResNet = ResNet {
    name: "resnet50",
    title: "ResNet-50",
    depths: [3, 4, 6, 3],
    bottleneck: true,
    default_hub: "timm/resnet50.tv_in1k",
    units: OnceLock::new(),
};

/// Where one residual block sits and what it computes.
#[derive(Debug, Clone, Copy)]
struct BlockPlace {
    /// 1–4.
    layer: usize,
    /// Index within its layer.
    index: usize,
    in_channels: usize,
    planes: usize,
    stride: usize,
}

impl ResNet {
    fn expansion(&self) -> usize {
        if self.bottleneck { 4 } else { 1 }
    }

    fn places(&self) -> Vec<BlockPlace> {
        let mut places = Vec::new();
        let mut in_channels = STEM_CHANNELS;
        for (l, (&depth, &planes)) in self.depths.iter().zip(&PLANES).enumerate() {
            for index in 0..depth {
                places.push(BlockPlace {
                    layer: l + 1,
                    index,
                    in_channels,
                    planes,
                    stride: if index == 0 && l > 0 { 2 } else { 1 },
                });
                in_channels = planes * self.expansion();
            }
        }
        places
    }

    fn block(
        &self,
        place: BlockPlace,
        src: &mut ParamSource<'_>,
        trainable: bool,
    ) -> Result<ResidualBlock, ModelError> {
        let p = ParamPath::root()
            .pp(format_args!("layer{}", place.layer))
            .pp(place.index);
        let out = place.planes * self.expansion();
        let spec = |names, kind, c_in, c_out, act| {
            ConvBnSpec::at(&p, names, kind, (c_in, c_out), act, BN_EPS)
        };
        let conv3 = |stride| ConvKind::Dense {
            kernel: 3,
            stride,
            padding: Padding::Symmetric(1),
        };
        let (s, w) = (place.stride, place.planes);
        let specs = if self.bottleneck {
            vec![
                spec(
                    ("conv1", "bn1"),
                    ConvKind::Pointwise,
                    place.in_channels,
                    w,
                    Act::Relu,
                ),
                spec(("conv2", "bn2"), conv3(s), w, w, Act::Relu),
                spec(("conv3", "bn3"), ConvKind::Pointwise, w, out, Act::None),
            ]
        } else {
            vec![
                spec(("conv1", "bn1"), conv3(s), place.in_channels, w, Act::Relu),
                spec(("conv2", "bn2"), conv3(1), w, w, Act::None),
            ]
        };
        let convs = specs
            .into_iter()
            .map(|spec| ConvBn::build(spec, src, trainable))
            .collect::<Result<Vec<_>, _>>()?;
        let downsample = (s != 1 || place.in_channels != out)
            .then(|| {
                let kind = match s {
                    1 => ConvKind::Pointwise,
                    stride => ConvKind::Dense {
                        kernel: 1,
                        stride,
                        padding: Padding::Symmetric(0),
                    },
                };
                let d = spec(
                    ("downsample.0", "downsample.1"),
                    kind,
                    place.in_channels,
                    out,
                    Act::None,
                );
                ConvBn::build(d, src, trainable)
            })
            .transpose()?;
        Ok(ResidualBlock { convs, downsample })
    }
}

impl Architecture for ResNet {
    fn name(&self) -> &'static str {
        self.name
    }

    fn title(&self) -> &'static str {
        self.title
    }

    fn units(&self) -> &[UnitInfo] {
        self.units.get_or_init(|| {
            let mut units = vec![UnitInfo {
                unit: Unit::Stem,
                out_channels: STEM_CHANNELS,
                output_stride: 4,
            }];
            let mut stride = 4;
            for (i, place) in self.places().iter().enumerate() {
                stride *= place.stride;
                units.push(UnitInfo {
                    unit: Unit::Block(i),
                    out_channels: place.planes * self.expansion(),
                    output_stride: stride,
                });
            }
            units
        })
    }

    fn preprocessing(&self, image_size_px: u32) -> Preprocessing {
        Preprocessing::imagenet(image_size_px)
    }

    /// The end of `layer3` (stride 16).
    fn generic_cut(&self) -> Unit {
        Unit::Block(self.depths[..3].iter().sum::<usize>() - 1)
    }

    /// The end of each layer, and the middle of `layer3`.
    fn probe_units(&self) -> Vec<Unit> {
        let mut ends = Vec::new();
        let mut last = 0;
        for (l, depth) in self.depths.iter().enumerate() {
            if l == 2 {
                ends.push(Unit::Block(last + depth / 2 - 1));
            }
            last += depth;
            ends.push(Unit::Block(last - 1));
        }
        ends
    }

    fn classifier_names(&self) -> (&'static str, &'static str) {
        ("fc.weight", "fc.bias")
    }

    fn pretrained_classes(&self) -> usize {
        IMAGENET_CLASSES
    }

    fn default_weights(&self) -> WeightsSource {
        WeightsSource::Hub(self.default_hub.into())
    }

    fn build_unit(
        &self,
        unit: Unit,
        src: &mut ParamSource<'_>,
        trainable: bool,
    ) -> Result<Box<dyn BackboneUnit>, ModelError> {
        match unit {
            Unit::Stem => {
                let kind = ConvKind::Dense {
                    kernel: 7,
                    stride: 2,
                    padding: Padding::Symmetric(3),
                };
                let spec = ConvBnSpec::at(
                    &ParamPath::root(),
                    ("conv1", "bn1"),
                    kind,
                    (3, STEM_CHANNELS),
                    Act::Relu,
                    BN_EPS,
                );
                Ok(Box::new(Stem(ConvBn::build(spec, src, trainable)?)))
            }
            Unit::Block(b) => match self.places().get(b) {
                Some(&place) => Ok(Box::new(self.block(place, src, trainable)?)),
                None => Err(missing_unit(self, unit)),
            },
            Unit::Head | Unit::Fc(_) => Err(missing_unit(self, unit)),
        }
    }
}

/// `conv1`, `bn1`, ReLU, then 3×3 max pooling at stride 2.
#[derive(Debug)]
struct Stem(ConvBn);

impl BackboneUnit for Stem {
    fn forward_train(&self, x: &Tensor, bn_momentum: f64) -> CandleResult<Tensor> {
        ops::max_pool_3x3_s2(&self.0.forward_train(x, bn_momentum)?)
    }

    fn fold(&self) -> CandleResult<Arc<dyn FoldedUnit>> {
        Ok(Arc::new(FoldedStem(self.0.fold()?)))
    }

    fn layers(&self) -> Vec<&dyn Layer> {
        vec![&self.0]
    }
}

#[derive(Debug)]
struct FoldedStem(FoldedConv);

impl FoldedUnit for FoldedStem {
    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        ops::max_pool_3x3_s2(&self.0.forward(x, None)?)
    }

    fn export_onnx(&self, g: &mut OnnxGraph, x: &Port) -> Result<Port, ModelError> {
        let y = self.0.export_onnx(g, x, None)?;
        Ok(g.max_pool(&y, 3, 2, 1))
    }
}

/// A basic (two 3×3) or bottleneck (1×1, 3×3, 1×1) block: the convolutions, the shortcut
/// (a strided 1×1 convolution where the shape changes), their sum, then ReLU.
#[derive(Debug)]
struct ResidualBlock {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl BackboneUnit for ResidualBlock {
    fn forward_train(&self, x: &Tensor, momentum: f64) -> CandleResult<Tensor> {
        let chain: Vec<&ConvBn> = self.convs.iter().collect();
        let projection = self.downsample.as_ref();
        train_block(x, &chain, projection, true, Act::Relu, momentum)
    }

    fn fold(&self) -> CandleResult<Arc<dyn FoldedUnit>> {
        let mut convs = self
            .convs
            .iter()
            .map(ConvBn::fold)
            .collect::<CandleResult<Vec<_>>>()?;
        // The last convolution adds the shortcut, then applies the block's ReLU.
        if let Some(last) = convs.pop() {
            convs.push(last.with_act(Act::Relu));
        }
        Ok(Arc::new(FoldedResidual {
            convs,
            downsample: self.downsample.as_ref().map(ConvBn::fold).transpose()?,
        }))
    }

    fn layers(&self) -> Vec<&dyn Layer> {
        self.convs
            .iter()
            .chain(&self.downsample)
            .map(|l| l as &dyn Layer)
            .collect()
    }
}

#[derive(Debug)]
struct FoldedResidual {
    convs: Vec<FoldedConv>,
    downsample: Option<FoldedConv>,
}

impl FoldedUnit for FoldedResidual {
    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        let shortcut = match &self.downsample {
            Some(d) => d.forward(x, None)?,
            None => x.clone(),
        };
        let mut h = x.clone();
        let last = self.convs.len().saturating_sub(1);
        for (i, conv) in self.convs.iter().enumerate() {
            h = conv.forward(&h, (i == last).then_some(&shortcut))?;
        }
        Ok(h)
    }

    fn export_onnx(&self, g: &mut OnnxGraph, x: &Port) -> Result<Port, ModelError> {
        let shortcut = match &self.downsample {
            Some(d) => d.export_onnx(g, x, None)?,
            None => x.clone(),
        };
        let mut h = x.clone();
        let last = self.convs.len().saturating_sub(1);
        for (i, conv) in self.convs.iter().enumerate() {
            h = conv.export_onnx(g, &h, (i == last).then_some(&shortcut))?;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ResNet-34 (basic blocks, 3-4-6-3) added beside ResNet-18: its unit table is its own,
    /// not the one a table shared by block kind would hand it.
    #[test]
    fn each_resnet_keeps_its_own_unit_table() {
        static RESNET34: ResNet = ResNet {
            name: "resnet34",
            title: "ResNet-34",
            depths: [3, 4, 6, 3],
            bottleneck: false,
            default_hub: "timm/resnet34.tv_in1k",
            units: OnceLock::new(),
        };
        assert_eq!(RESNET18.units().len(), 1 + 8);
        assert_eq!(RESNET34.units().len(), 1 + 16);
        assert_eq!(RESNET50.units().len(), 1 + 16);
        assert_eq!(RESNET34.units().last().map(|u| u.out_channels), Some(512));
        assert_eq!(RESNET50.units().last().map(|u| u.out_channels), Some(2048));
    }
}
