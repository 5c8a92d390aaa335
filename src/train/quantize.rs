//! Post-training quantisation (ranges from a calibration set) and quantisation-aware training.
//!
//! - Activation ranges (Qin, Qa1..Qa5) are estimated once on the calibration set from the fp32
//!   network's values and then FROZEN during QAT (no EMA): the calibration set alone decides
//!   them, which is what the knowledge-guided calibration is about.
//! - Weight scales are not learned: every forward pass recomputes them per output channel from
//!   the current weights (max|w| / qmax), exactly as the export computes them from the final
//!   weights, so training and export agree by construction.
//! - QAT uses the straight-through estimator (x + (q(x) - x).detach()). Nagel et al.'s
//!   oscillation dampening / freezing is NOT implemented; QAT is short (a few epochs at a low
//!   learning rate), which limits oscillation.
use burn::module::Module;
use serde::{Deserialize, Serialize};

use super::fit::{fit, Fitted, Split, TrainOptions};
use super::model::{cpu, input_tensor, to_vec, weight_scales, Cnn, FakeQuant};
use super::net_params::{NetParams, QuantParams};
use crate::features::INPUT_LEN;

/// How a range is chosen from calibration values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RangeEstimator {
    /// The observed extremes.
    MinMax,
    /// The clipping range (a fraction 0.30..1.00 of the extreme, 71 steps) that minimises the
    /// mean squared quantisation error.
    Mse,
    /// The given percentile (e.g. 99.99) of the values (of |x| for the signed input).
    Percentile(f64),
}

impl RangeEstimator {
    /// Contract name: "minmax", "mse", "percentile".
    pub fn name(self) -> &'static str {
        match self {
            RangeEstimator::MinMax => "minmax",
            RangeEstimator::Mse => "mse",
            RangeEstimator::Percentile(_) => "percentile",
        }
    }
}

/// Values kept per quantisation point for MSE / percentile search (strided subsample).
const MAX_SEARCH_VALUES: usize = 1 << 20;
const MIN_SCALE: f32 = 1e-8;

/// Signed input: s * clamp(round(x / s), -128, 127).
fn fq_signed(v: f32, s: f32) -> f32 {
    (v / s).round_ties_even().clamp(-128.0, 127.0) * s
}

/// Post-ReLU activation: s * clamp(round(x / s), 0, 255).
fn fq_unsigned(v: f32, s: f32) -> f32 {
    (v / s).round_ties_even().clamp(0.0, 255.0) * s
}

/// Scale of one quantisation point from its calibration values.
fn estimate_scale(values: &[f32], signed: bool, est: RangeEstimator) -> f32 {
    let (min, max) = values
        .iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let minmax = if signed {
        (max / 127.0).max(-min / 128.0)
    } else {
        max / 255.0
    };
    let levels = if signed { 127.0 } else { 255.0 };
    let stride = values.len().div_ceil(MAX_SEARCH_VALUES).max(1);
    let sample: Vec<f32> = values.iter().step_by(stride).copied().collect();
    let scale = match est {
        RangeEstimator::MinMax => minmax,
        RangeEstimator::Percentile(p) => {
            let mut mags: Vec<f32> = sample
                .iter()
                .map(|v| if signed { v.abs() } else { v.max(0.0) })
                .collect();
            mags.sort_by(f32::total_cmp);
            let rank = ((p / 100.0).clamp(0.0, 1.0) * (mags.len().max(1) - 1) as f64).round();
            mags.get(rank as usize).copied().unwrap_or(0.0) / levels
        }
        RangeEstimator::Mse => {
            let extreme = if signed { max.max(-min) } else { max };
            let mut best = (f64::INFINITY, minmax);
            for step in 0..=70 {
                let s = extreme * (0.30 + 0.01 * step as f32) / levels;
                if s <= 0.0 {
                    continue;
                }
                let err: f64 = sample
                    .iter()
                    .map(|&v| {
                        let q = if signed {
                            fq_signed(v, s)
                        } else {
                            fq_unsigned(v, s)
                        };
                        ((q - v) as f64).powi(2)
                    })
                    .sum();
                if err < best.0 {
                    best = (err, s);
                }
            }
            best.1
        }
    };
    scale.max(MIN_SCALE)
}

/// Estimates Qin and Qa1..Qa5 on the calibration samples (normalised, N x INPUT_LEN).
pub fn calibrate(model: &Cnn, calib: &[f32], est: RangeEstimator, weight_bits: u32) -> FakeQuant {
    let plain = model.valid();
    let device = cpu();
    let mut points: [Vec<f32>; 6] = Default::default();
    for chunk in calib.chunks(256 * INPUT_LEN) {
        let outs = plain.quant_points(input_tensor(chunk, &device));
        for (acc, t) in points.iter_mut().zip(outs) {
            acc.extend(to_vec(t));
        }
    }
    let mut scales = [0.0f32; 6];
    for (i, values) in points.iter().enumerate() {
        scales[i] = estimate_scale(values, i == 0, est);
    }
    FakeQuant {
        input_scale: scales[0],
        activation_scales: [scales[1], scales[2], scales[3], scales[4], scales[5]],
        weight_bits,
    }
}

/// The hand-over for export: the weights and the quantisation parameters that go with them.
pub fn export_params(model: &Cnn, fq: &FakeQuant) -> (NetParams, QuantParams) {
    let net = model.to_net_params();
    let qmax = fq.weight_qmax();
    let quant = QuantParams {
        weight_bits: fq.weight_bits,
        input_scale: fq.input_scale,
        weight_scales: net
            .layers
            .iter()
            .map(|l| weight_scales(&l.weight, l.out_features, qmax))
            .collect(),
        activation_scales: fq.activation_scales.to_vec(),
    };
    (net, quant)
}

