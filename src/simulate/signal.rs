//! The signal model. Every term is a cheap recursive filter driven by seeded noise, so an hour of
//! 62 channels at 200 Hz takes seconds and the output depends only on the config (and its seed).
//!
//! Terms (all in microvolts), with the physiology they stand for:
//! - Background: pink (1/f) noise, the scale-free spectrum of ongoing cortical activity. Each
//!   channel mixes its own source with a few broad shared sources (volume conduction spreads one
//!   cortical source over neighbouring electrodes), so nearby channels correlate.
//! - Posterior alpha (~10 Hz, individual frequency 9-11 Hz): the occipito-parietal resting
//!   rhythm, a narrow-band waxing and waning oscillation strongest over P/PO/O sites.
//! - Frontal alpha: a weaker frontal alpha generator shared by both hemispheres plus a
//!   per-hemisphere part. Its left/right balance carries the frontal alpha asymmetry effect.
//! - Line noise: mains interference at `line_freq_hz`, nearly common-mode with a per-channel
//!   amplitude and phase (electrode impedances differ).
//! - Eye blinks: 200-400 ms monophasic deflections of ~120 uV at Fp1/Fp2 (the eyes are dipoles
//!   just in front of them), falling off with distance from the eyes; Poisson-timed.
//! - Impedance drift: slow random walk of each electrode's offset (electrode-gel changes, sweat),
//!   kept bounded by a 40 s leak.
//! - Class effects, times `effect_strength` (0 = none) and a per-block random factor:
//!   * frontal alpha asymmetry (Davidson's approach/withdrawal model): positive = less alpha
//!     (more activity) over LEFT frontal sites than right, negative = the reverse;
//!   * beta/gamma power over lateral temporal sites (T7/T8/FT7/FT8/TP7/TP8), higher for positive
//!     and lower for negative than neutral (Zheng & Lu 2015, SEED);
//!   * prefrontal beta/gamma (Fp/AF rows) higher in both emotional states than in neutral
//!     (arousal), the method's premise that prefrontal sites carry emotion information.
//!
//! Per block (trial) the background level, alpha level, blink rate and effect size vary
//! randomly, independent of the class, so classes are learnable but not trivially.
//!
//! Channels whose label is unknown get the background only (own pink noise, line noise, drift).
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, StandardNormal};

use super::montage::{canonical, position};
use super::{block_at, class_of_block, mix_seed, SimConfig};

const BG_RMS: f64 = 12.0;
const SHARED_FRACTION: f64 = 0.5;
const POSTERIOR_ALPHA_RMS: f64 = 10.0;
const FRONTAL_ALPHA_RMS: f64 = 5.0;
const BETA_RMS: f64 = 4.0;
const GAMMA_RMS: f64 = 3.0;
const BLINK_UV: f64 = 120.0;
const DRIFT_RMS: f64 = 25.0;
const DRIFT_TAU_S: f64 = 40.0;
/// Amplitude change of left vs right frontal alpha at effect_strength 1 (power ratio 0.36).
const ASYMMETRY: f64 = 0.25;
/// Temporal beta/gamma amplitude change at effect_strength 1.
const TEMPORAL_EFFECT: f64 = 0.5;
/// Prefrontal beta/gamma amplitude increase with arousal at effect_strength 1.
const PREFRONTAL_EFFECT: f64 = 0.6;

const TEMPORAL_SITES: [&str; 6] = ["T7", "T8", "FT7", "FT8", "TP7", "TP8"];
const PREFRONTAL_SITES: [&str; 7] = ["FP1", "FPZ", "FP2", "AF3", "AF4", "AF7", "AF8"];

/// Centres of the shared background sources.
const SHARED_SOURCES: [(f64, f64); 6] = [
    (-0.5, 0.6),
    (0.5, 0.6),
    (0.0, 0.1),
    (-0.6, -0.4),
    (0.6, -0.4),
    (0.0, -0.8),
];

/// Paul Kellet's pink filter: six leaky integrators approximating 1/f over ~0.0002 fs .. fs/2.
#[derive(Clone, Default)]
struct Pink([f64; 7]);

impl Pink {
    const POLES: [f64; 6] = [0.99886, 0.99332, 0.96900, 0.86650, 0.55000, -0.7616];
    const GAINS: [f64; 6] = [
        0.0555179, 0.0750759, 0.1538520, 0.3104856, 0.5329522, -0.0168980,
    ];

    fn next(&mut self, white: f64) -> f64 {
        let (stages, delayed) = self.0.split_at_mut(6);
        let mut out = white * 0.5362 + delayed[0];
        for ((state, pole), gain) in stages.iter_mut().zip(Self::POLES).zip(Self::GAINS) {
            *state = pole * *state + white * gain;
            out += *state;
        }
        delayed[0] = white * 0.115926;
        out
    }

