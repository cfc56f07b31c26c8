//! The Results panel's state: which run it shows and the selected confusion-matrix cell.

/// Thumbnails decoded and shown for one cell of the confusion matrix.
pub const CELL_THUMBNAILS: usize = 60;
/// Misclassified images decoded and shown in Results.
pub const MISTAKE_THUMBNAILS: usize = 24;

/// What Results shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultsState {
    /// The run whose results are shown (`None`: the current model's).
    pub run: Option<usize>,
    /// The confusion-matrix cell (truth, predicted) whose images are shown.
    pub selected_cell: Option<(usize, usize)>,
}
