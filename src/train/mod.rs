//! Offline mode: datasets, fp32 training, knowledge-guided (prefrontal Grad-CAM) calibration,
//! quantisation-aware training and int8 ONNX export.
pub mod calibration;
pub mod cli;
pub mod dataset;
pub mod evaluate;
pub mod export;
pub mod fit;
pub mod formats;
pub mod gradcam;
pub mod model;
pub mod net_params;
mod npz;
pub mod quantize;
pub mod recordings;
pub mod reference;
pub mod report;
pub mod run;
