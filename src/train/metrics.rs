//! Classification metrics: accuracy, confusion matrix, per-class precision and recall.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One image's prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Misclassified {
    pub path: PathBuf,
    pub true_label: usize,
    pub predicted: usize,
    /// Probability the model gave its (wrong) prediction.
    pub confidence: f32,
}

/// Precision and recall of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    /// Of the images predicted as this class, the share that are (`None` if none predicted).
    pub precision: Option<f64>,
    /// Of the images of this class, the share found (`None` if the class has none).
    pub recall: Option<f64>,
    pub support: usize,
}

/// Results of a model on a set of labelled images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub images: usize,
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    pub classes: Vec<String>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    pub per_class: Vec<ClassMetrics>,
    /// Every image's path, true and predicted label: what a confusion cell holds.
    pub predictions: Vec<(PathBuf, usize, usize)>,
    pub misclassified: Vec<Misclassified>,
}

impl Evaluation {
    /// Builds the evaluation from per-image `(path, true label, class probabilities)`.
    pub fn from_probabilities(classes: &[String], rows: Vec<(PathBuf, usize, Vec<f32>)>) -> Self {
        let n = classes.len();
        let mut confusion = vec![vec![0usize; n]; n];
        let mut loss = 0.0;
        let mut predictions = Vec::with_capacity(rows.len());
        let mut misclassified = Vec::new();
        for (path, truth, probs) in &rows {
            let (predicted, confidence) = probs
                .iter()
                .copied()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                .unwrap_or((0, 0.0));
            loss -= f64::from(probs.get(*truth).copied().unwrap_or(0.0).max(1e-12)).ln();
            if *truth < n && predicted < n {
                confusion[*truth][predicted] += 1;
            }
            predictions.push((path.clone(), *truth, predicted));
            if predicted != *truth {
                misclassified.push(Misclassified {
                    path: path.clone(),
                    true_label: *truth,
                    predicted,
                    confidence,
                });
            }
        }
        // Most confident mistakes first: the most instructive ones.
        misclassified.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        let images = rows.len();
        let correct: usize = (0..n).map(|i| confusion[i][i]).sum();
        let per_class = (0..n)
            .map(|c| {
                let support: usize = confusion[c].iter().sum();
                let predicted: usize = confusion.iter().map(|row| row[c]).sum();
                let hit = confusion[c][c] as f64;
                ClassMetrics {
                    class: classes[c].clone(),
                    precision: (predicted > 0).then(|| hit / predicted as f64),
                    recall: (support > 0).then(|| hit / support as f64),
                    support,
                }
            })
            .collect();
        Self {
            images,
            accuracy: if images == 0 {
                0.0
            } else {
                correct as f64 / images as f64
            },
            loss: if images == 0 {
                0.0
            } else {
                loss / images as f64
            },
            classes: classes.to_vec(),
            confusion,
            per_class,
            predictions,
            misclassified,
        }
    }

    /// A plain-text table for the terminal.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "accuracy {:.1}% on {} images (mean loss {:.3})\n",
            self.accuracy * 100.0,
            self.images,
            self.loss
        );
        let width = self
            .classes
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(5)
            .max(5);
        out += &format!("{:width$}  precision  recall  images\n", "class");
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
        for m in &self.per_class {
            out += &format!(
                "{:width$}  {:>9}  {:>6}  {:>6}\n",
                m.class,
                pct(m.precision),
                pct(m.recall),
                m.support
            );
        }
        out += "confusion matrix (rows: true class, columns: predicted)\n";
        for (name, row) in self.classes.iter().zip(&self.confusion) {
            let cells: Vec<String> = row.iter().map(|c| format!("{c:>5}")).collect();
            out += &format!("{name:width$} {}\n", cells.join(""));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_confusion() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let row = |t: usize, p: [f32; 2]| (PathBuf::from(format!("{t}{}", p[0])), t, p.to_vec());
        let eval = Evaluation::from_probabilities(
            &classes,
            vec![
                row(0, [0.9, 0.1]),
                row(0, [0.2, 0.8]),
                row(1, [0.3, 0.7]),
                row(1, [0.4, 0.6]),
            ],
        );
        assert_eq!(eval.confusion, vec![vec![1, 1], vec![0, 2]]);
        assert_eq!(eval.accuracy, 0.75);
        assert_eq!(eval.per_class[0].precision, Some(1.0));
        assert_eq!(eval.per_class[0].recall, Some(0.5));
        assert!((eval.per_class[1].precision.expect("some") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(eval.misclassified.len(), 1);
        assert_eq!(eval.misclassified[0].predicted, 1);
    }
}
