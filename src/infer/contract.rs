//! The model's contract, stored as JSON under the ONNX metadata_props key [`CONTRACT_KEY`].
//!
//! Everything the daemon must agree on with the model travels inside the model file: input name
//! and shape, the classes, the complete feature specification (extractor and its version, DE
//! definition, window, hop, bands, notch, band-pass, feature smoothing, input unit), the grid
//! cells that held electrodes in training, normalisation statistics, where the labels came from,
//! how it was quantised and calibrated, and where it came from.
//!
//! Version 2 is written; version 1 (no feature spec beyond window/hop/bands, fixed classes) is
//! still read, see [`ModelContract::from_json`].
use serde::{Deserialize, Serialize};

use crate::features::{FeatureConfig, BANDS, GRID, GRID_CELLS, INPUT_LEN};

/// metadata_props key holding the JSON-serialised [`ModelContract`].
pub const CONTRACT_KEY: &str = "affectd.contract";
/// Version of the contract schema this build writes (it reads 1 and 2).
pub const CONTRACT_VERSION: u32 = 2;
/// The extractor of this build (`features` module) and the version of its numerics: bumped
/// whenever a change makes the same EEG give other feature values.
pub const EXTRACTOR: &str = "affectd-de";
pub const EXTRACTOR_VERSION: u32 = 1;
/// What the DE values are, in words, as written into contracts by this build.
pub const DE_DEFINITION: &str = "0.5*ln(2*pi*e*P), P = band power of the Hann-windowed, \
    mean-removed periodogram (one-sided density times bin width), EEG in microvolts";
/// Most classes a model may have (class names become metric labels: the set stays small).
pub const MAX_CLASSES: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelContract {
    pub contract_version: u32,
    /// ONNX graph input name; shape [batch, 5, 9, 9] float32 (batch dynamic).
    pub input_name: String,
    pub input_shape: [i64; 4],
    /// ONNX graph output name: logits [batch, classes].
    pub output_name: String,
    /// Class names in the order of the model's outputs (2..=16; letters, digits, `_ - .`).
    pub classes: Vec<String>,
    /// Where the training labels came from.
    pub labels: LabelSource,
    /// How the input features are computed.
    pub features: FeatureSpec,
    /// Grid cells (row * 9 + col) that held an electrode in the training data, ascending. Empty
    /// in contracts read from version 1 (unknown).
    pub trained_cells: Vec<usize>,
    /// Per-feature normalisation, INPUT_LEN values each in [band, row, col] order:
    /// x_norm = (de - mean) / std; cells with no electrode are fed 0 after normalisation.
    pub norm_mean: Vec<f32>,
    pub norm_std: Vec<f32>,
    pub quantization: Quantization,
    pub calibration: Calibration,
    pub provenance: Provenance,
}

/// The feature specification a model was trained on. A model is served only where the daemon
/// computes exactly these features (see [`ModelContract::check_serves`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// [`EXTRACTOR`] for features computed by affectd; anything else names other code (e.g.
    /// "seed-de-lds"): such a model is for offline study and is not served by default.
    pub extractor: String,
    pub extractor_version: u32,
    pub de_definition: String,
    pub window_s: f64,
    pub hop_s: f64,
    /// Band edges in Hz, [low, high), delta..gamma.
    pub bands_hz: Vec<[f64; 2]>,
    /// IIR notch (Q = 30) frequency; None = no notch.
    pub notch_hz: Option<f64>,
    /// Order-4 Butterworth band-pass edges; None = no band-pass.
    pub bandpass_hz: Option<[f64; 2]>,
    /// Causal smoothing of the DE features before the model.
    pub smoothing: FeatureSmoothing,
    /// Unit of the EEG the features were computed from ([`crate::features::units::MICROVOLTS`]).
    pub input_unit: String,
    /// Lowest sample rate (Hz) the features are valid for; the top band needs rate > 2 * edge.
    pub min_sample_rate_hz: f64,
}

