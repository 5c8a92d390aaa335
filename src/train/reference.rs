//! Plain-Rust forward passes of the network in [`NetParams`], fp32 and fake-quantised, written
//! straight from the semantics in `net_params.rs` with no framework underneath. They are the
//! independent yardstick for both the ONNX Runtime int8 graph and the burn training graph.
//!
//! The fake-quantised pass works on integer levels (activations as `q - zero_point`, weights and
//! biases as their int8 / int32 codes) with exact integer accumulation, then dequantises once per
//! output with the f32 scale `s_in * s_w[c]`, which is the same number the exported bias scale
//! holds. That is the dequantise-compute-requantise arithmetic of the QDQ graph without float
//! summation noise.
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::features::{BANDS, GRID};
use crate::train::net_params::{LayerKind, LayerParams, NetParams, QuantParams};

/// Activation zero point after each ReLU (range [0, 255 s]).
pub const ACTIVATION_ZERO_POINT: i32 = -128;

/// A network or its quantisation parameters do not fit the fixed architecture.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NetError {
    #[error("network has no layers")]
    Empty,
    #[error("layer {index} ('{name}'): {why}")]
    Layer {
        index: usize,
        name: String,
        why: String,
    },
    #[error("quantisation parameters: {0}")]
    Quant(String),
}

/// Shape of one sample's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Feature map [channels, height, width].
    Map { c: usize, h: usize, w: usize },
    /// Flat vector.
    Flat(usize),
}

