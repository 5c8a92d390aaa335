//! Inference: the model contract carried in ONNX metadata, the ort session, output smoothing and
//! the hot swap of models.
pub mod contract;
pub mod model;
pub mod runtime;
pub mod smoothing;
pub mod swap;

pub use contract::ModelContract;
