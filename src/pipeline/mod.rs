//! The live pipeline: one thread per stage, wired by channels, started and watched by the
//! [`supervisor`], and the control loop that reloads and stops them.
//!
//! ```text
//! [simulator]                                           model watcher ─┐ (new Model, validated)
//!   ──LSL──▶ acquisition ──ringbuf──▶ features ──chan──▶ inference ◀──┘ ──chan──▶ outputs
//!                 │ raw chunks                                         LSL outlet, JSON lines
//!                 └──chan──▶ recorder bridge ──chan──▶ recorder ◀──chan── outputs (own estimates)
//!                                                          ▲── marker reader (LSL markers)
//! ```
//!
//! One file per stage: [`features`], [`inference`], [`outputs`], [`recording`] (bridge, marker
//! tee, recorder events); the messages between them in [`messages`].
//!
//! Every channel between the threads is bounded ([`queues`] below): under any input rate the
//! memory is set by the configuration (ring seconds, queue lengths), and what does not fit is
//! dropped and counted, never queued without end.
//!
//! Shutdown runs down the chain: the stop flag ends acquisition, each thread ends when its input
//! channel closes, so every window already read is processed and the recording gets its footers.
//! A thread that ends before shutdown (a panic, or a loop that gave up) is a failure: the run
//! stops and returns an error, so the process exits non-zero and systemd restarts it.
mod features;
mod inference;
mod messages;
mod outputs;
mod recording;
pub mod supervisor;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{bounded, select, Receiver, Sender};

use crate::acquire::{run_acquisition, AcquireConfig, AcquireEvent, RawChunk, StreamPredicate};
use crate::config::{Config, SimulateConfig};
use crate::features::FeatureConfig;
use crate::infer::model::Model;
use crate::infer::swap::{self, ModelCandidate};
use crate::outputs::http::spawn_http;
use crate::outputs::metrics::{Event, Health, Metrics};
use crate::record::recorder::{run_recorder, RecordItem, RecorderConfig};
use crate::service::logging::ReloadHandle;
use crate::service::notify::{spawn_watchdog, Notifier};
use crate::service::reload::ConfigReloader;
use crate::service::signals::ControlEvent;
use crate::simulate::SimConfig;
use features::{feature_loop, FeatureCtx};
use inference::{announce_model, check_contract, inference_loop, InferCtx, ServeRules};
use messages::{EegRecordMsg, Estimate, FeatureMsg, LiveSettings};
use outputs::{output_loop, OutputCtx};
use recording::{marker_tee, record_bridge, recorder_events, FIRST_MARKER_STREAM_ID};
use supervisor::Supervisor;

/// Loops waiting for input still beat this often, so an absent stream is not a stall.
const IDLE_BEAT: Duration = Duration::from_millis(500);
/// A pipeline loop that has not beaten for this long is stuck: the run ends with an error (so a
/// deadlock ends the process even without systemd's watchdog).
const STUCK_LIMIT: Duration = Duration::from_secs(15);
/// After a thread fails, the others get this long to drain (the recording its footers) before
/// the run returns its error anyway.
const FAILURE_DRAIN: Duration = Duration::from_millis(800);
/// At a requested stop, threads get this long to drain.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// Lengths of the channels between the threads. Items are small except raw EEG chunks (at most
/// `max_chunk_samples` x channels floats each, 254 kB for 1024 x 62), so the recorder's queues
/// are the ones that matter for memory: [`queues::RAW_TAP`] + [`queues::RECORD`] chunks at most.
pub mod queues {
    /// Acquisition -> features: connection events and summed counts (acquisition sums counts
    /// while this is full; the samples themselves are in the ring).
    pub const ACQUIRE_EVENTS: usize = 64;
    /// Acquisition -> recorder bridge: copies of raw chunks (full: the chunk is not recorded,
    /// counted as `record_tap_full`).
    pub const RAW_TAP: usize = 32;
    /// Everything the recorder writes (raw chunks, markers, own outputs, headers).
    pub const RECORD: usize = 256;
    /// Features -> recorder bridge: stream headers and clock offsets.
    pub const RECORD_HEADERS: usize = 16;
    /// Marker reader -> marker tee, and marker texts -> outputs (live agreement).
    pub const MARKERS: usize = 1024;
    pub const LABELS: usize = 256;
    /// Features -> inference: windows (full: `inference_busy`).
    pub const WINDOWS: usize = 64;
    /// Inference -> outputs: estimates (full: dropped for every sink, `sink="all"`).
    pub const ESTIMATES: usize = 256;
    /// Control loop -> threads: live settings after a reload; file watcher -> control loop.
    pub const CONTROL: usize = 8;
    /// Recorder -> its event logger (the recorder never waits on it).
    pub const RECORDER_EVENTS: usize = 64;
}

