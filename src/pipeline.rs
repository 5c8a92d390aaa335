//! The live pipeline: threads wired by channels, and the control loop that starts, reloads and
//! stops them.
//!
//! ```text
//! [simulator]                                           model watcher ─┐ (new Model, validated)
//!   ──LSL──▶ acquisition ──ringbuf──▶ features ──chan──▶ inference ◀──┘ ──chan──▶ outputs
//!                 │ raw chunks                                         LSL outlet, JSON lines
//!                 └──chan──▶ recorder bridge ──chan──▶ recorder ◀──chan── outputs (own estimates)
//!                                                          ▲── marker reader (LSL markers)
//! ```
//!
//! Shutdown runs down the chain: the stop flag ends acquisition, each thread ends when its input
//! channel closes, so every window already read is processed and the recording gets its footers.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};

use crate::acquire::{
    spawn_acquisition, AcquireConfig, AcquireEvent, RawChunk, SampleReader, StreamDescription,
    StreamPredicate,
};
use crate::config::{Config, SimulateConfig};
use crate::features::{FeatureConfig, FeatureExtractor, FeatureWindow, GridMap, WindowOutcome};
use crate::infer::model::Model;
use crate::infer::smoothing::{argmax, ProbabilitySmoother};
use crate::infer::swap::{self, ModelCandidate};
use crate::outputs::http::spawn_http;
use crate::outputs::jsonl::{EmotionRecord, JsonlSink};
use crate::outputs::lsl_outlet::EmotionOutlet;
use crate::outputs::metrics::{Event, Health, Metrics};
use crate::record::labels::{LabelMapping, START_PREFIX};
use crate::record::recorder::{spawn_recorder, OwnedValues, RecordItem, RecorderConfig};
use crate::record::xdf::{ChannelFormat, StreamHeader};
use crate::service::logging::ReloadHandle;
use crate::service::notify::{spawn_watchdog, Notifier};
use crate::service::reload::ConfigReloader;
use crate::service::signals::ControlEvent;
use crate::simulate::SimConfig;

/// Recorder stream ids: the EEG input, the daemon's own output, then marker streams.
const EEG_STREAM_ID: u32 = 1;
const OUTPUT_STREAM_ID: u32 = 2;
const FIRST_MARKER_STREAM_ID: u32 = 10;
/// Raw chunks the recorder bridge keeps while their stream has not been announced.
const MAX_UNANNOUNCED_CHUNKS: usize = 1024;
/// Loops waiting for input still beat this often, so an absent stream is not a stall.
const IDLE_BEAT: Duration = Duration::from_millis(500);
/// A timestamp step longer than this many sample periods is a gap (lost samples).
const GAP_PERIODS: f64 = 2.0;

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

/// A window on its way to the inference thread.
struct WindowMsg {
    window: FeatureWindow,
    /// Offset to add to source timestamps to get local LSL time (0 on one machine).
    clock_offset: f64,
}

enum FeatureMsg {
    Window(WindowMsg),
    /// A (re)connected stream: the model's contract is checked against it.
    Stream {
        sample_rate_hz: f64,
        filled: Vec<bool>,
    },
}

/// One emotion estimate on its way to the sinks.
struct Estimate {
    timestamp: f64,
    clock_offset: f64,
    probabilities: Vec<f32>,
    class_index: usize,
    model_id: Arc<str>,
}

/// Settings the running threads take without a restart.
#[derive(Debug, Clone)]
struct LiveSettings {
    smoothing_tau_s: f64,
    jsonl_path: Option<PathBuf>,
}

