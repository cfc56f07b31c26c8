//! The engine without the window: kernels, networks and their weights, training, the guide's
//! measurements, looking inside, import and export. One test binary (each links candle).

#[path = "../common/mod.rs"]
mod common;

mod backbones;
mod capture;
mod doctor;
mod edit;
mod export;
mod guide;
mod hub_download;
mod import;
mod inspect;
mod ops;
mod ops_norm;
mod pretrained;
mod training;
