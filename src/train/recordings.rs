//! Training data from raw EEG recordings with labelled markers: recorded XDF sessions and
//! simulated sessions. The windows come from the SAME feature extractor the live daemon runs
//! (train/serve parity); a window becomes a sample when it lies entirely inside one labelled
//! stimulus, and the stimulus is its group (windows of one stimulus are never split).
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::features::units::channel_scales;
use crate::features::{extract_with, FeatureConfig, FeatureExtractor, GridMap, WindowOutcome};
use crate::record::labels::{labelled_intervals, marker_events, session_streams, LabelMapping};
use crate::record::xdf::{read_xdf, TimeSeries};
use crate::simulate::{synth_session, SimConfig};
use crate::train::dataset::Dataset;

/// One continuous recording: interleaved samples, their timestamps, and markers on the same
/// clock.
pub struct Recording<'a> {
    pub channels: &'a [String],
    pub channel_types: Option<&'a [String]>,
    /// Channel units as declared (empty = none declared); converted to microvolts as live.
    pub units: &'a [String],
    /// Unit of channels that declare none (`stream.default_unit`).
    pub default_unit: &'a str,
    pub sample_rate_hz: f64,
    pub data: &'a [f32],
    pub timestamps: &'a [f64],
    pub markers: &'a [(f64, String)],
}

/// What was made of one recording.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowCounts {
    pub kept: usize,
    /// Windows across a stimulus boundary or outside any stimulus.
    pub unlabelled: usize,
    /// Windows the extractor dropped (NaN/Inf samples).
    pub dropped: usize,
}

/// The grid map of `rec` and its extractor, set up as the live daemon sets up a stream:
/// montage mapping, the recording's sample rate, channel units converted to microvolts.
fn recording_extractor(
    rec: &Recording,
    features: &FeatureConfig,
) -> anyhow::Result<(Vec<usize>, FeatureExtractor)> {
    let grid = match rec.channel_types {
        Some(types) => GridMap::with_types(rec.channels, types)?,
        None => GridMap::from_labels(rec.channels)?,
    };
    let cfg = FeatureConfig {
        sample_rate_hz: rec.sample_rate_hz,
        ..features.clone()
    };
    let used: Vec<bool> = grid.cell_of_channel.iter().map(Option::is_some).collect();
    let (scales, _) = channel_scales(rec.units, rec.channels, used.len(), &used, rec.default_unit)?;
    let filled = grid.filled_cells();
    Ok((
        filled,
        FeatureExtractor::new(cfg, grid)?.with_channel_scales(scales),
    ))
}

/// Every window of `rec` (labelled or not) through the live feature code, as
/// [`add_recording`] computes them.
pub fn recording_windows(
    rec: &Recording,
    features: &FeatureConfig,
) -> anyhow::Result<Vec<WindowOutcome>> {
    let (_, extractor) = recording_extractor(rec, features)?;
    Ok(extract_with(extractor, rec.data, rec.timestamps)?)
}

/// Labelled windows of `rec`, appended to `out`; groups are numbered from `group_base`.
pub fn add_recording(
    out: &mut Dataset,
    rec: &Recording,
    features: &FeatureConfig,
    mapping: &LabelMapping,
    group_base: i64,
) -> anyhow::Result<WindowCounts> {
    let (filled, extractor) = recording_extractor(rec, features)?;
    if out.is_empty() {
        out.filled_cells = filled;
    } else {
        anyhow::ensure!(
            out.filled_cells == filled,
            "recordings with different electrode layouts cannot be mixed in one dataset"
        );
    }
    let intervals = labelled_intervals(rec.markers, mapping)?;
    let mut counts = WindowCounts::default();
    for outcome in extract_with(extractor, rec.data, rec.timestamps)? {
        let window = match outcome {
            WindowOutcome::Ready(w) => w,
            WindowOutcome::Dropped { .. } => {
                counts.dropped += 1;
                continue;
            }
        };
        let inside = intervals
            .iter()
            .find(|i| window.first_timestamp >= i.start && window.end_timestamp < i.end);
        match inside {
            Some(interval) => {
                out.x.extend_from_slice(&window.grid);
                out.y.push(interval.class);
                out.group.push(group_base + interval.group);
                counts.kept += 1;
            }
            None => counts.unlabelled += 1,
        }
    }
    Ok(counts)
}

pub(crate) fn empty_dataset(description: String) -> Dataset {
    Dataset {
        x: Vec::new(),
        y: Vec::new(),
        group: Vec::new(),
        filled_cells: Vec::new(),
        description,
        sha256: String::new(),
    }
}

/// Group numbers of different recordings never collide: recording r uses r * GROUP_STRIDE + i.
pub(crate) const GROUP_STRIDE: i64 = 1_000_000;

/// A dataset of simulated sessions, one per seed (`seconds` each), through the live feature code.
pub fn simulated_dataset(
    sim: &SimConfig,
    seeds: &[u64],
    seconds: f64,
    features: &FeatureConfig,
) -> anyhow::Result<Dataset> {
    let mut ds = empty_dataset(format!(
        "simulated: {} session(s) x {seconds} s, {} channels at {} Hz, effect strength {}, seeds {seeds:?}",
        seeds.len(),
        sim.channels.len(),
        sim.sample_rate_hz,
        sim.effect_strength
    ));
    let mut hash = Sha256::new();
    for (r, &seed) in seeds.iter().enumerate() {
        let cfg = SimConfig {
            seed,
            ..sim.clone()
        };
        let session = synth_session(&cfg, seconds)?;
        let rec = Recording {
            channels: &session.channels,
            channel_types: None,
            units: &[],
            default_unit: crate::features::units::MICROVOLTS,
            sample_rate_hz: session.sample_rate_hz,
            data: &session.data,
            timestamps: &session.timestamps,
            markers: &session.markers,
        };
        add_recording(
            &mut ds,
            &rec,
            features,
            &LabelMapping::default(),
            r as i64 * GROUP_STRIDE,
        )?;
        hash.update(bytes_of(&session.data));
    }
    ds.sha256 = hex(&hash.finalize());
    Ok(ds)
}