impl LiveSettings {
    fn from_config(config: &Config) -> Self {
        Self {
            smoothing_tau_s: config.inference.smoothing_tau_s,
            jsonl_path: config
                .outputs
                .jsonl
                .enabled
                .then(|| config.outputs.jsonl.path.clone()),
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT (or `opts.duration`).
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
    check_contract(&model, &feature_template).map_err(anyhow::Error::msg)?;
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

    let mut threads: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
    let simulator_stop = Arc::new(AtomicBool::new(false));
    let mut predicate = StreamPredicate {
        stream_type: config.stream.stream_type.clone(),
        name: config.stream.name.clone(),
        source_id: config.stream.source_id.clone(),
    };
    if opts.simulate {
        let sim = sim_config(&config.simulate);
        predicate.name = Some(sim.stream_name.clone());
        predicate.source_id = Some(sim.source_id.clone());
        let flag = simulator_stop.clone();
        threads.push((
            "simulator",
            std::thread::Builder::new()
                .name("simulator".into())
                .spawn(move || {
                    if let Err(e) = crate::simulate::publish(&sim, 1.0, &flag, None) {
                        tracing::error!("simulator stopped: {e:#}");
                    }
                })?,
        ));
    }

    // Recorder: the EEG (through the bridge), marker streams, and our own output.
    let (record_tx, recorder) = if config.record.enabled {
        let (tx, rx) = bounded::<RecordItem>(4096);
        let (ev_tx, ev_rx) = unbounded();
        let cfg = RecorderConfig {
            directory: config.record.directory.clone(),
            rotate_max_bytes: config.record.rotate_max_mb * 1024 * 1024,
            rotate_max_duration: Duration::from_secs_f64(config.record.rotate_max_minutes * 60.0),
            flush_interval: Duration::from_secs_f64(config.record.flush_interval_s),
            file_prefix: "affectd".into(),
        };
        let handle = spawn_recorder(cfg, rx, ev_tx);
        threads.push((
            "recorder-events",
            spawn_recorder_events(ev_rx, metrics.clone())?,
        ));
        (Some(tx), Some(handle))
    } else {
        (None, None)
    };
    // Marker streams (labels, stimulus events): logged, compared live with the output, and
    // recorded when recording is on.
    let (label_tx, label_rx) = unbounded::<(f64, String)>();
    let marker_stop = Arc::new(AtomicBool::new(false));
    let (marker_tx, marker_rx) = bounded::<RecordItem>(1024);
    threads.push((
        "marker-reader",
        crate::record::markers::spawn_marker_reader(
            config.record.marker_types.clone(),
            marker_tx,
            FIRST_MARKER_STREAM_ID,
            marker_stop.clone(),
        ),
    ));
    threads.push((
        "marker-tee",
        spawn_marker_tee(marker_rx, record_tx.clone(), label_tx)?,
    ));

    let (acq_tx, acq_rx) = unbounded::<AcquireEvent>();
    let (raw_tx, raw_rx) = bounded::<RawChunk>(256);
    let (header_tx, header_rx) = unbounded::<EegRecordMsg>();
    let acquisition = spawn_acquisition(
        AcquireConfig {
            predicate,
            resolve_timeout: Duration::from_secs_f64(config.stream.waiting_log_interval_s),
            no_data_timeout: Duration::from_secs_f64(config.stream.no_data_timeout_s),
            ring_seconds: config.stream.ring_seconds,
            max_chunk_samples: 1024,
            inlet_buffer_s: 30,
        },
        acq_tx,
        record_tx.as_ref().map(|_| raw_tx.clone()),
        stop.clone(),
    );
    drop(raw_tx);
    if let Some(tx) = &record_tx {
        let tx = tx.clone();
        let m = metrics.clone();
        threads.push((
            "record-bridge",
            std::thread::Builder::new()
                .name("record-bridge".into())
                .spawn(move || record_bridge(raw_rx, header_rx, tx, &m))?,
        ));
    }

    let (window_tx, window_rx) = bounded::<FeatureMsg>(64);
    let (estimate_tx, estimate_rx) = bounded::<Estimate>(256);
    let (model_tx, model_rx) = bounded::<Model>(1);
    let (live_tx, live_rx) = unbounded::<LiveSettings>();
    let (out_live_tx, out_live_rx) = unbounded::<LiveSettings>();

    threads.push(("features", {
        let ctx = FeatureCtx {
            template: feature_template.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            record_headers: record_tx.as_ref().map(|_| header_tx.clone()),
        };
        std::thread::Builder::new()
            .name("features".into())
            .spawn(move || feature_loop(acq_rx, window_tx, ctx))?
    }));
    drop(header_tx);
    let live = LiveSettings::from_config(&config);
    let current_model_id = Arc::new(std::sync::Mutex::new(model.id().to_string()));
    threads.push(("inference", {
        let ctx = InferCtx {
            template: feature_template.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
            live: live.clone(),
            current_model_id: current_model_id.clone(),
        };
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || inference_loop(model, window_rx, model_rx, live_rx, estimate_tx, ctx))?
    }));
    let outputs_thread = {
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
        };
        std::thread::Builder::new()
            .name("outputs".into())
            .spawn(move || output_loop(estimate_rx, out_live_rx, live, ctx))?
    };
    drop(record_tx);

