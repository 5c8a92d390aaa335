//! Scalp positions the simulator needs: SEED's 62 channels on the 9x9 layout plus a few common
//! extra labels, as (x, y) with x = -1 (left) .. 1 (right) and y = 1 (Fp row) .. -1 (O row).

/// SEED's 62 channels, in SEED's order (which is also row-by-row grid order).
pub const SIM_DEFAULT_CHANNELS: [&str; 62] = [
    "FP1", "FPZ", "FP2", "AF3", "AF4", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "FT7",
    "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "CZ", "C2",
    "C4", "C6", "T8", "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8", "P7", "P5",
    "P3", "P1", "PZ", "P2", "P4", "P6", "P8", "PO7", "PO5", "PO3", "POZ", "PO4", "PO6", "PO8",
    "CB1", "O1", "OZ", "O2", "CB2",
];

/// SEED's layout, row by row ("-" = empty cell).
const LAYOUT: [[&str; 9]; 9] = [
    ["-", "-", "-", "FP1", "FPZ", "FP2", "-", "-", "-"],
    ["-", "-", "-", "AF3", "-", "AF4", "-", "-", "-"],
    ["F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8"],
    [
        "FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8",
    ],
    ["T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8"],
    [
        "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8",
    ],
    ["P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8"],
    ["-", "PO7", "PO5", "PO3", "POZ", "PO4", "PO6", "PO8", "-"],
    ["-", "-", "CB1", "O1", "OZ", "O2", "CB2", "-", "-"],
];

/// Labels off SEED's grid that headsets commonly carry: (label, row, column) in grid units.
const EXTRA: [(&str, f64, f64); 6] = [
    ("AF7", 1.0, 1.5),
    ("AF8", 1.0, 6.5),
    ("FT9", 3.0, -0.5),
    ("FT10", 3.0, 8.5),
    ("TP9", 5.0, -0.5),
    ("TP10", 5.0, 8.5),
];

/// Canonical (upper-case, modern 10-10) name of a label: T3/T4/T5/T6 are T7/T8/P7/P8.
pub(crate) fn canonical(label: &str) -> String {
    let up = label.trim().to_ascii_uppercase();
    match up.as_str() {
        "T3" => "T7".into(),
        "T4" => "T8".into(),
        "T5" => "P7".into(),
        "T6" => "P8".into(),
        _ => up,
    }
}

/// Position of a label, or None if the simulator does not know it.
pub(crate) fn position(label: &str) -> Option<(f64, f64)> {
    let name = canonical(label);
    let (row, col) = LAYOUT
        .iter()
        .enumerate()
        .find_map(|(r, row)| {
            row.iter()
                .position(|&l| l == name)
                .map(|c| (r as f64, c as f64))
        })
        .or_else(|| EXTRA.iter().find(|e| e.0 == name).map(|e| (e.1, e.2)))?;
    Some(((col - 4.0) / 4.0, (4.0 - row) / 4.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_channels_follow_the_layout_order() {
        let from_layout: Vec<&str> = LAYOUT
            .iter()
            .flatten()
            .copied()
            .filter(|&l| l != "-")
            .collect();
        assert_eq!(from_layout, SIM_DEFAULT_CHANNELS);
    }

    #[test]
    fn positions_and_aliases() {
        assert_eq!(position("Fp1"), Some((-0.25, 1.0)));
        assert_eq!(position("oz"), Some((0.0, -1.0)));
        assert_eq!(position("T3"), position("T7"));
        assert_eq!(position("T8"), Some((1.0, 0.0)));
        assert!(position("TP9").unwrap().0 < -1.0);
        assert_eq!(position("EOG1"), None);
    }
}
