//! The units of a backbone: the places a network can be cut after and frozen by.
//!
//! Every backbone is a stem, a sequence of blocks and (for some) a head; which blocks exist,
//! their widths and strides are the backbone's to say ([`super::Backbone::units`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A unit of a backbone, named the same way for every network (saved as `stem`, `blockN`,
/// `head`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Unit {
    /// The first convolution(s), before the first block.
    Stem,
    /// Block N, counted from 0 across stages.
    Block(usize),
    /// The last unit before pooling (Lite0: the 1×1 conv to 1280 features).
    Head,
    /// A fully connected layer of the backbone, by its name's number (VGG's fc6, fc7).
    Fc(usize),
}

/// What the block strip, the plans and the probe need to know of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitInfo {
    pub unit: Unit,
    /// Channels of the unit's output (the feature width when the network is cut after it).
    pub out_channels: usize,
    /// Overall stride of the unit's output relative to the input image.
    pub output_stride: usize,
}

impl Unit {
    /// Short label for plots and the block strip.
    pub fn short_label(self) -> String {
        match self {
            Unit::Stem => "stem".into(),
            Unit::Block(b) => format!("b{b}"),
            Unit::Head => "head".into(),
            Unit::Fc(n) => format!("fc{n}"),
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Stem => write!(f, "stem"),
            Unit::Block(b) => write!(f, "block{b}"),
            Unit::Head => write!(f, "head"),
            Unit::Fc(n) => write!(f, "fc{n}"),
        }
    }
}

/// A cut point that is not a unit's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cut point {0:?}: use stem, a block number, head or fcN")]
pub struct UnitParseError(pub String);

impl FromStr for Unit {
    type Err = UnitParseError;

    /// Accepts `stem`, `head`, `blockN`, `block N` or a bare block number `N`. Whether the
    /// backbone has that block is [`super::Backbone::parse_unit`]'s question.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "stem" => return Ok(Unit::Stem),
            "head" | "full" | "all" => return Ok(Unit::Head),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("fc").and_then(|n| n.trim().parse().ok()) {
            return Ok(Unit::Fc(n));
        }
        let number = s.trim_start_matches("block").trim();
        number
            .parse::<usize>()
            .map(Unit::Block)
            .map_err(|_| UnitParseError(s.clone()))
    }
}

impl TryFrom<String> for Unit {
    type Error = UnitParseError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Unit> for String {
    fn from(unit: Unit) -> Self {
        unit.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_trip_through_text() {
        for unit in [
            Unit::Stem,
            Unit::Block(0),
            Unit::Block(15),
            Unit::Head,
            Unit::Fc(6),
        ] {
            assert_eq!(unit.to_string().parse::<Unit>(), Ok(unit));
        }
        assert_eq!("7".parse::<Unit>(), Ok(Unit::Block(7)));
        assert_eq!("block 3".parse::<Unit>(), Ok(Unit::Block(3)));
        assert!("layer".parse::<Unit>().is_err());
    }
}
