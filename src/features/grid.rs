//! The 9x9 electrode grid (SEED layout) and the mapping of a headset's channel labels onto it.
//!
//! Mapping rules (see [`GridMap::with_types`]):
//! - Labels are normalised first: trimmed, upper-cased, an `EEG ` prefix and a reference suffix
//!   (`-REF`, `-A1`, `-LE`, ...) removed, old 10-20 names renamed (T3=T7, T4=T8, T5=P7, T6=P8).
//! - A label of the SEED montage goes to its own cell.
//! - Any other 10-20 / 10-10 / 10-5 label (AF7, FT9, TP10, PO9, Iz, Nz, FFC1h, ...) gets an
//!   approximate 2-D scalp position in grid coordinates (row from its prefix, column from its
//!   lateral number) and goes to the cell of the NEAREST SEED electrode, whether or not another
//!   channel already sits there (channels sharing a cell are averaged by the extractor). Ties
//!   go to the candidate in the same row, then to the lower cell index.
//! - Labels that cannot be parsed (A1, M2, ECG, ...) and channels whose LSL type is not EEG are
//!   left unplaced: they still get DE values, but no grid cell.

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

/// The SEED layout, row by row; "" is a cell without an electrode.
const LAYOUT: [[&str; GRID]; GRID] = [
    ["", "", "", "FP1", "FPZ", "FP2", "", "", ""],
    ["", "", "", "AF3", "", "AF4", "", "", ""],
    ["F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8"],
    [
        "FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8",
    ],
    ["T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8"],
    [
        "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8",
    ],
    ["P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8"],
    ["", "PO7", "PO5", "PO3", "POZ", "PO4", "PO6", "PO8", ""],
    ["", "", "CB1", "O1", "OZ", "O2", "CB2", "", ""],
];

/// SEED's 62 channels in the dataset's channel order (= the grid read row by row).
pub const SEED62: [&str; 62] = [
    "FP1", "FPZ", "FP2", "AF3", "AF4", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "FT7",
    "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "CZ", "C2",
    "C4", "C6", "T8", "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8", "P7", "P5",
    "P3", "P1", "PZ", "P2", "P4", "P6", "P8", "PO7", "PO5", "PO3", "POZ", "PO4", "PO6", "PO8",
    "CB1", "O1", "OZ", "O2", "CB2",
];

/// Why a montage cannot be mapped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MontageError {
    #[error("no channel of the stream maps onto the 9x9 electrode grid; labels: {labels:?}")]
    NoChannelOnGrid { labels: Vec<String> },
    #[error("unknown electrode labels (not 10-20/10-10/10-5 or SEED): {labels:?}")]
    UnknownLabels { labels: Vec<String> },
    #[error("{labels} channel labels but {types} channel types")]
    LengthMismatch { labels: usize, types: usize },
}

/// SEED label at a grid cell (row * 9 + col), None for an empty cell or an index off the grid.
pub fn cell_label(cell: usize) -> Option<&'static str> {
    if cell >= GRID_CELLS {
        return None;
    }
    let label = LAYOUT[cell / GRID][cell % GRID];
    (!label.is_empty()).then_some(label)
}

/// The prefrontal region used for Grad-CAM ranking: the whole of grid rows 0 and 1 (cells 0..18),
/// i.e. the Fp and AF rows. Whole rows (including cells without an electrode) because the CAM is
/// upsampled to 9x9 and its mass spreads over empty cells too.
pub fn default_prefrontal_cells() -> Vec<usize> {
    (0..2 * GRID).collect()
}

/// Grid cells of the given labels (same matching as [`GridMap::from_labels`], nearest-cell
/// placement included), sorted and without duplicates. Any unknown label is an error.
pub fn cells_for_labels(labels: &[&str]) -> Result<Vec<usize>, MontageError> {
    let mut cells = Vec::with_capacity(labels.len());
    let mut unknown = Vec::new();
    for label in labels {
        match place(label) {
            Some(cell) => cells.push(cell),
            None => unknown.push(label.to_string()),
        }
    }
    if !unknown.is_empty() {
        return Err(MontageError::UnknownLabels { labels: unknown });
    }
    cells.sort_unstable();
    cells.dedup();
    Ok(cells)
}

