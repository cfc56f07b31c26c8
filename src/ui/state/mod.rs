//! What the window shows, one part per panel, and the [`AppState`] that holds them. The
//! parts import one another directly; this file only names them.

pub mod app_state;
pub mod camera;
pub mod data;
pub mod doctor;
pub mod guide;
pub mod inspect;
pub mod job;
pub mod model;
pub mod predict;
pub mod results;
pub mod settings;
pub mod shell;
pub mod train;

pub use app_state::AppState;
pub use job::Job;
pub use results::{CELL_THUMBNAILS, MISTAKE_THUMBNAILS};
pub use settings::{DataChoice, Settings, Tab};
pub use train::{Progress, Run, RunStatus};