    // Watch the model and the config file.
    let (changed_tx, mut changed_rx) = unbounded::<PathBuf>();
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
        current_model_id.lock().unwrap(),
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
    loop {
        select! {
            recv(control) -> event => match event {
                Ok(ControlEvent::Shutdown) | Err(_) => break,
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
                    let current = current_model_id.lock().unwrap().clone();
                    match swap::try_model(&path, config.model.intra_threads, &current, |m| check_contract(m, &feature_template)) {
                        ModelCandidate::Ready(model) => {
                            tracing::info!("new model {} validated; swapping it in", model.id());
                            let _ = model_tx.send(*model);
                        }
                        ModelCandidate::Unchanged => tracing::debug!("model file touched, content unchanged"),
                        ModelCandidate::Rejected(why) => {
                            tracing::error!("rejected new model {}: {why}; the current model {current} keeps serving", path.display());
                            metrics.emit(Event::ModelRejected { reason: &why });
                        }
                    }
                }
            },
            recv(tick) -> _ => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    tracing::info!("run duration reached");
                    break;
                }
            },
        }
    }

    // Shutdown, in data-flow order.
    tracing::info!("stopping: draining the pipeline");
    if let Some(n) = &notifier {
        n.stopping();
    }
    simulator_stop.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    marker_stop.store(true, Ordering::SeqCst);
    drop(model_tx);
    drop(live_tx);
    drop(out_live_tx);
    let _ = acquisition.join();
    for (name, handle) in threads {
        if handle.join().is_err() {
            tracing::error!("thread {name} panicked");
        }
    }
    if let Some(recorder) = recorder {
        match recorder.join() {
            Ok(s) => tracing::info!("recording closed: {s:?}"),
            Err(_) => tracing::error!("recorder thread panicked"),
        }
    }
    drop(watchdog_stop);
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    drop(http);
    let summary = outputs_thread.join().unwrap_or_else(|_| {
        tracing::error!("thread outputs panicked");
        RunSummary::default()
    });
    tracing::info!("stopped after {} outputs", summary.outputs);
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

/// Whether `model` can serve the features this daemon computes (the stream's rate is checked
/// again when a stream connects).
fn check_contract(model: &Model, features: &FeatureConfig) -> Result<(), String> {
    let rate = if features.sample_rate_hz > 0.0 {
        features.sample_rate_hz
    } else {
        model.contract().min_sample_rate_hz
    };
    model
        .check_serves(rate, features.window_s, features.hop_s, &features.bands_hz)
        .map_err(|e| format!("model {} cannot serve this pipeline: {e}", model.id()))
}

fn announce_model(model: &Model, metrics: &Metrics) {
    let c = model.contract();
    metrics.emit(Event::ModelLoaded {
        id: model.id(),
        path: &model
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        format: &c.quantization.format,
        calibration: &format!("{}-k{}", c.calibration.method, c.calibration.k),
    });
    tracing::info!(
        "model {}: {} ({}-bit weights, calibration {} k={}, trained on {})",
        model.id(),
        c.quantization.format,
        c.quantization.weight_bits,
        c.calibration.method,
        c.calibration.k,
        c.provenance.dataset_description
    );
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
        let _ = live_tx.send(live.clone());
        let _ = out_live_tx.send(live);
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

fn sample_drop_reason(reason: crate::acquire::SampleDrop) -> &'static str {
    match reason {
        crate::acquire::SampleDrop::RingOverflow => "ring_overflow",
        crate::acquire::SampleDrop::RawTapFull => "record_tap_full",
    }
}

fn window_drop_reason(reason: crate::features::DropReason) -> &'static str {
    match reason {
        crate::features::DropReason::NonFinite => "non_finite",
        crate::features::DropReason::ChannelCountMismatch => "channel_count_mismatch",
    }
}