impl Shape {
    pub fn len(&self) -> usize {
        match *self {
            Shape::Map { c, h, w } => c * h * w,
            Shape::Flat(n) => n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Walks the layers from the [5, 9, 9] input and returns each layer's input shape, checking
/// sizes, weight lengths, the ReLU pattern (every layer but the classifier) and that the network
/// ends in a Linear classifier.
pub fn layer_input_shapes(net: &NetParams) -> Result<Vec<Shape>, NetError> {
    if net.layers.is_empty() {
        return Err(NetError::Empty);
    }
    let last = net.layers.len() - 1;
    let mut shape = Shape::Map {
        c: BANDS,
        h: GRID,
        w: GRID,
    };
    let mut inputs = Vec::with_capacity(net.layers.len());
    for (index, layer) in net.layers.iter().enumerate() {
        let fail = |why: String| NetError::Layer {
            index,
            name: layer.name.clone(),
            why,
        };
        inputs.push(shape);
        let (n_in, n_out) = (layer.in_features, layer.out_features);
        if n_in == 0 || n_out == 0 {
            return Err(fail(format!("{n_in} inputs, {n_out} outputs")));
        }
        let per_out = match layer.kind {
            LayerKind::Conv3x3 => n_in * 9,
            LayerKind::Linear => n_in,
        };
        if layer.weight.len() != n_out * per_out {
            return Err(fail(format!(
                "weight has {} values, expected {}",
                layer.weight.len(),
                n_out * per_out
            )));
        }
        if layer.bias.len() != n_out {
            return Err(fail(format!(
                "bias has {} values, expected {n_out}",
                layer.bias.len()
            )));
        }
        if layer
            .weight
            .iter()
            .chain(&layer.bias)
            .any(|v| !v.is_finite())
        {
            return Err(fail("non-finite weight or bias".into()));
        }
        if layer.relu != (index != last) {
            return Err(fail(format!(
                "relu = {}, but every layer except the classifier has a ReLU",
                layer.relu
            )));
        }
        shape = match (layer.kind.clone(), shape) {
            (LayerKind::Conv3x3, Shape::Map { c, h, w }) => {
                if c != n_in {
                    return Err(fail(format!("input has {c} channels, layer takes {n_in}")));
                }
                Shape::Map { c: n_out, h, w }
            }
            (LayerKind::Conv3x3, Shape::Flat(_)) => {
                return Err(fail("convolution after a flattened layer".into()))
            }
            (LayerKind::Linear, s) => {
                if s.len() != n_in {
                    return Err(fail(format!(
                        "input has {} values, layer takes {n_in}",
                        s.len()
                    )));
                }
                Shape::Flat(n_out)
            }
        };
        if layer.pool_after {
            shape = match shape {
                Shape::Map { c, h, w } if h >= 2 && w >= 2 => Shape::Map {
                    c,
                    h: h / 2,
                    w: w / 2,
                },
                _ => return Err(fail(format!("cannot 2x2 max-pool a {shape:?} activation"))),
            };
        }
    }
    if net.layers[last].kind != LayerKind::Linear {
        return Err(NetError::Layer {
            index: last,
            name: net.layers[last].name.clone(),
            why: "the classifier must be a Linear layer".into(),
        });
    }
    Ok(inputs)
}

/// Checks that `q` fits `net`: bits, one finite positive scale per output channel and per
/// activation.
pub fn check_quant(net: &NetParams, q: &QuantParams) -> Result<(), NetError> {
    let bad = |why: String| Err(NetError::Quant(why));
    if !(q.weight_bits == 7 || q.weight_bits == 8) {
        return bad(format!("weight_bits = {}, expected 7 or 8", q.weight_bits));
    }
    let positive = |s: f32| s.is_finite() && s > 0.0;
    if !positive(q.input_scale) {
        return bad(format!("input_scale = {}", q.input_scale));
    }
    if q.weight_scales.len() != net.layers.len() {
        return bad(format!(
            "{} weight scale lists for {} layers",
            q.weight_scales.len(),
            net.layers.len()
        ));
    }
    for (layer, scales) in net.layers.iter().zip(&q.weight_scales) {
        if scales.len() != layer.out_features {
            return bad(format!(
                "layer '{}' has {} weight scales for {} output channels",
                layer.name,
                scales.len(),
                layer.out_features
            ));
        }
        if let Some(s) = scales.iter().find(|s| !positive(**s)) {
            return bad(format!("layer '{}' weight scale {s}", layer.name));
        }
    }
    if q.activation_scales.len() + 1 != net.layers.len() {
        return bad(format!(
            "{} activation scales for {} layers (one per layer before the classifier)",
            q.activation_scales.len(),
            net.layers.len()
        ));
    }
    if let Some(s) = q.activation_scales.iter().find(|s| !positive(**s)) {
        return bad(format!("activation scale {s}"));
    }
    Ok(())
}

/// Quantises a layer's weights per output channel: clamp(round_half_even(w / s_c), -qmax, qmax).
pub fn quantize_weights(layer: &LayerParams, scales: &[f32], qmax: i32) -> Vec<i8> {
    let per_out = layer.weight.len() / layer.out_features;
    layer
        .weight
        .chunks(per_out)
        .zip(scales)
        .flat_map(|(row, &s)| {
            row.iter()
                .map(move |&w| (w / s).round_ties_even().clamp(-qmax as f32, qmax as f32) as i8)
        })
        .collect()
}

/// Bias scales `s_in * s_w[c]` (f32, as stored in the model) and the int32 bias codes
/// round_half_even(b / scale), saturated to the int32 range.
pub fn quantize_bias(
    bias: &[f32],
    input_scale: f32,
    weight_scales: &[f32],
) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = weight_scales.iter().map(|&sw| input_scale * sw).collect();
    let codes = bias
        .iter()
        .zip(&scales)
        .map(|(&b, &s)| {
            (f64::from(b) / f64::from(s))
                .round_ties_even()
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        })
        .collect();
    (codes, scales)
}

/// Symmetric input quantiser (zero point 0): clamp(round_half_even(x / s), -128, 127).
pub fn quantize_input(x: f32, scale: f32) -> i32 {
    (x / scale).round_ties_even().clamp(-128.0, 127.0) as i32
}

/// Post-ReLU activation quantiser (zero point -128): clamp(round_half_even(y / s) - 128, -128, 127).
pub fn quantize_activation(y: f32, scale: f32) -> i32 {
    ((y / scale).round_ties_even() + ACTIVATION_ZERO_POINT as f32).clamp(-128.0, 127.0) as i32
}

/// fp32 forward: `x` is [batch, 5, 9, 9] normalised input; returns logits [batch, classes].
/// Accumulates in f64, so it is a slightly better fp32 reference than any fp32 kernel.
///
/// Panics if `net` does not pass [`layer_input_shapes`] or `x` has the wrong length.
pub fn forward_fp32(net: &NetParams, x: &[f32], batch: usize) -> Vec<f32> {
    let shapes = checked_shapes(net, x, batch);
    let sample_len = BANDS * GRID * GRID;
    let mut out = Vec::new();
    for sample in x.chunks(sample_len).take(batch) {
        let act = trace_fp32(net, &shapes, sample, |_, _| {});
        out.extend(act.iter().map(|&v| v as f32));
    }
    out
}

/// Fake-quantised forward per `net_params.rs`; returns float logits [batch, classes].
///
/// Panics if `net`/`q` do not pass [`layer_input_shapes`]/[`check_quant`] or `x` has the wrong
/// length.
pub fn forward_fake_quant(net: &NetParams, q: &QuantParams, x: &[f32], batch: usize) -> Vec<f32> {
    let shapes = checked_shapes(net, x, batch);
    if let Err(e) = check_quant(net, q) {
        panic!("forward_fake_quant: {e}");
    }
    let qmax = q.weight_qmax();
    let layers: Vec<QuantLayer> = net
        .layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let s_in = if i == 0 {
                q.input_scale
            } else {
                q.activation_scales[i - 1]
            };
            let weight = quantize_weights(layer, &q.weight_scales[i], qmax)
                .into_iter()
                .map(f64::from)
                .collect();
            let (codes, scales) = quantize_bias(&layer.bias, s_in, &q.weight_scales[i]);
            QuantLayer {
                weight,
                bias: codes.into_iter().map(f64::from).collect(),
                out_scales: scales,
            }
        })
        .collect();

