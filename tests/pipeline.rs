//! The live pipeline end to end on real components: the simulator publishes EEG and state
//! markers over liblsl (loopback), the daemon runs the shipped int8 model through ort, and a
//! separate inlet reads the Emotion stream.
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use lsl::Pullable;

const CLASSES: [&str; 3] = affectd::CLASSES;

#[test]
fn daemon_follows_the_simulated_states_at_the_hop_rate() {
    let sim = sim_config("follow", 90_001);
    let stop_sim = Arc::new(AtomicBool::new(false));
    let simulator = spawn_simulator(&sim, stop_sim.clone());
    let config = daemon_config(&sim.stream_name);
    let hop = config.features.hop_s;
    let daemon = Daemon::start(config.clone(), None);

    let emotion = lsl::resolve_bypred(&format!("name='{}'", config.outputs.lsl.name), 1, 20.0)
        .unwrap()
        .pop()
        .expect("the daemon publishes its Emotion stream");
    let inlet = lsl::StreamInlet::new(&emotion, 360, 0, true).unwrap();
    let markers = lsl::resolve_bypred(&format!("name='{}-markers'", sim.stream_name), 1, 10.0)
        .unwrap()
        .pop()
        .expect("the simulator publishes its markers");
    let marker_inlet = lsl::StreamInlet::new(&markers, 360, 0, true).unwrap();
    inlet.open_stream(5.0).unwrap();
    marker_inlet.open_stream(5.0).unwrap();

    let mut outputs: Vec<(f64, Vec<f32>)> = Vec::new();
    let mut state_changes: Vec<(f64, usize)> = Vec::new();
    let listen = Duration::from_secs(30);
    let started = Instant::now();
    let mut scraped = None;
    while started.elapsed() < listen {
        if let Ok((m, t)) = marker_inlet.pull_sample(0.0) {
            let m: Vec<String> = m;
            if let Some(class) = m
                .first()
                .and_then(|m| m.strip_prefix("stimulus_start:"))
                .and_then(|c| CLASSES.iter().position(|k| *k == c))
            {
                state_changes.push((t, class));
            }
        }
        let (sample, t): (Vec<f32>, f64) = inlet.pull_sample(0.05).unwrap();
        if t != 0.0 {
            outputs.push((t, sample));
        }
        if scraped.is_none() && started.elapsed() > listen - Duration::from_secs(1) {
            scraped = Some((daemon.metrics(), outputs.len()));
        }
    }
    let summary = daemon.stop();
    stop_sim.store(true, Ordering::SeqCst);
    simulator.join().unwrap();

    // Outputs arrive at the hop rate, stamped at window ends on the source clock.
    assert!(outputs.len() > 80, "{} outputs in 30 s", outputs.len());
    let steps: Vec<f64> = outputs.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let on_hop = steps.iter().filter(|s| (*s - hop).abs() < 1e-6).count();
    assert!(
        on_hop as f64 >= 0.98 * steps.len() as f64,
        "{on_hop} of {} steps equal the hop",
        steps.len()
    );
    for (_, p) in &outputs {
        assert_eq!(p.len(), 4, "p_negative p_neutral p_positive class_index");
        let sum: f32 = p[..3].iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
        assert_eq!(p[3] as usize, affectd::infer::smoothing::argmax(&p[..3]));
    }

    // The winning class follows the simulated state well above chance (1/3), counting windows
    // that lie wholly inside one state plus the smoothing time constant.
    let settle = 1.0 + 2.0 * config.inference.smoothing_tau_s;
    let mut hits = 0;
    let mut total = 0;
    for (t, p) in &outputs {
        let Some(&(since, state)) = state_changes.iter().rev().find(|(s, _)| s <= t) else {
            continue;
        };
        if t - since < settle {
            continue;
        }
        total += 1;
        hits += (p[3] as usize == state) as usize;
    }
    let accuracy = hits as f64 / total.max(1) as f64;
    eprintln!("followed the simulated state in {hits} of {total} windows ({accuracy:.2})");
    assert!(total >= 40, "only {total} settled windows");
    assert!(accuracy > 0.6, "accuracy {accuracy:.2} (chance 0.33)");

    // /metrics reports what happened: every output received was a processed window, and the
    // samples received match the stream's rate.
    let (text, received_then) = scraped.unwrap();
    let windows = metric(&text, "affectd_windows_processed_total").unwrap();
    assert!(
        windows >= received_then as f64 && windows <= received_then as f64 + 8.0,
        "windows_processed {windows} vs {received_then} outputs received"
    );
    let samples = metric(&text, "affectd_samples_received_total").unwrap();
    let expected = windows * hop * sim.sample_rate_hz;
    assert!(
        samples >= expected && samples < expected + 2.0 * sim.sample_rate_hz,
        "{samples} samples for {windows} windows"
    );
    assert_eq!(metric(&text, "affectd_stream_connected"), Some(1.0));
    assert!(summary.outputs as usize >= outputs.len());
}

