//! Channel units: the factor that turns a stream's values into the unit the features are
//! computed in (microvolts). Volts vs microvolts shifts every DE value by ln(1e6) = 13.8, so the
//! unit in the stream description matters as much as the numbers.

/// The unit affectd computes features in, as written in model contracts.
pub const MICROVOLTS: &str = "uV";

/// Factor from `unit` to microvolts, or None if `unit` is not a voltage unit we know. Accepts
/// the spellings seen in LSL stream descriptions and EDF/XDF headers, any case: "microvolts",
/// "uV", "µV" (micro sign or Greek mu), "mV", "V", "nV", "volts", ...
pub fn to_microvolts(unit: &str) -> Option<f64> {
    let u = unit.trim().to_lowercase().replace(['µ', 'μ'], "u");
    let u = u
        .strip_suffix('s')
        .filter(|s| s.ends_with("volt"))
        .unwrap_or(&u);
    Some(match u {
        "uv" | "microvolt" | "micro volt" | "micro-volt" => 1.0,
        "mv" | "millivolt" | "milli volt" | "milli-volt" => 1e3,
        "v" | "volt" => 1e6,
        "nv" | "nanovolt" | "nano volt" | "nano-volt" => 1e-3,
        _ => return None,
    })
}

/// A channel whose unit cannot be converted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("channel {channel} ({label}) has unit {unit:?}, which is not a voltage unit affectd knows (uV, mV, V, nV)")]
pub struct UnitError {
    pub channel: usize,
    pub label: String,
    pub unit: String,
}

/// Per-channel factors to microvolts for a stream whose channels declare `units` (empty, or one
/// per channel; "" = not declared). Undeclared channels use `default_unit`; the returned flag
/// says whether any channel needed it (the caller warns once). Only channels with `used[ch]`
/// must have a known unit; others (unplaced AUX, accelerometer) get factor 1.
pub fn channel_scales(
    units: &[String],
    labels: &[String],
    channels: usize,
    used: &[bool],
    default_unit: &str,
) -> Result<(Vec<f64>, bool), UnitError> {
    let default = to_microvolts(default_unit).ok_or_else(|| UnitError {
        channel: 0,
        label: "stream.default_unit".into(),
        unit: default_unit.into(),
    })?;
    let mut defaulted = false;
    let mut scales = Vec::with_capacity(channels);
    for ch in 0..channels {
        let unit = units.get(ch).map(|u| u.trim()).unwrap_or("");
        let scale = if unit.is_empty() {
            defaulted |= used.get(ch).copied().unwrap_or(true);
            default
        } else {
            match to_microvolts(unit) {
                Some(f) => f,
                None if !used.get(ch).copied().unwrap_or(true) => 1.0,
                None => {
                    return Err(UnitError {
                        channel: ch,
                        label: labels.get(ch).cloned().unwrap_or_default(),
                        unit: unit.into(),
                    })
                }
            }
        };
        scales.push(scale);
    }
    Ok((scales, defaulted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_factors() {
        for (unit, factor) in [
            ("microvolts", 1.0),
            ("Microvolts", 1.0),
            ("uV", 1.0),
            ("UV", 1.0),
            ("µV", 1.0),
            ("μV", 1.0),
            (" uv ", 1.0),
            ("microvolt", 1.0),
            ("mV", 1e3),
            ("millivolts", 1e3),
            ("V", 1e6),
            ("volts", 1e6),
            ("Volt", 1e6),
            ("nV", 1e-3),
            ("nanovolts", 1e-3),
        ] {
            assert_eq!(to_microvolts(unit), Some(factor), "{unit}");
        }
        for unit in ["", "a.u.", "counts", "uVs", "degC", "mvolt"] {
            assert_eq!(to_microvolts(unit), None, "{unit}");
        }
    }

    #[test]
    fn per_channel_scales_default_and_refuse_by_name() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let labels = s(&["Fp1", "Fp2", "ACC"]);
        let used = [true, true, false];
        assert_eq!(
            channel_scales(&s(&["V", "mV", "g"]), &labels, 3, &used, "uV"),
            Ok((vec![1e6, 1e3, 1.0], false))
        );
        assert_eq!(
            channel_scales(&[], &labels, 3, &used, "V"),
            Ok((vec![1e6, 1e6, 1e6], true))
        );
        let e = channel_scales(&s(&["uV", "counts", ""]), &labels, 3, &used, "uV").unwrap_err();
        assert_eq!(
            e.to_string(),
            "channel 1 (Fp2) has unit \"counts\", which is not a voltage unit affectd knows (uV, mV, V, nV)"
        );
    }
}
