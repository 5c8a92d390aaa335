//! Raw recordings in common formats, through the live extractor. The fixtures are written at
//! test time by independent libraries from the test venv (scripts/raw_fixtures.py: pyedflib for
//! EDF+ and BDF+, scipy.io.savemat for SEED's Preprocessed_EEG layout) from one simulated
//! session; affectd's readers must give the values those libraries read back, the features of
//! the same signal published over LSL to a running daemon, and train end to end.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use affectd::features::{FeatureWindow, WindowOutcome, GRID_CELLS};
use affectd::infer::model::Model;
use affectd::record::labels::session_streams;
use affectd::record::xdf::{read_xdf, TimeSeries};
use affectd::simulate::{synth_session, SimConfig, SynthSession};
use affectd::train::formats::{edf, label_mapping, mat, read_raw, RawArgs, RawFormat};
use affectd::train::recordings::{recording_windows, Recording};
use common::*;
use lsl::ExPushable;
use serde_json::Value;

const SECONDS: f64 = 64.0;
/// The simulator's trials (one class each).
const TRIAL_S: f64 = 8.0;
/// A SEED trial is a separate array: the extractor's filters start from rest at its first
/// sample, so its first windows differ from a continuous stream's; compared after this.
const MAT_SETTLE_S: f64 = 4.0;
/// Largest DE difference (natural-log units) from the same signal over LSL, per format
/// (docs/datasets.md): EDF's 16-bit digitisation of a +-R range adds noise of R/65535/sqrt(12);
/// BDF's 24-bit only the float32 rounding of the samples; a MAT trial the rest of the filters'
/// start-up transient. A wrong unit shifts DE by ln(1000) = 6.9 or more, a wrong channel order
/// by O(1).
const EDF_DE_TOLERANCE: f64 = 3e-3;
const BDF_DE_TOLERANCE: f64 = 1e-4;
const MAT_DE_TOLERANCE: f64 = 5e-2;

struct Fixtures {
    _dir: tempfile::TempDir,
    out: PathBuf,
    session: SynthSession,
    reads: Value,
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("AFFECTD_PYTHON") {
        return p.into();
    }
    repo_path(".venv/bin/python")
}

/// One simulated session written by the independent libraries (once per test binary).
fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let sim = SimConfig {
            state_duration_s: TRIAL_S,
            seed: 31,
            ..SimConfig::default()
        };
        let session = synth_session(&sim, SECONDS).unwrap();
        let fs = session.sample_rate_hz;
        // Stimuli (EDF, BDF) [8k + 1, 8k + 7) s; SEED trials (MAT) the whole [8k, 8k + 8) s.
        let trials = (SECONDS / TRIAL_S) as usize;
        let class = |t: f64| affectd::CLASSES[session.states[(t * fs) as usize] as usize];
        let stimuli: Vec<Value> = (0..trials)
            .map(|k| {
                let start = k as f64 * TRIAL_S + 1.0;
                serde_json::json!([start, start + 6.0, class(start)])
            })
            .collect();
        let seed_trials: Vec<Value> = (0..trials)
            .map(|k| {
                let start = k as f64 * TRIAL_S;
                serde_json::json!([start, start + TRIAL_S, class(start + 1.0)])
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&input).unwrap();
        let meta = serde_json::json!({
            "channels": session.channels,
            "sample_rate_hz": fs,
            "stimuli": stimuli,
            "trials": seed_trials,
        });
        std::fs::write(input.join("signal.json"), meta.to_string()).unwrap();
        let bytes: Vec<u8> = session.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(input.join("signal.f32"), bytes).unwrap();
        let run = Command::new(python())
            .arg(repo_path("scripts/raw_fixtures.py"))
            .arg(&input)
            .arg(&out)
            .output()
            .expect("running the venv python (scripts/setup creates .venv)");
        assert!(
            run.status.success(),
            "raw_fixtures.py failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let reads = serde_json::from_str(&std::fs::read_to_string(out.join("reads.json")).unwrap())
            .unwrap();
        Fixtures {
            _dir: dir,
            out,
            session,
            reads,
        }
    })
}