impl GridMap {
    /// Map channel labels onto the grid, every channel taken as EEG.
    pub fn from_labels<S: AsRef<str>>(labels: &[S]) -> Result<GridMap, MontageError> {
        let cells: Vec<Option<usize>> = labels.iter().map(|l| place(l.as_ref())).collect();
        Self::checked(labels, cells)
    }

    /// Map channel labels onto the grid using the channel types of the stream description:
    /// only channels of type EEG (case-insensitive; an empty type counts as EEG) are placed;
    /// AUX, ACC, TRIGGER, MISC, EOG, ... channels get no cell.
    pub fn with_types<S: AsRef<str>>(labels: &[S], types: &[S]) -> Result<GridMap, MontageError> {
        if labels.len() != types.len() {
            return Err(MontageError::LengthMismatch {
                labels: labels.len(),
                types: types.len(),
            });
        }
        let cells: Vec<Option<usize>> = labels
            .iter()
            .zip(types)
            .map(|(l, t)| {
                if is_eeg_type(t.as_ref()) {
                    place(l.as_ref())
                } else {
                    None
                }
            })
            .collect();
        Self::checked(labels, cells)
    }

    fn checked<S: AsRef<str>>(
        labels: &[S],
        cell_of_channel: Vec<Option<usize>>,
    ) -> Result<GridMap, MontageError> {
        if cell_of_channel.iter().all(Option::is_none) {
            return Err(MontageError::NoChannelOnGrid {
                labels: labels.iter().map(|l| l.as_ref().to_string()).collect(),
            });
        }
        Ok(GridMap { cell_of_channel })
    }

    /// Number of input channels (placed or not).
    pub fn channel_count(&self) -> usize {
        self.cell_of_channel.len()
    }

    /// Cells holding at least one channel, ascending.
    pub fn filled_cells(&self) -> Vec<usize> {
        let mut cells: Vec<usize> = self.cell_of_channel.iter().flatten().copied().collect();
        cells.sort_unstable();
        cells.dedup();
        cells
    }

    /// Cells of the SEED montage (cells with an electrode in SEED) holding no channel, ascending.
    pub fn empty_cells(&self) -> Vec<usize> {
        let filled = self.filled_cells();
        (0..GRID_CELLS)
            .filter(|c| cell_label(*c).is_some() && filled.binary_search(c).is_err())
            .collect()
    }

    /// One log line: where each label went (exact, renamed or nearest cell), how many of the 62
    /// SEED cells are filled, and which channels stayed unplaced.
    pub fn describe(&self, labels: &[impl AsRef<str>]) -> String {
        let mut exact = Vec::new();
        let mut moved = Vec::new();
        let mut unplaced = Vec::new();
        for (ch, cell) in self.cell_of_channel.iter().enumerate() {
            let label = labels.get(ch).map_or("?", |l| l.as_ref());
            let Some(cell) = *cell else {
                let why = if place(label).is_some() {
                    "not EEG"
                } else {
                    "unknown label"
                };
                unplaced.push(format!("{label} ({why})"));
                continue;
            };
            let target = cell_label(cell).unwrap_or("?");
            if label.trim().eq_ignore_ascii_case(target) {
                exact.push(label.to_string());
            } else {
                moved.push(format!("{label}->{target}"));
            }
        }
        let shared: Vec<String> = self
            .filled_cells()
            .into_iter()
            .filter_map(|c| {
                let n = self
                    .cell_of_channel
                    .iter()
                    .filter(|x| **x == Some(c))
                    .count();
                (n > 1).then(|| format!("{}x{}", cell_label(c).unwrap_or("?"), n))
            })
            .collect();
        format!(
            "montage: {} channels, {} placed on {} of 62 SEED cells ({} empty); exact: [{}]; \
             renamed/nearest: [{}]; averaged cells: [{}]; unplaced: [{}]",
            self.channel_count(),
            self.cell_of_channel.iter().flatten().count(),
            self.filled_cells().len(),
            self.empty_cells().len(),
            exact.join(" "),
            moved.join(" "),
            shared.join(" "),
            unplaced.join(", "),
        )
    }
}

fn is_eeg_type(t: &str) -> bool {
    let t = t.trim();
    t.is_empty() || t.eq_ignore_ascii_case("EEG")
}

