//! Band features: causal preprocessing, differential entropy (DE) in five bands over sliding
//! windows, placed on the 9x9 electrode grid. The SAME code serves the live daemon and offline
//! extraction (training, replay parity tests): [`extract_all`] is the live [`FeatureExtractor`]
//! push loop run over a recording.
//!
//! Method, per channel, streaming and causal:
//! 1. Preprocessing (f64 state, one cascade of second-order sections, direct form II
//!    transposed): optional IIR notch at `notch_hz` with Q = 30 (scipy `iirnotch`), then an
//!    optional order-4 Butterworth band-pass (scipy `butter(4, [lo, hi], 'bandpass',
//!    output='sos')`). Coefficients are designed here (see [`filter`]); the tests compare them,
//!    and the filtered output, with scipy (tests/data/dsp_reference.json,
//!    scripts/dsp_reference.py).
//! 2. Every hop, over the last `window_s` of filtered samples: periodogram with scipy's
//!    `periodogram(x, fs, window='hann', detrend='constant', scaling='density')` — the mean is
//!    removed (the band-pass already removes DC; without it the mean would leak into delta) —
//!    band power P = sum of the PSD over bins with low <= f < high times df, and
//!    DE = 0.5 * ln(2 pi e P) (P floored at [`spectrum::POWER_FLOOR`]). See [`spectrum`].
//! 3. Grid: DE of the channels placed in a cell are averaged; cells without a channel are 0.0.
//!    Channel labels are matched to cells by [`GridMap`] (see [`grid`]).
//!
//! Windows: the first window is complete after `window_samples()` samples, then one every
//! `hop_samples()`; `end_timestamp` is the timestamp of the window's last sample. A NaN/Inf
//! sample value resets that channel's filter, enters the filters as 0.0, and every window that
//! contains the sample comes out as [`WindowOutcome::Dropped`] with [`DropReason::NonFinite`].
//! Layout for speed: samples outer, channels inner, filter state in per-section arrays; the
//! FFT plan, window and scratch are made once; no allocation per sample.
pub mod extractor;
pub mod filter;
pub mod grid;
pub mod spectrum;
pub mod units;

#[cfg(test)]
mod reference_tests;

pub use extractor::{
    extract_all, extract_with, DropReason, FeatureConfig, FeatureError, FeatureExtractor,
    FeatureWindow, WindowOutcome,
};
pub use grid::{
    cell_label, cells_for_labels, default_prefrontal_cells, GridMap, MontageError, BANDS, GRID,
    GRID_CELLS, INPUT_LEN, SEED62,
};

/// The five bands of the method, [low, high) Hz.
pub const DEFAULT_BANDS_HZ: [[f64; 2]; BANDS] = [
    [1.0, 4.0],
    [4.0, 8.0],
    [8.0, 14.0],
    [14.0, 31.0],
    [31.0, 50.0],
];
pub const BAND_NAMES: [&str; BANDS] = ["delta", "theta", "alpha", "beta", "gamma"];
