//! SEED's raw `Preprocessed_EEG` MATLAB files: one file per subject and session holding one
//! array per trial, named `<subject>_eeg<N>` (e.g. `djc_eeg1` .. `djc_eeg15`), each 62 channels
//! (SEED's channel order) x samples at 200 Hz, and a `label.mat` beside them whose `label`
//! array gives trial N's class as -1/0/1 (negative/neutral/positive).
//!
//! Read with the matfile crate (MIT; numeric arrays of MAT-file level 5, which is what MATLAB's
//! `-v6`/`-v7` and scipy.io.savemat write, compressed or not). MATLAB `-v7.3` files are HDF5
//! and are refused with a message saying how to re-save them.
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use matfile::{MatFile, NumericData};

use super::RawRecording;
use crate::features::grid::SEED62;
use crate::record::labels::{END_PREFIX, START_PREFIX};

pub const SEED_SAMPLE_RATE_HZ: f64 = 200.0;

/// How to read a SEED file.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub label_file: PathBuf,
    pub sample_rate_hz: f64,
    pub unit: String,
}

/// SEED's label file name.
pub fn is_label_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.eq_ignore_ascii_case("label.mat"))
}

/// `label.mat` in the directory of `path`.
pub fn label_file_beside(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new(".")).join("label.mat")
}

/// Parses a level-5 MAT-file; v7.3 (HDF5) and non-MAT files get a clear error.
pub fn open_mat(path: &Path) -> anyhow::Result<MatFile> {
    let mut head = [0u8; 116];
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let n = f.read(&mut head)?;
    let text = String::from_utf8_lossy(&head[..n]);
    if text.starts_with("MATLAB 7.3 MAT-file") {
        anyhow::bail!(
            "{} is a MATLAB v7.3 (HDF5) file; affectd reads MAT-file level 5 (MATLAB -v7 or -v6, \
             scipy.io.savemat): re-save it with save(name, '-v7')",
            path.display()
        );
    }
    anyhow::ensure!(
        text.starts_with("MATLAB 5.0 MAT-file"),
        "{} is not a MATLAB level-5 MAT-file (its header does not start with \"MATLAB 5.0 MAT-file\")",
        path.display()
    );
    let file = std::fs::File::open(path)?;
    MatFile::parse(std::io::BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("{}: not a readable MAT-file: {e}", path.display()))
}

/// A real numeric array as f64 values (column-major), with its size.
fn real_values(data: &NumericData) -> Option<Vec<f64>> {
    Some(match data {
        NumericData::Double { real, imag: None } => real.clone(),
        NumericData::Single { real, imag: None } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int8 { real, imag: None } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::UInt8 { real, imag: None } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int16 { real, imag: None } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::UInt16 { real, imag: None } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int32 { real, imag: None } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::UInt32 { real, imag: None } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int64 { real, imag: None } => real.iter().map(|&v| v as f64).collect(),
        NumericData::UInt64 { real, imag: None } => real.iter().map(|&v| v as f64).collect(),
        _ => return None,
    })
}

/// The trial labels of a SEED `label.mat`, as class names.
pub fn seed_labels(path: &Path) -> anyhow::Result<Vec<&'static str>> {
    let mat = open_mat(path)?;
    let array = mat.find_by_name("label").with_context(|| {
        let names: Vec<&str> = mat.arrays().iter().map(|a| a.name()).collect();
        format!(
            "{}: no numeric array 'label' (arrays: {names:?})",
            path.display()
        )
    })?;
    let values = real_values(array.data())
        .with_context(|| format!("{}: 'label' is complex", path.display()))?;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v == -1.0 {
                Ok("negative")
            } else if v == 0.0 {
                Ok("neutral")
            } else if v == 1.0 {
                Ok("positive")
            } else {
                anyhow::bail!(
                    "{}: label of trial {} is {v}; SEED labels are -1 (negative), 0 (neutral), \
                     1 (positive)",
                    path.display(),
                    i + 1
                )
            }
        })
        .collect()
}

