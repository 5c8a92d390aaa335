//! The trained network as plain numbers: the hand-over from training (burn) to export (ONNX QDQ)
//! and to the reference checks. Layer order and quantisation points are fixed here so that the
//! fake-quantised training graph and the exported int8 graph compute the same thing.
//!
//! Network (PR-PL feature extractor + classifier), input [N, 5, 9, 9]:
//!
//! ```text
//! x --Qin--> conv1 5->32 3x3 p1 -> ReLU --Qa1--> conv2 32->64 3x3 p1 -> ReLU --Qa2--> maxpool 2
//!   -> conv3 64->128 3x3 p1 -> ReLU --Qa3--> maxpool 2 -> flatten 512 (128x2x2, channel-major)
//!   -> fc1 512->32 -> ReLU --Qa4--> fc2 32->32 -> ReLU --Qa5--> fc3 32->3 -> logits (float)
//! ```
//!
//! Quantisation (all int8):
//! - Qin, the normalised input: symmetric, zero point 0, q = clamp(round(x / s), -128, 127).
//! - Qa1..Qa5, post-ReLU activations: zero point -128, q = clamp(round(x / s) - 128, -128, 127),
//!   i.e. the range [0, 255 s] (a zero point of 0 here blocks ORT's int8 fusion).
//! - Weights: symmetric per output channel, zero point 0, q = clamp(round(w / s_c), -qmax, qmax)
//!   with qmax = 127 (8-bit) or 63 (7-bit: exact in ORT's fused kernels on CPUs without VNNI).
//! - Biases: int32 with scale s_in * s_w[c] (s_in = the scale of the layer's input activation).
//! - Rounding is half to even (as ONNX QuantizeLinear).
//!
//! Max-pooling commutes with the monotone quantiser, so pooled tensors reuse the scale before them.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LayerKind {
    /// 3x3 convolution, stride 1, padding 1. Weight layout [out, in, 3, 3].
    Conv3x3,
    /// Fully connected. Weight layout [out, in] (y = W x + b).
    Linear,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerParams {
    pub name: String,
    pub kind: LayerKind,
    pub in_features: usize,
    pub out_features: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    /// ReLU after the layer (all but the classifier).
    pub relu: bool,
    /// 2x2 max-pool (stride 2, floor) after the ReLU.
    pub pool_after: bool,
}

/// The six layers in order: conv1, conv2, conv3, fc1, fc2, fc3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetParams {
    pub layers: Vec<LayerParams>,
}

/// Quantisation parameters that go with a [`NetParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantParams {
    /// 8 or 7: weights use qmax = 2^(bits-1) - 1.
    pub weight_bits: u32,
    /// Scale of Qin.
    pub input_scale: f32,
    /// Per layer, per output channel weight scales (same order as `NetParams::layers`).
    pub weight_scales: Vec<Vec<f32>>,
    /// Scales of Qa1..Qa5 (outputs of the first five layers, after ReLU).
    pub activation_scales: Vec<f32>,
}

impl QuantParams {
    pub fn weight_qmax(&self) -> i32 {
        (1 << (self.weight_bits - 1)) - 1
    }
}
