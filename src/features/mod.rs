//! Band features: causal preprocessing, differential entropy (DE) in five bands over sliding
//! windows, placed on the 9x9 electrode grid. The SAME code serves the live daemon and offline
//! extraction (training, replay parity tests).
pub mod grid;

pub use grid::{GridMap, BANDS, GRID, GRID_CELLS, INPUT_LEN};

/// The five bands of the method, [low, high) Hz.
pub const DEFAULT_BANDS_HZ: [[f64; 2]; BANDS] =
    [[1.0, 4.0], [4.0, 8.0], [8.0, 14.0], [14.0, 31.0], [31.0, 50.0]];
pub const BAND_NAMES: [&str; BANDS] = ["delta", "theta", "alpha", "beta", "gamma"];
