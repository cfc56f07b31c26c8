//! The guide's measurements: where a dataset sits on the 2×2 grid ([`recommend`]), how
//! linear-probe accuracy changes with depth ([`probe`]), and the four presets trained side by
//! side ([`compare`]).

pub mod compare;
pub mod probe;
pub mod recommend;
pub mod seeds;

pub use crate::data::dataset::balanced_subset;
