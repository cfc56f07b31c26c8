//! The loss the classifier trains on, and a batch's loss and hits.

use candle_core::{D, Tensor};

/// Loss value and number of correct predictions of a batch.
pub fn batch_stats(
    logits: &Tensor,
    labels: &Tensor,
    loss: &Tensor,
) -> candle_core::Result<(f64, usize)> {
    let loss = f64::from(loss.to_scalar::<f32>()?);
    let predicted: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    let truth: Vec<u32> = labels.to_vec1()?;
    Ok((
        loss,
        predicted.iter().zip(&truth).filter(|(p, t)| p == t).count(),
    ))
}

/// Cross-entropy over the batch; with class weights, their weighted mean (as PyTorch's
/// `cross_entropy(weight=…)`).
pub fn cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    class_weights: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let Some(weights) = class_weights else {
        return candle_nn::loss::cross_entropy(logits, labels);
    };
    let log_probs = candle_nn::ops::log_softmax(logits, 1)?;
    let picked = log_probs.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
    let w = weights.index_select(labels, 0)?;
    picked.mul(&w)?.sum_all()?.neg()?.div(&w.sum_all()?)
}
