//! Training the linear classifier on cached features, fused by hand.
//!
//! A head-only step is tiny (a 32×1280 by 1280×C product); through candle's autograd it is
//! dozens of small tensor ops, each allocating. Here logits,
//! softmax cross-entropy, its analytic gradient and AdamW run in one pass over plain vectors:
//! the same maths as `candle_nn::loss::cross_entropy` + backward + `candle_nn::AdamW`
//! (checked against them in the tests).

use candle_core::{Device, Tensor};

use crate::model::layers::Classifier;

pub use super::adamw::AdamWConfig;
use super::adamw::Moments;

/// A linear classifier `logits = x·Wᵀ + b` with its optimiser state, on the host.
#[derive(Debug, Clone)]
pub struct LinearHead {
    pub classes: usize,
    pub dim: usize,
    /// `[classes, dim]`, row-major (as `_fc.weight`).
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    config: AdamWConfig,
    weight_moments: Moments,
    bias_moments: Moments,
    steps: i32,
    /// Scratch: gradient of the weight.
    grad_weight: Vec<f32>,
    /// Per-class loss weights (`None`: every image counts alike).
    class_weights: Option<Vec<f32>>,
}

impl LinearHead {
    /// Copies the classifier's current weights; fresh optimiser state.
    pub fn from_classifier(
        classifier: &Classifier,
        config: AdamWConfig,
    ) -> candle_core::Result<Self> {
        let weight2 = classifier.weight.tensor().to_vec2::<f32>()?;
        let classes = weight2.len();
        let dim = weight2.first().map_or(0, Vec::len);
        let weight: Vec<f32> = weight2.into_iter().flatten().collect();
        let bias = classifier.bias.tensor().to_vec1::<f32>()?;
        Ok(Self {
            classes,
            dim,
            weight_moments: Moments::new(weight.len()),
            bias_moments: Moments::new(bias.len()),
            grad_weight: vec![0.0; weight.len()],
            weight,
            bias,
            config,
            steps: 0,
            class_weights: None,
        })
    }

    /// Weights each image's loss by its class's weight (a weighted mean, as PyTorch's
    /// `cross_entropy(weight=…)`).
    pub fn with_class_weights(mut self, weights: Option<Vec<f32>>) -> Self {
        self.class_weights = weights;
        self
    }

    /// A fresh zero-initialised head (the loss is convex: the start does not matter).
    pub fn zeros(classes: usize, dim: usize, config: AdamWConfig) -> Self {
        Self {
            classes,
            dim,
            weight: vec![0.0; classes * dim],
            bias: vec![0.0; classes],
            config,
            weight_moments: Moments::new(classes * dim),
            bias_moments: Moments::new(classes),
            steps: 0,
            grad_weight: vec![0.0; classes * dim],
            class_weights: None,
        }
    }

    /// Fraction of rows whose arg-max logit is the label.
    pub fn accuracy(&self, x: &[f32], labels: &[usize]) -> f64 {
        let logits = self.logits(x);
        let hits = logits
            .chunks_exact(self.classes.max(1))
            .zip(labels)
            .filter(|(row, label)| arg_max(row).0 == **label)
            .count();
        hits as f64 / labels.len().max(1) as f64
    }

    /// Mean cross-entropy of rows against their labels (unweighted; a held-out score).
    pub fn cross_entropy(&self, x: &[f32], labels: &[usize]) -> f64 {
        let logits = self.logits(x);
        let total: f64 = logits
            .chunks_exact(self.classes.max(1))
            .zip(labels)
            .map(|(row, &label)| {
                let (_, max) = arg_max(row);
                let log_sum = row
                    .iter()
                    .map(|&v| f64::from(v - max).exp())
                    .sum::<f64>()
                    .ln();
                log_sum - f64::from(row.get(label).copied().unwrap_or(max) - max)
            })
            .sum();
        total / labels.len().max(1) as f64
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    pub fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    /// Writes the weights back into the classifier's variables.
    pub fn write_to(&self, classifier: &Classifier, device: &Device) -> candle_core::Result<()> {
        let w = Tensor::from_slice(&self.weight, (self.classes, self.dim), device)?;
        let b = Tensor::from_slice(&self.bias, self.classes, device)?;
        if let Some(var) = classifier.weight.var() {
            var.set(&w)?;
        }
        if let Some(var) = classifier.bias.var() {
            var.set(&b)?;
        }
        Ok(())
    }

    /// Logits of `rows` feature vectors (`x` is `[rows, dim]`, row-major).
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let rows = x.len() / self.dim.max(1);
        let mut out = Vec::with_capacity(rows * self.classes);
        for row in x.chunks_exact(self.dim.max(1)).take(rows) {
            for (c, w) in self.weight.chunks_exact(self.dim.max(1)).enumerate() {
                out.push(dot(row, w) + self.bias[c]);
            }
        }
        out
    }