/// Causal smoothing of the features, applied in time order within a trial or recording when
/// building training data and continuously when serving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureSmoothing {
    None,
}

/// Where the class labels of the training data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSource {
    /// "markers" (stimulus markers in recordings), "npz" (a label array), "simulator",
    /// "annotations" (EDF+/BDF+), "seed-label-file", ...
    pub kind: String,
    /// Free text: which files, which marker names mapped to which class.
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    /// "int8-qdq" or "fp32".
    pub format: String,
    pub weight_bits: u32,
    pub activation_bits: u32,
    /// Range estimator used for activations: "minmax", "mse", "percentile".
    pub range_estimator: String,
    /// Whether the quantised model was fine-tuned (QAT) or only calibrated (PTQ).
    pub qat: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// "prefrontal-gradcam", "random", "all".
    pub method: String,
    pub k: usize,
    /// "most-prefrontal" or "least-prefrontal" (the published code's accidental choice).
    pub ranking: String,
    /// Grid cells (row * 9 + col) that count as prefrontal.
    pub region_cells: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub affectd_version: String,
    /// sha256 of the training data as read (hex).
    pub dataset_sha256: String,
    pub dataset_description: String,
    pub train_samples: usize,
    pub seed: u64,
    /// The command line that produced the model.
    pub command: String,
    /// RFC 3339 UTC time of export.
    pub created: String,
    /// Test metrics at export (accuracy, macro-F1) of the exported int8 model.
    pub test_accuracy: f64,
    pub test_macro_f1: f64,
}

/// Why a model's contract cannot be served.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ContractError {
    #[error("model has no '{CONTRACT_KEY}' metadata entry: not an affectd model")]
    Missing,
    #[error("model contract is not valid JSON: {0}")]
    Malformed(String),
    #[error(
        "model contract version {found} is not supported (this build reads 1 and {CONTRACT_VERSION})"
    )]
    Version { found: u32 },
    #[error("model contract field '{field}' is invalid: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("model contract field '{field}' is {model}, but the daemon computes {daemon}")]
    Mismatch {
        field: &'static str,
        model: String,
        daemon: String,
    },
    #[error(
        "the model was trained on features from other code (features.extractor = {extractor:?}, \
         not {EXTRACTOR:?}): live features would not match them. Train on raw recordings through \
         affectd's own extractor (docs/datasets.md), or set model.allow_foreign_features = true \
         to serve it anyway, knowing its outputs may be meaningless"
    )]
    ForeignFeatures { extractor: String },
}

impl ContractError {
    /// A short, fixed name of the error's kind (for metric labels).
    pub fn reason(&self) -> &'static str {
        match self {
            ContractError::Missing => "no_contract",
            ContractError::Malformed(_) => "malformed_contract",
            ContractError::Version { .. } => "contract_version",
            ContractError::Invalid { .. } => "invalid_contract",
            ContractError::Mismatch { .. } => "feature_mismatch",
            ContractError::ForeignFeatures { .. } => "foreign_features",
        }
    }
}

impl FeatureSpec {
    /// The features this build computes with `cfg` (no smoothing, microvolts).
    pub fn of(cfg: &FeatureConfig) -> FeatureSpec {
        FeatureSpec {
            extractor: EXTRACTOR.into(),
            extractor_version: EXTRACTOR_VERSION,
            de_definition: DE_DEFINITION.into(),
            window_s: cfg.window_s,
            hop_s: cfg.hop_s,
            bands_hz: cfg.bands_hz.to_vec(),
            notch_hz: cfg.notch_hz,
            bandpass_hz: cfg.bandpass_hz,
            smoothing: FeatureSmoothing::None,
            input_unit: crate::features::units::MICROVOLTS.into(),
            min_sample_rate_hz: 2.0 * cfg.bands_hz[BANDS - 1][1],
        }
    }

