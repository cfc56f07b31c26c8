//! The window, driven through its accessibility tree (egui_kittest; no display needed). One
//! test binary (each links candle and eframe).

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod camera;
mod editing;
mod guide_panel;
mod inspect_panel;
mod window_main;
mod workflows;
