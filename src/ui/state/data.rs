//! The Data panel's state: the loaded dataset, its loading, and the augmentation preview.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::data::dataset::Dataset;
use crate::data::edit::Journal;
use crate::ui::jobs::PreviewRow;

/// Edits kept for undo, newest last.
pub const UNDO_LEVELS: usize = 50;

/// An edit that can be undone: what it did on disk, and the dataset before it.
#[derive(Debug, Clone)]
pub struct UndoEntry {
    pub journal: Journal,
    pub before: Arc<Dataset>,
}

/// What the Data panel shows.
#[derive(Default)]
pub struct DataState {
    /// The dataset loaded. While it is reloaded for a new plan (another image size or split),
    /// the previous one stays shown.
    pub dataset: Option<Arc<Dataset>>,
    pub error: Option<String>,
    /// Images decoded so far of the dataset being loaded (done, total), while it loads.
    pub loading: Option<(usize, usize)>,
    /// Training was asked for while the dataset was reloaded for the plan: it starts when
    /// the reload ends.
    pub start_when_loaded: bool,
    /// What augmentation does to a few training images (after "Preview augmentation").
    pub augment_preview: Option<Vec<PreviewRow<egui::TextureHandle>>>,
    /// Images selected in the thumbnail grids (keys 1–9 move them, Delete removes them).
    pub selection: BTreeSet<PathBuf>,
    /// The class name being typed (a new class, or a rename).
    pub class_draft: String,
    /// An edit is being made on disk (one at a time).
    pub editing: bool,
    pub undo: Vec<UndoEntry>,
    /// Edits made to the folders since they were loaded: a model trained before one is stale.
    pub revision: u64,
}

impl std::fmt::Debug for DataState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataState")
            .field("dataset", &self.dataset.as_ref().map(|d| &d.root))
            .field("error", &self.error)
            .field("loading", &self.loading)
            .finish_non_exhaustive()
    }
}