    pub fn is_foreign(&self) -> bool {
        self.extractor != EXTRACTOR
    }
}

/// The contract as version 1 wrote it (read only).
#[derive(Deserialize)]
struct ContractV1 {
    input_name: String,
    input_shape: [i64; 4],
    output_name: String,
    classes: Vec<String>,
    bands_hz: Vec<[f64; 2]>,
    window_s: f64,
    hop_s: f64,
    min_sample_rate_hz: f64,
    norm_mean: Vec<f32>,
    norm_std: Vec<f32>,
    quantization: Quantization,
    calibration: Calibration,
    provenance: Provenance,
}

impl ContractV1 {
    /// Version 1 did not record filters or units; every affectd that wrote v1 used its
    /// `[features]` config (default notch 50 Hz, band-pass 1-50 Hz) on microvolts. The filters
    /// are taken as unknown (None below) and [`ModelContract::legacy_v1`] makes the check skip
    /// them with a warning.
    fn upgrade(self) -> ModelContract {
        ModelContract {
            contract_version: 1,
            input_name: self.input_name,
            input_shape: self.input_shape,
            output_name: self.output_name,
            classes: self.classes,
            labels: LabelSource {
                kind: "unknown".into(),
                description: "contract version 1 did not record the label source".into(),
            },
            features: FeatureSpec {
                extractor: EXTRACTOR.into(),
                extractor_version: 1,
                de_definition: DE_DEFINITION.into(),
                window_s: self.window_s,
                hop_s: self.hop_s,
                bands_hz: self.bands_hz,
                notch_hz: None,
                bandpass_hz: None,
                smoothing: FeatureSmoothing::None,
                input_unit: crate::features::units::MICROVOLTS.into(),
                min_sample_rate_hz: self.min_sample_rate_hz,
            },
            trained_cells: Vec::new(),
            norm_mean: self.norm_mean,
            norm_std: self.norm_std,
            quantization: self.quantization,
            calibration: self.calibration,
            provenance: self.provenance,
        }
    }
}

impl ModelContract {
    /// A contract for `classes` on `features` with this build's graph names ("de_grid" ->
    /// "logits"), identity normalisation and empty provenance; callers fill in the rest.
    pub fn new(classes: Vec<String>, features: FeatureSpec) -> ModelContract {
        ModelContract {
            contract_version: CONTRACT_VERSION,
            input_name: "de_grid".into(),
            input_shape: [-1, BANDS as i64, GRID as i64, GRID as i64],
            output_name: "logits".into(),
            classes,
            labels: LabelSource {
                kind: "unknown".into(),
                description: String::new(),
            },
            features,
            trained_cells: Vec::new(),
            norm_mean: vec![0.0; INPUT_LEN],
            norm_std: vec![1.0; INPUT_LEN],
            quantization: Quantization {
                format: "int8-qdq".into(),
                weight_bits: 8,
                activation_bits: 8,
                range_estimator: "minmax".into(),
                qat: false,
            },
            calibration: Calibration {
                method: "all".into(),
                k: 0,
                ranking: String::new(),
                region_cells: Vec::new(),
            },
            provenance: Provenance {
                affectd_version: env!("CARGO_PKG_VERSION").into(),
                dataset_sha256: String::new(),
                dataset_description: String::new(),
                train_samples: 0,
                seed: 0,
                command: String::new(),
                created: String::new(),
                test_accuracy: 0.0,
                test_macro_f1: 0.0,
            },
        }
    }