/// Upper-case, strip an "EEG " prefix and a reference suffix, rename old 10-20 names.
fn normalise(label: &str) -> String {
    let mut s = label.trim().to_ascii_uppercase();
    if let Some(rest) = s.strip_prefix("EEG") {
        let rest = rest.trim_start_matches([' ', '_', '-', ':']);
        if rest.len() < s.len() - 3 {
            s = rest.to_string();
        }
    }
    if let Some(i) = s.find('-') {
        s.truncate(i);
    }
    s.retain(|c| !c.is_whitespace());
    match s.as_str() {
        "T3" => "T7".into(),
        "T4" => "T8".into(),
        "T5" => "P7".into(),
        "T6" => "P8".into(),
        _ => s,
    }
}

/// Canonical form of a channel label: upper case, "EEG " prefix and reference suffix removed,
/// old 10-20 names (T3, T4, T5, T6) renamed to 10-10 (T7, T8, P7, P8).
pub fn canonical_label(label: &str) -> String {
    normalise(label)
}

/// Scalp position of a label in grid coordinates (row, col): its SEED cell, else its approximate
/// 10-20/10-10/10-5 position (which may lie off the grid); None for labels of no such system.
pub fn grid_position(label: &str) -> Option<(f64, f64)> {
    let label = normalise(label);
    match seed_cell(&label) {
        Some(cell) => Some(((cell / GRID) as f64, (cell % GRID) as f64)),
        None => position(&label),
    }
}

fn seed_cell(label: &str) -> Option<usize> {
    (0..GRID_CELLS).find(|&c| cell_label(c) == Some(label))
}

/// Grid cell of one label: its own SEED cell, else the nearest SEED electrode's cell.
fn place(label: &str) -> Option<usize> {
    let label = normalise(label);
    if let Some(cell) = seed_cell(&label) {
        return Some(cell);
    }
    let (row, col) = position(&label)?;
    (0..GRID_CELLS)
        .filter(|c| cell_label(*c).is_some())
        .min_by(|&a, &b| {
            let key = |c: usize| {
                let dr = (c / GRID) as f64 - row;
                let dc = (c % GRID) as f64 - col;
                // Distances rounded so that geometric ties are exact ties.
                let d2 = ((dr * dr + dc * dc) * 1e6).round() as i64;
                (d2, (dr.abs() * 1e6).round() as i64, c)
            };
            key(a).cmp(&key(b))
        })
}