fn f64s(path: &Path) -> Vec<f64> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Our float32 value against the library's float64 one: equal up to float32 rounding.
fn assert_f32_of(ours: f32, theirs: f64, what: &str) {
    let tol = theirs.abs() * f64::from(f32::EPSILON) + 1e-12;
    assert!(
        (f64::from(ours) - theirs).abs() <= tol,
        "{what}: {ours} vs {theirs}"
    );
}

fn raw_args(paths: Vec<PathBuf>) -> RawArgs {
    RawArgs {
        raw: paths,
        labels: Vec::new(),
        seed_labels: None,
        mat_sample_rate: mat::SEED_SAMPLE_RATE_HZ,
        mat_unit: "uV".into(),
    }
}

#[test]
fn edf_and_bdf_values_and_annotations_are_what_pyedflib_reads() {
    let fx = fixtures();
    for (name, variant, dim) in [
        ("rec.edf", edf::Variant::EdfPlus { continuous: true }, "uV"),
        ("rec.bdf", edf::Variant::BdfPlus { continuous: true }, "mV"),
    ] {
        let path = fx.out.join(name);
        let py = &fx.reads[name];
        let file = edf::read_edf(&path).unwrap();
        assert_eq!(file.variant, variant, "{name}");
        let signals: Vec<usize> = (0..file.signals.len())
            .filter(|&i| !file.signals[i].is_annotations())
            .collect();
        let labels: Vec<&str> = signals
            .iter()
            .map(|&i| file.signals[i].label.as_str())
            .collect();
        let py_labels: Vec<&str> = py["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(labels, py_labels, "{name}");
        assert_eq!(labels.len(), 62);
        let values = f64s(&fx.out.join(format!("{name}.f64")));
        let n = py["samples"][0].as_u64().unwrap() as usize;
        assert_eq!(n as f64, SECONDS * 200.0);
        for (k, &i) in signals.iter().enumerate() {
            assert_eq!(file.signals[i].physical_dimension, dim);
            assert_eq!(
                py["dimensions"][k].as_str().unwrap(),
                file.signals[i].physical_dimension
            );
            assert_eq!(
                file.sample_rate_hz(i).unwrap(),
                py["sample_rates"][k].as_f64().unwrap()
            );
            assert_eq!(file.samples[i].len(), n, "{name} {}", labels[k]);
            for (t, &v) in file.samples[i].iter().enumerate() {
                assert_f32_of(v, values[k * n + t], &format!("{name} {}[{t}]", labels[k]));
            }
        }
        let py_annotations = py["annotations"].as_array().unwrap();
        assert_eq!(file.annotations.len(), py_annotations.len(), "{name}");
        assert!(!py_annotations.is_empty());
        for (ours, theirs) in file.annotations.iter().zip(py_annotations) {
            let onset: f64 = theirs[0].as_str().unwrap().parse().unwrap();
            let duration: f64 = theirs[1].as_str().unwrap().parse().unwrap();
            assert_eq!(ours.onset_s, onset, "{name}");
            // pyedflib reads "no duration" as -1.
            assert_eq!(ours.duration_s.unwrap_or(-1.0), duration, "{name}");
            assert_eq!(ours.text, theirs[2].as_str().unwrap(), "{name}");
        }
    }
}

#[test]
fn seed_mat_trials_and_labels_are_what_scipy_reads() {
    let fx = fixtures();
    let path = fx.out.join("seed/1_20260101.mat");
    let py = &fx.reads["seed/1_20260101.mat"];
    let trials = read_raw(
        &path,
        RawFormat::SeedMat,
        &raw_args(vec![path.clone()]),
        &label_mapping(&[]).unwrap(),
    )
    .unwrap();
    let arrays = py["arrays"].as_array().unwrap();
    assert_eq!(trials.len(), arrays.len());
    assert_eq!(trials.len(), (SECONDS / TRIAL_S) as usize);
    let values = f64s(&fx.out.join("seed/1_20260101.mat.f64"));
    let mut at = 0;
    for (k, (trial, array)) in trials.iter().zip(arrays).enumerate() {
        let name = array[0].as_str().unwrap();
        assert!(trial.source.ends_with(name), "{} vs {name}", trial.source);
        let (rows, cols) = (
            array[1][0].as_u64().unwrap() as usize,
            array[1][1].as_u64().unwrap() as usize,
        );
        assert_eq!(rows, 62);
        assert_eq!(trial.channels.len(), rows);
        assert_eq!(trial.channels[0], "FP1");
        assert_eq!(trial.data.len(), rows * cols);
        assert_eq!(trial.sample_rate_hz, 200.0);
        assert!(trial.units.iter().all(|u| u == "uV"));
        // scipy's array is C order [channel][sample]; ours interleaved [sample][channel].
        for ch in 0..rows {
            for t in 0..cols {
                assert_f32_of(
                    trial.data[t * rows + ch],
                    values[at + ch * cols + t],
                    &format!("{name}[{ch}, {t}]"),
                );
            }
        }
        at += rows * cols;
        let class = match py["label"][k].as_i64().unwrap() {
            -1 => "negative",
            0 => "neutral",
            1 => "positive",
            other => panic!("label {other}"),
        };
        assert_eq!(
            trial.markers,
            [
                (0.0, format!("stimulus_start:{class}")),
                (cols as f64 / 200.0, format!("stimulus_end:{class}")),
            ]
        );
    }
}

/// The simulated session over a real LSL outlet (62 channels in microvolts, timestamps
/// t0 + i / fs), at 4x real time, to a daemon that records what it receives and writes JSON
/// lines. Returns (t0, the recorded XDF, the JSON lines).
fn serve_over_lsl(session: &SynthSession, work: &Path) -> (f64, PathBuf, Vec<Value>) {
    let name = format!("affectd-test-formats-{}", std::process::id());
    let mut config = daemon_config(&name);
    config.inference.smoothing_tau_s = 0.0;
    config.outputs.jsonl.enabled = true;
    config.outputs.jsonl.path = work.join("live.jsonl");
    config.outputs.lsl.enabled = false;
    config.record.enabled = true;
    config.record.directory = work.join("received");
    config.record.record_output = false;
    config.record.marker_types = vec!["no-markers-here".into()];
    let daemon = Daemon::start(config.clone(), None);

    let channels = session.channels.len();
    let mut info = lsl::StreamInfo::new(
        &name,
        "EEG",
        channels as u32,
        session.sample_rate_hz,
        lsl::ChannelFormat::Float32,
        &format!("{name}-source"),
    )
    .unwrap();
    let mut chans = info.desc().append_child("channels");
    for label in &session.channels {
        let mut c = chans.append_child("channel");
        c.append_child_value("label", label);
        c.append_child_value("unit", "microvolts");
        c.append_child_value("type", "EEG");
    }
    let outlet = lsl::StreamOutlet::new(&info, 0, 360).unwrap();
    assert!(
        outlet.wait_for_consumers(60.0),
        "the daemon never connected to the test's outlet"
    );
    // The inlet is connected: every sample pushed from now on reaches it.
    let fs = session.sample_rate_hz;
    let t0 = lsl::local_clock();
    let started = Instant::now();
    let chunk = 20;
    let mut sample = vec![0f32; channels];
    for (c, samples) in session.data.chunks(chunk * channels).enumerate() {
        let due = Duration::from_secs_f64((c * chunk) as f64 / fs / 4.0);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let rows = samples.len() / channels;
        for (k, values) in samples.chunks_exact(channels).enumerate() {
            let i = c * chunk + k;
            sample.copy_from_slice(values);
            outlet
                .push_sample_ex(&sample, t0 + i as f64 / fs, k == rows - 1)
                .unwrap();
        }
    }
    // Poll until the last window is out (generous on a loaded machine), then stop.
    let expected = ((SECONDS - 1.0) / 0.25) as usize + 1;
    let jsonl = work.join("live.jsonl");
    let lines = || {
        std::fs::read_to_string(&jsonl)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines() < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(outlet);
    daemon.stop();
    let live = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let recorded: Vec<PathBuf> = std::fs::read_dir(work.join("received"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xdf"))
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    (t0, recorded[0].clone(), live)
}

fn ready(windows: Vec<WindowOutcome>) -> Vec<FeatureWindow> {
    windows
        .into_iter()
        .filter_map(|w| match w {
            WindowOutcome::Ready(w) => Some(w),
            WindowOutcome::Dropped { .. } => None,
        })
        .collect()
}

/// Largest |DE difference| over the placed cells of windows that end at the same time.
fn max_de_difference(
    ours: &[FeatureWindow],
    offset: f64,
    live: &[FeatureWindow],
    filled: &[usize],
    from: impl Fn(&FeatureWindow) -> bool,
) -> (f64, usize) {
    let mut max = 0.0f64;
    let mut compared = 0;
    for w in ours.iter().filter(|w| from(w)) {
        let end = w.end_timestamp + offset;
        let l = live
            .iter()
            .find(|l| (l.end_timestamp - end).abs() < 1e-3)
            .unwrap_or_else(|| panic!("no live window ends at {end}"));
        for band in 0..5 {
            for &cell in filled {
                let i = band * GRID_CELLS + cell;
                max = max.max((f64::from(w.grid[i]) - f64::from(l.grid[i])).abs());
            }
        }
        compared += 1;
    }
    (max, compared)
}

#[test]
fn edf_bdf_and_mat_give_the_features_of_the_same_signal_over_lsl() {
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let (t0, recorded, jsonl) = serve_over_lsl(&fx.session, work.path());

    // What the daemon received, through the extractor exactly as the daemon set it up.
    let features = affectd::pipeline::feature_config(&daemon_config("unused"), 0.0);
    let xdf = read_xdf(&recorded).unwrap();
    let eeg = session_streams(&xdf).unwrap().eeg;
    let TimeSeries::F32(data) = &eeg.time_series else {
        panic!("recorded EEG is float32")
    };
    let labels = eeg.header.channel_labels();
    let units = eeg.header.channel_units();
    assert!(units.iter().all(|u| u == "microvolts"));
    let markers: Vec<(f64, String)> = Vec::new();
    let received = Recording {
        channels: &labels,
        channel_types: None,
        units: &units,
        default_unit: "uV",
        sample_rate_hz: eeg.header.nominal_srate(),
        data,
        timestamps: &eeg.timestamps,
        markers: &markers,
    };
    let live = ready(recording_windows(&received, &features).unwrap());
    let expected = ((SECONDS - 1.0) / 0.25) as usize + 1;
    assert_eq!(live.len(), expected, "the daemon received the whole signal");

    let mapping = label_mapping(&[]).unwrap();
    let args = raw_args(Vec::new());
    let filled = affectd::features::GridMap::from_labels(&labels)
        .unwrap()
        .filled_cells();
    let windows_of = |name: &str, format| -> Vec<Vec<FeatureWindow>> {
        read_raw(&fx.out.join(name), format, &args, &mapping)
            .unwrap()
            .iter()
            .map(|r| ready(recording_windows(&r.as_recording("uV"), &features).unwrap()))
            .collect()
    };
    let edf = windows_of("rec.edf", RawFormat::Edf);
    let bdf = windows_of("rec.bdf", RawFormat::Edf);
    assert_eq!(
        (edf.len(), bdf.len()),
        (1, 1),
        "one contiguous stretch each"
    );
    let (edf_max, n) = max_de_difference(&edf[0], t0, &live, &filled, |_| true);
    assert_eq!(n, expected);
    let (bdf_max, _) = max_de_difference(&bdf[0], t0, &live, &filled, |_| true);
    let trials = windows_of("seed/1_20260101.mat", RawFormat::SeedMat);
    let mut mat_max = 0.0f64;
    let mut mat_all = 0.0f64;
    let mut mat_n = 0;
    for (k, trial) in trials.iter().enumerate() {
        // Trial k starts at 8k s of the session.
        let offset = t0 + k as f64 * TRIAL_S;
        let (m, c) = max_de_difference(trial, offset, &live, &filled, |w| {
            w.first_timestamp >= MAT_SETTLE_S - 1e-9
        });
        let (all, _) = max_de_difference(trial, offset, &live, &filled, |_| true);
        mat_max = mat_max.max(m);
        mat_all = mat_all.max(all);
        mat_n += c;
    }
    eprintln!(
        "max |DE difference| from the signal over LSL: EDF {edf_max:.2e}, BDF {bdf_max:.2e}, \
         MAT {mat_max:.2e} after {MAT_SETTLE_S} s into a trial ({mat_all:.2e} from its start; \
         {mat_n} windows)"
    );
    assert!(mat_n >= trials.len() * 10, "{mat_n} MAT windows compared");
    assert!(edf_max <= EDF_DE_TOLERANCE, "EDF {edf_max}");
    assert!(bdf_max <= BDF_DE_TOLERANCE, "BDF {bdf_max}");
    assert!(mat_max <= MAT_DE_TOLERANCE, "MAT {mat_max}");

    // And the daemon's own outputs: the shipped model on the EDF features gives its JSON lines.
    let mut model = Model::load(&repo_path("models/affectd-int8.onnx"), 1).unwrap();
    let mut filled_mask = vec![false; GRID_CELLS];
    filled.iter().for_each(|&c| filled_mask[c] = true);
    assert!(
        jsonl.len() >= expected * 9 / 10,
        "{} JSON lines",
        jsonl.len()
    );
    let mut max_p = 0.0f64;
    for line in &jsonl {
        let end = line["timestamp"].as_f64().unwrap() - t0;
        let w = edf[0]
            .iter()
            .find(|w| (w.end_timestamp - end).abs() < 1e-3)
            .unwrap_or_else(|| panic!("no EDF window ends at {end}"));
        let p = model.predict(&w.grid, &filled_mask).unwrap();
        for (k, v) in p.iter().enumerate() {
            max_p = max_p.max((f64::from(*v) - line["probabilities"][k].as_f64().unwrap()).abs());
        }
    }
    eprintln!("max probability difference, EDF features vs the live daemon: {max_p:.2e}");
    // The int8 input quantiser can turn a DE difference of 1e-3 into one step.
    assert!(max_p < 5e-2, "{max_p}");
}

#[test]
fn train_raw_trains_end_to_end_on_edf_bdf_and_seed_files() {
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let model_path = work.path().join("raw.onnx");
    let run = Command::new(env!("CARGO_BIN_EXE_affectd"))
        .arg("train")
        .arg("--raw")
        .arg(fx.out.join("rec.edf"))
        .arg(fx.out.join("rec.bdf"))
        .arg(fx.out.join("seed"))
        .arg("--out")
        .arg(&model_path)
        .arg("--report-dir")
        .arg(work.path().join("report"))
        .args([
            "--epochs",
            "2",
            "--qat-epochs",
            "1",
            "--k",
            "20",
            "--compare",
            "none",
        ])
        .arg("--config")
        .arg(repo_path("config/affectd.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "train --raw failed: {stderr}");
    let model = Model::load(&model_path, 1).unwrap();
    let c = model.contract();
    assert_eq!(c.labels.kind, "annotations+seed-label-file");
    assert!(
        c.provenance
            .dataset_description
            .contains("2 EDF/BDF file(s), 1 SEED .mat file(s)"),
        "{}",
        c.provenance.dataset_description
    );
    assert!(
        !c.features.is_foreign(),
        "trained through affectd's own extractor"
    );
    assert_eq!(c.trained_cells.len(), 62);
    // 8 stimuli of 6 s in each EDF/BDF file (21 windows each), 8 trials of 8 s in the MAT file
    // (29 windows each); some groups are held out for test and validation.
    let all = 2 * 8 * 21 + 8 * 29;
    assert!(
        c.provenance.train_samples > all / 2 && c.provenance.train_samples < all,
        "{} training samples of {all}",
        c.provenance.train_samples
    );
    assert!(stderr.contains("rec.edf: 168 labelled windows"), "{stderr}");
    assert!(stderr.contains("rec.bdf: 168 labelled windows"), "{stderr}");
    assert!(
        stderr.contains("1_20260101.mat: 232 labelled windows"),
        "{stderr}"
    );
}
