//! Band power and differential entropy of one window, the way
//! `scipy.signal.periodogram(x, fs, window='hann', detrend='constant', scaling='density')`
//! computes the PSD: mean removed, periodic Hann window, |rfft|^2 / (fs * sum(w^2)), doubled
//! for bins other than DC and Nyquist. Band power = sum of the PSD over bins with
//! low <= f < high, times df = fs / N. The FFT runs in f32 with a plan and scratch made once.
use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};

use super::BANDS;

/// Band powers below this are floored before the logarithm, so that a flat (e.g. disconnected,
/// all-zero) channel gives a finite DE (about -33.1) instead of -inf.
pub const POWER_FLOOR: f64 = 1e-30;

/// DE of a Gaussian signal with variance `power`: 0.5 * ln(2 pi e P).
pub fn differential_entropy(power: f64) -> f64 {
    0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * power.max(POWER_FLOOR)).ln()
}

/// Bins with low <= f < high for each band, f = k * fs / n as numpy's rfftfreq computes it.
pub fn band_bins(
    bands_hz: &[[f64; 2]; BANDS],
    n: usize,
    fs: f64,
) -> [std::ops::Range<usize>; BANDS] {
    let val = 1.0 / (n as f64 * (1.0 / fs));
    let bins = n / 2 + 1;
    bands_hz.map(|[lo, hi]| {
        let start = (0..bins).find(|&k| k as f64 * val >= lo).unwrap_or(bins);
        let end = (start..bins)
            .find(|&k| k as f64 * val >= hi)
            .unwrap_or(bins);
        start..end
    })
}

/// Reusable periodogram of a fixed window length.
pub struct Periodogram {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    input: Vec<f32>,
    spectrum: Vec<Complex32>,
    scratch: Vec<Complex32>,
    bins: [std::ops::Range<usize>; BANDS],
    /// scale * df: PSD density scaling times the bin width.
    scale_df: f64,
}

impl Periodogram {
    pub fn new(n: usize, fs: f64, bands_hz: &[[f64; 2]; BANDS]) -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
        // scipy get_window('hann', n) is periodic (fftbins=True).
        let window: Vec<f64> = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect();
        let sum_w2: f64 = window.iter().map(|w| w * w).sum();
        let df = fs / n as f64;
        Self {
            input: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            fft,
            window: window.iter().map(|&w| w as f32).collect(),
            bins: band_bins(bands_hz, n, fs),
            scale_df: df / (fs * sum_w2),
        }
    }

    /// Band powers of the window made of `older` followed by `newer` (a ring buffer's two
    /// halves; their lengths must add up to the window length).
    pub fn band_powers(&mut self, older: &[f32], newer: &[f32], out: &mut [f64; BANDS]) {
        let n = self.window.len();
        debug_assert_eq!(older.len() + newer.len(), n);
        let sum: f64 = older.iter().chain(newer).map(|&v| f64::from(v)).sum();
        let mean = (sum / n as f64) as f32;
        let samples = older.iter().chain(newer);
        for ((dst, &x), &w) in self.input.iter_mut().zip(samples).zip(&self.window) {
            *dst = (x - mean) * w;
        }
        self.fft
            .process_with_scratch(&mut self.input, &mut self.spectrum, &mut self.scratch)
            .expect("buffers come from the plan");
        let nyquist = (n % 2 == 0).then_some(n / 2);
        for (band, bins) in out.iter_mut().zip(&self.bins) {
            let mut acc = 0.0f64;
            for k in bins.clone() {
                let onesided = if k == 0 || Some(k) == nyquist {
                    1.0
                } else {
                    2.0
                };
                acc += onesided * f64::from(self.spectrum[k].norm_sqr());
            }
            *band = acc * self.scale_df;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::DEFAULT_BANDS_HZ;

    #[test]
    fn bins_follow_half_open_band_edges() {
        // fs 200, n 200: df = 1 Hz, delta = bins 1, 2, 3.
        let b = band_bins(&DEFAULT_BANDS_HZ, 200, 200.0);
        assert_eq!(b, [1..4, 4..8, 8..14, 14..31, 31..50]);
        // fs 128, n 128 (df 1 Hz): gamma ends at 50 as well.
        assert_eq!(band_bins(&DEFAULT_BANDS_HZ, 128, 128.0)[4], 31..50);
        // n 100 at fs 200: df 2 Hz, delta = 2 Hz only.
        assert_eq!(band_bins(&DEFAULT_BANDS_HZ, 100, 200.0)[0], 1..2);
    }

    #[test]
    fn de_of_unit_power_and_floor() {
        let de = differential_entropy(1.0);
        assert!((de - 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E).ln()).abs() < 1e-15);
        assert!(differential_entropy(0.0).is_finite());
    }
}