/// How the run was started (beyond the config file).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config_path: Option<PathBuf>,
    /// Start the built-in simulated headset and read from it.
    pub simulate: bool,
    /// Stop by itself after this long (demos, tests).
    pub duration: Option<Duration>,
}

/// What a run did, for the closing log line (and tests).
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub outputs: u64,
    /// Outputs whose class matched the latest labelled marker, and outputs with such a marker.
    pub label_agreement: (u64, u64),
}

/// Why the control loop ended.
enum Stop {
    Requested,
    Failed(String),
}

/// Runs the daemon until SIGTERM/SIGINT (or `opts.duration`). Returns an error when a pipeline
/// thread ends or gets stuck before that.
pub fn run(
    config: Config,
    opts: RunOptions,
    control: Receiver<ControlEvent>,
    log: Option<ReloadHandle>,
) -> anyhow::Result<RunSummary> {
    let stop = Arc::new(AtomicBool::new(false));
    let metrics = Metrics::new();
    let health = Health::new();
    let feature_template = feature_config(&config, 0.0);

    crate::infer::runtime::init(config.model.onnxruntime_library.as_deref())
        .context("loading ONNX Runtime")?;
    let model = Model::load(&config.model.path, config.model.intra_threads)
        .with_context(|| format!("loading model.path {}", config.model.path.display()))?;
    let rules = ServeRules {
        features: feature_template.clone(),
        allow_foreign: config.model.allow_foreign_features,
        min_coverage: config.stream.min_coverage,
    };
    check_contract(&model, &feature_template, rules.allow_foreign)
        .map_err(|r| anyhow::anyhow!("{r}"))?;
    announce_model(&model, &metrics);
    health.set_model_loaded(true);

    let http = if config.metrics.enabled {
        Some(spawn_http(
            config.metrics.listen,
            metrics.clone(),
            health.clone(),
            max_output_age(&config),
        )?)
    } else {
        None
    };

    let mut sup = Supervisor::new(health.clone());
    let mut predicate = StreamPredicate {
        stream_type: config.stream.stream_type.clone(),
        name: config.stream.name.clone(),
        source_id: config.stream.source_id.clone(),
    };
    if opts.simulate {
        let sim = sim_config(&config.simulate);
        predicate.name = Some(sim.stream_name.clone());
        predicate.source_id = Some(sim.source_id.clone());
        let flag = stop.clone();
        sup.spawn("simulator", move || {
            if let Err(e) = crate::simulate::publish(&sim, 1.0, &flag, None) {
                tracing::error!("simulator stopped: {e:#}");
            }
        })?;
    }

    // Recorder: the EEG (through the bridge), marker streams, and our own output.
    let (record_tx, recorder) = if config.record.enabled {
        let (tx, rx) = bounded::<RecordItem>(queues::RECORD);
        let (ev_tx, ev_rx) = bounded(queues::RECORDER_EVENTS);
        let cfg = RecorderConfig {
            directory: config.record.directory.clone(),
            rotate_max_bytes: config.record.rotate_max_mb * 1024 * 1024,
            rotate_max_duration: Duration::from_secs_f64(config.record.rotate_max_minutes * 60.0),
            flush_interval: Duration::from_secs_f64(config.record.flush_interval_s),
            file_prefix: "affectd".into(),
        };
        let summary = sup.spawn_with_result("recorder", move || run_recorder(cfg, rx, ev_tx))?;
        let m = metrics.clone();
        sup.spawn("recorder-events", move || recorder_events(ev_rx, m))?;
        (Some(tx), Some(summary))
    } else {
        (None, None)
    };
    // Marker streams (labels, stimulus events): logged, compared live with the output, and
    // recorded when recording is on.
    let (label_tx, label_rx) = bounded::<(f64, String)>(queues::LABELS);
    if !config.record.marker_types.is_empty() {
        let (marker_tx, marker_rx) = bounded::<RecordItem>(queues::MARKERS);
        let types = config.record.marker_types.clone();
        let flag = stop.clone();
        sup.spawn("marker-reader", move || {
            crate::record::markers::run_marker_reader(
                &types,
                &marker_tx,
                FIRST_MARKER_STREAM_ID,
                &flag,
            )
        })?;
        let record = record_tx.clone();
        let m = metrics.clone();
        sup.spawn("marker-tee", move || {
            marker_tee(marker_rx, record, label_tx, &m)
        })?;
    }

    let (acq_tx, acq_rx) = bounded::<AcquireEvent>(queues::ACQUIRE_EVENTS);
    let (raw_tx, raw_rx) = bounded::<RawChunk>(queues::RAW_TAP);
    let (header_tx, header_rx) = bounded::<EegRecordMsg>(queues::RECORD_HEADERS);
    {
        let cfg = AcquireConfig {
            predicate,
            resolve_timeout: Duration::from_secs_f64(config.stream.waiting_log_interval_s),
            no_data_timeout: Duration::from_secs_f64(config.stream.no_data_timeout_s),
            ring_seconds: config.stream.ring_seconds,
            max_chunk_samples: 1024,
            inlet_buffer_s: 30,
        };
        let tap = record_tx.as_ref().map(|_| raw_tx.clone());
        let flag = stop.clone();
        let heartbeat = health.heartbeat_slot("acquisition");
        sup.spawn("acquisition", move || {
            run_acquisition(cfg, acq_tx, tap, flag, Some(heartbeat))
        })?;
    }
    drop(raw_tx);
    if let Some(tx) = &record_tx {
        let tx = tx.clone();
        let m = metrics.clone();
        sup.spawn("record-bridge", move || {
            record_bridge(raw_rx, header_rx, tx, &m)
        })?;
    }

    let (window_tx, window_rx) = bounded::<FeatureMsg>(queues::WINDOWS);
    let (estimate_tx, estimate_rx) = bounded::<Estimate>(queues::ESTIMATES);
    let (model_tx, model_rx) = bounded::<Model>(1);
    let (live_tx, live_rx) = bounded::<LiveSettings>(queues::CONTROL);
    let (out_live_tx, out_live_rx) = bounded::<LiveSettings>(queues::CONTROL);

    {
        let ctx = FeatureCtx {
            template: feature_template.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            record_headers: record_tx.as_ref().map(|_| header_tx.clone()),
            default_unit: config.stream.default_unit.clone(),
        };
        sup.spawn("features", move || feature_loop(acq_rx, window_tx, ctx))?;
    }
    drop(header_tx);
    let live = LiveSettings::from_config(&config);
    let classes: Arc<[String]> = model.contract().classes.clone().into();
    let current_model_id = Arc::new(std::sync::Mutex::new(model.id().to_string()));
    {
        let ctx = InferCtx {
            rules: rules.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
            live: live.clone(),
            current_model_id: current_model_id.clone(),
        };
        sup.spawn("inference", move || {
            inference_loop(model, window_rx, model_rx, live_rx, estimate_tx, ctx)
        })?;
    }
    let summary = {
        let ctx = OutputCtx {
            lsl: config.outputs.lsl.enabled.then(|| {
                (
                    config.outputs.lsl.name.clone(),
                    config.outputs.lsl.source_id.clone(),
                )
            }),
            hop_s: config.features.hop_s,
            record: record_tx
                .as_ref()
                .filter(|_| config.record.record_output)
                .cloned(),
            metrics: metrics.clone(),
            health: health.clone(),
            labels: label_rx,
            classes,
        };
        sup.spawn_with_result("outputs", move || {
            output_loop(estimate_rx, out_live_rx, live, ctx)
        })?
    };
    drop(record_tx);

    // Watch the model and the config file.
    let (changed_tx, mut changed_rx) = bounded::<PathBuf>(queues::CONTROL);
    let mut watched = Vec::new();
    if config.model.watch {
        watched.push(config.model.path.clone());
    }
    watched.extend(opts.config_path.clone());
    let _watcher = swap::watch_files(&watched, changed_tx).context("watching model and config")?;

    let notifier = Notifier::from_env().map(Arc::new);
    let (watchdog_stop, watchdog_stop_rx) = bounded::<()>(1);
    let watchdog = notifier
        .clone()
        .and_then(|n| spawn_watchdog(n, health.clone(), watchdog_stop_rx));
    if let Some(n) = &notifier {
        n.ready();
    }
    tracing::info!(
        "affectd running: model {} ({}), metrics {}",
        current_model_id.lock().unwrap_or_else(|p| p.into_inner()),
        config.model.path.display(),
        http.as_ref()
            .map(|h| format!("http://{}/metrics", h.addr()))
            .unwrap_or_else(|| "off".into()),
    );

    let mut reloader = opts
        .config_path
        .clone()
        .map(|path| ConfigReloader::new(path, config.clone(), log, metrics.clone()));

    // Control loop.
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let tick = crossbeam_channel::tick(Duration::from_millis(200));
    let exits = sup.exits().clone();
    let why = loop {
        select! {
            recv(exits) -> exit => {
                // Every thread outlives the control loop unless it fails.
                let exit = exit.map(|e| e.to_string()).unwrap_or_else(|_| "supervisor gone".into());
                break Stop::Failed(exit);
            },
            recv(control) -> event => match event {
                Ok(ControlEvent::Shutdown) | Err(_) => break Stop::Requested,
                Ok(ControlEvent::Reload) => {
                    if let Some(reloader) = &mut reloader {
                        reload(reloader, notifier.as_deref(), &live_tx, &out_live_tx);
                    }
                }
            },
            recv(changed_rx) -> path => {
                let Ok(path) = path else {
                    changed_rx = crossbeam_channel::never();
                    continue;
                };
                if let Some(reloader) = reloader.as_mut().filter(|r| r.path() == path) {
                    reload(reloader, notifier.as_deref(), &live_tx, &out_live_tx);
                } else if path == config.model.path {
                    let current = current_model_id.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    match swap::try_model(&path, config.model.intra_threads, &current, |m| check_contract(m, &feature_template, rules.allow_foreign)) {
                        ModelCandidate::Ready(model) => {
                            tracing::info!("new model {} validated; swapping it in", model.id());
                            let _ = model_tx.send(*model);
                        }
                        ModelCandidate::Unchanged => tracing::debug!("model file touched, content unchanged"),
                        ModelCandidate::Rejected(why) => {
                            tracing::error!("rejected new model {}: {why}; the current model {current} keeps serving", path.display());
                            metrics.emit(Event::ModelRejected { reason: why.reason });
                        }
                    }
                }
            },
            recv(tick) -> _ => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    tracing::info!("run duration reached");
                    break Stop::Requested;
                }
                let stuck = health.stalled(STUCK_LIMIT);
                if !stuck.is_empty() {
                    break Stop::Failed(format!("pipeline stuck: no heartbeat from {} for {STUCK_LIMIT:?}", stuck.join(", ")));
                }
            },
        }
    };

    // Shutdown, in data-flow order.
    match &why {
        Stop::Requested => tracing::info!("stopping: draining the pipeline"),
        Stop::Failed(what) => tracing::error!("{what}; stopping with an error"),
    }
    if let Some(n) = &notifier {
        n.stopping();
    }
    stop.store(true, Ordering::SeqCst);
    drop(model_tx);
    drop(live_tx);
    drop(out_live_tx);
    let drain = match why {
        Stop::Requested => SHUTDOWN_DRAIN,
        Stop::Failed(_) => FAILURE_DRAIN,
    };
    let (panics, stuck) = sup.wait_all(drain);
    for p in &panics {
        tracing::error!("{p}");
    }
    if !stuck.is_empty() {
        tracing::error!(
            "threads still running after {drain:?}: {}; leaving them",
            stuck.join(", ")
        );
    }
    if let Some(summary) = recorder.and_then(|r| r.try_recv().ok()) {
        tracing::info!("recording closed: {summary:?}");
    }
    drop(watchdog_stop);
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    drop(http);
    let summary = summary.try_recv().unwrap_or_default();
    tracing::info!("stopped after {} outputs", summary.outputs);
    if let Stop::Failed(what) = why {
        anyhow::bail!("{what}");
    }
    if let Some(p) = panics.first() {
        anyhow::bail!("{p}");
    }
    Ok(summary)
}

