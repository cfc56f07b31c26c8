//! What the window's frame shows around the panels: the top bar, messages, the file browser,
//! and the thumbnails every panel draws from.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::ui::browser::FileBrowser;

/// The window's frame.
#[derive(Default)]
pub struct ShellState {
    /// Where training runs, in words.
    pub device_label: String,
    /// CPU time of the last frame's layout (eframe's measure), shown in the top bar.
    pub frame_secs: Option<f32>,
    pub errors: Vec<String>,
    pub notices: Vec<String>,
    /// Decoded thumbnails by image (Data, Results and Predict show them).
    pub thumbnails: HashMap<PathBuf, egui::TextureHandle>,
    /// The in-window file browser, while open.
    pub browser: Option<FileBrowser>,
    /// The desktop's file dialog could not open once: the in-window browser is used from then.
    pub native_dialog_failed: bool,
}

impl std::fmt::Debug for ShellState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellState")
            .field("errors", &self.errors)
            .field("notices", &self.notices)
            .finish_non_exhaustive()
    }
}