/// Approximate scalp position of a 10-20/10-10/10-5 label in grid coordinates (row, col), or
/// None for a label that is not of that system.
fn position(label: &str) -> Option<(f64, f64)> {
    // 10-5 half positions ("C1h") sit half a step closer to the midline.
    let (body, half) = match label.strip_suffix('H') {
        Some(b) if b.ends_with(|c: char| c.is_ascii_digit()) => (b, 0.5),
        _ => (label, 0.0),
    };
    let (prefix, lat, left) = if let Some(p) = body.strip_suffix('Z') {
        (p, 0.0, false)
    } else {
        let digits = body.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let n: u32 = digits.parse().ok().filter(|n| *n > 0)?;
        let prefix = &body[..body.len() - digits.len()];
        let lat = f64::from(n.div_ceil(2)) - half;
        (prefix, lat, n % 2 == 1)
    };
    let row = match prefix {
        "N" | "NZ" => -1.0,
        "FP" => 0.0,
        "AFP" => 0.45,
        // SEED's AF row holds only AF3/AF4: put the AF row a little nearer Fp so that AFz goes
        // to FPZ (not an arbitrary one of AF3/AF4) and AF7 to AF3.
        "AF" => 0.9,
        "AFF" => 1.5,
        "F" => 2.0,
        "FFC" | "FFT" => 2.5,
        "FC" | "FT" => 3.0,
        "FCC" | "FTT" => 3.5,
        "C" | "T" => 4.0,
        "CCP" | "TTP" => 4.5,
        "CP" | "TP" => 5.0,
        "CPP" | "TPP" => 5.5,
        "P" => 6.0,
        "PPO" => 6.5,
        "PO" => 7.0,
        "POO" => 7.5,
        "O" => 8.0,
        "OI" => 8.5,
        "I" => 9.0,
        _ => return None,
    };
    // Column offset from the midline, following the SEED grid's spacing in each row: AF3 at
    // offset 1, PO3/PO5/PO7 at 1/2/3, O1 at 1 and CB1 (inferior occipital) at 2.
    let offset = if !(0.7..=8.7).contains(&row) {
        lat
    } else if row < 1.5 {
        lat * 0.5
    } else if row <= 6.5 {
        lat
    } else if row <= 7.5 {
        if lat <= 2.0 {
            lat * 0.5
        } else {
            lat - 1.0
        }
    } else if lat <= 1.0 {
        lat
    } else {
        1.0 + (lat - 1.0) * 0.25
    };
    let col = 4.0 + if left { -offset } else { offset };
    Some((row, col))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_of(map: &GridMap) -> Vec<Option<&'static str>> {
        map.cell_of_channel
            .iter()
            .map(|c| c.and_then(cell_label))
            .collect()
    }

    #[test]
    fn seed62_is_the_grid_read_row_by_row() {
        let from_grid: Vec<&str> = (0..GRID_CELLS).filter_map(cell_label).collect();
        assert_eq!(from_grid, SEED62.to_vec());
        let map = GridMap::from_labels(&SEED62).unwrap();
        assert_eq!(map.filled_cells().len(), 62);
        assert!(map.empty_cells().is_empty());
        for (ch, cell) in map.cell_of_channel.iter().enumerate() {
            assert_eq!(cell_label(cell.unwrap()), Some(SEED62[ch]));
        }
    }

    #[test]
    fn old_names_case_and_decorations() {
        let labels = [
            "t3",
            "T4",
            "T5",
            "t6",
            "Fp1",
            "fpz",
            "EEG Fp2-REF",
            "Cz-A1",
            " o1 ",
        ];
        let map = GridMap::from_labels(&labels).unwrap();
        assert_eq!(
            labels_of(&map),
            ["T7", "T8", "P7", "P8", "FP1", "FPZ", "FP2", "CZ", "O1"].map(Some)
        );
    }

    #[test]
    fn standard_1020_19_channels_all_on_grid() {
        let labels = [
            "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T3", "C3", "Cz", "C4", "T4", "T5", "P3",
            "Pz", "P4", "T6", "O1", "O2",
        ];
        let map = GridMap::from_labels(&labels).unwrap();
        assert_eq!(map.filled_cells().len(), 19);
        assert_eq!(map.empty_cells().len(), 62 - 19);
    }

    #[test]
    fn muse_goes_to_nearest_cells() {
        let map = GridMap::from_labels(&["TP9", "AF7", "AF8", "TP10"]).unwrap();
        assert_eq!(labels_of(&map), ["TP7", "AF3", "AF4", "TP8"].map(Some));
        let line = map.describe(&["TP9", "AF7", "AF8", "TP10"]);
        assert!(line.contains("AF7->AF3"), "{line}");
        assert!(
            line.contains("4 placed on 4 of 62 SEED cells (58 empty)"),
            "{line}"
        );
    }

    #[test]
    fn emotiv_and_openbci_montages() {
        let emotiv = [
            "AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4",
        ];
        let map = GridMap::from_labels(&emotiv).unwrap();
        assert_eq!(labels_of(&map), emotiv.map(Some));
        let openbci16 = [
            "Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2", "F7", "F8", "F3", "F4", "T7", "T8",
            "P3", "P4",
        ];
        assert_eq!(
            GridMap::from_labels(&openbci16)
                .unwrap()
                .filled_cells()
                .len(),
            16
        );
    }

    #[test]
    fn off_grid_10_10_and_10_5_labels() {
        let cases = [
            ("FT9", "FT7"),
            ("FT10", "FT8"),
            ("F9", "F7"),
            ("P10", "P8"),
            ("PO9", "PO7"),
            ("PO10", "PO8"),
            ("Iz", "OZ"),
            ("I1", "O1"),
            ("O9", "CB1"),
            ("O10", "CB2"),
            ("AFz", "FPZ"),
            ("Nz", "FPZ"),
            ("T9", "T7"),
            ("AF1", "AF3"),
            ("C1h", "C1"),
        ];
        for (label, want) in cases {
            let cells = cells_for_labels(&[label]).unwrap();
            assert_eq!(cells.len(), 1);
            assert_eq!(cell_label(cells[0]), Some(want), "{label}");
        }
    }

    #[test]
    fn biosemi64_uses_only_seed_cells_and_averages_shared_ones() {
        let labels = [
            "Fp1", "AF7", "AF3", "F1", "F3", "F5", "F7", "FT7", "FC5", "FC3", "FC1", "C1", "C3",
            "C5", "T7", "TP7", "CP5", "CP3", "CP1", "P1", "P3", "P5", "P7", "P9", "PO7", "PO3",
            "O1", "Iz", "Oz", "POz", "Pz", "CPz", "Fpz", "Fp2", "AF8", "AF4", "AFz", "Fz", "F2",
            "F4", "F6", "F8", "FT8", "FC6", "FC4", "FC2", "FCz", "Cz", "C2", "C4", "C6", "T8",
            "TP8", "CP6", "CP4", "CP2", "P2", "P4", "P6", "P8", "P10", "PO8", "PO4", "O2",
        ];
        let map = GridMap::from_labels(&labels).unwrap();
        assert!(map.cell_of_channel.iter().all(Option::is_some));
        // AF7 shares AF3's cell; PO5/PO6/CB1/CB2 have no channel in this cap.
        let af3 = seed_cell("AF3").unwrap();
        let in_af3 = map
            .cell_of_channel
            .iter()
            .filter(|c| **c == Some(af3))
            .count();
        assert_eq!(in_af3, 2);
        let empty: Vec<&str> = map
            .empty_cells()
            .into_iter()
            .filter_map(cell_label)
            .collect();
        assert_eq!(empty, ["PO5", "PO6", "CB1", "CB2"]);
        assert!(map.describe(&labels).contains("AF3x2"));
    }

    #[test]
    fn unknown_labels_are_unplaced_not_fatal() {
        let labels = ["Cz", "ECG", "A1", "x"];
        let map = GridMap::from_labels(&labels).unwrap();
        assert_eq!(labels_of(&map), [Some("CZ"), None, None, None]);
        let line = map.describe(&labels);
        assert!(line.contains("ECG (unknown label)"), "{line}");
        assert!(matches!(
            cells_for_labels(&["Cz", "ECG"]),
            Err(MontageError::UnknownLabels { labels }) if labels == ["ECG"]
        ));
    }

    #[test]
    fn no_channel_on_grid_is_an_error_listing_labels() {
        let err = GridMap::from_labels(&["AUX1", "ECG"]).unwrap_err();
        assert_eq!(
            err,
            MontageError::NoChannelOnGrid {
                labels: vec!["AUX1".into(), "ECG".into()]
            }
        );
        assert!(err.to_string().contains("AUX1"));
    }

    #[test]
    fn channel_types_exclude_non_eeg() {
        let labels = ["Fp1", "Fp2", "AUX", "Cz"];
        let types = ["EEG", "eeg", "AUX", "EOG"];
        let map = GridMap::with_types(&labels, &types).unwrap();
        assert_eq!(labels_of(&map), [Some("FP1"), Some("FP2"), None, None]);
        assert!(map.describe(&labels).contains("Cz (not EEG)"));
        assert!(matches!(
            GridMap::with_types(&labels, &types[..2]),
            Err(MontageError::LengthMismatch {
                labels: 4,
                types: 2
            })
        ));
        assert!(matches!(
            GridMap::with_types(&["Fp1"], &["ACC"]),
            Err(MontageError::NoChannelOnGrid { .. })
        ));
    }

    #[test]
    fn prefrontal_region_and_label_cells() {
        let pf = default_prefrontal_cells();
        assert_eq!(pf, (0..18).collect::<Vec<_>>());
        let cells = cells_for_labels(&["FP1", "FPZ", "FP2", "AF3", "AF4", "AF7"]).unwrap();
        assert!(cells.iter().all(|c| pf.contains(c)));
        assert_eq!(cells, vec![3, 4, 5, 12, 14]);
        assert_eq!(cell_label(81), None);
        assert_eq!(cell_label(0), None);
    }
}
