//! Inference: the model contract carried in ONNX metadata, the ort session, output smoothing and
//! the hot swap of models.
pub mod contract;
pub mod model;
pub mod runtime;
pub mod smoothing;
pub mod swap;

pub use contract::ModelContract;

/// Why a model is not served: a short reason from a fixed set (a metric label) and the full
/// message (the log).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<&model::ModelError> for Refusal {
    fn from(e: &model::ModelError) -> Self {
        Refusal {
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}
