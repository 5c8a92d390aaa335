//! What the pipeline's threads send each other.
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::features::FeatureWindow;
use crate::record::xdf::StreamHeader;

/// A window on its way to the inference thread.
pub(super) struct WindowMsg {
    pub window: FeatureWindow,
    /// Offset to add to source timestamps to get local LSL time (0 on one machine).
    pub clock_offset: f64,
}

pub(super) enum FeatureMsg {
    Window(WindowMsg),
    /// A (re)connected stream: the model's contract is checked against it.
    Stream {
        sample_rate_hz: f64,
        filled: Vec<bool>,
    },
}

/// One emotion estimate on its way to the sinks.
pub(super) struct Estimate {
    pub timestamp: f64,
    pub clock_offset: f64,
    pub probabilities: Vec<f32>,
    pub class_index: usize,
    /// The serving model's class names, in the order of `probabilities`.
    pub classes: Arc<[String]>,
    pub model_id: Arc<str>,
}

/// Settings the running threads take without a restart.
#[derive(Debug, Clone)]
pub(super) struct LiveSettings {
    pub smoothing_tau_s: f64,
    pub jsonl_path: Option<PathBuf>,
}

impl LiveSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            smoothing_tau_s: config.inference.smoothing_tau_s,
            jsonl_path: config
                .outputs
                .jsonl
                .enabled
                .then(|| config.outputs.jsonl.path.clone()),
        }
    }
}

/// What the feature thread tells the recorder bridge about the EEG stream.
pub(super) enum EegRecordMsg {
    Header(StreamHeader),
    /// LSL time correction: local = remote + offset, measured at remote `collection_time`.
    ClockOffset {
        collection_time: f64,
        offset: f64,
    },
}
