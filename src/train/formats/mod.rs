//! Raw EEG recordings in common file formats as training data, through the same feature
//! extractor the daemon runs ([`super::recordings::add_recording`], the path XDF sessions take):
//! EDF/EDF+/BDF/BDF+ labelled by annotations ([`edf`]) and SEED's `Preprocessed_EEG` MATLAB
//! files labelled by its `label.mat` ([`mat`]). The label conventions are in docs/datasets.md.
pub mod edf;
pub mod mat;

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::dataset::Dataset;
use super::recordings::{add_recording, empty_dataset, hex, Recording, WindowCounts, GROUP_STRIDE};
use crate::features::FeatureConfig;
use crate::infer::contract::LabelSource;
use crate::record::labels::{LabelMapping, END_PREFIX, START_PREFIX};

/// `affectd train --raw ...` options.
#[derive(clap::Args, Debug, Clone)]
pub struct RawArgs {
    /// Train on raw EEG recordings, through the live feature extractor: EDF/EDF+/BDF/BDF+ files
    /// labelled by annotations, SEED Preprocessed_EEG .mat files (docs/datasets.md). Files or
    /// directories (their .edf, .bdf and .mat files).
    #[arg(long, num_args = 1.., conflicts_with_all = ["data", "synthetic"])]
    pub raw: Vec<PathBuf>,
    /// With --raw: label aliases LABEL=CLASS (e.g. happy=positive); may repeat.
    #[arg(long = "label", requires = "raw")]
    pub labels: Vec<String>,
    /// With --raw: SEED's label file (default: label.mat beside each .mat file).
    #[arg(long, requires = "raw")]
    pub seed_labels: Option<PathBuf>,
    /// Sample rate of .mat recordings (SEED Preprocessed_EEG: 200 Hz).
    #[arg(long, default_value_t = mat::SEED_SAMPLE_RATE_HZ)]
    pub mat_sample_rate: f64,
    /// Unit of .mat recordings (SEED Preprocessed_EEG: microvolts).
    #[arg(long, default_value = crate::features::units::MICROVOLTS)]
    pub mat_unit: String,
}

/// One continuous stretch of a raw recording, owned.
#[derive(Debug, Clone)]
pub struct RawRecording {
    /// File (and trial or segment) it came from, for messages.
    pub source: String,
    pub channels: Vec<String>,
    /// Per-channel unit ("" = not declared: `stream.default_unit`).
    pub units: Vec<String>,
    pub sample_rate_hz: f64,
    /// Interleaved [sample][channel].
    pub data: Vec<f32>,
    pub timestamps: Vec<f64>,
    /// `stimulus_start:<label>` / `stimulus_end:<label>` markers on the timestamps' clock.
    pub markers: Vec<(f64, String)>,
    /// Added to the stimulus index to form the group (stretches of one file never collide).
    pub group_offset: i64,
}

impl RawRecording {
    pub fn as_recording<'a>(&'a self, default_unit: &'a str) -> Recording<'a> {
        Recording {
            channels: &self.channels,
            channel_types: None,
            units: &self.units,
            default_unit,
            sample_rate_hz: self.sample_rate_hz,
            data: &self.data,
            timestamps: &self.timestamps,
            markers: &self.markers,
        }
    }
}

/// Formats by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    Edf,
    SeedMat,
}

impl RawFormat {
    pub fn of(path: &Path) -> Option<RawFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "edf" | "bdf" => Some(RawFormat::Edf),
            "mat" => Some(RawFormat::SeedMat),
            _ => None,
        }
    }
}