/// The feature settings for a stream at `sample_rate_hz` (0 = not known yet).
pub fn feature_config(config: &Config, sample_rate_hz: f64) -> FeatureConfig {
    FeatureConfig {
        sample_rate_hz,
        window_s: config.features.window_s,
        hop_s: config.features.hop_s,
        notch_hz: (config.features.notch_hz > 0.0).then_some(config.features.notch_hz),
        bandpass_hz: match config.features.bandpass_hz[..] {
            [low, high] => Some([low, high]),
            _ => None,
        },
        ..FeatureConfig::default()
    }
}

fn max_output_age(config: &Config) -> Duration {
    Duration::from_secs_f64((config.features.hop_s * 8.0).max(2.0))
}

/// Re-reads the config file; live keys go to the threads, the others are named as needing a
/// restart (by the reloader). A broken file keeps the running config.
fn reload(
    reloader: &mut ConfigReloader,
    notifier: Option<&Notifier>,
    live_tx: &Sender<LiveSettings>,
    out_live_tx: &Sender<LiveSettings>,
) {
    if let Some(n) = notifier {
        n.reloading();
    }
    if reloader.reload().is_ok() {
        let live = LiveSettings::from_config(reloader.effective());
        // The threads take these between two windows; a full queue means a thread is stuck
        // (the stuck check ends the run), not a reason to block the control loop.
        for tx in [live_tx, out_live_tx] {
            if tx.try_send(live.clone()).is_err() {
                tracing::warn!("a pipeline thread did not take the reloaded settings");
            }
        }
    }
    if let Some(n) = notifier {
        n.ready();
    }
}

/// The simulator settings of the `[simulate]` config section.
pub fn sim_config(section: &SimulateConfig) -> SimConfig {
    let defaults = SimConfig::default();
    SimConfig {
        channels: section.channels.clone().unwrap_or(defaults.channels),
        sample_rate_hz: section.sample_rate_hz,
        effect_strength: section.effect_strength,
        state_duration_s: section.state_duration_s,
        seed: section.seed,
        line_freq_hz: section.line_freq_hz,
        ..defaults
    }
}
