//! The inference thread: owns the ort session, checks each connected stream against the model's
//! contract, runs the model on every window, smooths, and swaps models between windows.
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{select, Receiver, Sender};

use super::messages::{Estimate, FeatureMsg, LiveSettings};
use super::IDLE_BEAT;
use crate::features::FeatureConfig;
use crate::infer::contract::FeatureSpec;
use crate::infer::model::Model;
use crate::infer::smoothing::{argmax, ProbabilitySmoother};
use crate::infer::Refusal;
use crate::outputs::metrics::{Event, Health, Metrics};

/// Whether `model` can serve the features this daemon computes (the stream's rate is checked
/// again when a stream connects). `allow_foreign` is `model.allow_foreign_features`.
pub(super) fn check_contract(
    model: &Model,
    features: &FeatureConfig,
    allow_foreign: bool,
) -> Result<(), Refusal> {
    let contract = model.contract();
    let rate = if features.sample_rate_hz > 0.0 {
        features.sample_rate_hz
    } else {
        contract.features.min_sample_rate_hz
    };
    contract
        .check_serves(&FeatureSpec::of(features), rate, allow_foreign)
        .map_err(|e| Refusal {
            reason: e.reason(),
            message: format!("model {} cannot serve this pipeline: {e}", model.id()),
        })
}

/// Share of the model's trained cells that the stream fills (None: the contract does not say).
fn coverage(model: &Model, filled: &[bool]) -> Option<f64> {
    let trained = &model.contract().trained_cells;
    (!trained.is_empty())
        .then(|| trained.iter().filter(|&&c| filled[c]).count() as f64 / trained.len() as f64)
}

/// Whether `model` serves the connected stream: its contract, then the montage coverage.
fn check_stream(
    model: &Model,
    rules: &ServeRules,
    sample_rate_hz: f64,
    filled: &[bool],
    metrics: &Metrics,
) -> Result<(), Refusal> {
    let features = FeatureConfig {
        sample_rate_hz,
        ..rules.features.clone()
    };
    check_contract(model, &features, rules.allow_foreign)?;
    let Some(share) = coverage(model, filled) else {
        return Ok(());
    };
    metrics.emit(Event::MontageCoverage(share));
    let missing: Vec<&str> = model
        .contract()
        .trained_cells
        .iter()
        .filter(|&&c| !filled[c])
        .filter_map(|&c| crate::features::cell_label(c))
        .collect();
    let detail = format!(
        "the stream fills {:.0} % of the {} grid cells model {} was trained on (missing: {})",
        100.0 * share,
        model.contract().trained_cells.len(),
        model.id(),
        missing.join(" ")
    );
    if share < rules.min_coverage {
        return Err(Refusal {
            reason: "montage_coverage",
            message: format!(
                "{detail}; below stream.min_coverage = {} the model is not served: train a \
                 model on this headset's montage (affectd retrain)",
                rules.min_coverage
            ),
        });
    }
    if share < COVERAGE_WARNING {
        tracing::warn!("{detail}; their inputs are fed as 'no information'");
    }
    Ok(())
}

pub(super) fn announce_model(model: &Model, metrics: &Metrics) {
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
        "model {}: classes {} ({} labels); {} ({}-bit weights, calibration {} k={}), trained on {}",
        model.id(),
        c.classes.join("/"),
        c.labels.kind,
        c.quantization.format,
        c.quantization.weight_bits,
        c.calibration.method,
        c.calibration.k,
        c.provenance.dataset_description
    );
    if c.legacy_v1() {
        tracing::warn!(
            "model {} has a version 1 contract, which does not record notch, band-pass or input \
             unit: they are assumed to be the daemon's; retrain to record them",
            model.id()
        );
    }
    if c.features.is_foreign() {
        tracing::warn!(
            "model {} was trained on features from other code ({}); served only because \
             model.allow_foreign_features is set: its outputs may not mean anything",
            model.id(),
            c.features.extractor
        );
    }
}

/// Below this montage coverage (and above `stream.min_coverage`) a model is served with a
/// warning.
const COVERAGE_WARNING: f64 = 0.9;

/// What a model must satisfy to serve: the daemon's features and the config's limits.
#[derive(Debug, Clone)]
pub(super) struct ServeRules {
    /// The daemon's feature settings (sample rate 0 until a stream connects).
    pub features: FeatureConfig,
    pub allow_foreign: bool,
    pub min_coverage: f64,
}

pub(super) struct InferCtx {
    pub rules: ServeRules,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub live: LiveSettings,
    pub current_model_id: Arc<std::sync::Mutex<String>>,
}

/// Inference thread: owns the ort session; swaps models between windows.
pub(super) fn inference_loop(
    mut model: Model,
    windows: Receiver<FeatureMsg>,
    mut swaps: Receiver<Model>,
    mut live: Receiver<LiveSettings>,
    out: Sender<Estimate>,
    ctx: InferCtx,
) {
    let metrics = &ctx.metrics;
    let hop_s = ctx.rules.features.hop_s;
    let mut smoother = ProbabilitySmoother::new(ctx.live.smoothing_tau_s, hop_s);
    let mut filled = vec![false; crate::features::GRID_CELLS];
    // Reused for every window: no allocation for the model's output on the sample path.
    let mut probabilities = vec![0.0f32; model.contract().classes.len()];
    let mut stream_rate = 0.0;
    // Why windows are refused while the model cannot serve the stream (None = serving).
    let mut refusal: Option<Refusal> = None;
    let mut model_id: Arc<str> = model.id().into();
    let mut classes: Arc<[String]> = model.contract().classes.clone().into();
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
                let checked = if stream_rate > 0.0 {
                    check_stream(&new, &ctx.rules, stream_rate, &filled, metrics)
                } else {
                    check_contract(&new, &ctx.rules.features, ctx.rules.allow_foreign)
                };
                if let Err(why) = checked {
                    tracing::error!("{why}; keeping model {model_id}");
                    metrics.emit(Event::ModelRejected { reason: why.reason });
                    continue;
                }
                tracing::info!("model swapped: {model_id} -> {}", new.id());
                model = new;
                probabilities.resize(model.contract().classes.len(), 0.0);
                model_id = model.id().into();
                if *classes != model.contract().classes[..] {
                    classes = model.contract().classes.clone().into();
                    smoother.reset();
                }
                *ctx.current_model_id.lock().unwrap_or_else(|p| p.into_inner()) = model.id().to_string();
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
                        refusal = check_stream(&model, &ctx.rules, sample_rate_hz, &filled, metrics).err();
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
                            tracing::error!("inference failed: {e}");
                            metrics.emit(Event::WindowDropped { reason: "inference_error" });
                            continue;
                        }
                        metrics.emit(Event::InferenceDuration(started.elapsed()));
                        let smoothed = smoother.update(&probabilities).to_vec();
                        let estimate = Estimate {
                            timestamp: w.window.end_timestamp,
                            clock_offset: w.clock_offset,
                            class_index: argmax(&smoothed),
                            probabilities: smoothed,
                            classes: classes.clone(),
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
