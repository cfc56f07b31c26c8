//! Checkpoint names built by nesting, as candle's `VarBuilder::pp` builds them: a network's
//! code mirrors the checkpoint's tree (`root.pp("layer1").pp(0).pp("conv1")` is
//! `layer1.0.conv1`), so that loading is obvious and no name is spelled twice.

use std::fmt;

/// A dotted path into a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamPath(String);

impl ParamPath {
    /// The empty path (the checkpoint's top).
    pub fn root() -> Self {
        Self::default()
    }

    /// The child `part` of this path.
    pub fn pp(&self, part: impl fmt::Display) -> Self {
        if self.0.is_empty() {
            Self(part.to_string())
        } else {
            Self(format!("{}.{part}", self.0))
        }
    }

    /// The full name of the tensor `leaf` under this path (`weight`, `running_mean`, …).
    pub fn tensor(&self, leaf: &str) -> String {
        self.pp(leaf).0
    }
}

impl fmt::Display for ParamPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::ParamPath;

    #[test]
    fn nested_paths_join_with_dots() {
        let block = ParamPath::root().pp("layer1").pp(0);
        assert_eq!(block.pp("conv1").tensor("weight"), "layer1.0.conv1.weight");
        assert_eq!(ParamPath::root().pp("_conv_stem").to_string(), "_conv_stem");
        assert_eq!(ParamPath::root().tensor("bias"), "bias");
    }
}
