//! The 9x9 electrode grid (SEED layout) and the mapping of a headset's channel labels onto it.

/// Number of frequency bands (delta, theta, alpha, beta, gamma).
pub const BANDS: usize = 5;
/// Grid side.
pub const GRID: usize = 9;
/// Cells in the grid.
pub const GRID_CELLS: usize = GRID * GRID;
/// Length of one model input [5, 9, 9] in row-major order (band, row, col).
pub const INPUT_LEN: usize = BANDS * GRID_CELLS;

/// Where each input channel lands on the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct GridMap {
    /// For each input channel, the grid cell index (row * 9 + col) or None (not EEG / unplaceable).
    pub cell_of_channel: Vec<Option<usize>>,
}
