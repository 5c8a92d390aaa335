//! affectd: real-time EEG emotion recognition with an int8 quantization-aware-trained model.
//!
//! The module tree follows the data flow:
//!
//! ```text
//! acquire (LSL inlet -> ring buffer) -> features (filters, DE, 9x9 grid) -> infer (ort, smoothing)
//!     -> outputs (LSL Emotion outlet, JSON lines, metrics) ; record (XDF sessions)
//! train (offline: datasets -> fp32 -> Grad-CAM calibration -> QAT -> int8 ONNX)
//! ```
pub mod acquire;
pub mod cli;
pub mod config;
pub mod features;
pub mod infer;
pub mod lsl_env;
pub mod outputs;
pub mod pipeline;
pub mod record;
pub mod service;
pub mod simulate;
#[cfg(feature = "train")]
pub mod train;

/// Rust types generated from ONNX's onnx.proto (see build.rs).
#[cfg(feature = "train")]
#[allow(clippy::all, missing_docs)]
pub mod onnx_proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

/// The emotion classes, in the order of the model's outputs.
pub const CLASSES: [&str; 3] = ["negative", "neutral", "positive"];
