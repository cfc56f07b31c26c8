//! What persists between launches ([`Settings`]) and the window's sections.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::guide::recommend::Thresholds;
use crate::train::{Case, TrainPlan};

/// The window's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tab {
    Data,
    Guide,
    Train,
    Results,
    Predict,
    Inspect,
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Data,
        Tab::Guide,
        Tab::Train,
        Tab::Results,
        Tab::Predict,
        Tab::Inspect,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Data => "Data",
            Tab::Guide => "Guide",
            Tab::Train => "Train",
            Tab::Results => "Results",
            Tab::Predict => "Predict",
            Tab::Inspect => "Inspect",
        }
    }
}

/// What persists between launches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub train_dir: Option<PathBuf>,
    pub val_dir: Option<PathBuf>,
    pub plan: TrainPlan,
    /// Share of the training images used (the size axis, for demonstrations), in percent.
    pub use_percent: u32,
    pub tab: Tab,
    /// The grid's size and similarity thresholds.
    pub thresholds: Thresholds,
    /// Predict and the mistakes gallery show where the model looked (Grad-CAM).
    pub show_grad_cam: bool,
    /// Where training and inference run.
    pub device: crate::runtime::DeviceChoice,
    /// The camera last chosen (a device path, or a recorded `.mjpeg` file).
    pub camera: Option<String>,
    /// Frames per second saved while recording.
    pub record_fps: u32,
    /// The number format of ONNX exports.
    pub export_precision: crate::export::Precision,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            train_dir: None,
            val_dir: None,
            plan: Case::SmallSimilar.plan(),
            use_percent: 100,
            tab: Tab::Guide,
            thresholds: Thresholds::default(),
            show_grad_cam: false,
            device: crate::runtime::DeviceChoice::Auto,
            camera: None,
            record_fps: crate::capture::session::DEFAULT_RECORD_FPS,
            export_precision: crate::export::Precision::F32,
        }
    }
}

/// Which data a model was trained on (to tell when the window's choice has moved on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChoice {
    pub train_dir: Option<PathBuf>,
    pub val_dir: Option<PathBuf>,
    pub use_percent: u32,
    /// Edits made in the window to the folders since they were loaded.
    pub revision: u64,
}