/// QAT defaults: few epochs at a tenth of the fp32 learning rate.
pub fn qat_options(fp32: &TrainOptions) -> TrainOptions {
    TrainOptions {
        epochs: 3,
        lr: fp32.lr / 10.0,
        patience: 2,
        ..fp32.clone()
    }
}

/// Fine-tunes `model` with fake quantisation at the fixed activation scales of `fq`.
pub fn qat(
    model: &Cnn,
    fq: &FakeQuant,
    train: Split,
    val: Split,
    opts: &TrainOptions,
    label: &str,
) -> Fitted {
    fit(model.clone(), train, val, Some(fq), opts, label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::model::{fq_activation, fq_input};
    use burn::tensor::{Tensor, TensorData};

    fn t(v: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &cpu())
    }

    #[test]
    fn input_fake_quant_matches_the_net_params_formula() {
        // s = 0.5: x / s = 0.52, -1.48, 2.5 (tie -> 2), 3.5 (tie -> 4), -2.5 (tie -> -2),
        // 100 (inside), 140 (clamp 127 -> 63.5), -140 (clamp -128 -> -64).
        let x = [0.26, -0.74, 1.25, 1.75, -1.25, 50.0, 70.0, -70.0];
        let got = to_vec(fq_input(t(&x), 0.5));
        assert_eq!(got, vec![0.5, -0.5, 1.0, 2.0, -1.0, 50.0, 63.5, -64.0]);
    }

    #[test]
    fn activation_fake_quant_uses_zero_point_minus_128() {
        // q = clamp(round(x / s) - 128, -128, 127), x' = (q + 128) s with s = 0.1:
        // 0.04 -> q -128 -> 0; 0.05 (tie 0.5 -> 0) -> 0; 0.15 (1.5 -> 2) -> 0.2;
        // 25.5 -> 255 - 128 = 127 -> 25.5; 30 -> clamp 127 -> 25.5.
        let got = to_vec(fq_activation(t(&[0.04, 0.05, 0.15, 25.5, 30.0]), 0.1));
        let want = [0.0f32, 0.0, 0.2, 25.5, 25.5];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn weight_and_bias_fake_quant_match_per_channel_formulas() {
        // fc3-like layer with 2 outputs: channel scales max|w| / 127, bias scale s_in * s_w.
        let mut net = Cnn::new(0, 0.0, &cpu()).to_net_params();
        let fc3 = &mut net.layers[5];
        fc3.weight.iter_mut().for_each(|w| *w = 0.0);
        fc3.weight[0] = 1.27; // channel 0: s = 0.01
        fc3.weight[1] = 0.005; // 0.5 -> tie -> 0
        fc3.weight[2] = 0.015; // 1.5 -> 2 -> 0.02
        fc3.weight[32] = -0.254; // channel 1: s = 0.002
        fc3.weight[33] = 0.001; // 0.5 -> 0
        fc3.bias = vec![0.0123, -0.0005, 0.0];
        let fq = FakeQuant {
            input_scale: 1.0,
            activation_scales: [1.0, 1.0, 1.0, 1.0, 0.5],
            weight_bits: 8,
        };
        let model = Cnn::from_net_params(&net, 0.0, &cpu()).unwrap();
        let (_, qp) = export_params(&model, &fq);
        assert_eq!(qp.weight_scales[5][0], 1.27f32 / 127.0);
        assert_eq!(qp.weight_scales[5][1], 0.254f32 / 127.0);
        // Channel 2 is all zero: the floor keeps the scale positive.
        assert_eq!(qp.weight_scales[5][2], 1e-8f32 / 127.0);
        let s_w0 = 1.27f32 / 127.0;
        let bias_scale0 = 0.5 * s_w0; // s_in (Qa5) * s_w
        let b0 = (0.0123f32 / bias_scale0).round_ties_even() * bias_scale0;
        let (w, b) = crate::train::model::fake_quant_dense(&model.fc3, &fq, 0.5);
        assert!((w[0] - 1.27).abs() < 1e-6);
        assert_eq!(w[1], 0.0);
        assert!((w[2] - 0.02).abs() < 1e-7);
        assert!((w[32] + 0.254).abs() < 1e-7);
        assert_eq!(w[33], 0.0);
        assert_eq!(b[0], b0);
        // -0.0005 / (0.5 * 0.002) = -0.5 -> tie -> -0 -> 0.
        assert_eq!(b[1], 0.0);
    }

    #[test]
    fn minmax_scales_cover_the_calibration_range() {
        let v = [-2.56f32, 0.0, 1.0, 1.27];
        assert_eq!(estimate_scale(&v, true, RangeEstimator::MinMax), 0.02);
        assert_eq!(
            estimate_scale(&[0.0, 2.55, 1.0], false, RangeEstimator::MinMax),
            2.55f32 / 255.0
        );
        // MSE never does worse than min-max (whose range is one of its candidates).
        let mut skewed: Vec<f32> = (1..2000).map(|i| -(i as f32 / 2000.0).ln()).collect();
        skewed.push(10.0);
        let err = |s: f32| -> f64 {
            skewed
                .iter()
                .map(|&v| ((fq_unsigned(v, s) - v) as f64).powi(2))
                .sum()
        };
        let mse = estimate_scale(&skewed, false, RangeEstimator::Mse);
        let minmax = estimate_scale(&skewed, false, RangeEstimator::MinMax);
        assert!(mse <= minmax && err(mse) <= err(minmax));
        let skewed: Vec<f32> = (0..1000)
            .map(|i| (i % 100) as f32 / 100.0)
            .chain([10.0])
            .collect();
        let p = estimate_scale(&skewed, false, RangeEstimator::Percentile(99.0));
        assert!((p * 255.0 - 0.99).abs() < 0.011, "{p}");
    }
}