    /// Standard deviation of the output for unit white input (from the impulse response).
    fn output_std() -> f64 {
        let mut p = Pink::default();
        let mut energy = 0.0;
        for n in 0..40_000 {
            let y = p.next(if n == 0 { 1.0 } else { 0.0 });
            energy += y * y;
        }
        energy.sqrt()
    }
}

/// A two-pole resonator driven by white noise: a narrow-band rhythm with natural waxing and
/// waning, scaled to unit variance.
#[derive(Clone)]
struct Resonator {
    a1: f64,
    a2: f64,
    input_gain: f64,
    y1: f64,
    y2: f64,
}

impl Resonator {
    fn new(centre_hz: f64, bandwidth_hz: f64, fs: f64) -> Self {
        let r = (-std::f64::consts::PI * bandwidth_hz / fs).exp();
        let w = 2.0 * std::f64::consts::PI * centre_hz / fs;
        let (a1, a2) = (2.0 * r * w.cos(), -r * r);
        // Stationary variance of an AR(2) process for unit-variance input.
        let var = (1.0 - a2) / ((1.0 + a2) * ((1.0 - a2).powi(2) - a1 * a1));
        Self {
            a1,
            a2,
            input_gain: 1.0 / var.sqrt(),
            y1: 0.0,
            y2: 0.0,
        }
    }

