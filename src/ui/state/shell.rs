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
    /// Errors shown until dismissed, or until the same kind of work succeeds.
    pub errors: Vec<ErrorLine>,
    pub notices: Vec<String>,
    /// Decoded thumbnails by image (Data, Results and Predict show them).
    pub thumbnails: HashMap<PathBuf, egui::TextureHandle>,
    /// The in-window file browser, while open.
    pub browser: Option<FileBrowser>,
    /// The desktop's file dialog could not open once: the in-window browser is used from then.
    pub native_dialog_failed: bool,
}

/// What an error is about: a later success of the same kind clears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// The bundled network, the device.
    Network,
    /// Editing the folders.
    Data,
    /// The recommendation and the depth probe.
    Guide,
    Training,
    /// Saving, opening and exporting models.
    Model,
}

/// An error in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLine {
    pub topic: Topic,
    pub text: String,
}

impl ShellState {
    pub fn error(&mut self, topic: Topic, text: impl Into<String>) {
        self.errors.push(ErrorLine {
            topic,
            text: text.into(),
        });
    }

    /// Work of `topic` succeeded: its earlier errors no longer hold.
    pub fn succeeded(&mut self, topic: Topic) {
        self.errors.retain(|e| e.topic != topic);
    }
}

impl std::fmt::Debug for ShellState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellState")
            .field("errors", &self.errors)
            .field("notices", &self.notices)
            .finish_non_exhaustive()
    }
}
