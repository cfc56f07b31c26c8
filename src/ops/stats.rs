//! What a train-mode BatchNorm reports of a batch.

/// Batch statistics a train-mode BatchNorm saw, for the running averages.
#[derive(Debug, Clone)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub count: usize,
}