/// The EEG stream's own LSL header, recorded as it came, except that samples are stored as
/// float32 (what the inlet delivers to the pipeline).
fn recorded_eeg_header(lsl_xml: &str) -> Result<StreamHeader, crate::record::xdf::HeaderError> {
    let header = StreamHeader::from_xml(lsl_xml)?;
    if header.channel_format() == ChannelFormat::Float32 {
        return Ok(header);
    }
    let from = format!(
        "<channel_format>{}</channel_format>",
        header.channel_format().as_str()
    );
    StreamHeader::from_xml(&lsl_xml.replacen(&from, "<channel_format>float32</channel_format>", 1))
}

/// The header of the daemon's own output in recordings: as the LSL Emotion outlet.
fn emotion_output_header(classes: &[String], rate_hz: f64) -> StreamHeader {
    let mut labels: Vec<String> = classes.iter().map(|c| format!("p_{c}")).collect();
    labels.push("class_index".into());
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    StreamHeader::new(
        "affectd-emotion",
        "Emotion",
        labels.len() as u32,
        rate_hz,
        ChannelFormat::Float32,
        "affectd-emotion",
    )
    .with_channels(&labels, None, None)
}

struct FeatureCtx {
    template: FeatureConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    record_headers: Option<Sender<EegRecordMsg>>,
}

/// What the feature thread tells the recorder bridge about the EEG stream.
enum EegRecordMsg {
    Header(StreamHeader),
    /// LSL time correction: local = remote + offset, measured at remote `collection_time`.
    ClockOffset {
        collection_time: f64,
        offset: f64,
    },
}

/// The connected stream as the feature thread sees it.
struct Connection {
    reader: SampleReader,
    extractor: FeatureExtractor,
    nominal_period: f64,
    last_timestamp: Option<f64>,
}

/// Feature thread: ring buffer -> filters + DE + grid -> inference channel.
fn feature_loop(events: Receiver<AcquireEvent>, out: Sender<FeatureMsg>, ctx: FeatureCtx) {
    let metrics = &ctx.metrics;
    let heartbeat = ctx.health.heartbeat_slot("features");
    let mut connection: Option<Connection> = None;
    let mut clock_offset = 0.0;
    let mut acquisition_done = false;
    let mut data = Vec::new();
    let mut timestamps = vec![0.0f64; 512];
    loop {
        heartbeat.beat();
        // Acquisition events: block briefly only when there is no stream to read.
        let event = if connection.is_some() || acquisition_done {
            events.try_recv().map_err(|e| e.is_disconnected())
        } else {
            events
                .recv_timeout(Duration::from_millis(100))
                .map_err(|e| e.is_disconnected())
        };
        match event {
            Ok(AcquireEvent::Connected {
                description,
                reader,
            }) => {
                connection = connect(&description, reader, &ctx, &out);
                clock_offset = 0.0;
            }
            Ok(AcquireEvent::Waiting { predicate, waited }) => {
                tracing::warn!(
                    "waiting for an LSL stream matching {} ({:.0} s so far); not ready until it appears",
                    predicate.to_xpath(),
                    waited.as_secs_f64()
                );
            }
            Ok(AcquireEvent::Samples { count }) => {
                metrics.emit(Event::SamplesReceived { n: count as u64 })
            }
            Ok(AcquireEvent::Dropped { reason, count }) => metrics.emit(Event::SamplesDropped {
                reason: sample_drop_reason(reason),
                n: count as u64,
            }),
            Ok(AcquireEvent::Gap {
                missing_samples, ..
            }) => metrics.emit(Event::StreamGap { missing_samples }),
            Ok(AcquireEvent::ClockOffset {
                collection_time,
                offset,
            }) => {
                clock_offset = offset;
                if let Some(tx) = &ctx.record_headers {
                    let _ = tx.send(EegRecordMsg::ClockOffset {
                        collection_time,
                        offset,
                    });
                }
            }
            Ok(AcquireEvent::Stalled { since }) => {
                tracing::warn!(
                    "no data from the stream for {:.1} s; waiting for it to come back",
                    since.as_secs_f64()
                );
                ctx.health.set_stream_connected(false);
                metrics.emit(Event::StreamConnected(false));
            }
            Ok(AcquireEvent::Resumed) => {
                tracing::info!("stream data resumed");
                ctx.health.set_stream_connected(true);
                metrics.emit(Event::StreamConnected(true));
            }
            Ok(AcquireEvent::Fatal(why)) => tracing::error!("acquisition: {why}"),
            Err(true) => acquisition_done = true,
            Err(false) => {}
        }
        let Some(conn) = connection.as_mut() else {
            if acquisition_done {
                return;
            }
            continue;
        };
        let channels = conn.reader.channels();
        data.resize(timestamps.len() * channels, 0.0);
        let n = conn.reader.read(&mut data, &mut timestamps);
        if n == 0 {
            if acquisition_done {
                return;
            }
            conn.reader.wait(Duration::from_millis(50));
            continue;
        }
        for (sample, &t) in data.chunks_exact(channels).zip(&timestamps[..n]) {
            // A jump in the timestamps means lost samples: windows across it would mix data
            // from two times, so start over (acquisition counts the gap itself).
            if conn
                .last_timestamp
                .is_some_and(|last| t - last > GAP_PERIODS * conn.nominal_period)
            {
                conn.extractor.reset();
                metrics.emit(Event::WindowDropped { reason: "gap" });
            }
            conn.last_timestamp = Some(t);
            match conn.extractor.push(sample, t) {
                None => {}
                Some(WindowOutcome::Ready(window)) => {
                    metrics.emit(Event::WindowProcessed);
                    let msg = FeatureMsg::Window(WindowMsg {
                        window,
                        clock_offset,
                    });
                    if out.try_send(msg).is_err() {
                        metrics.emit(Event::WindowDropped {
                            reason: "inference_busy",
                        });
                    }
                }
                Some(WindowOutcome::Dropped { reason, .. }) => {
                    metrics.emit(Event::WindowDropped {
                        reason: window_drop_reason(reason),
                    });
                }
            }
        }
    }
}

