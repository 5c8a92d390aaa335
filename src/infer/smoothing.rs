//! Temporal smoothing of the class probabilities.
//!
//! Emotional state changes over seconds while windows come every hop (0.25 s by default), so the
//! raw per-window probabilities flicker. An exponential moving average with a time constant in
//! seconds (not a per-window factor) keeps its meaning when the hop changes.

/// Exponential smoothing of probability vectors: p <- p + a (x - p), a = 1 - exp(-hop / tau).
#[derive(Debug, Clone)]
pub struct ProbabilitySmoother {
    alpha: f32,
    state: Option<Vec<f32>>,
}

impl ProbabilitySmoother {
    /// `tau_s` = 0 disables smoothing.
    pub fn new(tau_s: f64, hop_s: f64) -> Self {
        let alpha = if tau_s > 0.0 {
            (1.0 - (-hop_s / tau_s).exp()) as f32
        } else {
            1.0
        };
        Self { alpha, state: None }
    }

    /// Changes the time constant, keeping the current state (a live config reload).
    pub fn retune(&mut self, tau_s: f64, hop_s: f64) {
        self.alpha = Self::new(tau_s, hop_s).alpha;
    }

    /// Forgets the history (a new stream, or a gap in the data).
    pub fn reset(&mut self) {
        self.state = None;
    }

    /// Feeds one probability vector and returns the smoothed one.
    pub fn update(&mut self, probabilities: &[f32]) -> &[f32] {
        match &mut self.state {
            Some(state) if state.len() == probabilities.len() && self.alpha < 1.0 => {
                for (s, x) in state.iter_mut().zip(probabilities) {
                    *s += self.alpha * (x - *s);
                }
            }
            _ => self.state = Some(probabilities.to_vec()),
        }
        self.state.as_deref().expect("state was just set")
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_smoothing_passes_values_through() {
        let mut s = ProbabilitySmoother::new(0.0, 0.25);
        s.update(&[0.2, 0.3, 0.5]);
        assert_eq!(s.update(&[0.9, 0.05, 0.05]), &[0.9, 0.05, 0.05]);
    }

    #[test]
    fn step_response_follows_the_time_constant() {
        // After tau seconds a first-order smoother has covered 1 - 1/e of a step.
        let (tau, hop) = (1.0, 0.25);
        let mut s = ProbabilitySmoother::new(tau, hop);
        s.update(&[1.0, 0.0]);
        let mut last = vec![];
        for _ in 0..4 {
            last = s.update(&[0.0, 1.0]).to_vec();
        }
        let expected = 1.0 - (-1.0f32).exp();
        assert!((last[1] - expected).abs() < 1e-5, "{last:?}");
        assert!(
            (last[0] + last[1] - 1.0).abs() < 1e-6,
            "smoothing keeps the sum"
        );
    }

    #[test]
    fn argmax_picks_first_maximum() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
        assert_eq!(argmax(&[0.5, 0.5, 0.0]), 0);
    }
}
