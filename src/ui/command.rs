//! What panels ask for. Panels return these during layout; [`crate::ui::StudioApp::apply`]
//! (in `apply.rs`) carries them out afterwards.

use std::path::PathBuf;

use super::browser::{BrowserEdit, PathRequest};
use super::state::Tab;
use crate::guide::recommend::Thresholds;
use crate::model::Backbone;
use crate::train::{Case, TrainCommand, TrainPlan};

/// Dataset thumbnails decoded per class for the Data panel.
pub const THUMBNAILS_PER_CLASS: usize = 6;

/// What panels ask for; applied after layout.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    ShowTab(Tab),
    /// Asks for a path (the desktop's dialog, or the in-window browser where it cannot open),
    /// then acts on the answer: loads a folder, opens or saves a model, adds images, exports.
    Pick(PathRequest),
    /// The in-window browser: show this folder.
    BrowseTo(PathBuf),
    /// The in-window browser: an edit of its typed path, new name or picked files.
    EditBrowser(BrowserEdit),
    /// The in-window browser: answer with what it shows, or close it.
    ChooseInBrowser,
    CloseBrowser,
    /// Uses this folder as the training data (and the split for validation), and loads it.
    SetTrainFolder(PathBuf),
    ClearValidation,
    LoadDataset,
    SetUsePercent(u32),
    SelectCase(Case),
    /// Switches the network, keeping the selected case (its preset on the new network).
    SetBackbone(Backbone),
    Retrain,
    /// The plan's network loads its pretrained weights from this file (`None`: its default,
    /// bundled or the hub's); remembered with the plan.
    SetWeights(Option<PathBuf>),
    SetPlan(TrainPlan),
    StartTraining,
    Train(TrainCommand),
    ClearRuns,
    /// Saves the trained model into this folder (in the background).
    SaveModelTo(PathBuf),
    /// Opens the saved model in this folder (in the background).
    OpenModelFrom(PathBuf),
    /// Exports the trained model to this file, ONNX or (named `.tflite`) TFLite, in the
    /// background.
    ExportTo(PathBuf),
    /// The number format of later exports.
    SetExportPrecision(crate::export::Precision),
    /// Adds these images to Predict and classifies them.
    AddImages(Vec<PathBuf>),
    ClearImages,
    ShowCell {
        truth: usize,
        predicted: usize,
    },
    /// Results shows this run's results (`None`: the current model's).
    ShowRunResults(Option<usize>),
    DismissError(usize),
    /// Trains the four presets one after the other on the current data.
    CompareAll,
    SetThresholds(Thresholds),
    /// Measures the dataset's place on the grid again.
    Recommend,
    RunProbe,
    /// Shows what augmentation does to a few training images.
    PreviewAugmentation,
    /// Writes out a bundled demo pack (once) and loads it as the training folder.
    OpenDemo(crate::data::demo::DemoPack),
    /// The Inspect view looks at this image.
    InspectImage(PathBuf),
    /// The Inspect view shows this unit on one side (0: left).
    InspectUnit {
        side: usize,
        unit: crate::model::Unit,
    },
    /// A click on the Inspect view's unit strip sets this side from now on.
    InspectSide(usize),
    /// Predict and the mistakes gallery show Grad-CAM overlays (or stop showing them).
    ShowGradCam(bool),
    /// The class name being typed in Data (for a new class or a rename).
    SetClassDraft(String),
    /// Creates a class (its folder).
    NewClass(String),
    RenameClass {
        from: String,
        to: String,
    },
    /// Sends a class's folder, images and all, to the trash.
    DeleteClass(String),
    /// Selects an image in a thumbnail grid (`add`: keep the others selected; a selected one
    /// is deselected).
    SelectImage {
        path: PathBuf,
        add: bool,
    },
    ClearSelection,
    /// Selects these images (a lasso on the doctor's map; `add`: keep the others selected).
    SelectImages {
        paths: Vec<PathBuf>,
        add: bool,
    },
    /// Moves these images to a class (a suspect's suggested class).
    MoveImages {
        images: Vec<PathBuf>,
        class: String,
    },
    /// Sends these images to the trash (copies the doctor found).
    RemoveImages(Vec<PathBuf>),
    /// The dataset doctor.
    Doctor(DoctorCommand),
    /// Moves the selected images to this class (keys 1–9).
    MoveSelected(String),
    /// Sends the selected images to the trash (Delete).
    RemoveSelected,
    /// Undoes the last edit of the folders (Ctrl+Z).
    UndoEdit,
    /// Trains and predicts on this device from now on (not while training).
    SetDevice(crate::runtime::DeviceChoice),
    /// The camera: preview, recording, live prediction.
    Camera(CameraCommand),
}

/// What the camera's controls ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum CameraCommand {
    /// Lists the cameras again (and counts the class folders' images).
    List,
    /// Starts this camera (a device path or a recorded `.mjpeg` file), stopping another.
    Start(String),
    Stop,
    /// Records into this class's folder while held (`None`: the button was let go).
    Record(Option<String>),
    SetRecordFps(u32),
    SetClassDraft(String),
    /// Makes a class folder in the training folder (an empty folder is fine).
    NewClass(String),
    /// Classifies the camera's frames live in Predict.
    Live(bool),
}

/// What the Doctor view asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum DoctorCommand {
    /// Examines the loaded dataset (or shows the cached report of an unchanged folder).
    Examine,
    Stop,
    /// Shows the map at this cut.
    ShowCut(crate::model::Unit),
    /// Decodes thumbnails of these images (those not yet asked for).
    Thumbnails(Vec<PathBuf>),
}