/// Sets up features for a newly connected stream; None (with a clear error) if it cannot be used.
fn connect(
    description: &StreamDescription,
    reader: SampleReader,
    ctx: &FeatureCtx,
    out: &Sender<FeatureMsg>,
) -> Option<Connection> {
    tracing::info!(
        "connected to LSL stream '{}' (type {}, source_id '{}', {} channels at {} Hz, host {})",
        description.name,
        description.stream_type,
        description.source_id,
        description.channel_count,
        description.nominal_srate,
        description.hostname
    );
    let grid = match GridMap::with_types(&description.labels, &description.channel_types) {
        Ok(grid) => grid,
        Err(e) => {
            tracing::error!(
                "stream '{}' cannot be used: {e} (labels: {})",
                description.name,
                description.labels.join(" ")
            );
            return None;
        }
    };
    tracing::info!("electrode grid: {}", grid.describe(&description.labels));
    let mut filled = vec![false; crate::features::GRID_CELLS];
    for cell in grid.filled_cells() {
        filled[cell] = true;
    }
    let cfg = FeatureConfig {
        sample_rate_hz: description.nominal_srate,
        ..ctx.template.clone()
    };
    let extractor = match FeatureExtractor::new(cfg, grid) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("stream '{}' cannot be used: {e}", description.name);
            return None;
        }
    };
    if let Some(tx) = &ctx.record_headers {
        match recorded_eeg_header(&description.header_xml) {
            Ok(header) => {
                let _ = tx.send(EegRecordMsg::Header(header));
            }
            Err(e) => tracing::error!(
                "cannot record stream '{}': its header does not parse: {e}",
                description.name
            ),
        }
    }
    ctx.health.set_stream_connected(true);
    ctx.metrics.emit(Event::StreamConnected(true));
    let _ = out.send(FeatureMsg::Stream {
        sample_rate_hz: description.nominal_srate,
        filled,
    });
    Some(Connection {
        reader,
        extractor,
        nominal_period: 1.0 / description.nominal_srate,
        last_timestamp: None,
    })
}