    /// One optimisation step on a batch (`x` already through dropout). Returns the batch's
    /// mean cross-entropy and correct predictions (both from before the update), or `None`
    /// when the loss is not finite (nothing is updated then).
    pub fn step(&mut self, x: &[f32], labels: &[usize]) -> Option<(f64, usize)> {
        let (classes, dim) = (self.classes, self.dim.max(1));
        let weight_of = |label: usize| {
            self.class_weights
                .as_ref()
                .map_or(1.0, |w| w.get(label).copied().unwrap_or(1.0))
        };
        // The loss is the weighted mean over the batch (all weights 1: the plain mean).
        let total_weight: f32 = labels.iter().map(|&l| weight_of(l)).sum();
        let mut probs = self.logits(x);
        let mut loss = 0.0f64;
        let mut hits = 0;
        for (row, &label) in probs.chunks_exact_mut(classes).zip(labels) {
            let (argmax, max) = arg_max(row);
            hits += usize::from(argmax == label);
            let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
            let log_sum = max + sum.ln();
            let weight = weight_of(label);
            loss += f64::from(weight)
                * f64::from(log_sum - row.get(label).copied().unwrap_or(f32::NAN));
            // Gradient of the weighted mean loss w.r.t. the logits:
            // weight · (softmax - one_hot) / total weight.
            for (i, v) in row.iter_mut().enumerate() {
                let p = (*v - log_sum).exp();
                *v = (p - f32::from(u8::from(i == label))) * weight / total_weight;
            }
        }
        let loss = loss / f64::from(total_weight).max(f64::MIN_POSITIVE);
        if !loss.is_finite() {
            return None;
        }
        self.grad_weight.iter_mut().for_each(|g| *g = 0.0);
        let mut grad_bias = vec![0.0f32; classes];
        for (row, grads) in x.chunks_exact(dim).zip(probs.chunks_exact(classes)) {
            for (c, &g) in grads.iter().enumerate() {
                grad_bias[c] += g;
                let gw = &mut self.grad_weight[c * dim..(c + 1) * dim];
                for (acc, &xv) in gw.iter_mut().zip(row) {
                    *acc += g * xv;
                }
            }
        }
        self.steps += 1;
        let config = self.config;
        self.weight_moments.update(
            &mut self.weight,
            &self.grad_weight,
            &config,
            config.weight_decay,
            self.steps,
        );
        self.bias_moments
            .update(&mut self.bias, &grad_bias, &config, 0.0, self.steps);
        Some((loss, hits))
    }
}