    /// Parses and validates a contract of version 1 or 2 (version 1 is upgraded in memory and
    /// keeps `contract_version: 1`).
    pub fn from_json(text: &str) -> Result<Self, ContractError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ContractError::Malformed(e.to_string()))?;
        let version = value
            .get("contract_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| ContractError::Malformed("no numeric contract_version".into()))?;
        let malformed = |e: serde_json::Error| ContractError::Malformed(e.to_string());
        let contract = match version {
            1 => serde_json::from_value::<ContractV1>(value)
                .map_err(malformed)?
                .upgrade(),
            2 => serde_json::from_value::<ModelContract>(value).map_err(malformed)?,
            found => {
                return Err(ContractError::Version {
                    found: found.min(u32::MAX as u64) as u32,
                })
            }
        };
        contract.validate()?;
        Ok(contract)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("contract serialises")
    }

    /// Read from a version 1 contract: filters and unit were not recorded.
    pub fn legacy_v1(&self) -> bool {
        self.contract_version == 1
    }

    /// Checks internal consistency (lengths, shapes, names, finite statistics).
    pub fn validate(&self) -> Result<(), ContractError> {
        let invalid = |field, why: String| Err(ContractError::Invalid { field, why });
        if !(self.contract_version == 1 || self.contract_version == CONTRACT_VERSION) {
            return Err(ContractError::Version {
                found: self.contract_version,
            });
        }
        if self.input_shape[1..] != [BANDS as i64, GRID as i64, GRID as i64] {
            return invalid(
                "input_shape",
                format!("{:?}, expected [N, 5, 9, 9]", self.input_shape),
            );
        }
        let f = &self.features;
        if f.bands_hz.len() != BANDS {
            return invalid(
                "features.bands_hz",
                format!("{} bands, expected {BANDS}", f.bands_hz.len()),
            );
        }
        if !(2..=MAX_CLASSES).contains(&self.classes.len()) {
            return invalid(
                "classes",
                format!(
                    "{} classes, expected 2 to {MAX_CLASSES}",
                    self.classes.len()
                ),
            );
        }
        for (i, name) in self.classes.iter().enumerate() {
            if let Err(why) = check_class_name(name) {
                return invalid("classes", format!("class {i} {name:?}: {why}"));
            }
            if self.classes[..i].contains(name) {
                return invalid("classes", format!("class {name:?} appears twice"));
            }
        }
        if !(f.window_s.is_finite() && f.window_s > 0.0 && f.hop_s > 0.0 && f.hop_s <= f.window_s) {
            return invalid(
                "features.window_s/hop_s",
                format!("window {} s, hop {} s", f.window_s, f.hop_s),
            );
        }
        if let Some(bad) = self.trained_cells.iter().find(|c| **c >= GRID_CELLS) {
            return invalid("trained_cells", format!("cell {bad} is off the 9x9 grid"));
        }
        for (field, stats) in [("norm_mean", &self.norm_mean), ("norm_std", &self.norm_std)] {
            if stats.len() != INPUT_LEN {
                return invalid(
                    field,
                    format!("{} values, expected {INPUT_LEN}", stats.len()),
                );
            }
            if stats.iter().any(|v| !v.is_finite()) {
                return invalid(field, "non-finite value".into());
            }
        }
        if self.norm_std.iter().any(|s| *s <= 0.0) {
            return invalid("norm_std", "value <= 0".into());
        }
        Ok(())
    }

    /// Whether a daemon computing `daemon`'s features at `sample_rate_hz` serves this model
    /// exactly; the error names the first field that differs with both values. Features from
    /// other code are refused unless `allow_foreign` (then only window/hop/bands/rate count).
    pub fn check_serves(
        &self,
        daemon: &FeatureSpec,
        sample_rate_hz: f64,
        allow_foreign: bool,
    ) -> Result<(), ContractError> {
        let m = &self.features;
        if m.is_foreign() && !allow_foreign {
            return Err(ContractError::ForeignFeatures {
                extractor: m.extractor.clone(),
            });
        }
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
        let mismatch = |field, model: String, daemon: String| {
            Err(ContractError::Mismatch {
                field,
                model,
                daemon,
            })
        };
        if !m.is_foreign() {
            if m.extractor_version != daemon.extractor_version {
                return mismatch(
                    "features.extractor_version",
                    m.extractor_version.to_string(),
                    daemon.extractor_version.to_string(),
                );
            }
            if m.smoothing != daemon.smoothing {
                return mismatch(
                    "features.smoothing",
                    format!("{:?}", m.smoothing),
                    format!("{:?}", daemon.smoothing),
                );
            }
        }
        if !close(m.window_s, daemon.window_s) {
            return mismatch(
                "features.window_s",
                m.window_s.to_string(),
                daemon.window_s.to_string(),
            );
        }
        if !close(m.hop_s, daemon.hop_s) {
            return mismatch(
                "features.hop_s",
                m.hop_s.to_string(),
                daemon.hop_s.to_string(),
            );
        }
        let same_bands = m.bands_hz.len() == daemon.bands_hz.len()
            && m.bands_hz
                .iter()
                .zip(&daemon.bands_hz)
                .all(|(a, b)| close(a[0], b[0]) && close(a[1], b[1]));
        if !same_bands {
            return mismatch(
                "features.bands_hz",
                format!("{:?}", m.bands_hz),
                format!("{:?}", daemon.bands_hz),
            );
        }
        if !self.legacy_v1() && !m.is_foreign() {
            let hz = |v: Option<f64>| v.map_or("off".to_string(), |f| format!("{f} Hz"));
            let same_notch = match (m.notch_hz, daemon.notch_hz) {
                (Some(a), Some(b)) => close(a, b),
                (a, b) => a.is_none() && b.is_none(),
            };
            if !same_notch {
                return mismatch("features.notch_hz", hz(m.notch_hz), hz(daemon.notch_hz));
            }
            let edges =
                |v: Option<[f64; 2]>| v.map_or("off".to_string(), |[a, b]| format!("{a}-{b} Hz"));
            let same_bandpass = match (m.bandpass_hz, daemon.bandpass_hz) {
                (Some(a), Some(b)) => close(a[0], b[0]) && close(a[1], b[1]),
                (a, b) => a.is_none() && b.is_none(),
            };
            if !same_bandpass {
                return mismatch(
                    "features.bandpass_hz",
                    edges(m.bandpass_hz),
                    edges(daemon.bandpass_hz),
                );
            }
            if crate::features::units::to_microvolts(&m.input_unit).is_none() {
                return mismatch(
                    "features.input_unit",
                    m.input_unit.clone(),
                    "a voltage unit (uV, mV, V, nV)".into(),
                );
            }
        }
        if sample_rate_hz < m.min_sample_rate_hz {
            return mismatch(
                "features.min_sample_rate_hz",
                format!("at least {} Hz", m.min_sample_rate_hz),
                format!("a stream at {sample_rate_hz} Hz"),
            );
        }
        Ok(())
    }
}

