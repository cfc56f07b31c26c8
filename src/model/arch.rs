//! EfficientNet-Lite0's fixed architecture: stages, blocks and the units it can be cut after.
//!
//! Lite variant: ReLU6, no squeeze-excite, stem of 32 channels, head of 1280, no conv biases,
//! TF "SAME" padding, BatchNorm eps 1e-3.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub const STEM_CHANNELS: usize = 32;
pub const HEAD_CHANNELS: usize = 1280;
pub const IMAGENET_CLASSES: usize = 1000;
pub const BN_EPS: f64 = 1e-3;

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

/// A unit of the backbone: what it can be cut after and frozen by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    /// `_conv_stem` + `_bn0`.
    Stem,
    /// `_blocks.N`.
    Block(usize),
    /// `_conv_head` + `_bn1`: the 1×1 conv to 1280 features.
    Head,
}

/// Number of units: stem, 16 blocks, head.
pub const UNIT_COUNT: usize = BLOCK_COUNT + 2;

impl Unit {
    pub fn all() -> impl Iterator<Item = Unit> {
        (0..UNIT_COUNT).map(Unit::from_index)
    }

    /// Position in the backbone, 0 (stem) to 17 (head).
    pub fn index(self) -> usize {
        match self {
            Unit::Stem => 0,
            Unit::Block(b) => b + 1,
            Unit::Head => UNIT_COUNT - 1,
        }
    }

    /// Inverse of [`Unit::index`]; indices past the end mean the head.
    pub fn from_index(index: usize) -> Unit {
        match index {
            0 => Unit::Stem,
            i if i <= BLOCK_COUNT => Unit::Block(i - 1),
            _ => Unit::Head,
        }
    }

    /// Channels of this unit's output (the feature size when the network is cut after it).
    pub fn out_channels(self) -> usize {
        match self {
            Unit::Stem => STEM_CHANNELS,
            Unit::Block(b) => block_specs()[b].out_channels,
            Unit::Head => HEAD_CHANNELS,
        }
    }

    /// Overall stride of this unit's output relative to the input image.
    pub fn output_stride(self) -> usize {
        let specs = block_specs();
        let upto = match self {
            Unit::Stem => 0,
            Unit::Block(b) => b + 1,
            Unit::Head => BLOCK_COUNT,
        };
        2 * specs[..upto].iter().map(|s| s.stride).product::<usize>()
    }

    /// Short label for plots and the block strip.
    pub fn short_label(self) -> String {
        match self {
            Unit::Stem => "stem".into(),
            Unit::Block(b) => format!("b{b}"),
            Unit::Head => "head".into(),
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Stem => write!(f, "stem"),
            Unit::Block(b) => write!(f, "block{b}"),
            Unit::Head => write!(f, "head"),
        }
    }
}

impl FromStr for Unit {
    type Err = String;

    /// Accepts `stem`, `head`, `blockN`, `block N` or a bare block number `N` (0–15).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "stem" => return Ok(Unit::Stem),
            "head" | "full" | "all" => return Ok(Unit::Head),
            _ => {}
        }
        let number = s.trim_start_matches("block").trim();
        match number.parse::<usize>() {
            Ok(b) if b < BLOCK_COUNT => Ok(Unit::Block(b)),
            _ => Err(format!(
                "unknown cut point {s:?}: use stem, 0–{} (a block), or head",
                BLOCK_COUNT - 1
            )),
        }
    }
}

impl Serialize for Unit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Unit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite0_has_sixteen_blocks_with_the_right_widths() {
        let specs = block_specs();
        assert_eq!(specs.len(), BLOCK_COUNT);
        assert_eq!(specs[0].expand_ratio, 1);
        assert_eq!(specs[15].out_channels, 320);
        assert_eq!(specs.iter().filter(|s| s.has_skip()).count(), 9);
        assert_eq!(Unit::Head.output_stride(), 32);
        assert_eq!(Unit::Block(2).output_stride(), 4);
    }

    #[test]
    fn units_round_trip_through_text_and_index() {
        for unit in Unit::all() {
            assert_eq!(unit.to_string().parse::<Unit>(), Ok(unit));
            assert_eq!(Unit::from_index(unit.index()), unit);
        }
        assert_eq!("7".parse::<Unit>(), Ok(Unit::Block(7)));
        assert!("16".parse::<Unit>().is_err());
    }
}