struct InferCtx {
    template: FeatureConfig,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    live: LiveSettings,
    current_model_id: Arc<std::sync::Mutex<String>>,
}

/// Inference thread: owns the ort session; swaps models between windows.
fn inference_loop(
    mut model: Model,
    windows: Receiver<FeatureMsg>,
    mut swaps: Receiver<Model>,
    mut live: Receiver<LiveSettings>,
    out: Sender<Estimate>,
    ctx: InferCtx,
) {
    let metrics = &ctx.metrics;
    let hop_s = ctx.template.hop_s;
    let mut smoother = ProbabilitySmoother::new(ctx.live.smoothing_tau_s, hop_s);
    let mut filled = vec![false; crate::features::GRID_CELLS];
    // Reused for every window: no allocation for the model's output on the sample path.
    let mut probabilities = vec![0.0f32; model.contract().classes.len()];
    let mut stream_rate = 0.0;
    // Why windows are refused while the model cannot serve the stream (None = serving).
    let mut refusal: Option<String> = None;
    let mut model_id: Arc<str> = model.id().into();
    let heartbeat = ctx.health.heartbeat_slot("inference");
    loop {
        heartbeat.beat();
        select! {
            recv(swaps) -> new => {
                let Ok(new) = new else {
                    // Closed at shutdown: stop polling it while the last windows drain.
                    swaps = crossbeam_channel::never();
                    continue;
                };
                let features = FeatureConfig { sample_rate_hz: stream_rate, ..ctx.template.clone() };
                if let Err(why) = check_contract(&new, &features) {
                    tracing::error!("{why}; keeping model {model_id}");
                    metrics.emit(Event::ModelRejected { reason: &why });
                    continue;
                }
                tracing::info!("model swapped: {model_id} -> {}", new.id());
                model = new;
                probabilities.resize(model.contract().classes.len(), 0.0);
                model_id = model.id().into();
                *ctx.current_model_id.lock().unwrap() = model.id().to_string();
                refusal = None;
                announce_model(&model, metrics);
                metrics.emit(Event::ModelSwapped);
            },
            recv(live) -> settings => match settings {
                Ok(s) => smoother.retune(s.smoothing_tau_s, hop_s),
                Err(_) => live = crossbeam_channel::never(),
            },
            recv(windows) -> msg => {
                let Ok(msg) = msg else { return };
                match msg {
                    FeatureMsg::Stream { sample_rate_hz, filled: f } => {
                        filled = f;
                        stream_rate = sample_rate_hz;
                        smoother.reset();
                        let features = FeatureConfig { sample_rate_hz, ..ctx.template.clone() };
                        refusal = check_contract(&model, &features).err();
                        if let Some(why) = &refusal {
                            tracing::error!("{why}; windows are dropped until a model that fits is installed");
                        }
                    }
                    FeatureMsg::Window(w) => {
                        if refusal.is_some() {
                            metrics.emit(Event::WindowDropped { reason: "model_mismatch" });
                            continue;
                        }
                        let started = Instant::now();
                        if let Err(e) = model.predict_into(&w.window.grid, &filled, &mut probabilities) {
                            {
                                tracing::error!("inference failed: {e}");
                                metrics.emit(Event::WindowDropped { reason: "inference_error" });
                                continue;
                            }
                        }
                        metrics.emit(Event::InferenceDuration(started.elapsed()));
                        let smoothed = smoother.update(&probabilities).to_vec();
                        let estimate = Estimate {
                            timestamp: w.window.end_timestamp,
                            clock_offset: w.clock_offset,
                            class_index: argmax(&smoothed),
                            probabilities: smoothed,
                            model_id: model_id.clone(),
                        };
                        if out.try_send(estimate).is_err() {
                            metrics.emit(Event::OutputDropped { sink: "all", n: 1 });
                        }
                    }
                }
            },
            default(IDLE_BEAT) => {}
        }
    }
}

struct OutputCtx {
    lsl: Option<(String, String)>,
    hop_s: f64,
    record: Option<Sender<RecordItem>>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    labels: Receiver<(f64, String)>,
}