/// Class names become JSON keys, LSL channel labels and metric label values: short and plain.
fn check_class_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 32 {
        return Err("must be 1 to 32 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("may hold only letters, digits, '_', '-' and '.'");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn contract() -> ModelContract {
        let mut c = ModelContract::new(
            crate::CLASSES.iter().map(|c| c.to_string()).collect(),
            FeatureSpec::of(&FeatureConfig::default()),
        );
        c.trained_cells = vec![3, 4, 5];
        c
    }

    fn daemon(f: impl FnOnce(&mut FeatureConfig)) -> FeatureSpec {
        let mut cfg = FeatureConfig::default();
        f(&mut cfg);
        FeatureSpec::of(&cfg)
    }

    #[test]
    fn round_trip_and_every_feature_field_is_checked_by_name() {
        let c = contract();
        assert_eq!(ModelContract::from_json(&c.to_json()).unwrap(), c);
        let same = daemon(|_| {});
        assert_eq!(c.check_serves(&same, 200.0, false), Ok(()));
        let err =
            |d: FeatureSpec, rate: f64| c.check_serves(&d, rate, false).unwrap_err().to_string();
        assert_eq!(
            err(daemon(|f| f.notch_hz = Some(60.0)), 200.0),
            "model contract field 'features.notch_hz' is 50 Hz, but the daemon computes 60 Hz"
        );
        assert_eq!(
            err(daemon(|f| f.notch_hz = None), 200.0),
            "model contract field 'features.notch_hz' is 50 Hz, but the daemon computes off"
        );
        assert!(err(daemon(|f| f.bandpass_hz = Some([0.5, 45.0])), 200.0)
            .contains("'features.bandpass_hz' is 1-50 Hz, but the daemon computes 0.5-45 Hz"));
        assert!(err(daemon(|f| f.hop_s = 0.5), 200.0).contains("'features.hop_s' is 0.25"));
        assert!(err(daemon(|f| f.window_s = 2.0), 200.0).contains("'features.window_s' is 1"));
        assert!(err(daemon(|f| f.bands_hz[4] = [31.0, 45.0]), 200.0).contains("features.bands_hz"));
        assert!(err(same.clone(), 90.0).contains(
            "'features.min_sample_rate_hz' is at least 100 Hz, but the daemon computes a stream at 90 Hz"
        ));
        let mut newer = same.clone();
        newer.extractor_version += 1;
        assert!(err(newer, 200.0)
            .contains("'features.extractor_version' is 1, but the daemon computes 2"));
    }

    #[test]
    fn foreign_features_are_refused_unless_allowed() {
        let mut c = contract();
        c.features.extractor = "seed-de-lds".into();
        let d = FeatureSpec::of(&FeatureConfig::default());
        let e = c.check_serves(&d, 200.0, false).unwrap_err().to_string();
        assert!(
            e.contains("features from other code") && e.contains("seed-de-lds"),
            "{e}"
        );
        assert!(e.contains("model.allow_foreign_features"), "{e}");
        assert_eq!(c.check_serves(&d, 200.0, true), Ok(()));
    }

    #[test]
    fn version_1_is_read_and_checked_where_it_can_be() {
        let c = contract();
        let mut v1: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        let obj = v1.as_object_mut().unwrap();
        let features = obj.remove("features").unwrap();
        for key in ["window_s", "hop_s", "bands_hz", "min_sample_rate_hz"] {
            obj.insert(key.into(), features[key].clone());
        }
        obj.remove("labels");
        obj.remove("trained_cells");
        obj.insert("contract_version".into(), 1.into());
        let read = ModelContract::from_json(&v1.to_string()).unwrap();
        assert!(read.legacy_v1());
        assert_eq!(read.classes, c.classes);
        assert!(read.trained_cells.is_empty());
        // Filters were not recorded: not held against the daemon; window/hop still are.
        assert_eq!(
            read.check_serves(&daemon(|f| f.notch_hz = Some(60.0)), 200.0, false),
            Ok(())
        );
        assert!(read
            .check_serves(&daemon(|f| f.hop_s = 0.5), 200.0, false)
            .is_err());
        v1["contract_version"] = 7.into();
        assert_eq!(
            ModelContract::from_json(&v1.to_string()),
            Err(ContractError::Version { found: 7 })
        );
    }

    #[test]
    fn classes_are_validated() {
        let mut c = contract();
        for (classes, want) in [
            (vec!["a"], "1 classes, expected 2 to 16"),
            (vec!["a", "a"], "appears twice"),
            (vec!["a", "b c"], "may hold only"),
            (vec!["a", ""], "1 to 32"),
        ] {
            c.classes = classes.into_iter().map(String::from).collect();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("'classes'") && e.contains(want), "{e}");
        }
        c.classes = (0..17).map(|i| format!("c{i}")).collect();
        assert!(c.validate().is_err());
        c.classes = vec!["relaxed".into(), "concentrating".into()];
        assert_eq!(c.validate(), Ok(()));
    }
}
