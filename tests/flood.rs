//! A flood: the release daemon (`affectd run`) reads a 62-channel stream whose outlet pushes
//! samples as fast as it can for 25 s. The daemon's peak RSS must stay under [`RSS_CEILING_MB`]
//! (its memory is bounded by its configuration, not by the input rate), and once the outlet is
//! back to real time the Emotion outputs come at the hop rate again.
//!
//! The figures (peak RSS, growth during the flood, samples offered and taken) are printed; run
//! `cargo test --release --test flood -- --nocapture` to see them (BENCHMARKS.md).
mod common;
#[path = "common/lsl_source.rs"]
mod lsl_source;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use affectd::config::Config;
use affectd::simulate::SimConfig;
use common::*;
use lsl::Pullable;
use lsl_source::{rss_mb, Killed, Source};

/// The documented ceiling for a 62-channel stream (docs/service.md, "Memory").
const RSS_CEILING_MB: f64 = 100.0;
const FLOOD: Duration = Duration::from_secs(25);
const CHANNELS_EXPECTED: usize = 62;

#[test]
fn a_flooding_outlet_keeps_memory_bounded_and_outputs_resume_at_the_hop_rate() {
    let sim = SimConfig {
        sample_rate_hz: 200.0,
        ..sim_config("flood", 14)
    };
    assert_eq!(sim.channels.len(), CHANNELS_EXPECTED);
    let mut config: Config = daemon_config(&sim.stream_name);
    config.lsl.api_config = Some(repo_path("config/lsl_api.cfg"));
    config.record.marker_types.clear();
    let hop = config.features.hop_s;
    let work = tempfile::tempdir().unwrap();
    let config_path = work.path().join("affectd.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let log = std::fs::File::create(work.path().join("stderr.log")).unwrap();

    let mut source = Source::new(&sim);
    let child = Command::new(env!("CARGO_BIN_EXE_affectd"))
        .args(["run", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let child = Killed(child);
    let addr = config.metrics.listen;
    let ready = || std::net::TcpStream::connect(addr).is_ok() && http_get(addr, "/readyz").0 == 200;

    // Real time until the daemon serves.
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "daemon never became ready"
        );
        source.real_time(Duration::from_millis(500));
    }
    source.real_time(Duration::from_secs(3));
    let before = rss_mb(pid).unwrap();

    // The flood.
    let mut peak = before;
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let flood_start = Instant::now();
    let first_sample = source.next;
    let mut next_sample = Instant::now();
    while flood_start.elapsed() < FLOOD {
        source.push(1024);
        if Instant::now() >= next_sample {
            next_sample += Duration::from_millis(250);
            let rss = rss_mb(pid).expect("the daemon is still running");
            peak = peak.max(rss);
            samples.push((flood_start.elapsed().as_secs_f64(), rss));
        }
    }
    let flood_s = flood_start.elapsed().as_secs_f64();
    let pushed = source.next - first_sample;
    let after_flood = rss_mb(pid).unwrap();
    let metrics_text = http_get(addr, "/metrics").1;

    // Back to real time: outputs at the hop rate again.
    let emotion = lsl::resolve_bypred(&format!("name='{}'", config.outputs.lsl.name), 1, 20.0)
        .unwrap()
        .pop()
        .expect("the daemon still publishes its Emotion stream");
    let inlet = lsl::StreamInlet::new(&emotion, 360, 0, true).unwrap();
    inlet.open_stream(5.0).unwrap();
    // Settle: the backlog (ring + inlet buffer) is worked off and real time takes over.
    source.real_time(Duration::from_secs(5));
    while inlet
        .pull_sample(0.0)
        .is_ok_and(|(_, t): (Vec<f32>, f64)| t != 0.0)
    {}
    let listen = Duration::from_secs(10);
    let mut got = 0usize;
    let listen_start = Instant::now();
    while listen_start.elapsed() < listen {
        source.real_time(Duration::from_millis(100));
        while inlet
            .pull_sample(0.0)
            .is_ok_and(|(_, t): (Vec<f32>, f64)| t != 0.0)
        {
            got += 1;
        }
        peak = peak.max(rss_mb(pid).unwrap());
    }
    let expected = listen.as_secs_f64() / hop;

    // Growth: least squares slope of RSS over the flood's second half (the first fills the
    // preallocated buffers).
    let half: Vec<&(f64, f64)> = samples
        .iter()
        .filter(|(t, _)| *t >= flood_s / 2.0)
        .collect();
    let n = half.len() as f64;
    let (mt, mr) = (
        half.iter().map(|s| s.0).sum::<f64>() / n,
        half.iter().map(|s| s.1).sum::<f64>() / n,
    );
    let slope = half.iter().map(|s| (s.0 - mt) * (s.1 - mr)).sum::<f64>()
        / half.iter().map(|s| (s.0 - mt).powi(2)).sum::<f64>();
    let received = metric(&metrics_text, "affectd_samples_received_total").unwrap_or(0.0);
    println!(
        "flood of {CHANNELS_EXPECTED} ch for {flood_s:.1} s: pushed {pushed} samples ({:.0}/s, {:.0}x real time); \
         daemon received {received} ; RSS before {before:.1} MB, after {after_flood:.1} MB, peak {peak:.1} MB, \
         growth over the second half {slope:.2} MB/s; outputs afterwards {got} in {:.0} s (hop rate: {expected:.0})",
        pushed as f64 / flood_s,
        pushed as f64 / flood_s / sim.sample_rate_hz,
        listen.as_secs_f64()
    );
    for line in metrics_text
        .lines()
        .filter(|l| l.starts_with("affectd_samples_dropped") || l.starts_with("affectd_windows"))
    {
        println!("  {line}");
    }
    drop(child);
    assert!(
        pushed as f64 / flood_s > 5.0 * sim.sample_rate_hz,
        "not a flood: {pushed} samples"
    );
    assert!(
        peak < RSS_CEILING_MB,
        "peak RSS {peak:.1} MB >= {RSS_CEILING_MB} MB"
    );
    assert!(
        (got as f64) >= 0.8 * expected && (got as f64) <= 1.2 * expected,
        "{got} outputs in {listen:?} after the flood; the hop rate gives {expected:.0}"
    );
}