/// Output thread: owns the LSL outlet (liblsl handles stay on the thread that made them).
fn output_loop(
    estimates: Receiver<Estimate>,
    mut live: Receiver<LiveSettings>,
    initial: LiveSettings,
    ctx: OutputCtx,
) -> RunSummary {
    let metrics = &ctx.metrics;
    let classes: Vec<String> = crate::CLASSES.iter().map(|c| c.to_string()).collect();
    let outlet = ctx.lsl.as_ref().and_then(|(name, source_id)| {
        EmotionOutlet::new(name, source_id, &classes, 1.0 / ctx.hop_s)
            .map_err(|e| tracing::error!("LSL output disabled: cannot create outlet: {e:#}"))
            .ok()
    });
    let mut jsonl = open_jsonl(initial.jsonl_path.as_deref());
    if let Some(tx) = &ctx.record {
        let _ = tx.send(RecordItem::AddStream {
            id: OUTPUT_STREAM_ID,
            header: emotion_output_header(&classes, 1.0 / ctx.hop_s),
        });
    }
    let mapping = LabelMapping::default();
    let mut current_label: Option<u8> = None;
    let mut summary = RunSummary::default();
    let mut labels = ctx.labels.clone();
    let heartbeat = ctx.health.heartbeat_slot("outputs");
    loop {
        heartbeat.beat();
        select! {
            recv(live) -> settings => match settings {
                Ok(s) => jsonl = open_jsonl(s.jsonl_path.as_deref()),
                Err(_) => live = crossbeam_channel::never(),
            },
            recv(labels) -> marker => match marker {
                Ok((_, text)) => {
                    current_label = text.strip_prefix(START_PREFIX).and_then(|l| mapping.class_of(l));
                    if text.starts_with(crate::record::labels::END_PREFIX) { current_label = None; }
                }
                // No marker streams (recording off): stop polling a closed channel.
                Err(_) => labels = crossbeam_channel::never(),
            },
            recv(estimates) -> e => {
                let Ok(e) = e else { break };
                let now = lsl::local_clock();
                let latency = now - (e.timestamp + e.clock_offset);
                if let Some(outlet) = &outlet {
                    if let Err(err) = outlet.push(&e.probabilities, e.class_index, e.timestamp) {
                        tracing::warn!("LSL output push failed: {err:#}");
                        metrics.emit(Event::OutputDropped { sink: "lsl", n: 1 });
                    }
                }
                if let Some(sink) = &mut jsonl {
                    let record = EmotionRecord {
                        timestamp: e.timestamp,
                        class: &classes[e.class_index],
                        class_index: e.class_index,
                        probabilities: &e.probabilities,
                        classes: &classes,
                        model: &e.model_id,
                        latency_ms: latency * 1e3,
                    };
                    if let Err(err) = sink.write(&record) {
                        tracing::warn!("JSON lines output failed: {err}");
                        metrics.emit(Event::OutputDropped { sink: "jsonl", n: 1 });
                    }
                }
                if let Some(tx) = &ctx.record {
                    let mut values = e.probabilities.clone();
                    values.push(e.class_index as f32);
                    let item = RecordItem::Samples { id: OUTPUT_STREAM_ID, timestamps: vec![e.timestamp], values: OwnedValues::F32(values) };
                    if tx.try_send(item).is_err() {
                        metrics.emit(Event::RecordDropped { n: 1 });
                    }
                }
                metrics.emit(Event::EndToEndLatency(latency));
                metrics.emit(Event::Prediction { probabilities: &e.probabilities, classes: &classes });
                ctx.health.mark_output(Instant::now());
                summary.outputs += 1;
                if let Some(label) = current_label {
                    summary.label_agreement.1 += 1;
                    summary.label_agreement.0 += (label as usize == e.class_index) as u64;
                }
            },
            default(IDLE_BEAT) => {}
        }
    }
    let (hits, total) = summary.label_agreement;
    if total > 0 {
        tracing::info!(
            "output followed the labelled markers in {hits} of {total} windows ({:.1} %)",
            100.0 * hits as f64 / total as f64
        );
    }
    summary
}

fn open_jsonl(path: Option<&Path>) -> Option<JsonlSink> {
    let path = path?;
    JsonlSink::open(path)
        .map_err(|e| {
            tracing::error!(
                "outputs.jsonl.path {}: cannot open ({e}); JSON lines output is off",
                path.display()
            )
        })
        .ok()
}

