//! The engine without the window: kernels, networks and their weights, training, the guide's
//! measurements, looking inside, import and export. One test binary (each links candle).

#[path = "../common/mod.rs"]
mod common;

mod backbones;
mod edit;
mod export;
mod guide;
mod import;
mod inspect;
mod ops;
mod pretrained;
mod training;
