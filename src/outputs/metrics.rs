//! The daemon's own telemetry: typed internal events that become Prometheus metrics (the model
//! of vector's internal events), and the health state behind /readyz and the systemd watchdog.
//!
//! Stages call [`Metrics::emit`] with an [`Event`]; only this module knows metric names, which
//! follow Prometheus conventions: `affectd_` prefix, base units, `_total` counters, `_seconds`
//! histograms. Emitting is lock-free for the counters and histograms (prometheus uses atomics);
//! labelled families take a short read lock to find the child.
//!
//! Label values come from fixed sets (`&'static str` in the events; classes and the model's
//! identity from the serving model, one series set at a time), never from free text such as
//! error messages, so the number of series stays bounded.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets of `affectd_inference_duration_seconds`: 10 us .. 50 ms.
pub const INFERENCE_BUCKETS: &[f64] = &[
    10e-6, 25e-6, 50e-6, 75e-6, 100e-6, 150e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3,
    50e-3,
];

/// Buckets of `affectd_end_to_end_latency_seconds`: 0.1 ms .. 1 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0,
];

/// A pipeline loop that has not beaten for this long is stalled: /healthz answers 503.
pub const MAX_HEARTBEAT_AGE: Duration = Duration::from_secs(5);

/// What happened, as the stages say it. See docs/service.md for the metric each one feeds.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Samples pulled from the inlet and pushed into the ring.
    SamplesReceived {
        n: u64,
    },
    /// Samples lost, by reason (`ring_overflow`, `record_tap_full`).
    SamplesDropped {
        reason: &'static str,
        n: u64,
    },
    /// `gaps` timestamp gaps in the input (summed while a consumer was behind), with the
    /// samples the stream's nominal rate says are missing in them.
    StreamGap {
        gaps: u64,
        missing_samples: u64,
    },
    StreamConnected(bool),
    WindowProcessed,
    /// A window that produced no output, by reason (`non_finite`, `queue_full`, ...).
    WindowDropped {
        reason: &'static str,
    },
    /// Wall time of one model run.
    InferenceDuration(Duration),
    /// Seconds on the LSL clock from the timestamp of the window's last sample to the output push.
    EndToEndLatency(f64),
    /// The (smoothed) class probabilities just pushed; `classes` are the model's labels.
    Prediction {
        probabilities: &'a [f32],
        classes: &'a [String],
    },
    /// A model is now serving; replaces the previous `affectd_model_info` series.
    ModelLoaded {
        id: &'a str,
        path: &'a str,
        format: &'a str,
        calibration: &'a str,
    },
    /// A model file refused; `reason` is one of a fixed set ([`crate::infer::Refusal`]).
    ModelRejected {
        reason: &'static str,
    },
    /// Share of the serving model's trained grid cells that the connected stream fills.
    MontageCoverage(f64),
    /// The Emotion outputs were re-created for another class set (a hot swap).
    OutputClassesChanged,
    ModelSwapped,
    /// Outputs a sink could not take (e.g. its queue was full), by sink.
    OutputDropped {
        sink: &'static str,
        n: u64,
    },
    /// Bytes just written to session files (a delta, added to the counter).
    RecorderBytes(u64),
    /// `reason` is one of `disk_full`, `io_error`, `write_error`.
    RecorderStopped {
        reason: &'static str,
    },
    /// Chunks the recorder could not take (its queue was full).
    RecordDropped {
        n: u64,
    },
    ConfigReloaded {
        ok: bool,
    },
}