/// The `.xdf` files of `dir` (not recursive), sorted by name.
pub fn session_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading sessions directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "xdf"))
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no .xdf session files in {}",
        dir.display()
    );
    Ok(files)
}

/// A dataset of recorded sessions (XDF files with labelled markers), through the live feature
/// code. Files without labelled stimuli are skipped with a warning; it is an error if none has.
pub fn sessions_dataset(
    files: &[PathBuf],
    features: &FeatureConfig,
    mapping: &LabelMapping,
    default_unit: &str,
) -> anyhow::Result<Dataset> {
    let mut ds = empty_dataset(format!("recorded sessions: {} file(s)", files.len()));
    let mut hash = Sha256::new();
    for (r, path) in files.iter().enumerate() {
        let xdf = read_xdf(path).with_context(|| format!("reading {}", path.display()))?;
        let streams = session_streams(&xdf).with_context(|| format!("{}", path.display()))?;
        let eeg = streams.eeg;
        let channels = eeg.header.channel_labels();
        let units = eeg.header.channel_units();
        // Channel types, as the live daemon read them, when the header lists every channel.
        let types = eeg.header.channel_types();
        let types = (types.len() == channels.len()).then_some(types);
        let data: Vec<f32> = match &eeg.time_series {
            TimeSeries::F32(v) => v.clone(),
            TimeSeries::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TimeSeries::Str(_) => unreachable!("session_streams refuses string EEG"),
        };
        let markers = marker_events(&streams.markers);
        let rec = Recording {
            channels: &channels,
            channel_types: types.as_deref(),
            units: &units,
            default_unit,
            sample_rate_hz: eeg.header.nominal_srate(),
            data: &data,
            timestamps: &eeg.timestamps,
            markers: &markers,
        };
        let counts = add_recording(&mut ds, &rec, features, mapping, r as i64 * GROUP_STRIDE)
            .with_context(|| format!("{}", path.display()))?;
        tracing::info!(
            "{}: {} labelled windows ({} outside stimuli, {} dropped for NaN/Inf)",
            path.display(),
            counts.kept,
            counts.unlabelled,
            counts.dropped
        );
        if counts.kept == 0 {
            tracing::warn!(
                "{}: no labelled stimulus (see docs/sessions.md for the marker convention)",
                path.display()
            );
        }
        hash.update(std::fs::read(path)?);
    }
    anyhow::ensure!(
        !ds.is_empty(),
        "no labelled windows in {} session file(s): record calibration sessions with \
         stimulus_start:<label> / stimulus_end:<label> markers (docs/sessions.md)",
        files.len()
    );
    ds.sha256 = hex(&hash.finalize());
    Ok(ds)
}

fn bytes_of(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_windows_inside_a_stimulus_become_samples() {
        let channels: Vec<String> = ["FP1", "FP2", "T7", "T8"].map(String::from).to_vec();
        let fs = 100.0;
        let n = 2000; // 20 s
        let data: Vec<f32> = (0..n * channels.len())
            .map(|i| ((i as f32) * 0.37).sin())
            .collect();
        let timestamps: Vec<f64> = (0..n).map(|i| 100.0 + i as f64 / fs).collect();
        let markers = vec![
            (102.0, "stimulus_start:positive".to_string()),
            (107.0, "stimulus_end:positive".to_string()),
            (110.0, "stimulus_start:negative".to_string()),
            (118.0, "stimulus_end:negative".to_string()),
        ];
        let features = FeatureConfig {
            sample_rate_hz: fs,
            notch_hz: None,
            bandpass_hz: Some([1.0, 45.0]),
            ..FeatureConfig::default()
        };
        let rec = Recording {
            channels: &channels,
            channel_types: None,
            units: &[],
            default_unit: "uV",
            sample_rate_hz: fs,
            data: &data,
            timestamps: &timestamps,
            markers: &markers,
        };
        let mut ds = empty_dataset("test".into());
        let counts = add_recording(&mut ds, &rec, &features, &LabelMapping::default(), 7).unwrap();
        // 1 s windows every 0.25 s that fit in [102, 107) and [110, 118).
        let fit = |len: f64| ((len - 1.0) / 0.25).floor() as usize + 1;
        assert!(counts.kept.abs_diff(fit(5.0) + fit(8.0)) <= 2, "{counts:?}");
        let positives = ds.y.iter().filter(|&&y| y == 2).count();
        assert!(
            positives.abs_diff(fit(5.0)) <= 1,
            "{positives} positive windows"
        );
        assert!(ds.y.iter().all(|&y| y == 0 || y == 2));
        assert_eq!(ds.x.len(), ds.y.len() * crate::features::INPUT_LEN);
        let groups: std::collections::BTreeSet<i64> = ds.group.iter().copied().collect();
        assert_eq!(groups.len(), 2, "one group per stimulus");
        assert!(groups.iter().all(|g| *g >= 7));
        assert_eq!(counts.kept + counts.unlabelled, (n - 100) / 25 + 1);
    }
}