    fn next(&mut self, white: f64) -> f64 {
        let y = self.a1 * self.y1 + self.a2 * self.y2 + self.input_gain * white;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Fixed properties of one channel.
struct Channel {
    own_weight: f64,
    /// Weights of the shared sources (already scaled so the mixture has unit variance).
    shared: [f64; SHARED_SOURCES.len()],
    posterior_alpha: f64,
    frontal_alpha: f64,
    /// -1 left, 0 midline, +1 right.
    side: f64,
    line_sin: f64,
    line_cos: f64,
    blink: f64,
    /// Index into the fast-band generators, with the site kind.
    fast: Option<(usize, FastSite)>,
}

#[derive(Clone, Copy, PartialEq)]
enum FastSite {
    Temporal,
    Prefrontal,
}

/// What changes at each block (trial).
#[derive(Clone, Copy)]
struct Block {
    /// Frontal alpha asymmetry: left gain 1 - a, right gain 1 + a.
    asymmetry: f64,
    temporal_gain: f64,
    prefrontal_gain: f64,
    background_gain: f64,
    alpha_gain: f64,
    blink_rate_hz: f64,
}

impl Block {
    fn draw(cfg: &SimConfig, block: u64) -> Self {
        let class = class_of_block(cfg.seed, block);
        let mut rng = StdRng::seed_from_u64(mix_seed(cfg.seed, block, 0xB10C));
        let n = |rng: &mut StdRng, sd: f64| sd * rng.sample::<f64, _>(StandardNormal);
        let jitter = (1.0 + n(&mut rng, 0.3)).clamp(0.2, 1.8);
        let s = cfg.effect_strength * jitter;
        // valence: -1 negative, 0 neutral, +1 positive; arousal: 1 for both emotional states.
        let valence = class as f64 - 1.0;
        let arousal = valence.abs();
        Self {
            asymmetry: (ASYMMETRY * s * valence + n(&mut rng, 0.05)).clamp(-0.8, 0.8),
            temporal_gain: (1.0 + TEMPORAL_EFFECT * s * valence).max(0.0),
            prefrontal_gain: 1.0 + PREFRONTAL_EFFECT * s * arousal,
            background_gain: n(&mut rng, 0.1).exp(),
            alpha_gain: n(&mut rng, 0.25).exp(),
            blink_rate_hz: rng.gen_range(0.15..0.4),
        }
    }
}

/// The simulated headset. `fill` produces the next samples; output depends only on the config,
/// not on how the samples are split into calls.
pub struct EegSimulator {
    cfg: SimConfig,
    rng: StdRng,
    index: u64,
    block_index: u64,
    block: Block,
    channels: Vec<Channel>,
    own_pink: Vec<Pink>,
    shared_pink: Vec<Pink>,
    shared_now: [f64; SHARED_SOURCES.len()],
    pink_scale: f64,
    posterior_alpha: Resonator,
    /// Common, left-only, right-only frontal alpha generators.
    frontal_alpha: [Resonator; 3],
    /// Beta and gamma generators per fast-band site.
    fast: Vec<(Resonator, Resonator)>,
    drift: Vec<f64>,
    drift_keep: f64,
    drift_step: f64,
    /// Remaining samples and per-sample values of the current blink.
    blink_left: usize,
    blink_len: usize,
    blink_amp: f64,
}

impl EegSimulator {
    pub(super) fn build(cfg: SimConfig) -> Self {
        let fs = cfg.sample_rate_hz;
        let mut subject = StdRng::seed_from_u64(mix_seed(cfg.seed, 0, 0x5B1EC7));
        let individual_alpha = subject.gen_range(9.0..11.0);
        let line_phase: f64 = subject.gen_range(0.0..std::f64::consts::TAU);
        let mut fast = Vec::new();
        let channels = cfg
            .channels
            .iter()
            .map(|label| {
                let name = canonical(label);
                let line_amp = 2.0 * (0.4 * subject.sample::<f64, _>(StandardNormal)).exp();
                let phase = line_phase + 0.3 * subject.sample::<f64, _>(StandardNormal);
                let (line_sin, line_cos) = (line_amp * phase.cos(), line_amp * phase.sin());
                let kind = if TEMPORAL_SITES.contains(&name.as_str()) {
                    Some(FastSite::Temporal)
                } else if PREFRONTAL_SITES.contains(&name.as_str()) {
                    Some(FastSite::Prefrontal)
                } else {
                    None
                };
                let fast_ix = kind.map(|k| {
                    fast.push((
                        Resonator::new(22.0, 12.0, fs),
                        Resonator::new(40.0, 14.0, fs),
                    ));
                    (fast.len() - 1, k)
                });
                let Some((x, y)) = position(label) else {
                    return Channel {
                        own_weight: 1.0,
                        shared: [0.0; SHARED_SOURCES.len()],
                        posterior_alpha: 0.0,
                        frontal_alpha: 0.0,
                        side: 0.0,
                        line_sin,
                        line_cos,
                        blink: 0.0,
                        fast: None,
                    };
                };
                let mut shared = SHARED_SOURCES.map(|(sx, sy)| {
                    (-((x - sx).powi(2) + (y - sy).powi(2)) / (2.0 * 0.5f64.powi(2))).exp()
                });
                let norm = shared.iter().map(|w| w * w).sum::<f64>().sqrt();
                shared
                    .iter_mut()
                    .for_each(|w| *w *= SHARED_FRACTION.sqrt() / norm);
                // Distance to the nearer eye, in front of Fp1/Fp2.
                let eye = ((x.abs() - 0.25).powi(2) + (y - 1.3).powi(2)).sqrt();
                Channel {
                    own_weight: (1.0 - SHARED_FRACTION).sqrt(),
                    shared,
                    posterior_alpha: POSTERIOR_ALPHA_RMS
                        * (0.15 + 0.85 * ((0.25 - y) / 1.25).clamp(0.0, 1.0)),
                    frontal_alpha: FRONTAL_ALPHA_RMS * ((y - 0.1) / 0.4).clamp(0.0, 1.0),
                    side: if x.abs() < 1e-9 { 0.0 } else { x.signum() },
                    line_sin,
                    line_cos,
                    blink: (-(eye - 0.3) / 0.3).exp().min(1.0),
                    fast: fast_ix,
                }
            })
            .collect::<Vec<_>>();
        let n = channels.len();
        let drift_keep = 1.0 - 1.0 / (DRIFT_TAU_S * fs);
        Self {
            rng: StdRng::seed_from_u64(mix_seed(cfg.seed, 0, 0x4015E)),
            index: 0,
            block_index: 0,
            block: Block::draw(&cfg, 0),
            channels,
            own_pink: vec![Pink::default(); n],
            shared_pink: vec![Pink::default(); SHARED_SOURCES.len()],
            shared_now: [0.0; SHARED_SOURCES.len()],
            pink_scale: 1.0 / Pink::output_std(),
            posterior_alpha: Resonator::new(individual_alpha, 1.0, fs),
            frontal_alpha: std::array::from_fn(|_| Resonator::new(individual_alpha, 1.5, fs)),
            fast,
            // Start the drift at its stationary spread.
            drift: (0..n)
                .map(|_| DRIFT_RMS * subject.sample::<f64, _>(StandardNormal))
                .collect(),
            drift_keep,
            drift_step: DRIFT_RMS * (1.0 - drift_keep * drift_keep).sqrt(),
            blink_left: 0,
            blink_len: 0,
            blink_amp: 0.0,
            cfg,
        }
    }

    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Class index (0 negative, 1 neutral, 2 positive) of the next sample.
    pub fn state(&self) -> usize {
        class_of_block(self.cfg.seed, self.block_of(self.index))
    }

    /// Index of the next sample since the start.
    pub fn sample_index(&self) -> u64 {
        self.index
    }

    fn block_of(&self, index: u64) -> u64 {
        block_at(&self.cfg, index as f64 / self.cfg.sample_rate_hz)
    }

    /// Fills `out` with the next `out.len() / channels` samples, interleaved [sample][channel], in
    /// microvolts. A trailing partial sample (length not a multiple of the channel count) is
    /// left untouched.
    pub fn fill(&mut self, out: &mut [f32]) {
        let nch = self.channels.len();
        if nch == 0 {
            return;
        }
        for sample in out.chunks_exact_mut(nch) {
            self.next_sample(sample);
        }
    }

    fn normal(&mut self) -> f64 {
        self.rng.sample(StandardNormal)
    }

    fn next_sample(&mut self, out: &mut [f32]) {
        let fs = self.cfg.sample_rate_hz;
        let block = self.block_of(self.index);
        if block != self.block_index {
            self.block_index = block;
            self.block = Block::draw(&self.cfg, block);
        }
        let b = self.block;

        for k in 0..self.shared_pink.len() {
            let w = self.normal();
            self.shared_now[k] = self.shared_pink[k].next(w) * self.pink_scale;
        }
        let w = self.normal();
        let posterior = self.posterior_alpha.next(w) * b.alpha_gain;
        let mut fr = [0.0; 3];
        for (k, v) in fr.iter_mut().enumerate() {
            let w = self.normal();
            *v = self.frontal_alpha[k].next(w) * b.alpha_gain;
        }
        // Mostly one bilateral generator (0.9^2 + 0.44^2 ~ 1: unit variance on each side).
        let left = (0.9 * fr[0] + 0.44 * fr[1]) * (1.0 - b.asymmetry);
        let right = (0.9 * fr[0] + 0.44 * fr[2]) * (1.0 + b.asymmetry);
        let mid = 0.9 * fr[0] + 0.44 * std::f64::consts::FRAC_1_SQRT_2 * (fr[1] + fr[2]);

        let phase =
            std::f64::consts::TAU * (self.index as f64 * self.cfg.line_freq_hz / fs).fract();
        let (line_s, line_c) = phase.sin_cos();

        let blink = self.blink_value(fs, b.blink_rate_hz);

        let Self {
            rng,
            channels,
            own_pink,
            shared_now,
            fast,
            drift,
            ..
        } = self;
        let (pink_scale, drift_keep, drift_step) =
            (self.pink_scale, self.drift_keep, self.drift_step);
        let mut normal = || -> f64 { rng.sample(StandardNormal) };
        for (c, value) in out.iter_mut().enumerate() {
            let ch = &channels[c];
            let own = own_pink[c].next(normal()) * pink_scale;
            let shared: f64 = ch
                .shared
                .iter()
                .zip(shared_now.iter())
                .map(|(w, s)| w * s)
                .sum();
            let mut v = BG_RMS * b.background_gain * (ch.own_weight * own + shared);
            v += ch.posterior_alpha * posterior;
            v += ch.frontal_alpha
                * match ch.side {
                    s if s < 0.0 => left,
                    s if s > 0.0 => right,
                    _ => mid,
                };
            v += ch.line_sin * line_s + ch.line_cos * line_c;
            v += ch.blink * blink;
            if let Some((ix, site)) = ch.fast {
                let gain = match site {
                    FastSite::Temporal => b.temporal_gain,
                    FastSite::Prefrontal => b.prefrontal_gain,
                };
                let (beta, gamma) = &mut fast[ix];
                v += gain * (BETA_RMS * beta.next(normal()) + GAMMA_RMS * gamma.next(normal()));
            }
            drift[c] = drift[c] * drift_keep + drift_step * normal();
            v += drift[c];
            *value = v as f32;
        }
        self.index += 1;
    }

    /// Current blink deflection at the eyes (uV); starts new blinks as a Poisson process.
    fn blink_value(&mut self, fs: f64, rate_hz: f64) -> f64 {
        if self.blink_left == 0 && self.rng.gen::<f64>() < rate_hz / fs {
            self.blink_len = ((self.rng.gen_range(0.2..0.4) * fs) as usize).max(2);
            self.blink_left = self.blink_len;
            self.blink_amp = Normal::new(BLINK_UV, 30.0)
                .map(|d| d.sample(&mut self.rng))
                .unwrap_or(BLINK_UV)
                .max(40.0);
        }
        if self.blink_left == 0 {
            return 0.0;
        }
        let k = (self.blink_len - self.blink_left) as f64;
        self.blink_left -= 1;
        self.blink_amp * 0.5 * (1.0 - (std::f64::consts::TAU * k / self.blink_len as f64).cos())
    }
}
