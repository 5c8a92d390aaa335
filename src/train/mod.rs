//! Offline mode: datasets, fp32 training, knowledge-guided (prefrontal Grad-CAM) calibration,
//! quantisation-aware training and int8 ONNX export.
pub mod dataset;
pub mod export;
pub mod model;
pub mod net_params;
mod npz;
pub mod recordings;
pub mod reference;