/// The files named by `paths`: files as given, directories' .edf/.bdf/.mat files (not
/// recursive, sorted, SEED's label.mat left out).
pub fn raw_files(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, RawFormat)>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading directory {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && RawFormat::of(p).is_some() && !mat::is_label_file(p))
                .collect();
            files.sort();
            anyhow::ensure!(
                !files.is_empty(),
                "no .edf, .bdf or .mat recordings in {}",
                path.display()
            );
            out.extend(files.into_iter().map(|p| {
                let f = RawFormat::of(&p).expect("filtered");
                (p, f)
            }));
        } else {
            let format = RawFormat::of(path).with_context(|| {
                format!(
                    "{}: unknown raw format (affectd reads .edf/.bdf: EDF, EDF+, BDF, BDF+; .mat: \
                     SEED Preprocessed_EEG)",
                    path.display()
                )
            })?;
            anyhow::ensure!(path.is_file(), "{}: no such file", path.display());
            out.push((path.clone(), format));
        }
    }
    Ok(out)
}

/// `LABEL=CLASS` aliases (`--label`, for `train --raw` and `retrain`) on top of the class names.
pub fn label_mapping(aliases: &[String]) -> anyhow::Result<LabelMapping> {
    let mut mapping = LabelMapping::default();
    for alias in aliases {
        let (label, class) = alias
            .split_once('=')
            .with_context(|| format!("--label {alias}: expected LABEL=CLASS"))?;
        let index = crate::CLASSES
            .iter()
            .position(|c| c.eq_ignore_ascii_case(class.trim()))
            .with_context(|| format!("--label {alias}: unknown class {class:?}"))?;
        mapping = mapping.with_alias(label, index as u8)?;
    }
    Ok(mapping)
}

/// The stretches of one file.
pub fn read_raw(
    path: &Path,
    format: RawFormat,
    args: &RawArgs,
    mapping: &LabelMapping,
) -> anyhow::Result<Vec<RawRecording>> {
    let name = path.display().to_string();
    match format {
        RawFormat::Edf => {
            let file = edf::read_edf(path).with_context(|| format!("reading {name}"))?;
            edf::recordings(&file, &name, mapping).with_context(|| name.clone())
        }
        RawFormat::SeedMat => {
            let labels = match &args.seed_labels {
                Some(p) => p.clone(),
                None => mat::label_file_beside(path),
            };
            let opts = mat::SeedOptions {
                label_file: labels,
                sample_rate_hz: args.mat_sample_rate,
                unit: args.mat_unit.clone(),
            };
            mat::seed_recordings(path, &opts).with_context(|| name.clone())
        }
    }
}

/// A training dataset from raw recordings, through the live feature code, and where its labels
/// came from. Files without labelled windows are skipped with a warning; none at all is an error.
pub fn raw_dataset(
    args: &RawArgs,
    features: &FeatureConfig,
    default_unit: &str,
) -> anyhow::Result<(Dataset, LabelSource)> {
    let files = raw_files(&args.raw)?;
    let mapping = label_mapping(&args.labels)?;
    let count = |f: RawFormat| files.iter().filter(|(_, g)| *g == f).count();
    let (edfs, mats) = (count(RawFormat::Edf), count(RawFormat::SeedMat));
    let mut ds = empty_dataset(format!(
        "raw recordings: {edfs} EDF/BDF file(s), {mats} SEED .mat file(s)"
    ));
    let mut hash = Sha256::new();
    for (r, (path, format)) in files.iter().enumerate() {
        let stretches = read_raw(path, *format, args, &mapping)?;
        let mut counts = WindowCounts::default();
        for s in &stretches {
            let base = r as i64 * GROUP_STRIDE + s.group_offset;
            let c = add_recording(
                &mut ds,
                &s.as_recording(default_unit),
                features,
                &mapping,
                base,
            )
            .with_context(|| s.source.clone())?;
            counts.kept += c.kept;
            counts.unlabelled += c.unlabelled;
            counts.dropped += c.dropped;
        }
        tracing::info!(
            "{}: {} labelled windows ({} outside stimuli, {} dropped for NaN/Inf) from {} stretch(es)",
            path.display(),
            counts.kept,
            counts.unlabelled,
            counts.dropped,
            stretches.len()
        );
        if counts.kept == 0 {
            tracing::warn!(
                "{}: no labelled window (docs/datasets.md has the label conventions)",
                path.display()
            );
        }
        std::io::copy(&mut std::fs::File::open(path)?, &mut hash)?;
    }
    anyhow::ensure!(
        !ds.is_empty(),
        "no labelled windows in {} raw file(s): EDF/BDF need stimulus_start:<label> / \
         stimulus_end:<label> annotations or annotations with a duration named by a class; SEED \
         .mat files need their label.mat (docs/datasets.md)",
        files.len()
    );
    ds.sha256 = hex(&hash.finalize());
    let mut kinds = Vec::new();
    let mut parts = Vec::new();
    if edfs > 0 {
        kinds.push("annotations");
        parts.push(format!("EDF+/BDF+ annotations in {edfs} file(s)"));
    }
    if mats > 0 {
        kinds.push("seed-label-file");
        parts.push(match &args.seed_labels {
            Some(p) => format!("{} for {mats} SEED .mat file(s)", p.display()),
            None => format!("label.mat beside each of {mats} SEED .mat file(s)"),
        });
    }
    let labels = LabelSource {
        kind: kinds.join("+"),
        description: parts.join("; "),
    };
    Ok((ds, labels))
}

