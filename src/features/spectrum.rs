//! Band power and differential entropy of one window, the way
//! `scipy.signal.periodogram(x, fs, window='hann', detrend='constant', scaling='density')`
//! computes the PSD: mean removed, periodic Hann window, |rfft|^2 / (fs * sum(w^2)), doubled
//! for bins other than DC and Nyquist. Band power = sum of the PSD over bins with
//! low <= f < high, times df = fs / N.
//!
//! The FFT runs in f32 with a plan and scratch made once. For an even window the N real samples
//! are packed into N/2 complex ones (even samples real, odd samples imaginary), transformed with
//! one N/2-point complex FFT, and only the bins the bands need are unpacked
//! (X_k = E_k + e^(-2 pi i k/N) O_k); an odd window takes a plain N-point complex FFT.
use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

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
    n: usize,
    /// N/2-point FFT of the packed samples (even N) or N-point FFT (odd N).
    fft: Arc<dyn Fft<f32>>,
    packed: bool,
    window: Vec<f32>,
    /// Windowed, mean-removed samples.
    input: Vec<f32>,
    buffer: Vec<Complex32>,
    scratch: Vec<Complex32>,
    /// e^(-2 pi i k / N) for every bin up to the highest band bin (packed only).
    twiddle: Vec<Complex32>,
    bins: [std::ops::Range<usize>; BANDS],
    /// scale * df: PSD density scaling times the bin width.
    scale_df: f64,
}

impl Periodogram {
    pub fn new(n: usize, fs: f64, bands_hz: &[[f64; 2]; BANDS]) -> Self {
        let packed = n % 2 == 0;
        let len = if packed { n / 2 } else { n };
        let fft = FftPlanner::<f32>::new().plan_fft_forward(len);
        // scipy get_window('hann', n) is periodic (fftbins=True).
        let window: Vec<f64> = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect();
        let sum_w2: f64 = window.iter().map(|w| w * w).sum();
        let df = fs / n as f64;
        let bins = band_bins(bands_hz, n, fs);
        let max_bin = bins.iter().map(|b| b.end).max().unwrap_or(0);
        let twiddle = if packed {
            (0..max_bin)
                .map(|k| {
                    let a = -2.0 * std::f64::consts::PI * k as f64 / n as f64;
                    Complex32::new(a.cos() as f32, a.sin() as f32)
                })
                .collect()
        } else {
            Vec::new()
        };
        Self {
            n,
            input: vec![0.0; n],
            buffer: vec![Complex32::default(); len],
            scratch: vec![Complex32::default(); fft.get_inplace_scratch_len()],
            fft,
            packed,
            window: window.iter().map(|&w| w as f32).collect(),
            twiddle,
            bins,
            scale_df: df / (fs * sum_w2),
        }
    }

    /// Band powers of the window made of `older` followed by `newer` (a ring buffer's two
    /// halves; their lengths must add up to the window length).
    pub fn band_powers(&mut self, older: &[f32], newer: &[f32], out: &mut [f64; BANDS]) {
        let n = self.n;
        debug_assert_eq!(older.len() + newer.len(), n);
        let mean = ((sum(older) + sum(newer)) / n as f64) as f32;
        // Separate loops over the two halves (not a chained iterator) so both vectorise.
        let (in_old, in_new) = self.input.split_at_mut(older.len());
        let (w_old, w_new) = self.window.split_at(older.len());
        for (part, (src, w)) in [in_old, in_new]
            .into_iter()
            .zip([(older, w_old), (newer, w_new)])
        {
            for ((dst, &x), &w) in part.iter_mut().zip(src).zip(w) {
                *dst = (x - mean) * w;
            }
        }
        if self.packed {
            for (z, pair) in self.buffer.iter_mut().zip(self.input.chunks_exact(2)) {
                *z = Complex32::new(pair[0], pair[1]);
            }
        } else {
            for (z, &x) in self.buffer.iter_mut().zip(&self.input) {
                *z = Complex32::new(x, 0.0);
            }
        }
        self.fft
            .process_with_scratch(&mut self.buffer, &mut self.scratch);
        let nyquist = (n % 2 == 0).then_some(n / 2);
        for (band, bins) in out.iter_mut().zip(&self.bins) {
            let mut acc = 0.0f64;
            for k in bins.clone() {
                let onesided = if k == 0 || Some(k) == nyquist {
                    1.0
                } else {
                    2.0
                };
                acc += onesided * f64::from(self.bin(k).norm_sqr());
            }
            *band = acc * self.scale_df;
        }
    }

    /// Spectrum value X_k of the windowed real input, k <= N/2.
    fn bin(&self, k: usize) -> Complex32 {
        if !self.packed {
            return self.buffer[k];
        }
        // z = even + i * odd samples; Z_k and conj(Z_{M-k}) separate the two halves' spectra.
        let m = self.buffer.len();
        let zk = self.buffer[k % m];
        let zmk = self.buffer[(m - k) % m].conj();
        let even = (zk + zmk) * 0.5;
        let odd = (zk - zmk) * Complex32::new(0.0, -0.5);
        even + self.twiddle[k] * odd
    }
}

/// Sum in f64 with four independent accumulators (vectorises; plain `sum()` cannot reorder).
fn sum(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let chunks = x.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f64::from(v);
        }
    }
    acc.iter().sum::<f64>() + tail
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

    /// Both FFT paths (packed even N, plain odd N) against a direct O(N^2) DFT periodogram.
    #[test]
    fn matches_direct_dft_for_even_and_odd_windows() {
        use std::f64::consts::PI;
        for (n, fs) in [(200usize, 200.0), (201, 201.0), (128, 128.0), (125, 250.0)] {
            let x: Vec<f32> = (0..n)
                .map(|i| {
                    let t = i as f64 / fs;
                    (3.0 + 10.0 * (2.0 * PI * 9.3 * t).sin()
                        + 4.0 * (2.0 * PI * 41.0 * t).cos()
                        + ((i * 7919 % 97) as f64 - 48.0) * 0.05) as f32
                })
                .collect();
            let xd: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let mean = xd.iter().sum::<f64>() / n as f64;
            let w: Vec<f64> = (0..n)
                .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos())
                .collect();
            let scale = 1.0 / (fs * w.iter().map(|v| v * v).sum::<f64>());
            let df = fs / n as f64;
            let psd = |k: usize| {
                let (mut re, mut im) = (0.0, 0.0);
                for i in 0..n {
                    let a = -2.0 * PI * (k * i) as f64 / n as f64;
                    let v = (xd[i] - mean) * w[i];
                    re += v * a.cos();
                    im += v * a.sin();
                }
                let one = if k == 0 || 2 * k == n { 1.0 } else { 2.0 };
                one * (re * re + im * im) * scale
            };
            let bins = band_bins(&DEFAULT_BANDS_HZ, n, fs);
            let mut pg = Periodogram::new(n, fs, &DEFAULT_BANDS_HZ);
            let mut got = [0.0; BANDS];
            pg.band_powers(&x[..n / 3], &x[n / 3..], &mut got);
            for (b, range) in bins.iter().enumerate() {
                let want: f64 = range.clone().map(psd).sum::<f64>() * df;
                assert!(
                    (got[b] - want).abs() <= 1e-5 * want + 1e-9,
                    "n {n} band {b}: {} vs {want}",
                    got[b]
                );
            }
        }
    }

    #[test]
    fn de_of_unit_power_and_floor() {
        let de = differential_entropy(1.0);
        assert!((de - 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E).ln()).abs() < 1e-15);
        assert!(differential_entropy(0.0).is_finite());
    }
}