    let sample_len = BANDS * GRID * GRID;
    let mut out = Vec::new();
    for sample in x.chunks(sample_len).take(batch) {
        // Integer levels q - zero_point; for the input the zero point is 0.
        let mut levels: Vec<f64> = sample
            .iter()
            .map(|&v| f64::from(quantize_input(v, q.input_scale)))
            .collect();
        for (i, (layer, ql)) in net.layers.iter().zip(&layers).enumerate() {
            // Exact: |levels| <= 255, |codes| <= 127, at most a few thousand terms.
            let acc = apply_layer(layer, shapes[i], &levels, &ql.weight, &ql.bias);
            let n_out = layer.out_features;
            let per_channel = acc.len() / n_out;
            let dequant = |k: usize, a: f64| (a as f32) * ql.out_scales[k / per_channel];
            if !layer.relu {
                out.extend(acc.iter().enumerate().map(|(k, &a)| dequant(k, a)));
                break;
            }
            let s_a = q.activation_scales[i];
            levels = acc
                .iter()
                .enumerate()
                .map(|(k, &a)| {
                    let y = dequant(k, a).max(0.0);
                    f64::from(quantize_activation(y, s_a) - ACTIVATION_ZERO_POINT)
                })
                .collect();
            if layer.pool_after {
                levels = pool_after(shapes[i], layer, &levels);
            }
        }
    }
    out
}

/// Min-max calibration on a batch: input scale max|x| / 127, activation scales max(y) / 255 of
/// each post-ReLU activation (fp32 forward), weight scales max|w_c| / qmax per output channel.
/// Scales are floored at a tiny positive value so that dead channels stay valid.
pub fn calibrate_minmax(net: &NetParams, x: &[f32], batch: usize, weight_bits: u32) -> QuantParams {
    const FLOOR: f32 = 1e-8;
    assert!(
        (2..=8).contains(&weight_bits),
        "calibrate_minmax: weight_bits = {weight_bits}"
    );
    let shapes = checked_shapes(net, x, batch);
    let qmax = ((1i32 << (weight_bits - 1)) - 1) as f32;
    let weight_scales = net
        .layers
        .iter()
        .map(|layer| {
            let per_out = layer.weight.len() / layer.out_features;
            layer
                .weight
                .chunks(per_out)
                .map(|row| (row.iter().fold(0f32, |m, w| m.max(w.abs())) / qmax).max(FLOOR))
                .collect()
        })
        .collect();
    let sample_len = BANDS * GRID * GRID;
    let x = &x[..batch * sample_len];
    let x_max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut act_max = vec![0f64; net.layers.len() - 1];
    for sample in x.chunks(sample_len) {
        trace_fp32(net, &shapes, sample, |i, act| {
            if i < act_max.len() {
                act_max[i] = act.iter().fold(act_max[i], |m, &v| m.max(v));
            }
        });
    }
    QuantParams {
        weight_bits,
        input_scale: (x_max / 127.0).max(FLOOR),
        weight_scales,
        activation_scales: act_max
            .iter()
            .map(|&m| (m as f32 / 255.0).max(FLOOR))
            .collect(),
    }
}