pub struct Metrics {
    registry: Registry,
    samples_received: IntCounter,
    samples_dropped: IntCounterVec,
    stream_gaps: IntCounter,
    stream_gap_samples: IntCounter,
    stream_connected: IntGauge,
    windows_processed: IntCounter,
    windows_dropped: IntCounterVec,
    inference_duration: Histogram,
    end_to_end_latency: Histogram,
    class_probability: GaugeVec,
    predictions: IntCounterVec,
    model_info: IntGaugeVec,
    /// Label values of the model_info series currently set, to remove it on the next load.
    current_model: Mutex<Option<[String; 4]>>,
    model_rejected: IntCounterVec,
    model_swaps: IntCounter,
    montage_coverage: Gauge,
    output_class_changes: IntCounter,
    output_dropped: IntCounterVec,
    recorder_bytes: IntCounter,
    recorder_stopped: IntCounterVec,
    recorder_dropped: IntCounter,
    config_reloads: CounterVec,
    config_last_reload_ok: Gauge,
    /// Log lines dropped by the log writer, as far as already added to `output_dropped`.
    log_dropped_synced: AtomicU64,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("affectd_{name}"), help)
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Self::build().expect("metric definitions are valid and unique"))
    }

    fn build() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry.register(Box::new(m.clone()))?;
                m
            }};
        }
        let hist = |name: &str, help: &str, buckets: &[f64]| {
            Histogram::with_opts(
                HistogramOpts::new(format!("affectd_{name}"), help).buckets(buckets.to_vec()),
            )
        };
        let build_info = reg!(IntGaugeVec::new(
            opts("build_info", "Always 1; the affectd version as a label."),
            &["version"],
        )?);
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let m = Metrics {
            samples_received: reg!(IntCounter::with_opts(opts(
                "samples_received_total",
                "EEG samples received from the LSL inlet."
            ))?),
            samples_dropped: reg!(IntCounterVec::new(
                opts("samples_dropped_total", "EEG samples lost, by reason."),
                &["reason"]
            )?),
            stream_gaps: reg!(IntCounter::with_opts(opts(
                "stream_gaps_total",
                "Timestamp gaps detected in the EEG stream."
            ))?),
            stream_gap_samples: reg!(IntCounter::with_opts(opts(
                "stream_gap_missing_samples_total",
                "Samples missing in detected gaps, at the stream's nominal rate."
            ))?),
            stream_connected: reg!(IntGauge::with_opts(opts(
                "stream_connected",
                "1 while an EEG stream is connected and delivering data."
            ))?),
            windows_processed: reg!(IntCounter::with_opts(opts(
                "windows_processed_total",
                "Feature windows that went through the model."
            ))?),
            windows_dropped: reg!(IntCounterVec::new(
                opts(
                    "windows_dropped_total",
                    "Feature windows dropped, by reason."
                ),
                &["reason"]
            )?),
            inference_duration: reg!(hist(
                "inference_duration_seconds",
                "Wall time of one model run.",
                INFERENCE_BUCKETS
            )?),
            end_to_end_latency: reg!(hist(
                "end_to_end_latency_seconds",
                "LSL-clock time from the last sample of a window to the push of its output.",
                LATENCY_BUCKETS
            )?),
            class_probability: reg!(GaugeVec::new(
                opts("class_probability", "Latest output probability per class."),
                &["class"]
            )?),
            predictions: reg!(IntCounterVec::new(
                opts("predictions_total", "Outputs by winning class."),
                &["class"]
            )?),
            model_info: reg!(IntGaugeVec::new(
                opts(
                    "model_info",
                    "1 for the model being served; its identity as labels."
                ),
                &["id", "path", "format", "calibration"]
            )?),
            current_model: Mutex::new(None),
            model_rejected: reg!(IntCounterVec::new(
                opts("model_rejected_total", "Model files refused, by reason."),
                &["reason"]
            )?),
            model_swaps: reg!(IntCounter::with_opts(opts(
                "model_swaps_total",
                "Models hot-swapped in while running."
            ))?),
            montage_coverage: reg!(Gauge::with_opts(opts(
                "montage_coverage_ratio",
                "Share of the serving model's trained grid cells the connected stream fills."
            ))?),
            output_class_changes: reg!(IntCounter::with_opts(opts(
                "output_class_changes_total",
                "Times the Emotion outputs were re-created for a model with another class set."
            ))?),
            output_dropped: reg!(IntCounterVec::new(
                opts(
                    "output_dropped_total",
                    "Outputs a sink could not take, by sink."
                ),
                &["sink"]
            )?),
            recorder_bytes: reg!(IntCounter::with_opts(opts(
                "recorder_written_bytes_total",
                "Bytes written to session files."
            ))?),
            recorder_stopped: reg!(IntCounterVec::new(
                opts(
                    "recorder_stopped_total",
                    "Times recording stopped, by reason."
                ),
                &["reason"]
            )?),
            recorder_dropped: reg!(IntCounter::with_opts(opts(
                "recorder_dropped_total",
                "Chunks the recorder could not take because its queue was full."
            ))?),
            config_reloads: reg!(CounterVec::new(
                opts(
                    "config_reloads_total",
                    "Config reloads, by result (ok, error)."
                ),
                &["result"]
            )?),
            config_last_reload_ok: reg!(Gauge::with_opts(opts(
                "config_last_reload_successful",
                "1 if the last config reload succeeded (1 before any reload)."
            ))?),
            registry,
            log_dropped_synced: AtomicU64::new(0),
        };
        m.config_last_reload_ok.set(1.0);
        Ok(m)
    }

    pub fn emit(&self, e: Event) {
        match e {
            Event::SamplesReceived { n } => self.samples_received.inc_by(n),
            Event::SamplesDropped { reason, n } => {
                self.samples_dropped.with_label_values(&[reason]).inc_by(n)
            }
            Event::StreamGap {
                gaps,
                missing_samples,
            } => {
                self.stream_gaps.inc_by(gaps);
                self.stream_gap_samples.inc_by(missing_samples);
            }
            Event::StreamConnected(c) => self.stream_connected.set(c as i64),
            Event::WindowProcessed => self.windows_processed.inc(),
            Event::WindowDropped { reason } => {
                self.windows_dropped.with_label_values(&[reason]).inc()
            }
            Event::InferenceDuration(d) => self.inference_duration.observe(d.as_secs_f64()),
            Event::EndToEndLatency(s) => {
                if s.is_finite() {
                    self.end_to_end_latency.observe(s)
                }
            }
            Event::Prediction {
                probabilities,
                classes,
            } => {
                let mut best: Option<(usize, f32)> = None;
                for (i, (p, c)) in probabilities.iter().zip(classes).enumerate() {
                    self.class_probability
                        .with_label_values(&[c.as_str()])
                        .set(f64::from(*p));
                    if best.is_none_or(|(_, b)| *p > b) {
                        best = Some((i, *p));
                    }
                }
                if let Some((i, _)) = best {
                    self.predictions
                        .with_label_values(&[classes[i].as_str()])
                        .inc();
                }
            }
            Event::ModelLoaded {
                id,
                path,
                format,
                calibration,
            } => {
                let labels = [id, path, format, calibration].map(str::to_owned);
                let mut current = self
                    .current_model
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                if let Some(old) = current.take() {
                    let old: Vec<&str> = old.iter().map(String::as_str).collect();
                    let _ = self.model_info.remove_label_values(&old);
                }
                self.model_info
                    .with_label_values(&[id, path, format, calibration])
                    .set(1);
                *current = Some(labels);
            }
            Event::ModelRejected { reason } => {
                self.model_rejected.with_label_values(&[reason]).inc()
            }
            Event::ModelSwapped => self.model_swaps.inc(),
            Event::MontageCoverage(share) => self.montage_coverage.set(share),
            Event::OutputClassesChanged => {
                self.output_class_changes.inc();
                // The old classes' probability series would otherwise linger.
                self.class_probability.reset();
            }
            Event::OutputDropped { sink, n } => {
                self.output_dropped.with_label_values(&[sink]).inc_by(n)
            }
            Event::RecorderBytes(n) => self.recorder_bytes.inc_by(n),
            Event::RecorderStopped { reason } => {
                self.recorder_stopped.with_label_values(&[reason]).inc()
            }
            Event::RecordDropped { n } => self.recorder_dropped.inc_by(n),
            Event::ConfigReloaded { ok } => {
                let result = if ok { "ok" } else { "error" };
                self.config_reloads.with_label_values(&[result]).inc();
                self.config_last_reload_ok.set(if ok { 1.0 } else { 0.0 });
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.sync_log_drops();
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which `build` rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Log lines the log writer dropped (it counts them itself) become
    /// `affectd_output_dropped_total{sink="log"}`.
    fn sync_log_drops(&self) {
        let total = crate::service::logging::log_lines_dropped();
        let before = self.log_dropped_synced.fetch_max(total, Ordering::Relaxed);
        if total > before {
            self.output_dropped
                .with_label_values(&["log"])
                .inc_by(total - before);
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Answer of [`Health::ready`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// Why not ready, one short sentence each.
    pub reasons: Vec<&'static str>,
}

const NEVER: u64 = u64::MAX;

/// One pipeline loop's heartbeat, from [`Health::heartbeat_slot`]: lock-free to beat.
#[derive(Clone)]
pub struct Heartbeat {
    start: Instant,
    last_ns: Arc<AtomicU64>,
}

impl Heartbeat {
    pub fn beat(&self) {
        self.last_ns
            .store(self.start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Health of the running daemon, shared by the pipeline (writers) and the HTTP server and
/// watchdog (readers). Every loop of the pipeline beats at least every second or so, also while
/// no stream is present (from its receive timeout), so a merely absent stream keeps the daemon
/// alive while a stalled or deadlocked loop makes [`Health::alive`] false.
pub struct Health {
    start: Instant,
    stream_connected: AtomicBool,
    model_loaded: AtomicBool,
    last_output_ns: AtomicU64,
    /// Heartbeat slots by loop name; [`Health::heartbeat`] uses the slot "pipeline".
    slots: Mutex<Vec<(&'static str, Arc<AtomicU64>)>>,
    default_slot: std::sync::OnceLock<Heartbeat>,
    /// Supervised threads that have ended (see pipeline::supervisor).
    exited: Mutex<Vec<&'static str>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            start: Instant::now(),
            stream_connected: AtomicBool::new(false),
            model_loaded: AtomicBool::new(false),
            last_output_ns: AtomicU64::new(NEVER),
            slots: Mutex::new(Vec::new()),
            default_slot: std::sync::OnceLock::new(),
            exited: Mutex::new(Vec::new()),
        }
    }
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    fn ns_since_start(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_nanos() as u64
    }

    fn age(&self, ns: u64) -> Option<Duration> {
        (ns != NEVER).then(|| {
            self.start
                .elapsed()
                .saturating_sub(Duration::from_nanos(ns))
        })
    }

    pub fn set_stream_connected(&self, connected: bool) {
        self.stream_connected.store(connected, Ordering::Relaxed);
    }

    pub fn set_model_loaded(&self, loaded: bool) {
        self.model_loaded.store(loaded, Ordering::Relaxed);
    }

    /// An output was pushed at `at`.
    pub fn mark_output(&self, at: Instant) {
        self.last_output_ns
            .store(self.ns_since_start(at), Ordering::Relaxed);
    }

    /// A heartbeat slot for one loop (e.g. "acquire", "features", "infer"); each registered slot
    /// must keep beating for the daemon to count as alive. Registered beating "now".
    pub fn heartbeat_slot(&self, name: &'static str) -> Heartbeat {
        let hb = Heartbeat {
            start: self.start,
            last_ns: Arc::new(AtomicU64::new(NEVER)),
        };
        hb.beat();
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, hb.last_ns.clone()));
        hb
    }

    /// Beats the shared "pipeline" slot (registered on first use).
    pub fn heartbeat(&self) {
        self.default_slot
            .get_or_init(|| self.heartbeat_slot("pipeline"))
            .beat();
    }

    /// A supervised thread has ended: from now on the daemon is not alive.
    pub fn mark_thread_exited(&self, name: &'static str) {
        self.exited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name);
    }

    /// Names of the supervised threads that have ended, in order.
    pub fn exited_threads(&self) -> Vec<&'static str> {
        self.exited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Names of the slots that have not beaten within `max_age`, then of the threads that have
    /// ended. Before any slot exists the daemon gets `max_age` from start-up to register one;
    /// after that, "pipeline (no heartbeat)" is reported.
    pub fn stalled(&self, max_age: Duration) -> Vec<&'static str> {
        let mut stalled: Vec<&'static str> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if slots.is_empty() && self.start.elapsed() > max_age {
                vec!["pipeline (no heartbeat)"]
            } else {
                slots
                    .iter()
                    .filter(|(_, ns)| {
                        self.age(ns.load(Ordering::Relaxed))
                            .is_none_or(|a| a > max_age)
                    })
                    .map(|(name, _)| *name)
                    .collect()
            }
        };
        stalled.extend(self.exited_threads());
        stalled
    }

    /// True while every pipeline loop has beaten within `max_heartbeat_age`.
    pub fn alive(&self, max_heartbeat_age: Duration) -> bool {
        self.stalled(max_heartbeat_age).is_empty()
    }

    pub fn ready(&self, max_output_age: Duration) -> Readiness {
        let mut reasons = Vec::new();
        if !self.stream_connected.load(Ordering::Relaxed) {
            reasons.push("no EEG stream connected");
        }
        if !self.model_loaded.load(Ordering::Relaxed) {
            reasons.push("no model loaded");
        }
        match self.age(self.last_output_ns.load(Ordering::Relaxed)) {
            None => reasons.push("no output yet"),
            Some(a) if a > max_output_age => reasons.push("no recent output"),
            Some(_) => {}
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of one sample line `name{labels} value` in the exposition.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn events_become_metrics() {
        let m = Metrics::new();
        m.emit(Event::SamplesReceived { n: 200 });
        m.emit(Event::SamplesReceived { n: 62 });
        m.emit(Event::SamplesDropped {
            reason: "non_finite",
            n: 3,
        });
        m.emit(Event::StreamGap {
            gaps: 1,
            missing_samples: 40,
        });
        m.emit(Event::InferenceDuration(Duration::from_micros(80)));
        m.emit(Event::EndToEndLatency(0.0021));
        let classes: Vec<String> = crate::CLASSES.iter().map(|s| s.to_string()).collect();
        m.emit(Event::Prediction {
            probabilities: &[0.2, 0.7, 0.1],
            classes: &classes,
        });
        m.emit(Event::ConfigReloaded { ok: false });
        let t = m.render();
        assert_eq!(sample(&t, "affectd_samples_received_total"), Some(262.0));
        assert_eq!(
            sample(&t, "affectd_samples_dropped_total{reason=\"non_finite\"}"),
            Some(3.0)
        );
        assert_eq!(
            sample(&t, "affectd_stream_gap_missing_samples_total"),
            Some(40.0)
        );
        assert_eq!(
            sample(
                &t,
                "affectd_inference_duration_seconds_bucket{le=\"0.00005\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &t,
                "affectd_inference_duration_seconds_bucket{le=\"0.0001\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &t,
                "affectd_end_to_end_latency_seconds_bucket{le=\"0.002\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &t,
                "affectd_end_to_end_latency_seconds_bucket{le=\"0.005\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&t, "affectd_class_probability{class=\"neutral\"}"),
            Some(f64::from(0.7f32))
        );
        assert_eq!(
            sample(&t, "affectd_predictions_total{class=\"neutral\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&t, "affectd_config_last_reload_successful"),
            Some(0.0)
        );
    }

    #[test]
    fn model_info_keeps_only_the_current_model() {
        let m = Metrics::new();
        let load = |id| Event::ModelLoaded {
            id,
            path: "/m.onnx",
            format: "int8-qdq",
            calibration: "prefrontal-gradcam-100",
        };
        m.emit(load("a"));
        m.emit(load("b"));
        let t = m.render();
        let info: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("affectd_model_info{"))
            .collect();
        assert_eq!(info.len(), 1, "{info:?}");
        assert!(info[0].contains("id=\"b\""), "{info:?}");
    }

    #[test]
    fn readiness_lists_what_is_missing() {
        let h = Health::new();
        let r = h.ready(Duration::from_secs(2));
        assert!(!r.ready);
        assert_eq!(
            r.reasons,
            [
                "no EEG stream connected",
                "no model loaded",
                "no output yet"
            ]
        );
        h.set_stream_connected(true);
        h.set_model_loaded(true);
        h.mark_output(Instant::now());
        assert_eq!(h.ready(Duration::from_secs(2)).reasons, Vec::<&str>::new());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            h.ready(Duration::from_millis(10)).reasons,
            ["no recent output"]
        );
    }

    #[test]
    fn a_stalled_slot_makes_the_daemon_not_alive() {
        let h = Health::new();
        let a = h.heartbeat_slot("acquire");
        let b = h.heartbeat_slot("infer");
        assert!(h.alive(Duration::from_millis(500)));
        std::thread::sleep(Duration::from_millis(60));
        a.beat();
        assert_eq!(h.stalled(Duration::from_millis(40)), ["infer"]);
        b.beat();
        assert!(h.alive(Duration::from_millis(40)));
        h.mark_thread_exited("outputs");
        assert_eq!(h.stalled(Duration::from_secs(5)), ["outputs"]);
        assert!(!h.alive(Duration::from_secs(5)));
    }
}