/// Markers from annotations (docs/datasets.md): `stimulus_start:` / `stimulus_end:` texts as
/// they are; an annotation with a duration whose text is a known label becomes a stimulus over
/// that duration; anything else is ignored (returned, for the log).
pub fn annotation_markers(
    annotations: &[edf::Annotation],
    mapping: &LabelMapping,
) -> (Vec<(f64, String)>, Vec<String>) {
    let mut markers = Vec::new();
    let mut ignored = Vec::new();
    for a in annotations {
        let text = a.text.trim();
        if text.starts_with(START_PREFIX) || text.starts_with(END_PREFIX) {
            markers.push((a.onset_s, text.to_string()));
            continue;
        }
        match a.duration_s {
            Some(d) if d > 0.0 && mapping.class_of(text).is_some() => {
                markers.push((a.onset_s, format!("{START_PREFIX}{text}")));
                markers.push((a.onset_s + d, format!("{END_PREFIX}{text}")));
            }
            _ => {
                if !ignored.iter().any(|t| t == text) {
                    ignored.push(text.to_string());
                }
            }
        }
    }
    (markers, ignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_become_markers_by_prefix_or_by_labelled_duration() {
        let a = |onset_s, duration_s, text: &str| edf::Annotation {
            onset_s,
            duration_s,
            text: text.into(),
        };
        let mapping = label_mapping(&["happy=positive".into()]).unwrap();
        let (markers, ignored) = annotation_markers(
            &[
                a(1.0, None, "stimulus_start:negative"),
                a(4.0, Some(0.0), "stimulus_end:negative"),
                a(5.0, Some(3.0), "Happy"),
                a(9.0, Some(2.0), "eyes closed"),
                a(9.5, None, "neutral"),
                a(12.0, Some(1.0), "eyes closed"),
            ],
            &mapping,
        );
        let m = |t, s: &str| (t, s.to_string());
        assert_eq!(
            markers,
            [
                m(1.0, "stimulus_start:negative"),
                m(4.0, "stimulus_end:negative"),
                m(5.0, "stimulus_start:Happy"),
                m(8.0, "stimulus_end:Happy"),
            ]
        );
        assert_eq!(ignored, ["eyes closed", "neutral"]);
        let e = label_mapping(&["x=calm".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown class \"calm\""), "{e}");
    }

    #[test]
    fn formats_by_extension_and_directories_skip_label_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.EDF", "a.bdf", "1_2.mat", "label.mat", "notes.txt"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let files = raw_files(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<(String, RawFormat)> = files
            .iter()
            .map(|(p, f)| (p.file_name().unwrap().to_string_lossy().into_owned(), *f))
            .collect();
        assert_eq!(
            names,
            [
                ("1_2.mat".into(), RawFormat::SeedMat),
                ("a.bdf".into(), RawFormat::Edf),
                ("b.EDF".into(), RawFormat::Edf),
            ]
        );
        let e = raw_files(&[dir.path().join("notes.txt")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown raw format"), "{e}");
    }
}