/// Trial number of a SEED array name (`djc_eeg7` -> 7).
fn trial_number(name: &str) -> Option<usize> {
    let (_, n) = name.rsplit_once("_eeg")?;
    n.parse().ok().filter(|&n| n >= 1)
}

/// One [`RawRecording`] per trial of a SEED `Preprocessed_EEG` file, in trial order. Each
/// trial is labelled as a whole (markers at its first sample and one period after its last)
/// and is its own group.
pub fn seed_recordings(path: &Path, opts: &SeedOptions) -> anyhow::Result<Vec<RawRecording>> {
    anyhow::ensure!(
        opts.sample_rate_hz.is_finite() && opts.sample_rate_hz > 0.0,
        "--mat-sample-rate must be > 0, got {}",
        opts.sample_rate_hz
    );
    let labels =
        seed_labels(&opts.label_file).with_context(|| format!("labels for {}", path.display()))?;
    let mat = open_mat(path)?;
    let mut trials: Vec<(usize, &matfile::Array)> = mat
        .arrays()
        .iter()
        .filter_map(|a| trial_number(a.name()).map(|n| (n, a)))
        .collect();
    trials.sort_by_key(|(n, _)| *n);
    let names: Vec<&str> = mat.arrays().iter().map(|a| a.name()).collect();
    anyhow::ensure!(
        !trials.is_empty(),
        "no trial arrays named <subject>_eeg<N> (arrays: {names:?})"
    );
    if let Some(w) = trials.windows(2).find(|w| w[0].0 == w[1].0) {
        anyhow::bail!(
            "two arrays for trial {}: {} and {}",
            w[0].0,
            w[0].1.name(),
            w[1].1.name()
        );
    }
    let channels: Vec<String> = SEED62.iter().map(|s| s.to_string()).collect();
    let fs = opts.sample_rate_hz;
    let mut out = Vec::with_capacity(trials.len());
    for (n, array) in trials {
        let label = *labels.get(n - 1).with_context(|| {
            format!(
                "{}: trial {n} has no label ({} holds {})",
                array.name(),
                opts.label_file.display(),
                labels.len()
            )
        })?;
        let size = array.size();
        anyhow::ensure!(
            size.len() == 2 && size[0] == SEED62.len(),
            "{} is {size:?}; SEED trials are 62 channels (SEED's channel order) x samples",
            array.name()
        );
        let values =
            real_values(array.data()).with_context(|| format!("{} is complex", array.name()))?;
        // Column-major [channel, sample] is already interleaved [sample][channel].
        let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let samples = size[1];
        out.push(RawRecording {
            source: format!("{} {}", path.display(), array.name()),
            channels: channels.clone(),
            units: vec![opts.unit.clone(); SEED62.len()],
            sample_rate_hz: fs,
            data,
            timestamps: (0..samples).map(|i| i as f64 / fs).collect(),
            markers: vec![
                (0.0, format!("{START_PREFIX}{label}")),
                (samples as f64 / fs, format!("{END_PREFIX}{label}")),
            ],
            group_offset: n as i64,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_names_and_refused_headers() {
        assert_eq!(trial_number("djc_eeg1"), Some(1));
        assert_eq!(trial_number("ww_eeg15"), Some(15));
        assert_eq!(trial_number("label"), None);
        assert_eq!(trial_number("x_eeg0"), None);
        let dir = tempfile::tempdir().unwrap();
        let v73 = dir.path().join("v73.mat");
        let mut head =
            b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: x HDF5 schema 1.00 .".to_vec();
        head.resize(512, b' ');
        std::fs::write(&v73, &head).unwrap();
        let e = open_mat(&v73).unwrap_err().to_string();
        assert!(e.contains("v7.3 (HDF5)") && e.contains("-v7"), "{e}");
        let csv = dir.path().join("x.mat");
        std::fs::write(&csv, b"1,2,3\n").unwrap();
        let e = open_mat(&csv).unwrap_err().to_string();
        assert!(e.contains("not a MATLAB level-5 MAT-file"), "{e}");
    }
}
