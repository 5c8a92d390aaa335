//! A simulated EEG headset: realistic multichannel EEG with class-dependent effects, published
//! over LSL together with a marker stream naming the simulated state. The signal model and the
//! physiology behind each term are described in `signal.rs`.
mod montage;
mod signal;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use lsl::{ChannelFormat, ExPushable, StreamInfo, StreamOutlet};
use rand::seq::SliceRandom;
use rand::SeedableRng;

pub use montage::SIM_DEFAULT_CHANNELS;
pub use signal::EegSimulator;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Channel labels; default SEED's 62 in SEED order. Unknown labels get background only.
    pub channels: Vec<String>,
    pub sample_rate_hz: f64,
    /// Scale of the class-dependent effects; 0 = the signal carries no class information.
    pub effect_strength: f64,
    /// Length of one simulated trial (one class), seconds.
    pub state_duration_s: f64,
    pub seed: u64,
    /// Mains frequency; 0 = no line noise.
    pub line_freq_hz: f64,
    pub stream_name: String,
    pub source_id: String,
    /// Samples per LSL push, in seconds.
    pub chunk_s: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            channels: SIM_DEFAULT_CHANNELS.iter().map(|s| s.to_string()).collect(),
            sample_rate_hz: 200.0,
            effect_strength: 1.0,
            state_duration_s: 20.0,
            seed: 0,
            line_freq_hz: 50.0,
            stream_name: "affectd-sim".into(),
            source_id: "affectd-sim".into(),
            chunk_s: 0.02,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimConfigError {
    #[error("simulate.channels: at least one channel is needed")]
    NoChannels,
    #[error("simulate.sample_rate_hz must be finite and > 0, got {0}")]
    SampleRate(f64),
    #[error("simulate.effect_strength must be finite and >= 0, got {0}")]
    EffectStrength(f64),
    #[error("simulate.state_duration_s must be finite and > 0, got {0}")]
    StateDuration(f64),
    #[error(
        "simulate.line_freq_hz must be 0 (off) or in (0, {nyquist}) (below Nyquist), got {line}"
    )]
    LineFreq { line: f64, nyquist: f64 },
    #[error("simulate.chunk_s must be finite and > 0, got {0}")]
    Chunk(f64),
    #[error("simulate.stream_name must not be empty")]
    StreamName,
    #[error("simulation speed must be finite and > 0, got {0}")]
    Speed(f64),
    #[error("session length must be finite and >= 0 seconds, got {0}")]
    Seconds(f64),
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), SimConfigError> {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if self.channels.is_empty() {
            return Err(SimConfigError::NoChannels);
        }
        if !pos(self.sample_rate_hz) {
            return Err(SimConfigError::SampleRate(self.sample_rate_hz));
        }
        if !(self.effect_strength.is_finite() && self.effect_strength >= 0.0) {
            return Err(SimConfigError::EffectStrength(self.effect_strength));
        }
        if !pos(self.state_duration_s) {
            return Err(SimConfigError::StateDuration(self.state_duration_s));
        }
        let nyquist = self.sample_rate_hz / 2.0;
        if !(self.line_freq_hz == 0.0 || (pos(self.line_freq_hz) && self.line_freq_hz < nyquist)) {
            return Err(SimConfigError::LineFreq {
                line: self.line_freq_hz,
                nyquist,
            });
        }
        if !pos(self.chunk_s) {
            return Err(SimConfigError::Chunk(self.chunk_s));
        }
        if self.stream_name.is_empty() {
            return Err(SimConfigError::StreamName);
        }
        Ok(())
    }
}

impl EegSimulator {
    pub fn new(cfg: SimConfig) -> Result<Self, SimConfigError> {
        cfg.validate()?;
        Ok(Self::build(cfg))
    }
}

/// splitmix64 finaliser: decorrelates seeds derived from (seed, index, purpose).
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn mix_seed(seed: u64, index: u64, purpose: u64) -> u64 {
    splitmix(seed ^ splitmix(index ^ splitmix(purpose)))
}

