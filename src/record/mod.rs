//! Sessions: XDF writing and reading, the recorder thread, replay of recordings over LSL and
//! the marker convention that turns calibration sessions into labelled training data.

pub mod labels;
pub mod markers;
pub mod recorder;
pub mod replay;
pub mod xdf;

pub use recorder::{
    spawn_recorder, OwnedValues, RecordItem, RecorderConfig, RecorderEvent, RecorderSummary,
};
pub use xdf::{
    read_xdf, read_xdf_with, ChannelFormat, ReadOptions, StreamHeader, XdfError, XdfFile, XdfWriter,
};

use std::time::{SystemTime, UNIX_EPOCH};

/// UTC time as `YYYY-MM-DDTHH:MM:SS(.mmm)Z` (ISO 8601), or the compact file-name form
/// `YYYYMMDDTHHMMSS.mmmZ` when `extended` is false.
pub(crate) fn utc_timestamp(t: SystemTime, extended: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let (h, mi, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = (secs / 86400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if extended {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{s:02}.{millis:03}Z")
    } else {
        format!("{year:04}{month:02}{day:02}T{h:02}{mi:02}{s:02}.{millis:03}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_timestamps_are_civil_dates() {
        // 2024-02-29T12:34:56.789Z = 1709210096.789 s since the epoch.
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(utc_timestamp(t, true), "2024-02-29T12:34:56.789Z");
        assert_eq!(utc_timestamp(t, false), "20240229T123456.789Z");
        assert_eq!(utc_timestamp(UNIX_EPOCH, true), "1970-01-01T00:00:00.000Z");
    }
}