/// Dot product with eight independent accumulators (vectorises).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The index and value of a row's largest logit (the first on a tie).
fn arg_max(row: &[f32]) -> (usize, f32) {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HeadInit, NetworkSpec, Unit};
    use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};

    /// candle's AdamW on the classifier's weight (decayed) and bias (not), as the fused head
    /// is configured in these tests (lr 0.05, decay 0.01).
    fn reference_optimisers(w: &candle_core::Var, b: &candle_core::Var) -> (AdamW, AdamW) {
        let params = |decay| ParamsAdamW {
            lr: 0.05,
            weight_decay: decay,
            ..ParamsAdamW::default()
        };
        (
            AdamW::new(vec![w.clone()], params(0.01)).expect("opt"),
            AdamW::new(vec![b.clone()], params(0.0)).expect("opt"),
        )
    }

    fn label_tensor(labels: &[usize], device: &Device) -> Tensor {
        let values: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
        Tensor::from_vec(values, labels.len(), device).expect("labels")
    }

    /// Three steps of the fused head against candle's cross-entropy, autograd and AdamW.
    #[test]
    fn fused_step_matches_candle_autograd_and_adamw() {
        let device = Device::Cpu;
        let spec = NetworkSpec {
            backbone: crate::model::Backbone::default(),
            cut_after: Unit::Block(0),
            num_classes: 5,
            trainable_units: 0,
            bn_momentum: 0.1,
        };
        let network =
            crate::model::Network::build(spec.clone(), None, HeadInit::Random, 7, &device)
                .expect("net");
        let dim = network.spec.feature_dim();
        let rows = 6;
        let x: Vec<f32> = (0..rows * dim)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let labels: Vec<usize> = (0..rows).map(|i| (i * 3) % 5).collect();
        let config = AdamWConfig::new(0.05, 0.01);
        let mut head = LinearHead::from_classifier(&network.classifier, config).expect("head");

        let classifier = &network.classifier;
        let w = classifier.weight.var().expect("var").clone();
        let b = classifier.bias.var().expect("var").clone();
        let (mut opt_w, mut opt_b) = reference_optimisers(&w, &b);
        let xt = Tensor::from_slice(&x, (rows, dim), &device).expect("x");
        let yt = label_tensor(&labels, &device);
        for _ in 0..3 {
            let logits = classifier.forward(&xt).expect("logits");
            let loss = candle_nn::loss::cross_entropy(&logits, &yt).expect("loss");
            let expected_loss = f64::from(loss.to_scalar::<f32>().expect("scalar"));
            let grads = loss.backward().expect("backward");
            opt_w.step(&grads).expect("step");
            opt_b.step(&grads).expect("step");
            let (fused_loss, _) = head.step(&x, &labels).expect("finite");
            assert!(
                (fused_loss - expected_loss).abs() < 1e-4,
                "{fused_loss} vs {expected_loss}"
            );
        }
        let expected_w: Vec<f32> = w
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("w");
        let expected_b: Vec<f32> = b.as_tensor().to_vec1().expect("b");
        let max_diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        assert!(max_diff(&head.weight, &expected_w) < 1e-5);
        assert!(max_diff(&head.bias, &expected_b) < 1e-5);
        // And the weights go back into the network.
        let fresh =
            crate::model::Network::build(spec, None, HeadInit::Random, 8, &device).expect("net");
        head.write_to(&fresh.classifier, &device).expect("write");
        let written: Vec<f32> = fresh
            .classifier
            .weight
            .tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("w");
        assert_eq!(written, head.weight);
    }

    /// With class weights: the fused step against candle's weighted cross-entropy (the
    /// fine-tuning loss) with autograd and AdamW; all-one weights change nothing at all.
    #[test]
    fn weighted_steps_match_candle_and_unit_weights_are_exact() {
        let device = Device::Cpu;
        let (classes, dim, rows) = (3, 4, 7);
        let x: Vec<f32> = (0..rows * dim)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 4.0)
            .collect();
        let labels: Vec<usize> = vec![0, 0, 0, 0, 1, 2, 2];
        let weights = vec![0.5f32, 2.0, 1.25];
        let config = AdamWConfig::new(0.05, 0.01);
        let mut head =
            LinearHead::zeros(classes, dim, config).with_class_weights(Some(weights.clone()));

        let w =
            candle_core::Var::zeros((classes, dim), candle_core::DType::F32, &device).expect("w");
        let b = candle_core::Var::zeros(classes, candle_core::DType::F32, &device).expect("b");
        let (mut opt_w, mut opt_b) = reference_optimisers(&w, &b);
        let xt = Tensor::from_slice(&x, (rows, dim), &device).expect("x");
        let yt = label_tensor(&labels, &device);
        let wt = Tensor::from_slice(&weights, classes, &device).expect("weights");
        for _ in 0..3 {
            let logits = xt
                .matmul(&w.as_tensor().t().expect("t"))
                .and_then(|l| l.broadcast_add(b.as_tensor()))
                .expect("logits");
            let loss = super::super::loss::cross_entropy(&logits, &yt, Some(&wt)).expect("loss");
            let expected = f64::from(loss.to_scalar::<f32>().expect("scalar"));
            let grads = loss.backward().expect("backward");
            opt_w.step(&grads).expect("step");
            opt_b.step(&grads).expect("step");
            let (fused, _) = head.step(&x, &labels).expect("finite");
            assert!((fused - expected).abs() < 1e-5, "{fused} vs {expected}");
        }
        let expected_w: Vec<f32> = w
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("w");
        let diff = head
            .weight
            .iter()
            .zip(&expected_w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{diff}");

        let mut plain = LinearHead::zeros(classes, dim, config);
        let mut ones =
            LinearHead::zeros(classes, dim, config).with_class_weights(Some(vec![1.0; 3]));
        for _ in 0..3 {
            assert_eq!(plain.step(&x, &labels), ones.step(&x, &labels));
        }
        assert_eq!(plain.weight, ones.weight);
    }

    #[test]
    fn a_non_finite_batch_changes_nothing() {
        let mut head = LinearHead {
            classes: 2,
            dim: 2,
            weight: vec![1.0, 0.0, 0.0, 1.0],
            bias: vec![0.0, 0.0],
            config: AdamWConfig::new(0.1, 0.0),
            weight_moments: Moments::new(4),
            bias_moments: Moments::new(2),
            steps: 0,
            grad_weight: vec![0.0; 4],
            class_weights: None,
        };
        assert!(head.step(&[f32::NAN, 1.0], &[0]).is_none());
        assert_eq!(head.weight, vec![1.0, 0.0, 0.0, 1.0]);
        let (loss, hits) = head.step(&[2.0, 0.0], &[0]).expect("finite");
        assert!(loss > 0.0 && hits == 1);
        assert!(head.weight[0] > 1.0);
    }
}