/// The PR-PL CNN (conv 5->32, conv 32->64 + pool, conv 64->128 + pool, fc 512->32, fc 32->32,
/// fc 32->classes) with He-normal weights and small random biases, for tests and benchmarks.
pub fn random_net(seed: u64, classes: usize) -> NetParams {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let spec = [
        ("conv1", LayerKind::Conv3x3, BANDS, 32, false),
        ("conv2", LayerKind::Conv3x3, 32, 64, true),
        ("conv3", LayerKind::Conv3x3, 64, 128, true),
        ("fc1", LayerKind::Linear, 512, 32, false),
        ("fc2", LayerKind::Linear, 32, 32, false),
        ("fc3", LayerKind::Linear, 32, classes, false),
    ];
    let last = spec.len() - 1;
    let layers = spec
        .into_iter()
        .enumerate()
        .map(|(i, (name, kind, n_in, n_out, pool_after))| {
            let fan_in = match kind {
                LayerKind::Conv3x3 => n_in * 9,
                LayerKind::Linear => n_in,
            };
            let he = Normal::new(0.0, (2.0 / fan_in as f64).sqrt()).expect("valid std");
            let small = Normal::new(0.0, 0.05).expect("valid std");
            LayerParams {
                name: name.into(),
                kind,
                in_features: n_in,
                out_features: n_out,
                weight: (0..n_out * fan_in)
                    .map(|_| he.sample(&mut rng) as f32)
                    .collect(),
                bias: (0..n_out).map(|_| small.sample(&mut rng) as f32).collect(),
                relu: i != last,
                pool_after,
            }
        })
        .collect();
    NetParams { layers }
}

struct QuantLayer {
    weight: Vec<f64>,
    bias: Vec<f64>,
    out_scales: Vec<f32>,
}

fn checked_shapes(net: &NetParams, x: &[f32], batch: usize) -> Vec<Shape> {
    let shapes = layer_input_shapes(net).unwrap_or_else(|e| panic!("reference forward: {e}"));
    let need = batch * BANDS * GRID * GRID;
    assert!(
        x.len() >= need,
        "reference forward: input has {} values, batch {batch} needs {need}",
        x.len()
    );
    shapes
}