/// Raw EEG chunks -> recorder items, after the stream's header (chunks that arrive before the
/// header of their stream wait for it, up to [`MAX_UNANNOUNCED_CHUNKS`]; a stream the feature
/// thread refuses is never announced, so its chunks are dropped and counted).
fn record_bridge(
    raw: Receiver<RawChunk>,
    mut headers: Receiver<EegRecordMsg>,
    record: Sender<RecordItem>,
    metrics: &Metrics,
) {
    let mut announced = false;
    let mut waiting: std::collections::VecDeque<RawChunk> = Default::default();
    let send = |chunk: RawChunk| {
        let item = RecordItem::Samples {
            id: EEG_STREAM_ID,
            timestamps: chunk.timestamps,
            values: OwnedValues::F32(chunk.data),
        };
        if record.try_send(item).is_err() {
            metrics.emit(Event::RecordDropped { n: 1 });
        }
    };
    loop {
        select! {
            recv(headers) -> msg => match msg {
                Ok(EegRecordMsg::Header(header)) => {
                    let _ = record.send(RecordItem::AddStream { id: EEG_STREAM_ID, header });
                    announced = true;
                    waiting.drain(..).for_each(send);
                }
                Ok(EegRecordMsg::ClockOffset { collection_time, offset }) if announced => {
                    let _ = record.send(RecordItem::ClockOffset { id: EEG_STREAM_ID, collection_time, offset });
                }
                Ok(EegRecordMsg::ClockOffset { .. }) => {}
                Err(_) => headers = crossbeam_channel::never(),
            },
            recv(raw) -> chunk => match chunk {
                Ok(chunk) if announced => send(chunk),
                Ok(chunk) => {
                    waiting.push_back(chunk);
                    if waiting.len() > MAX_UNANNOUNCED_CHUNKS {
                        waiting.pop_front();
                        metrics.emit(Event::RecordDropped { n: 1 });
                    }
                }
                Err(_) => return,
            },
        }
    }
}

/// Marker texts go to the output thread (live agreement) and the log; marker items go to the
/// recorder when recording.
fn spawn_marker_tee(
    markers: Receiver<RecordItem>,
    record: Option<Sender<RecordItem>>,
    labels: Sender<(f64, String)>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("marker-tee".into())
        .spawn(move || {
            for item in markers {
                if let RecordItem::Samples {
                    timestamps,
                    values: OwnedValues::Str(texts),
                    ..
                } = &item
                {
                    for (t, text) in timestamps.iter().zip(texts) {
                        tracing::info!("marker at {t:.3}: {text}");
                        let _ = labels.send((*t, text.clone()));
                    }
                }
                if let Some(record) = &record {
                    let _ = record.send(item);
                }
            }
        })
}

fn spawn_recorder_events(
    events: Receiver<crate::record::recorder::RecorderEvent>,
    metrics: Arc<Metrics>,
) -> std::io::Result<JoinHandle<()>> {
    use crate::record::recorder::RecorderEvent;
    std::thread::Builder::new()
        .name("recorder-events".into())
        .spawn(move || {
            let (mut bytes, mut dropped) = (0u64, 0u64);
            for event in events {
                match event {
                    RecorderEvent::FileOpened(path) => {
                        tracing::info!("recording to {}", path.display())
                    }
                    RecorderEvent::FileClosed { path, bytes } => {
                        tracing::info!("recording closed: {} ({bytes} bytes)", path.display())
                    }
                    // The recorder reports running totals; the metrics take increments.
                    RecorderEvent::BytesWritten(total) => {
                        metrics.emit(Event::RecorderBytes(total.saturating_sub(bytes)));
                        bytes = total;
                    }
                    RecorderEvent::Stopped { reason } => {
                        tracing::error!("recording stopped: {reason}; inference goes on");
                        metrics.emit(Event::RecorderStopped { reason: &reason });
                    }
                    RecorderEvent::Dropped { items: total } => {
                        metrics.emit(Event::RecordDropped {
                            n: total.saturating_sub(dropped),
                        });
                        dropped = total;
                    }
                }
            }
        })
}
