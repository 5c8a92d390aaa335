//! Closing the loop on real components: a daemon records a labelled simulated session to XDF;
//! `affectd retrain` builds a model from it; a running daemon swaps that model in without
//! missing a hop; replaying the recording through the live daemon gives the same features as
//! offline extraction of what it received (train/serve parity).
//!
//! One scenario in one test: the daemon records every "Markers" stream on the LSL network, so
//! nothing else in this test binary may publish markers at the same time.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use affectd::features::{extract_all, GridMap, WindowOutcome};
use affectd::infer::model::Model;
use affectd::record::labels::session_streams;
use affectd::record::replay::{replay, ReplaySpeed};
use affectd::record::xdf::{read_xdf, TimeSeries};
use common::*;
use lsl::Pullable;

fn xdf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xdf"))
        .collect();
    files.sort();
    files
}

#[test]
fn record_retrain_hot_swap_and_replay_parity() {
    let work = tempfile::tempdir().unwrap();
    let sessions = work.path().join("sessions");
    let models = work.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let model_path = models.join("affectd-int8.onnx");
    std::fs::copy(repo_path("models/affectd-int8.onnx"), &model_path).unwrap();

    // 1. Record a labelled session from the simulator.
    let mut sim = sim_config("session", 77);
    sim.state_duration_s = 5.0;
    let stop_sim = Arc::new(AtomicBool::new(false));
    let simulator = spawn_simulator(&sim, stop_sim.clone());
    let mut config = daemon_config(&sim.stream_name);
    config.model.path = model_path.clone();
    config.record.enabled = true;
    config.record.directory = sessions.clone();
    let daemon = Daemon::start(config.clone(), None);
    std::thread::sleep(Duration::from_secs(45));
    let summary = daemon.stop();
    stop_sim.store(true, Ordering::SeqCst);
    simulator.join().unwrap();
    assert!(summary.outputs > 100, "{summary:?}");

    let recorded = xdf_files(&sessions);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let xdf = read_xdf(&recorded[0]).expect("a clean stop leaves a complete, valid file");
    let streams = session_streams(&xdf).unwrap();
    assert_eq!(streams.eeg.header.channel_labels().len(), 62);
    assert!(streams.eeg.footer.is_some(), "footers written on stop");
    let marker_texts: Vec<String> = affectd::record::labels::marker_events(&streams.markers)
        .into_iter()
        .map(|m| m.1)
        .collect();
    assert!(
        marker_texts
            .iter()
            .filter(|m| m.starts_with("stimulus_start:"))
            .count()
            >= 6,
        "{marker_texts:?}"
    );
    let output = xdf
        .streams
        .iter()
        .find(|s| s.header.stream_type() == "Emotion")
        .expect("own output recorded");
    assert_eq!(output.sample_count() as u64, summary.outputs);

    // 2. A daemon runs the shipped model while `affectd retrain` installs a new one.
    let stop_sim = Arc::new(AtomicBool::new(false));
    let mut live_sim = sim_config("swap", 78);
    live_sim.state_duration_s = 5.0;
    let simulator = spawn_simulator(&live_sim, stop_sim.clone());
    let mut config = daemon_config(&live_sim.stream_name);
    config.model.path = model_path.clone();
    let daemon = Daemon::start(config.clone(), None);
    let emotion = lsl::resolve_bypred(&format!("name='{}'", config.outputs.lsl.name), 1, 20.0)
        .unwrap()
        .pop()
        .expect("Emotion stream");
    let inlet = lsl::StreamInlet::new(&emotion, 360, 0, true).unwrap();
    inlet.open_stream(5.0).unwrap();
    let before = daemon.metrics();
    let old_id = Model::load(&model_path, 1).unwrap().id().to_string();
    assert!(before.contains(&format!("id=\"{old_id}\"")), "{before}");

    let retrain = Command::new(env!("CARGO_BIN_EXE_affectd"))
        .args(["retrain", "--sessions"])
        .arg(&sessions)
        .arg("--out")
        .arg(&model_path)
        .arg("--report-dir")
        .arg(work.path().join("report"))
        .args([
            "--epochs",
            "6",
            "--qat-epochs",
            "2",
            "--k",
            "50",
            "--compare",
            "none",
        ])
        .arg("--config")
        .arg(repo_path("config/affectd.toml"))
        .output()
        .unwrap();
    assert!(
        retrain.status.success(),
        "retrain failed: {}",
        String::from_utf8_lossy(&retrain.stderr)
    );
    let new_id = Model::load(&model_path, 1).unwrap().id().to_string();
    assert_ne!(new_id, old_id);

    // Keep reading outputs until the new model has produced some.
    let mut stamps = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut swapped_at = None;
    while Instant::now() < deadline {
        let (_, t): (Vec<f32>, f64) = inlet.pull_sample(0.1).unwrap();
        if t != 0.0 {
            stamps.push(t);
        }
        if swapped_at.is_none() && daemon.metrics().contains(&format!("id=\"{new_id}\"")) {
            swapped_at = Some(stamps.len());
        }
        if swapped_at.is_some_and(|at| stamps.len() > at + 12) {
            break;
        }
    }
    let after = daemon.metrics();
    daemon.stop();
    stop_sim.store(true, Ordering::SeqCst);
    simulator.join().unwrap();
    assert!(
        swapped_at.is_some(),
        "model info never showed {new_id}:\n{after}"
    );
    assert_eq!(metric(&after, "affectd_model_swaps_total"), Some(1.0));
    assert!(
        !after.contains(&format!("id=\"{old_id}\"")),
        "the old model's info series is gone"
    );
    let hop = config.features.hop_s;
    for w in stamps.windows(2) {
        assert!(
            (w[1] - w[0] - hop).abs() < 1e-6,
            "an output was missed around the swap: {} -> {}",
            w[0],
            w[1]
        );
    }

    // 3. Replay the recorded session through a live daemon that records what it receives;
    //    offline extraction of that recording gives the daemon's own outputs.
    let replay_sessions = work.path().join("replayed");
    let jsonl = work.path().join("replayed.jsonl");
    let eeg_name = streams.eeg.header.name().to_string();
    let mut config = daemon_config(&eeg_name);
    config.model.path = repo_path("models/affectd-int8.onnx");
    config.inference.smoothing_tau_s = 0.0;
    config.outputs.jsonl.enabled = true;
    config.outputs.jsonl.path = jsonl.clone();
    config.outputs.lsl.enabled = false;
    config.record.enabled = true;
    config.record.directory = replay_sessions.clone();
    config.record.record_output = false;
    config.record.marker_types = vec!["no-markers-here".into()];
    let daemon = Daemon::start(config.clone(), None);
    let stop = AtomicBool::new(false);
    replay(&recorded, ReplaySpeed::Factor(3.0), false, &stop).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    daemon.stop();

    let live: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let received = read_xdf(&xdf_files(&replay_sessions)[0]).unwrap();
    let eeg = session_streams(&received).unwrap().eeg;
    let TimeSeries::F32(data) = &eeg.time_series else {
        panic!("recorded EEG is float32")
    };
    let labels = eeg.header.channel_labels();
    let grid = GridMap::from_labels(&labels).unwrap();
    let features = affectd::pipeline::feature_config(&config, eeg.header.nominal_srate());
    let offline: Vec<_> = extract_all(&features, &grid, data, &eeg.timestamps)
        .unwrap()
        .into_iter()
        .filter_map(|o| match o {
            WindowOutcome::Ready(w) => Some(w),
            WindowOutcome::Dropped { .. } => None,
        })
        .collect();
    assert!(live.len() > 100, "{} live outputs", live.len());
    assert_eq!(offline.len(), live.len(), "same windows live and offline");
    let mut model = Model::load(&config.model.path, 1).unwrap();
    let mut filled = vec![false; affectd::features::GRID_CELLS];
    grid.filled_cells()
        .into_iter()
        .for_each(|c| filled[c] = true);
    let mut max_diff = 0.0f64;
    for (window, line) in offline.iter().zip(&live) {
        let p = model.predict(&window.grid, &filled).unwrap();
        for (k, v) in p.iter().enumerate() {
            max_diff = max_diff.max((*v as f64 - line["probabilities"][k].as_f64().unwrap()).abs());
        }
    }
    eprintln!("train/serve parity: max probability difference {max_diff:e}");
    assert!(
        max_diff < 1e-6,
        "live and offline features differ: {max_diff}"
    );
}
