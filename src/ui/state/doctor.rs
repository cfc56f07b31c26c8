//! The Doctor view's state: the report (growing as its maps arrive), the examination's
//! progress, and the cut whose map is shown.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::doctor::{Report, Stage};
use crate::model::Unit;

/// What the Doctor view shows.
#[derive(Debug, Default)]
pub struct DoctorState {
    /// The last report; its maps are added as they arrive.
    pub report: Option<Report>,
    /// The data revision and folder the report describes (an edit since makes it stale).
    pub examined: Option<(PathBuf, u64)>,
    /// (stage, done, total) while an examination runs.
    pub progress: Option<(Stage, usize, usize)>,
    /// Set to stop the examination in flight.
    pub cancel: Option<Arc<AtomicBool>>,
    pub error: Option<String>,
    /// The cut whose map is shown (`None`: the last one made).
    pub cut: Option<Unit>,
    /// Thumbnails already asked for (each is asked once).
    pub thumbnails_asked: HashSet<PathBuf>,
}

impl DoctorState {
    pub fn is_running(&self) -> bool {
        self.progress.is_some()
    }
}
