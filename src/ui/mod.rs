//! The desktop window (eframe): Data, Guide, Train, Results and Predict panels over the engine.
//!
//! [`StudioApp`] owns [`AppState`] (what panels read) and the runtime parts (background jobs,
//! the training session); panels return [`Command`]s, applied after layout.

pub mod app;
mod apply;
pub mod browser;
mod camera;
mod camera_runtime;
pub mod command;
mod doctor;
mod editing;
pub mod inspect;
pub mod jobs;
pub mod panels;
pub mod runs;
pub mod session;
pub mod state;

pub use app::StudioApp;
pub use command::Command;
pub use state::{AppState, RunStatus, Settings, Tab};

/// The app icon (PNG, 256 px), also installed by the package.
static ICON_PNG: &[u8] = include_bytes!("../../icons/transfer-studio-256.png");

fn icon() -> Option<egui::IconData> {
    let image = image::load_from_memory(ICON_PNG).ok()?.into_rgba8();
    let (width, height) = image.dimensions();
    Some(egui::IconData {
        rgba: image.into_raw(),
        width,
        height,
    })
}

/// Opens the window and runs until it is closed. `data` (or the first folder in `paths`)
/// replaces the remembered training folder; image files in `paths` go to Predict.
pub fn run_window(
    data: Option<std::path::PathBuf>,
    paths: Vec<std::path::PathBuf>,
    device: crate::runtime::DeviceChoice,
    camera: Option<String>,
) -> Result<(), eframe::Error> {
    let (folders, images): (Vec<_>, Vec<_>) = paths.into_iter().partition(|p| p.is_dir());
    let data = data.or_else(|| folders.into_iter().next());
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Transfer Studio")
        .with_app_id("transfer-studio")
        .with_inner_size([1100.0, 780.0])
        .with_min_inner_size([640.0, 480.0])
        .with_drag_and_drop(true);
    if let Some(icon) = icon() {
        viewport = viewport.with_icon(icon);
    }
    let options = eframe::NativeOptions {
        viewport,
        ..Default::default()
    };
    eframe::run_native(
        "transfer-studio",
        options,
        Box::new(move |cc| {
            let mut app = StudioApp::new(&cc.egui_ctx, cc.storage);
            // `--device` other than auto wins over the remembered choice.
            if device != crate::runtime::DeviceChoice::Auto {
                app.apply(Command::SetDevice(device));
            }
            if let Some(dir) = data {
                app.apply(Command::SetTrainFolder(dir));
                app.apply(Command::ShowTab(Tab::Data));
            }
            if !images.is_empty() {
                app.apply(Command::AddImages(images));
            }
            if let Some(source) = camera {
                app.open_camera(&source);
            }
            Ok(Box::new(app))
        }),
    )
}
