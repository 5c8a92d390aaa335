//! The model's contract, stored as JSON under the ONNX metadata_props key [`CONTRACT_KEY`].
//!
//! Everything the daemon must agree on with the model travels inside the model file: input name
//! and shape, the bands, window and hop, the sample rates the features were computed at, class
//! names, normalisation statistics, how it was quantised and calibrated, and where it came from.
use serde::{Deserialize, Serialize};

use crate::features::{BANDS, GRID, INPUT_LEN};

/// metadata_props key holding the JSON-serialised [`ModelContract`].
pub const CONTRACT_KEY: &str = "affectd.contract";
/// Version of the contract schema this build reads and writes.
pub const CONTRACT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelContract {
    pub contract_version: u32,
    /// ONNX graph input name; shape [batch, 5, 9, 9] float32 (batch dynamic).
    pub input_name: String,
    pub input_shape: [i64; 4],
    /// ONNX graph output name: logits [batch, classes].
    pub output_name: String,
    pub classes: Vec<String>,
    /// Band edges in Hz, [low, high), delta..gamma.
    pub bands_hz: Vec<[f64; 2]>,
    pub window_s: f64,
    pub hop_s: f64,
    /// Sample rate range (Hz) the features are valid for; the top band needs rate > 2 * 50 Hz.
    pub min_sample_rate_hz: f64,
    /// Per-feature normalisation, INPUT_LEN values each in [band, row, col] order:
    /// x_norm = (de - mean) / std; cells with no electrode are fed 0 after normalisation.
    pub norm_mean: Vec<f32>,
    pub norm_std: Vec<f32>,
    pub quantization: Quantization,
    pub calibration: Calibration,
    pub provenance: Provenance,
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
        "model contract version {found} is not supported (this build reads {CONTRACT_VERSION})"
    )]
    Version { found: u32 },
    #[error("model contract field '{field}' is invalid: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("model expects {what} = {model}, but the daemon is configured for {daemon}")]
    Mismatch {
        what: &'static str,
        model: String,
        daemon: String,
    },
}

impl ModelContract {
    pub fn from_json(text: &str) -> Result<Self, ContractError> {
        let contract: ModelContract =
            serde_json::from_str(text).map_err(|e| ContractError::Malformed(e.to_string()))?;
        contract.validate()?;
        Ok(contract)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("contract serialises")
    }

    /// Checks internal consistency (lengths, shapes, finite statistics).
    pub fn validate(&self) -> Result<(), ContractError> {
        let invalid = |field, why: String| Err(ContractError::Invalid { field, why });
        if self.contract_version != CONTRACT_VERSION {
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
        if self.bands_hz.len() != BANDS {
            return invalid(
                "bands_hz",
                format!("{} bands, expected {BANDS}", self.bands_hz.len()),
            );
        }
        if self.classes.len() < 2 {
            return invalid("classes", format!("{} classes", self.classes.len()));
        }
        if !(self.window_s > 0.0 && self.hop_s > 0.0 && self.hop_s <= self.window_s) {
            return invalid(
                "window_s/hop_s",
                format!("window {} s, hop {} s", self.window_s, self.hop_s),
            );
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
}