#[test]
fn missing_or_corrupt_model_is_a_clear_error_at_start() {
    let mut config = daemon_config("no-stream-needed");
    config.model.path = repo_path("models/does-not-exist.onnx");
    config.metrics.enabled = false;
    let err = Daemon::start(config.clone(), None)
        .handle
        .join()
        .unwrap()
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("does-not-exist.onnx"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.onnx");
    let good = std::fs::read(repo_path("models/affectd-int8.onnx")).unwrap();
    std::fs::write(&corrupt, &good[..good.len() / 3]).unwrap();
    config.model.path = corrupt;
    let err = Daemon::start(config, None)
        .handle
        .join()
        .unwrap()
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("corrupt.onnx"), "{text}");
}

#[test]
fn a_stream_that_never_appears_keeps_the_daemon_waiting_and_not_ready() {
    let mut config = daemon_config(&format!("never-there-{}", std::process::id()));
    config.stream.waiting_log_interval_s = 0.5;
    let daemon = Daemon::start(config, None);
    std::thread::sleep(Duration::from_secs(2));
    let (health, _) = http_get(daemon.metrics_addr, "/healthz");
    let (ready, reasons) = http_get(daemon.metrics_addr, "/readyz");
    assert_eq!(health, 200);
    assert_eq!(ready, 503);
    assert!(reasons.contains("stream"), "{reasons}");
    assert!(!daemon.handle.is_finished(), "still waiting, not exited");
    let summary = daemon.stop();
    assert_eq!(summary.outputs, 0);
}

#[test]
fn a_stream_whose_labels_match_no_grid_cell_is_refused_clearly() {
    let mut sim = sim_config("nogrid", 3);
    sim.channels = ["ACC_X", "ACC_Y", "FOO", "BAR"].map(String::from).to_vec();
    let stop_sim = Arc::new(AtomicBool::new(false));
    let simulator = spawn_simulator(&sim, stop_sim.clone());
    let daemon = Daemon::start(daemon_config(&sim.stream_name), None);
    std::thread::sleep(Duration::from_secs(3));
    let text = daemon.metrics();
    let (ready, reasons) = http_get(daemon.metrics_addr, "/readyz");
    let summary = daemon.stop();
    stop_sim.store(true, Ordering::SeqCst);
    simulator.join().unwrap();
    assert_eq!(ready, 503, "{reasons}");
    assert_eq!(metric(&text, "affectd_windows_processed_total"), Some(0.0));
    assert_eq!(summary.outputs, 0);
}

#[test]
fn nan_and_inf_samples_drop_their_windows_and_the_stream_goes_on() {
    use lsl::{ChannelFormat, ExPushable, StreamInfo, StreamOutlet};
    let name = format!("affectd-test-nan-{}", std::process::id());
    let labels = ["FP1", "FP2", "F3", "F4", "T7", "T8", "O1", "O2"];
    let daemon = Daemon::start(daemon_config(&name), None);
    let rate = 200.0;
    let mut info = StreamInfo::new(&name, "EEG", 8, rate, ChannelFormat::Float32, &name).unwrap();
    let mut channels = info.desc().append_child("channels");
    for label in labels {
        channels
            .append_child("channel")
            .append_child_value("label", label);
    }
    let outlet = StreamOutlet::new(&info, 0, 360).unwrap();
    assert!(outlet.wait_for_consumers(10.0), "the daemon connects");
    // 8 s of noise; one NaN at 3 s and one +Inf at 5 s.
    let start = lsl::local_clock();
    for i in 0..(8.0 * rate) as usize {
        let t = start + i as f64 / rate;
        let mut sample: Vec<f32> = (0..8)
            .map(|c| (((i * 31 + c * 17) % 97) as f32 - 48.0) * 0.5)
            .collect();
        if i == 600 {
            sample[2] = f32::NAN;
        }
        if i == 1000 {
            sample[5] = f32::INFINITY;
        }
        outlet.push_sample_ex(&sample, t, true).unwrap();
        while lsl::local_clock() < t {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let text = daemon.metrics();
    let summary = daemon.stop();
    // Each bad sample spoils the 4 windows (1 s, hop 0.25 s) that contain it.
    assert_eq!(
        metric(
            &text,
            "affectd_windows_dropped_total{reason=\"non_finite\"}"
        ),
        Some(8.0),
        "{text}"
    );
    let processed = metric(&text, "affectd_windows_processed_total").unwrap();
    assert!(
        processed >= 17.0,
        "{processed} windows processed around the bad samples"
    );
    assert_eq!(summary.outputs as f64, processed);
}