/// Index of the block (trial) running at `t_s` seconds since the start.
pub(crate) fn block_at(cfg: &SimConfig, t_s: f64) -> u64 {
    // `as` saturates (NaN -> 0), so a bad config cannot panic here.
    (t_s / cfg.state_duration_s).floor().max(0.0) as u64
}

/// Class of a block: blocks come in rounds of three, each round a seeded shuffle of the three
/// classes, so every class is simulated equally often.
pub(crate) fn class_of_block(seed: u64, block: u64) -> usize {
    let mut order = [0usize, 1, 2];
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix_seed(seed, block / 3, 0x5EED));
    order.shuffle(&mut rng);
    order[(block % 3) as usize]
}

/// Which class (0 negative, 1 neutral, 2 positive) is simulated `t_s` seconds after the start.
pub fn state_schedule(cfg: &SimConfig, t_s: f64) -> usize {
    class_of_block(cfg.seed, block_at(cfg, t_s))
}

/// Marker text for a class at a trial boundary.
fn marker(kind: &str, class: usize) -> String {
    format!("{kind}:{}", crate::CLASSES[class])
}

/// Emits stimulus_end / stimulus_start markers when the trial changes.
#[derive(Default)]
struct MarkerTracker {
    block: Option<u64>,
}

impl MarkerTracker {
    /// Markers due at sample `index` (0, 1 or 2 of them, end before start).
    fn at(&mut self, cfg: &SimConfig, index: u64) -> Vec<String> {
        let block = block_at(cfg, index as f64 / cfg.sample_rate_hz);
        if self.block == Some(block) {
            return Vec::new();
        }
        let mut out: Vec<String> = self.finish(cfg).into_iter().collect();
        out.push(marker("stimulus_start", class_of_block(cfg.seed, block)));
        self.block = Some(block);
        out
    }

    /// The end marker of the running trial, if any.
    fn finish(&self, cfg: &SimConfig) -> Option<String> {
        self.block
            .map(|b| marker("stimulus_end", class_of_block(cfg.seed, b)))
    }
}

/// An offline simulated recording. Timestamps start at 0.
#[derive(Debug, Clone)]
pub struct SynthSession {
    pub channels: Vec<String>,
    pub sample_rate_hz: f64,
    /// Interleaved [sample][channel], microvolts.
    pub data: Vec<f32>,
    pub timestamps: Vec<f64>,
    /// Class index of each sample.
    pub states: Vec<u8>,
    /// (timestamp, "stimulus_start:<class>" / "stimulus_end:<class>").
    pub markers: Vec<(f64, String)>,
}

/// Simulates `seconds` of EEG offline (same samples as the live simulator with this config).
pub fn synth_session(cfg: &SimConfig, seconds: f64) -> Result<SynthSession, SimConfigError> {
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(SimConfigError::Seconds(seconds));
    }
    let mut sim = EegSimulator::new(cfg.clone())?;
    let fs = cfg.sample_rate_hz;
    let n = (seconds * fs).round() as usize;
    let mut data = vec![0f32; n * sim.channels()];
    let mut states = Vec::with_capacity(n);
    let mut markers = Vec::new();
    let mut tracker = MarkerTracker::default();
    for i in 0..n as u64 {
        let t = i as f64 / fs;
        states.push(state_schedule(cfg, t) as u8);
        markers.extend(tracker.at(cfg, i).into_iter().map(|m| (t, m)));
    }
    if let Some(m) = tracker.finish(cfg) {
        markers.push((n as f64 / fs, m));
    }
    sim.fill(&mut data);
    Ok(SynthSession {
        channels: cfg.channels.clone(),
        sample_rate_hz: fs,
        data,
        timestamps: (0..n).map(|i| i as f64 / fs).collect(),
        states,
        markers,
    })
}

