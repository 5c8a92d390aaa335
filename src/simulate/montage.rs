//! Where the simulator's channels sit on the scalp: the daemon's own montage knowledge
//! (features::grid), in the simulator's coordinates.
use crate::features::grid::grid_position;

/// The default montage: SEED's 62 channels in SEED order.
pub const SIM_DEFAULT_CHANNELS: [&str; 62] = crate::features::SEED62;

pub(crate) use crate::features::grid::canonical_label as canonical;

/// Position of a label as (x, y): x from left (-1) to right (+1) ear, y from inion (-1) to nasion
/// (+1), with Cz at the origin; None if the label is of no 10-20 system.
pub(crate) fn position(label: &str) -> Option<(f64, f64)> {
    let (row, col) = grid_position(label)?;
    Some(((col - 4.0) / 4.0, (4.0 - row) / 4.0))
}

#[cfg(test)]
mod tests {
    use super::*;

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
