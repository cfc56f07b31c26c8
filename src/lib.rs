//! Transfer Studio: transfer learning of image classifiers on a bundled EfficientNet-Lite0.
//!
//! The library holds the engine (weights import, image pipeline, network, training) and the
//! GUI; the `transfer-studio` binary is a thin command-line front over it.

pub mod bench;
pub mod capture;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod doctor;
pub mod export;
pub mod fsutil;
pub mod guide;
pub mod heap;
pub mod inspect;
pub mod model;
pub mod ops;
pub mod predict;
pub mod quiet_panic;
pub mod runtime;
pub mod seed;
pub mod stats;
pub mod train;
pub mod ui;
