//! Classification metrics from logits: accuracy, macro-F1, confusion matrix, cross-entropy.
use serde::{Deserialize, Serialize};

use super::dataset::NUM_CLASSES;

/// Scores of one model on one labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub samples: usize,
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 scores (a class never predicted nor present counts 0).
    pub macro_f1: f64,
    /// Mean cross-entropy of the softmax of the logits (nats).
    pub loss: f64,
    /// confusion[true][predicted].
    pub confusion: [[usize; NUM_CLASSES]; NUM_CLASSES],
}

/// Index of the largest logit of each sample (first one on ties).
pub fn predictions(logits: &[f32]) -> Vec<u8> {
    logits
        .chunks_exact(NUM_CLASSES)
        .map(|l| {
            let mut best = 0;
            for (c, v) in l.iter().enumerate() {
                if *v > l[best] {
                    best = c;
                }
            }
            best as u8
        })
        .collect()
}

/// Mean softmax cross-entropy, computed in f64 with the log-sum-exp shift.
pub fn cross_entropy(logits: &[f32], y: &[u8]) -> f64 {
    if y.is_empty() {
        return 0.0;
    }
    let total: f64 = logits
        .chunks_exact(NUM_CLASSES)
        .zip(y)
        .map(|(l, &t)| {
            let m = l.iter().fold(f64::MIN, |m, v| m.max(*v as f64));
            let lse = m + l.iter().map(|v| (*v as f64 - m).exp()).sum::<f64>().ln();
            lse - l[t as usize] as f64
        })
        .sum();
    total / y.len() as f64
}

pub fn metrics(logits: &[f32], y: &[u8]) -> Metrics {
    let pred = predictions(logits);
    let mut confusion = [[0usize; NUM_CLASSES]; NUM_CLASSES];
    for (&t, &p) in y.iter().zip(&pred) {
        confusion[t as usize][p as usize] += 1;
    }
    let correct: usize = (0..NUM_CLASSES).map(|c| confusion[c][c]).sum();
    let f1: f64 = (0..NUM_CLASSES)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let actual: usize = confusion[c].iter().sum();
            let predicted: usize = (0..NUM_CLASSES).map(|t| confusion[t][c]).sum();
            let denom = (actual + predicted) as f64;
            if denom == 0.0 {
                0.0
            } else {
                2.0 * tp / denom
            }
        })
        .sum::<f64>()
        / NUM_CLASSES as f64;
    Metrics {
        samples: y.len(),
        accuracy: if y.is_empty() {
            0.0
        } else {
            correct as f64 / y.len() as f64
        },
        macro_f1: f1,
        loss: cross_entropy(logits, y),
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_hand_computed_values() {
        // true: 0 0 1 1 2 2 ; predicted: 0 1 1 1 2 0
        let logits = [
            3.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 1.0, 0.0, 5.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0,
            0.0,
        ];
        let y = [0, 0, 1, 1, 2, 2];
        let m = metrics(&logits, &y);
        assert_eq!(m.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 1]]);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // F1: class 0: 2*1/(2+2) = 0.5; class 1: 2*2/(2+3) = 0.8; class 2: 2*1/(2+1) = 2/3.
        assert!((m.macro_f1 - (0.5 + 0.8 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // Sample 0: logits (3,0,0), true 0: ln(e^3 + 2) - 3.
        let first = ((3f64).exp() + 2.0).ln() - 3.0;
        assert!((cross_entropy(&logits[..3], &y[..1]) - first).abs() < 1e-12);
    }

    #[test]
    fn ties_predict_the_first_class() {
        assert_eq!(predictions(&[1.0, 1.0, 0.0, 0.0, 2.0, 2.0]), vec![0, 1]);
    }
}