fn eeg_stream_info(cfg: &SimConfig) -> anyhow::Result<StreamInfo> {
    let mut info = StreamInfo::new(
        &cfg.stream_name,
        "EEG",
        cfg.channels.len() as u32,
        cfg.sample_rate_hz,
        ChannelFormat::Float32,
        &cfg.source_id,
    )
    .context("creating the simulator's EEG stream info")?;
    let mut desc = info.desc();
    desc.append_child_value("manufacturer", "affectd simulator");
    let mut chans = desc.append_child("channels");
    for label in &cfg.channels {
        let mut c = chans.append_child("channel");
        c.append_child_value("label", label);
        c.append_child_value("unit", "microvolts");
        c.append_child_value("type", "EEG");
    }
    Ok(info)
}

/// Publishes the simulator in real time (times `speed`) as an LSL EEG stream plus a marker stream
/// `<stream_name>-markers` (type "Markers") with "stimulus_start:<class>" / "stimulus_end:<class>"
/// at each trial change. Blocks until `stop` is set or `duration` of simulated data was sent.
/// Sample i carries the timestamp start + i / rate on the LSL clock (exact, no wall-clock
/// jitter); at speeds other than 1 the timestamps keep the nominal spacing and so run on
/// simulated time.
pub fn publish(
    cfg: &SimConfig,
    speed: f64,
    stop: &AtomicBool,
    duration: Option<Duration>,
) -> anyhow::Result<()> {
    if !(speed.is_finite() && speed > 0.0) {
        return Err(SimConfigError::Speed(speed).into());
    }
    let mut sim = EegSimulator::new(cfg.clone())?;
    let fs = cfg.sample_rate_hz;
    let nch = sim.channels();
    let outlet = StreamOutlet::new(&eeg_stream_info(cfg)?, 0, 60)
        .context("creating the simulator's EEG outlet")?;
    let marker_info = StreamInfo::new(
        &format!("{}-markers", cfg.stream_name),
        "Markers",
        1,
        lsl::IRREGULAR_RATE,
        ChannelFormat::String,
        &if cfg.source_id.is_empty() {
            String::new()
        } else {
            format!("{}-markers", cfg.source_id)
        },
    )
    .context("creating the simulator's marker stream info")?;
    let markers = StreamOutlet::new(&marker_info, 0, 360).context("creating the marker outlet")?;
    let push_marker = |text: String, ts: f64| -> anyhow::Result<()> {
        markers
            .push_sample_ex(&vec![text], ts, true)
            .context("pushing a marker")
    };

    let chunk = ((cfg.chunk_s * fs).round() as u64).max(1);
    let total = duration.map(|d| (d.as_secs_f64() * fs).round() as u64);
    let mut buf = vec![0f32; chunk as usize * nch];
    let mut sample = vec![0f32; nch];
    let mut tracker = MarkerTracker::default();
    let start = lsl::local_clock();
    tracing::info!(name = %cfg.stream_name, channels = nch, rate = fs, speed, "simulator publishing");
    while !stop.load(Ordering::Relaxed) {
        let i0 = sim.sample_index();
        let n = total.map_or(chunk, |t| chunk.min(t.saturating_sub(i0)));
        if n == 0 {
            break;
        }
        // The chunk is due when its last sample's time has come (a device sends a sample once
        // it has been measured).
        let due = start + (i0 + n - 1) as f64 / fs / speed;
        let wait = due - lsl::local_clock();
        if wait > 0.0 {
            // Short naps keep `stop` responsive at slow speeds or long chunks.
            std::thread::sleep(Duration::from_secs_f64(wait.min(0.05)));
            continue;
        }
        let data = &mut buf[..n as usize * nch];
        sim.fill(data);
        for (k, values) in data.chunks_exact(nch).enumerate() {
            let i = i0 + k as u64;
            let ts = start + i as f64 / fs;
            for m in tracker.at(cfg, i) {
                push_marker(m, ts)?;
            }
            sample.copy_from_slice(values);
            outlet
                .push_sample_ex(&sample, ts, k as u64 == n - 1)
                .context("pushing EEG")?;
        }
    }
    if let Some(m) = tracker.finish(cfg) {
        push_marker(m, start + sim.sample_index() as f64 / fs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