/// fp32 forward of one sample; `on_activation(i, act)` sees layer i's output after its ReLU and
/// before pooling. Returns the logits.
fn trace_fp32(
    net: &NetParams,
    shapes: &[Shape],
    sample: &[f32],
    mut on_activation: impl FnMut(usize, &[f64]),
) -> Vec<f64> {
    let mut act: Vec<f64> = sample.iter().map(|&v| f64::from(v)).collect();
    for (i, layer) in net.layers.iter().enumerate() {
        let weight: Vec<f64> = layer.weight.iter().map(|&v| f64::from(v)).collect();
        let bias: Vec<f64> = layer.bias.iter().map(|&v| f64::from(v)).collect();
        act = apply_layer(layer, shapes[i], &act, &weight, &bias);
        if layer.relu {
            act.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        on_activation(i, &act);
        if layer.pool_after {
            act = pool_after(shapes[i], layer, &act);
        }
    }
    act
}

/// The layer's linear part (conv or fully connected, plus bias) on one sample.
fn apply_layer(
    layer: &LayerParams,
    input: Shape,
    x: &[f64],
    weight: &[f64],
    bias: &[f64],
) -> Vec<f64> {
    match (&layer.kind, input) {
        (LayerKind::Conv3x3, Shape::Map { c, h, w }) => {
            conv3x3(x, c, h, w, weight, bias, layer.out_features)
        }
        _ => linear(x, weight, bias, layer.out_features),
    }
}

/// 3x3 convolution, stride 1, zero padding 1; weight [out, in, 3, 3]. Loops are ordered so that
/// the innermost one runs along a row (the tests push a thousand windows through this).
fn conv3x3(
    x: &[f64],
    c_in: usize,
    h: usize,
    w: usize,
    weight: &[f64],
    bias: &[f64],
    c_out: usize,
) -> Vec<f64> {
    let mut out = vec![0f64; c_out * h * w];
    for o in 0..c_out {
        let plane = &mut out[o * h * w..(o + 1) * h * w];
        plane.iter_mut().for_each(|v| *v = bias[o]);
        for c in 0..c_in {
            let input = &x[c * h * w..(c + 1) * h * w];
            for ky in 0..3 {
                for kx in 0..3 {
                    let k = weight[((o * c_in + c) * 3 + ky) * 3 + kx];
                    // Output (i, j) reads input (i + ky - 1, j + kx - 1): shifted row windows.
                    let (rows, i0) = shifted(h, ky);
                    let (cols, j0) = shifted(w, kx);
                    for (r, yi) in rows.enumerate() {
                        let src = &input[yi * w + cols.start..yi * w + cols.end];
                        let dst = &mut plane[(i0 + r) * w + j0..(i0 + r) * w + j0 + src.len()];
                        for (d, s) in dst.iter_mut().zip(src) {
                            *d += k * s;
                        }
                    }
                }
            }
        }
    }
    out
}

/// For kernel offset `k` (0..3) along an axis of length `n`: the input range that is read and the
/// first output index it lands on.
fn shifted(n: usize, k: usize) -> (std::ops::Range<usize>, usize) {
    match k {
        0 => (0..n - 1, 1),
        1 => (0..n, 0),
        _ => (1..n, 0),
    }
}

/// y = W x + b; weight [out, in].
fn linear(x: &[f64], weight: &[f64], bias: &[f64], n_out: usize) -> Vec<f64> {
    weight
        .chunks(x.len())
        .take(n_out)
        .zip(bias)
        .map(|(row, b)| b + row.iter().zip(x).map(|(w, v)| w * v).sum::<f64>())
        .collect()
}

/// 2x2 max-pool, stride 2, floor, of the layer's [out, h, w] output.
fn pool_after(input: Shape, layer: &LayerParams, x: &[f64]) -> Vec<f64> {
    let Shape::Map { h, w, .. } = input else {
        unreachable!("layer_input_shapes rejects pooling of flat activations")
    };
    let (ho, wo) = (h / 2, w / 2);
    let mut out = Vec::with_capacity(layer.out_features * ho * wo);
    for c in 0..layer.out_features {
        for i in 0..ho {
            for j in 0..wo {
                let at = |y: usize, xx: usize| x[(c * h + y) * w + xx];
                let m = at(2 * i, 2 * j)
                    .max(at(2 * i, 2 * j + 1))
                    .max(at(2 * i + 1, 2 * j))
                    .max(at(2 * i + 1, 2 * j + 1));
                out.push(m);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_net() -> NetParams {
        // conv 5->1 (identity on band 0 at the centre tap), pool, fc 16->2.
        let mut conv_w = vec![0f32; 5 * 9];
        conv_w[4] = 1.0;
        let mut fc_w = vec![0f32; 2 * 16];
        fc_w[0] = 1.0; // logit 0 = pooled cell (0, 0)
        fc_w[16 + 15] = -2.0; // logit 1 = -2 * pooled cell (3, 3)
        NetParams {
            layers: vec![
                LayerParams {
                    name: "conv".into(),
                    kind: LayerKind::Conv3x3,
                    in_features: 5,
                    out_features: 1,
                    weight: conv_w,
                    bias: vec![0.5],
                    relu: true,
                    pool_after: true,
                },
                LayerParams {
                    name: "fc".into(),
                    kind: LayerKind::Linear,
                    in_features: 16,
                    out_features: 2,
                    weight: fc_w,
                    bias: vec![0.0, 1.0],
                    relu: false,
                    pool_after: false,
                },
            ],
        }
    }

    #[test]
    fn fp32_forward_matches_hand_computation() {
        let net = tiny_net();
        let mut x = vec![0f32; 405];
        // band 0: cell (r, c) = r * 9 + c - 40 (negative in the top half -> ReLU zeroes it).
        for (k, v) in x.iter_mut().take(81).enumerate() {
            *v = k as f32 - 40.0;
        }
        let y = forward_fp32(&net, &x, 1);
        // pooled (0,0) = max over rows 0-1, cols 0-1 of relu(v + 0.5) = relu(10 - 40 + 0.5) = 0.
        // pooled (3,3) = max over rows 6-7, cols 6-7 = (7 * 9 + 7 - 40) + 0.5 = 30.5.
        assert_eq!(y, vec![0.0, 1.0 - 2.0 * 30.5]);
    }

    #[test]
    fn quantisers_round_half_to_even_and_clamp() {
        assert_eq!(quantize_input(2.5, 1.0), 2);
        assert_eq!(quantize_input(3.5, 1.0), 4);
        assert_eq!(quantize_input(-2.5, 1.0), -2);
        assert_eq!(quantize_input(1000.0, 1.0), 127);
        assert_eq!(quantize_input(-1000.0, 1.0), -128);
        assert_eq!(quantize_activation(0.5, 1.0), -128);
        assert_eq!(quantize_activation(1.5, 1.0), -126);
        assert_eq!(quantize_activation(-3.0, 1.0), -128);
        assert_eq!(quantize_activation(1e6, 1.0), 127);
        let layer = &tiny_net().layers[1];
        let q = quantize_weights(layer, &[0.004, 0.004], 63);
        assert_eq!(q[0], 63); // 1.0 / 0.004 = 250 -> clamped to 63
        assert_eq!(q[31], -63);
        let (codes, scales) = quantize_bias(&[0.25, -0.25], 0.5, &[0.1, 0.2]);
        assert_eq!(scales, vec![0.5 * 0.1, 0.5 * 0.2]);
        assert_eq!(codes, vec![5, -2]); // 0.25 / 0.05 = 5; -0.25 / 0.1 = -2.5 -> -2
    }

    #[test]
    fn fake_quant_with_fine_scales_approaches_fp32_and_coarse_scales_quantise() {
        let net = random_net(3, 3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let normal = Normal::new(0.0f32, 1.0).unwrap();
        let x: Vec<f32> = (0..405 * 8).map(|_| normal.sample(&mut rng)).collect();
        let q = calibrate_minmax(&net, &x, 8, 8);
        let fp = forward_fp32(&net, &x, 8);
        let fq = forward_fake_quant(&net, &q, &x, 8);
        let max_fp = fp.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max_diff = fp
            .iter()
            .zip(&fq)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // 8-bit quantisation error: small against the logit range, but not zero.
        assert!(
            max_diff > 0.0 && max_diff < 0.1 * max_fp,
            "diff {max_diff}, range {max_fp}"
        );
        // Every logit is a multiple of its bias scale times an integer accumulator.
        let s = quantize_bias(
            &net.layers[5].bias,
            q.activation_scales[4],
            &q.weight_scales[5],
        )
        .1;
        for (k, v) in fq.iter().enumerate() {
            let ratio = f64::from(*v) / f64::from(s[k % 3]);
            assert!(
                (ratio - ratio.round()).abs() < 1e-3 * ratio.abs().max(1.0),
                "{ratio}"
            );
        }
    }

    #[test]
    fn shape_walk_rejects_inconsistent_networks() {
        assert_eq!(
            layer_input_shapes(&NetParams { layers: vec![] }),
            Err(NetError::Empty)
        );
        let mut net = random_net(1, 3);
        let shapes = layer_input_shapes(&net).unwrap();
        assert_eq!(shapes[3], Shape::Map { c: 128, h: 2, w: 2 });
        net.layers[3].in_features = 500;
        net.layers[3].weight.truncate(32 * 500);
        let err = layer_input_shapes(&net).unwrap_err().to_string();
        assert!(err.contains("fc1") && err.contains("512"), "{err}");
        let mut net = random_net(1, 3);
        net.layers[5].relu = true;
        assert!(layer_input_shapes(&net)
            .unwrap_err()
            .to_string()
            .contains("fc3"));
    }

    #[test]
    fn check_quant_names_the_bad_scale() {
        let net = random_net(1, 3);
        let x = vec![0.5f32; 405];
        let mut q = calibrate_minmax(&net, &x, 1, 7);
        check_quant(&net, &q).unwrap();
        q.weight_scales[2][5] = 0.0;
        let err = check_quant(&net, &q).unwrap_err().to_string();
        assert!(err.contains("conv3"), "{err}");
    }
}
