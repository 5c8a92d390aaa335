//! The CNN of [`super::net_params`] in burn (flex backend), with optional fake quantisation that
//! follows the quantisation semantics fixed there, split into a trunk (conv1..conv3 + ReLU) and a
//! head (pool + classifier) for Grad-CAM.
use burn::module::{Module, Param};
use burn::tensor::module::{conv2d, linear, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::net_params::{LayerKind, LayerParams, NetParams};
use crate::features::{BANDS, GRID};

/// Channels of conv1..conv3, units of fc1..fc3.
pub const CONV_CHANNELS: [usize; 3] = [32, 64, 128];
pub const FC_UNITS: [usize; 3] = [32, 32, 3];
/// conv3's output side (9 -> pool -> 4).
pub const CAM_SIDE: usize = GRID / 2;
/// Flattened features after the second pool: 128 x 2 x 2.
pub const FLAT: usize = 128 * (CAM_SIDE / 2) * (CAM_SIDE / 2);
/// Default dropout probability after fc1.
pub const DEFAULT_DROPOUT: f64 = 0.3;

/// The CPU device training runs on (burn's flex backend, without autodiff).
pub fn cpu() -> Device {
    Device::flex()
}

/// The same device with gradient recording.
pub fn cpu_autodiff() -> Device {
    Device::flex().autodiff()
}

#[derive(Module, Debug)]
pub struct ConvLayer {
    /// [out, in, 3, 3]
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
pub struct DenseLayer {
    /// [out, in] (y = x W^T + b), as in [`NetParams`].
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
pub struct Cnn {
    pub conv1: ConvLayer,
    pub conv2: ConvLayer,
    pub conv3: ConvLayer,
    pub fc1: DenseLayer,
    pub fc2: DenseLayer,
    pub fc3: DenseLayer,
    pub dropout: f64,
}

/// Fake-quantisation settings for a forward pass (see [`super::net_params`]): the scales of Qin
/// and Qa1..Qa5 (fixed), and the weight range. Weight scales are not stored: each forward derives
/// them from the current weights, per output channel, as max|w| / qmax; biases use
/// s_in * s_w[c].
#[derive(Debug, Clone, PartialEq)]
pub struct FakeQuant {
    pub input_scale: f32,
    pub activation_scales: [f32; 5],
    /// 8 or 7.
    pub weight_bits: u32,
}

impl FakeQuant {
    pub fn weight_qmax(&self) -> f32 {
        ((1i32 << (self.weight_bits - 1)) - 1) as f32
    }
}

/// Per-channel weight scales as both training and export compute them: max|w_c| / qmax, with
/// max|w_c| floored at [`MIN_WEIGHT_RANGE`] so that an all-zero channel still has a valid scale.
pub fn weight_scales(weight: &[f32], out: usize, qmax: f32) -> Vec<f32> {
    let per = weight.len() / out.max(1);
    weight
        .chunks_exact(per.max(1))
        .map(|c| {
            c.iter()
                .fold(0.0f32, |m, v| m.max(v.abs()))
                .max(MIN_WEIGHT_RANGE)
                / qmax
        })
        .collect()
}

/// Smallest weight range used for a scale.
pub const MIN_WEIGHT_RANGE: f32 = 1e-8;

/// Why a [`NetParams`] does not fit this network.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NetShapeError {
    #[error("expected 6 layers (conv1..conv3, fc1..fc3), found {0}")]
    LayerCount(usize),
    #[error("layer {index} ('{name}'): {what} is {found}, expected {expected}")]
    Mismatch {
        index: usize,
        name: String,
        what: &'static str,
        found: String,
        expected: String,
    },
}

/// Qin: s * clamp(round(x / s), -128, 127). Straight-through estimator with clipping: the
/// forward value is the dequantised one, the gradient is 1 inside the representable range
/// [-128 s, 127 s] and 0 outside (clamp(x) + (q(x) - clamp(x)).detach()), so training is not
/// pushed to grow values that the quantiser clips anyway.
pub fn fq_input<const D: usize>(x: Tensor<D>, s: f32) -> Tensor<D> {
    let q = x
        .clone()
        .detach()
        .div_scalar(s)
        .round()
        .clamp(-128.0, 127.0)
        .mul_scalar(s);
    let inside = x.clamp(-128.0 * s, 127.0 * s);
    inside.clone() + (q - inside).detach()
}

/// Qa (zero point -128 on a non-negative input): s * (clamp(round(x / s) - 128, -128, 127) + 128)
/// = s * clamp(round(x / s), 0, 255); clipped straight-through gradient as [`fq_input`].
pub fn fq_activation<const D: usize>(x: Tensor<D>, s: f32) -> Tensor<D> {
    let q = x
        .clone()
        .detach()
        .div_scalar(s)
        .round()
        .clamp(0.0, 255.0)
        .mul_scalar(s);
    let inside = x.clamp(0.0, 255.0 * s);
    inside.clone() + (q - inside).detach()
}

/// Weight [out, rest] and bias [out] fake-quantised per output channel for an input scale s_in.
fn fq_weight_bias(w: Tensor<2>, b: Tensor<1>, s_in: f32, qmax: f32) -> (Tensor<2>, Tensor<1>) {
    let out = w.dims()[0];
    let scale = w
        .clone()
        .detach()
        .abs()
        .max_dim(1)
        .clamp_min(MIN_WEIGHT_RANGE)
        .div_scalar(qmax); // [out, 1]
    let wq = (w.clone().detach() / scale.clone())
        .round()
        .clamp(-qmax, qmax)
        * scale.clone();
    let bias_scale = scale.reshape([out]).mul_scalar(s_in);
    let bq = (b.clone().detach() / bias_scale.clone()).round() * bias_scale;
    // Straight-through: forward = dequantised value, backward = identity.
    (w.clone() + (wq - w).detach(), b.clone() + (bq - b).detach())
}

impl ConvLayer {
    fn init(cin: usize, cout: usize, rng: &mut StdRng, device: &Device) -> Self {
        let fan_in = cin * 9;
        ConvLayer {
            weight: Param::from_tensor(uniform([cout, cin, 3, 3], he_bound(fan_in), rng, device)),
            bias: Param::from_tensor(uniform([cout], bias_bound(fan_in), rng, device)),
        }
    }

    /// conv 3x3 p1 + ReLU (+ Qa with `act_scale`), weights fake-quantised when `q` is given.
    fn forward(&self, x: Tensor<4>, q: Option<(&FakeQuant, f32, f32)>) -> Tensor<4> {
        let (w, b) = (self.weight.val(), self.bias.val());
        let (w, b) = match q {
            Some((fq, s_in, _)) => {
                let dims = w.dims();
                let per_channel = dims[1] * dims[2] * dims[3];
                let (w2, b) =
                    fq_weight_bias(w.reshape([dims[0], per_channel]), b, s_in, fq.weight_qmax());
                (w2.reshape(dims), b)
            }
            None => (w, b),
        };
        let y = conv2d(x, w, Some(b), ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
        let y = burn::tensor::activation::relu(y);
        match q {
            Some((_, _, s_out)) => fq_activation(y, s_out),
            None => y,
        }
    }
}

impl DenseLayer {
    /// He init before a ReLU; the classifier (no ReLU) gets PyTorch's smaller default.
    fn init(fin: usize, fout: usize, relu: bool, rng: &mut StdRng, device: &Device) -> Self {
        let bound = if relu { he_bound(fin) } else { bias_bound(fin) };
        DenseLayer {
            weight: Param::from_tensor(uniform([fout, fin], bound, rng, device)),
            bias: Param::from_tensor(uniform([fout], bias_bound(fin), rng, device)),
        }
    }

    /// y = x W^T + b, then ReLU (+ Qa) unless `relu` is false; fake-quantised when `q` is given
    /// (`s_out` is ignored without ReLU: the logits stay float).
    fn forward(&self, x: Tensor<2>, relu: bool, q: Option<(&FakeQuant, f32, f32)>) -> Tensor<2> {
        let (w, b) = (self.weight.val(), self.bias.val());
        let (w, b) = match q {
            Some((fq, s_in, _)) => fq_weight_bias(w, b, s_in, fq.weight_qmax()),
            None => (w, b),
        };
        let y = linear(x, w.transpose(), Some(b));
        if !relu {
            return y;
        }
        let y = burn::tensor::activation::relu(y);
        match q {
            Some((_, _, s_out)) => fq_activation(y, s_out),
            None => y,
        }
    }
}

/// He (Kaiming) uniform bound for weights followed by ReLU: sqrt(6 / fan_in). PyTorch's default
/// (1 / sqrt(fan_in)) shrinks the signal ~2.4x per layer here and stalled the first epochs.
fn he_bound(fan_in: usize) -> f32 {
    (6.0 / fan_in as f32).sqrt()
}

/// PyTorch's default bias bound, 1 / sqrt(fan_in).
fn bias_bound(fan_in: usize) -> f32 {
    1.0 / (fan_in as f32).sqrt()
}

/// U(-bound, bound) values.
fn uniform<const D: usize>(
    shape: [usize; D],
    bound: f32,
    rng: &mut StdRng,
    device: &Device,
) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn pool(x: Tensor<4>) -> Tensor<4> {
    max_pool2d(x, MaxPoolOptions::new([2, 2]))
}

impl Cnn {
    /// A freshly initialised network (deterministic for a seed).
    pub fn new(seed: u64, dropout: f64, device: &Device) -> Cnn {
        let mut rng = StdRng::seed_from_u64(seed);
        let [c1, c2, c3] = CONV_CHANNELS;
        let [f1, f2, f3] = FC_UNITS;
        Cnn {
            conv1: ConvLayer::init(BANDS, c1, &mut rng, device),
            conv2: ConvLayer::init(c1, c2, &mut rng, device),
            conv3: ConvLayer::init(c2, c3, &mut rng, device),
            fc1: DenseLayer::init(FLAT, f1, true, &mut rng, device),
            fc2: DenseLayer::init(f1, f2, true, &mut rng, device),
            fc3: DenseLayer::init(f2, f3, false, &mut rng, device),
            dropout,
        }
    }

    /// conv1 .. conv3 + ReLU: the Grad-CAM activation [N, 128, 4, 4] (after Qa3 when
    /// fake-quantised). Input [N, 5, 9, 9], normalised.
    pub fn trunk(&self, x: Tensor<4>, q: Option<&FakeQuant>) -> Tensor<4> {
        let x = match q {
            Some(fq) => fq_input(x, fq.input_scale),
            None => x,
        };
        let scales = |i: usize| {
            q.map(|fq| {
                let s_in = if i == 0 {
                    fq.input_scale
                } else {
                    fq.activation_scales[i - 1]
                };
                (fq, s_in, fq.activation_scales[i])
            })
        };
        let a1 = self.conv1.forward(x, scales(0));
        let a2 = pool(self.conv2.forward(a1, scales(1)));
        self.conv3.forward(a2, scales(2))
    }

    /// Pool, flatten, fc1 + ReLU, dropout (when `dropout` gives an RNG: training), fc2 + ReLU,
    /// fc3 -> logits. The dropout mask comes from the caller's RNG, not burn's global one, so
    /// that concurrent trainings stay reproducible.
    pub fn head(
        &self,
        a3: Tensor<4>,
        q: Option<&FakeQuant>,
        dropout: Option<&mut StdRng>,
    ) -> Tensor<2> {
        let n = a3.dims()[0];
        let flat = pool(a3).reshape([n, FLAT]);
        let scales =
            |i: usize| q.map(|fq| (fq, fq.activation_scales[i - 1], fq.activation_scales[i]));
        let h1 = self.fc1.forward(flat, true, scales(3));
        let h1 = match dropout {
            Some(rng) if self.dropout > 0.0 => {
                let keep = 1.0 - self.dropout;
                let dims = h1.dims();
                let mask: Vec<f32> = (0..dims[0] * dims[1])
                    .map(|_| {
                        if rng.gen_bool(keep) {
                            (1.0 / keep) as f32
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let device = h1.device();
                h1 * Tensor::from_data(TensorData::new(mask, dims), &device)
            }
            _ => h1,
        };
        let h2 = self.fc2.forward(h1, true, scales(4));
        let last = q.map(|fq| (fq, fq.activation_scales[4], 0.0));
        self.fc3.forward(h2, false, last)
    }

    pub fn forward(
        &self,
        x: Tensor<4>,
        q: Option<&FakeQuant>,
        dropout: Option<&mut StdRng>,
    ) -> Tensor<2> {
        self.head(self.trunk(x, q), q, dropout)
    }

    /// The float values at the six quantisation points of an fp32 pass, for range estimation:
    /// [input, a1, a2, a3, a4, a5] (a1..a5 after ReLU, before pooling).
    pub fn quant_points(&self, x: Tensor<4>) -> [Tensor<2>; 6] {
        let n = x.dims()[0];
        let a1 = self.conv1.forward(x.clone(), None);
        let a2 = self.conv2.forward(a1.clone(), None);
        let a3 = self.conv3.forward(pool(a2.clone()), None);
        let flat = pool(a3.clone()).reshape([n, FLAT]);
        let a4 = self.fc1.forward(flat, true, None);
        let a5 = self.fc2.forward(a4.clone(), true, None);
        let flatten = |t: Tensor<4>| {
            let [n, c, h, w] = t.dims();
            t.reshape([n, c * h * w])
        };
        [flatten(x), flatten(a1), flatten(a2), flatten(a3), a4, a5]
    }

    fn conv_layers(&self) -> [&ConvLayer; 3] {
        [&self.conv1, &self.conv2, &self.conv3]
    }

    fn dense_layers(&self) -> [&DenseLayer; 3] {
        [&self.fc1, &self.fc2, &self.fc3]
    }

    /// The weights as plain numbers, in [`NetParams`] layout.
    pub fn to_net_params(&self) -> NetParams {
        let mut layers = Vec::with_capacity(6);
        let mut cin = BANDS;
        for (i, l) in self.conv_layers().into_iter().enumerate() {
            layers.push(LayerParams {
                name: format!("conv{}", i + 1),
                kind: LayerKind::Conv3x3,
                in_features: cin,
                out_features: CONV_CHANNELS[i],
                weight: to_vec(l.weight.val()),
                bias: to_vec(l.bias.val()),
                relu: true,
                pool_after: i > 0,
            });
            cin = CONV_CHANNELS[i];
        }
        let mut fin = FLAT;
        for (i, l) in self.dense_layers().into_iter().enumerate() {
            layers.push(LayerParams {
                name: format!("fc{}", i + 1),
                kind: LayerKind::Linear,
                in_features: fin,
                out_features: FC_UNITS[i],
                weight: to_vec(l.weight.val()),
                bias: to_vec(l.bias.val()),
                relu: i < 2,
                pool_after: false,
            });
            fin = FC_UNITS[i];
        }
        NetParams { layers }
    }

    /// A network holding the given weights (checked against the fixed architecture).
    pub fn from_net_params(
        p: &NetParams,
        dropout: f64,
        device: &Device,
    ) -> Result<Cnn, NetShapeError> {
        if p.layers.len() != 6 {
            return Err(NetShapeError::LayerCount(p.layers.len()));
        }
        let reference = Cnn::new(0, dropout, &cpu()).to_net_params();
        for (index, (got, want)) in p.layers.iter().zip(&reference.layers).enumerate() {
            let mismatch = |what, found: String, expected: String| NetShapeError::Mismatch {
                index,
                name: got.name.clone(),
                what,
                found,
                expected,
            };
            if got.kind != want.kind {
                return Err(mismatch(
                    "kind",
                    format!("{:?}", got.kind),
                    format!("{:?}", want.kind),
                ));
            }
            let dims = (got.in_features, got.out_features);
            if dims != (want.in_features, want.out_features) {
                return Err(mismatch(
                    "in/out",
                    format!("{dims:?}"),
                    format!("{:?}", (want.in_features, want.out_features)),
                ));
            }
            if got.weight.len() != want.weight.len() {
                return Err(mismatch(
                    "weight length",
                    got.weight.len().to_string(),
                    want.weight.len().to_string(),
                ));
            }
            if got.bias.len() != want.bias.len() {
                return Err(mismatch(
                    "bias length",
                    got.bias.len().to_string(),
                    want.bias.len().to_string(),
                ));
            }
            if (got.relu, got.pool_after) != (want.relu, want.pool_after) {
                return Err(mismatch(
                    "relu/pool_after",
                    format!("{:?}", (got.relu, got.pool_after)),
                    format!("{:?}", (want.relu, want.pool_after)),
                ));
            }
        }
        let l = &p.layers;
        let conv = |i: usize| {
            let lp = &l[i];
            ConvLayer {
                weight: Param::from_tensor(Tensor::from_data(
                    TensorData::new(lp.weight.clone(), [lp.out_features, lp.in_features, 3, 3]),
                    device,
                )),
                bias: Param::from_tensor(Tensor::from_data(
                    TensorData::new(lp.bias.clone(), [lp.out_features]),
                    device,
                )),
            }
        };
        let dense = |i: usize| {
            let lp = &l[i];
            DenseLayer {
                weight: Param::from_tensor(Tensor::from_data(
                    TensorData::new(lp.weight.clone(), [lp.out_features, lp.in_features]),
                    device,
                )),
                bias: Param::from_tensor(Tensor::from_data(
                    TensorData::new(lp.bias.clone(), [lp.out_features]),
                    device,
                )),
            }
        };
        Ok(Cnn {
            conv1: conv(0),
            conv2: conv(1),
            conv3: conv(2),
            fc1: dense(3),
            fc2: dense(4),
            fc3: dense(5),
            dropout,
        })
    }
}

/// The fake-quantised weight and bias of a dense layer for input scale `s_in`, as the forward
/// pass uses them (for checks against the formulas).
pub fn fake_quant_dense(layer: &DenseLayer, fq: &FakeQuant, s_in: f32) -> (Vec<f32>, Vec<f32>) {
    let (w, b) = fq_weight_bias(layer.weight.val(), layer.bias.val(), s_in, fq.weight_qmax());
    (to_vec(w), to_vec(b))
}

/// Builds an input tensor [n, 5, 9, 9] from flat normalised samples.
pub fn input_tensor(x: &[f32], device: &Device) -> Tensor<4> {
    let n = x.len() / crate::features::INPUT_LEN;
    Tensor::from_data(TensorData::new(x.to_vec(), [n, BANDS, GRID, GRID]), device)
}

/// Reads a float tensor back to a Vec.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("a float tensor converts to f32")
}

/// Logits of a network (no fake quantisation unless `q`), in batches, without gradients.
pub fn logits(model: &Cnn, x: &[f32], q: Option<&FakeQuant>, batch: usize) -> Vec<f32> {
    let device = cpu();
    let model = model.valid();
    let mut out = Vec::with_capacity(x.len() / crate::features::INPUT_LEN * 3);
    for chunk in x.chunks(batch.max(1) * crate::features::INPUT_LEN) {
        out.extend(to_vec(model.forward(input_tensor(chunk, &device), q, None)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand_distr::StandardNormal;

    fn randn(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect()
    }

    fn tensor<const D: usize>(v: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
    }

    /// Checks d/dv sum(op(v) * r) from burn's autodiff against central finite differences of the
    /// plain forward at every coordinate of v. `op` gets v on either device.
    fn check_gradient<const D: usize, const E: usize>(
        v: &[f32],
        shape: [usize; D],
        op: impl Fn(Tensor<D>) -> Tensor<E>,
        eps: f32,
    ) {
        let plain = cpu();
        let out_len = op(tensor(v, shape, &plain))
            .dims()
            .iter()
            .product::<usize>();
        let r = randn(out_len, 99);
        let loss = |v: &[f32]| -> f64 {
            let out = to_vec(op(tensor(v, shape, &plain)));
            out.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum()
        };
        let ad = cpu_autodiff();
        let leaf = tensor(v, shape, &ad).require_grad();
        let out = op(leaf.clone());
        let weights = tensor(&r, out.dims(), &ad);
        let grads = (out * weights).sum().backward();
        let analytic = to_vec(leaf.grad(&grads).expect("leaf has a gradient"));
        assert_eq!(analytic.len(), v.len());
        let mut worst = 0.0f64;
        for i in 0..v.len() {
            let mut p = v.to_vec();
            p[i] += eps;
            let up = loss(&p);
            p[i] -= 2.0 * eps;
            let down = loss(&p);
            let numeric = (up - down) / (2.0 * eps as f64);
            let err = (numeric - analytic[i] as f64).abs() / (1.0 + numeric.abs());
            worst = worst.max(err);
            assert!(
                err < 2e-3,
                "coordinate {i}: finite difference {numeric}, autodiff {}",
                analytic[i]
            );
        }
        assert!(worst.is_finite());
    }

    fn conv_options() -> ConvOptions<2> {
        ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
    }

    #[test]
    fn conv2d_forward_matches_a_direct_convolution() {
        let (cin, cout, side) = (2, 3, 5);
        let x = randn(cin * side * side, 1);
        let w = randn(cout * cin * 9, 2);
        let b = randn(cout, 3);
        let d = cpu();
        let y = to_vec(conv2d(
            tensor(&x, [1, cin, side, side], &d),
            tensor(&w, [cout, cin, 3, 3], &d),
            Some(tensor(&b, [cout], &d)),
            conv_options(),
        ));
        for o in 0..cout {
            for r in 0..side {
                for c in 0..side {
                    let mut acc = b[o] as f64;
                    for i in 0..cin {
                        for kr in 0..3 {
                            for kc in 0..3 {
                                let (rr, cc) =
                                    (r as isize + kr as isize - 1, c as isize + kc as isize - 1);
                                if rr < 0 || cc < 0 || rr >= side as isize || cc >= side as isize {
                                    continue;
                                }
                                acc += x[(i * side + rr as usize) * side + cc as usize] as f64
                                    * w[((o * cin + i) * 3 + kr) * 3 + kc] as f64;
                            }
                        }
                    }
                    let got = y[(o * side + r) * side + c] as f64;
                    assert!((got - acc).abs() < 1e-4, "out {o},{r},{c}: {got} vs {acc}");
                }
            }
        }
    }

    #[test]
    fn max_pool_forward_takes_window_maxima_and_drops_the_last_row_and_column() {
        let x = randn(2 * 9 * 9, 4);
        let y = to_vec(pool(tensor(&x, [1, 2, 9, 9], &cpu())));
        assert_eq!(y.len(), 2 * 4 * 4);
        for ch in 0..2 {
            for r in 0..4 {
                for c in 0..4 {
                    let m = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .iter()
                        .map(|(dr, dc)| x[(ch * 9 + 2 * r + dr) * 9 + 2 * c + dc])
                        .fold(f32::MIN, f32::max);
                    assert_eq!(y[(ch * 4 + r) * 4 + c], m);
                }
            }
        }
    }

    #[test]
    fn conv2d_gradients_match_finite_differences() {
        let d = cpu();
        let x = randn(2 * 3 * 9 * 9, 5);
        let w = randn(4 * 3 * 9, 6);
        let b = randn(4, 7);
        let (wc, bc) = (w.clone(), b.clone());
        check_gradient(
            &x,
            [2, 3, 9, 9],
            move |x| {
                let dev = x.device();
                conv2d(
                    x,
                    tensor(&wc, [4, 3, 3, 3], &dev),
                    Some(tensor(&bc, [4], &dev)),
                    conv_options(),
                )
            },
            1e-2,
        );
        let (xc, bc) = (x.clone(), b.clone());
        check_gradient(
            &w,
            [4, 3, 3, 3],
            move |w| {
                let dev = w.device();
                conv2d(
                    tensor(&xc, [2, 3, 9, 9], &dev),
                    w,
                    Some(tensor(&bc, [4], &dev)),
                    conv_options(),
                )
            },
            1e-2,
        );
        let _ = d;
        check_gradient(
            &b,
            [4],
            move |b| {
                let dev = b.device();
                conv2d(
                    tensor(&x, [2, 3, 9, 9], &dev),
                    tensor(&w, [4, 3, 3, 3], &dev),
                    Some(b),
                    conv_options(),
                )
            },
            1e-2,
        );
    }

    #[test]
    fn max_pool_gradients_match_finite_differences_on_9x9_and_4x4() {
        // Values at least 0.01 apart: a +-1e-3 step never changes a window's maximum.
        let spaced = |n: usize, seed: u64| -> Vec<f32> {
            let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
            v.shuffle(&mut StdRng::seed_from_u64(seed));
            v
        };
        check_gradient(&spaced(2 * 3 * 9 * 9, 8), [2, 3, 9, 9], pool, 1e-3);
        check_gradient(&spaced(2 * 3 * 4 * 4, 9), [2, 3, 4, 4], pool, 1e-3);
    }

    #[test]
    fn max_pool_gradient_lands_on_the_window_maximum_with_unit_scale() {
        let x = randn(9 * 9, 10);
        let ad = cpu_autodiff();
        let leaf = tensor(&x, [1, 1, 9, 9], &ad).require_grad();
        let grads = pool(leaf.clone()).sum().backward();
        let g = to_vec(leaf.grad(&grads).unwrap());
        let mut expected = vec![0.0f32; 81];
        for r in 0..4 {
            for c in 0..4 {
                let arg = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|(dr, dc)| (2 * r + dr) * 9 + 2 * c + dc)
                    .max_by(|a, b| x[*a].total_cmp(&x[*b]))
                    .unwrap();
                expected[arg] = 1.0;
            }
        }
        assert_eq!(g, expected);
    }

    #[test]
    fn linear_and_relu_gradients_match_finite_differences() {
        let x = randn(3 * 7, 11);
        let w = randn(5 * 7, 12);
        let b = randn(5, 13);
        let (wc, bc) = (w.clone(), b.clone());
        check_gradient(
            &x,
            [3, 7],
            move |x| {
                let dev = x.device();
                linear(
                    x,
                    tensor(&wc, [5, 7], &dev).transpose(),
                    Some(tensor(&bc, [5], &dev)),
                )
            },
            1e-2,
        );
        let xc = x.clone();
        check_gradient(
            &w,
            [5, 7],
            move |w| {
                let dev = w.device();
                linear(
                    tensor(&xc, [3, 7], &dev),
                    w.transpose(),
                    Some(tensor(&b, [5], &dev)),
                )
            },
            1e-2,
        );
        // ReLU away from its kink.
        let v: Vec<f32> = randn(40, 14)
            .into_iter()
            .map(|v| if v.abs() < 0.05 { 0.5 } else { v })
            .collect();
        check_gradient(&v, [4, 10], burn::tensor::activation::relu, 1e-3);
    }

    #[test]
    fn whole_network_gradients_match_finite_differences() {
        // Every parameter tensor of the network, a few coordinates each, through the full fp32
        // forward pass (conv, ReLU, pool, flatten, linear).
        let model = Cnn::new(3, 0.0, &cpu());
        let params = model.to_net_params();
        let x = randn(2 * crate::features::INPUT_LEN, 15);
        let r = randn(2 * 3, 16);
        // Loss and the on/off pattern of every ReLU: a mismatch is excused (and counted) only when
        // the step crossed a ReLU kink, where the finite difference is meaningless.
        let loss = |p: &NetParams| -> (f64, Vec<bool>) {
            let m = Cnn::from_net_params(p, 0.0, &cpu()).unwrap();
            let out = to_vec(m.forward(input_tensor(&x, &cpu()), None, None));
            let pattern = m.quant_points(input_tensor(&x, &cpu()))[1..]
                .iter()
                .flat_map(|t| to_vec(t.clone()).into_iter().map(|v| v > 0.0))
                .collect();
            (
                out.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum(),
                pattern,
            )
        };
        let ad = cpu_autodiff();
        let m = Cnn::from_net_params(&params, 0.0, &ad).unwrap();
        let out = m.forward(input_tensor(&x, &ad), None, None);
        let grads = (out * tensor(&r, [2, 3], &ad)).sum().backward();
        let analytic: Vec<(Vec<f32>, Vec<f32>)> = vec![
            (
                to_vec(m.conv1.weight.val().grad(&grads).unwrap()),
                to_vec(m.conv1.bias.val().grad(&grads).unwrap()),
            ),
            (
                to_vec(m.conv2.weight.val().grad(&grads).unwrap()),
                to_vec(m.conv2.bias.val().grad(&grads).unwrap()),
            ),
            (
                to_vec(m.conv3.weight.val().grad(&grads).unwrap()),
                to_vec(m.conv3.bias.val().grad(&grads).unwrap()),
            ),
            (
                to_vec(m.fc1.weight.val().grad(&grads).unwrap()),
                to_vec(m.fc1.bias.val().grad(&grads).unwrap()),
            ),
            (
                to_vec(m.fc2.weight.val().grad(&grads).unwrap()),
                to_vec(m.fc2.bias.val().grad(&grads).unwrap()),
            ),
            (
                to_vec(m.fc3.weight.val().grad(&grads).unwrap()),
                to_vec(m.fc3.bias.val().grad(&grads).unwrap()),
            ),
        ];
        let mut rng = StdRng::seed_from_u64(17);
        let eps = 1e-3f32;
        let (mut checked, mut skipped) = (0, 0);
        for (layer, (gw, gb)) in analytic.iter().enumerate() {
            for is_bias in [false, true] {
                let g = if is_bias { gb } else { gw };
                // The largest-gradient coordinate (surely nonzero) plus random ones.
                let top = (0..g.len())
                    .max_by(|a, b| g[*a].abs().total_cmp(&g[*b].abs()))
                    .unwrap();
                let picks: Vec<usize> = std::iter::once(top)
                    .chain((0..3).map(|_| rng.gen_range(0..g.len())))
                    .collect();
                for i in picks {
                    let mut p = params.clone();
                    fn slot(p: &mut NetParams, layer: usize, is_bias: bool, i: usize) -> &mut f32 {
                        let l = &mut p.layers[layer];
                        if is_bias {
                            &mut l.bias[i]
                        } else {
                            &mut l.weight[i]
                        }
                    }
                    *slot(&mut p, layer, is_bias, i) += eps;
                    let (up, up_pattern) = loss(&p);
                    *slot(&mut p, layer, is_bias, i) -= 2.0 * eps;
                    let (down, down_pattern) = loss(&p);
                    let numeric = (up - down) / (2.0 * eps as f64);
                    let err = (numeric - g[i] as f64).abs() / (1e-2 + numeric.abs());
                    if err >= 5e-2 && up_pattern != down_pattern {
                        skipped += 1;
                        continue;
                    }
                    assert!(
                        err < 5e-2,
                        "layer {layer} bias={is_bias} [{i}]: fd {numeric} vs autodiff {}",
                        g[i]
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked + skipped, 6 * 2 * 4);
        assert!(skipped <= 2, "{skipped} coordinates crossed a ReLU kink");
    }

    #[test]
    fn fake_quant_gradient_is_one_inside_the_range_and_zero_outside() {
        // s = 0.5: input range [-64, 63.5], activation range [0, 127.5].
        let v = [-70.0f32, -1.3, 0.2, 63.0, 70.0];
        let ad = cpu_autodiff();
        let leaf = tensor(&v, [5], &ad).require_grad();
        let grads = fq_input(leaf.clone(), 0.5).sum().backward();
        assert_eq!(
            to_vec(leaf.grad(&grads).unwrap()),
            vec![0.0, 1.0, 1.0, 1.0, 0.0]
        );
        let leaf = tensor(&[0.3f32, 100.0, 130.0], [3], &ad).require_grad();
        let grads = fq_activation(leaf.clone(), 0.5).sum().backward();
        assert_eq!(to_vec(leaf.grad(&grads).unwrap()), vec![1.0, 1.0, 0.0]);
    }

    #[test]
    fn net_params_round_trip_and_shape_errors() {
        let model = Cnn::new(1, 0.0, &cpu());
        let p = model.to_net_params();
        assert_eq!(
            p.layers
                .iter()
                .map(|l| l.weight.len() + l.bias.len())
                .sum::<usize>(),
            111_395
        );
        let back = Cnn::from_net_params(&p, 0.0, &cpu())
            .unwrap()
            .to_net_params();
        assert_eq!(back, p);
        let mut bad = p.clone();
        bad.layers[3].weight.pop();
        assert!(matches!(
            Cnn::from_net_params(&bad, 0.0, &cpu()),
            Err(NetShapeError::Mismatch {
                index: 3,
                what: "weight length",
                ..
            })
        ));
        bad.layers.pop();
        assert_eq!(
            Cnn::from_net_params(&bad, 0.0, &cpu()).unwrap_err(),
            NetShapeError::LayerCount(5)
        );
    }
}
