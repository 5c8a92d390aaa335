//! Offline mode: datasets, fp32 training, knowledge-guided (prefrontal Grad-CAM) calibration,
//! quantisation-aware training and int8 ONNX export.
pub mod export;
pub mod net_params;
pub mod reference;
