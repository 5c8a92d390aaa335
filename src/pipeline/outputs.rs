//! The outputs thread: owns the LSL Emotion outlet (liblsl handles stay on the thread that made
//! them), writes JSON lines, records the daemon's own estimates, updates the output metrics and
//! keeps the live agreement with labelled markers. Nothing here waits on a consumer: the outlet
//! buffers in liblsl, JSON lines go through a bounded queue to their own writer thread, the
//! recorder gets `try_send`.
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{select, Receiver, Sender};

use super::messages::{Estimate, LiveSettings};
use super::recording::{FIRST_REPLACED_OUTPUT_ID, OUTPUT_STREAM_ID};
use super::{RunSummary, IDLE_BEAT};
use crate::outputs::jsonl::{EmotionRecord, JsonlQueue};
use crate::outputs::lsl_outlet::EmotionOutlet;
use crate::outputs::metrics::{Event, Health, Metrics};
use crate::record::labels::{END_PREFIX, START_PREFIX};
use crate::record::recorder::{OwnedValues, RecordItem};
use crate::record::xdf::{ChannelFormat, StreamHeader};
use crate::service::logging::Throttle;

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

pub(super) struct OutputCtx {
    /// LSL outlet name and source_id (None = LSL output off).
    pub lsl: Option<(String, String)>,
    pub hop_s: f64,
    pub record: Option<Sender<RecordItem>>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub labels: Receiver<(f64, String)>,
    /// The classes of the model serving at start.
    pub classes: Arc<[String]>,
}

/// The Emotion outputs for one class set: the LSL outlet and the recorder stream. A hot swap to
/// a model with other classes replaces them (a new outlet, a new stream in the recording).
struct ClassOutputs {
    classes: Arc<[String]>,
    outlet: Option<EmotionOutlet>,
    record_id: u32,
}

impl ClassOutputs {
    fn open(ctx: &OutputCtx, classes: Arc<[String]>, record_id: u32) -> ClassOutputs {
        let rate = 1.0 / ctx.hop_s;
        let outlet = ctx.lsl.as_ref().and_then(|(name, source_id)| {
            EmotionOutlet::new(name, source_id, &classes, rate)
                .map_err(|e| tracing::error!("LSL output disabled: cannot create outlet: {e:#}"))
                .ok()
        });
        if let Some(tx) = &ctx.record {
            let _ = tx.send(RecordItem::AddStream {
                id: record_id,
                header: emotion_output_header(&classes, rate),
            });
        }
        ClassOutputs {
            classes,
            outlet,
            record_id,
        }
    }
}

/// Output thread: owns the LSL outlet (liblsl handles stay on the thread that made them).
pub(super) fn output_loop(
    estimates: Receiver<Estimate>,
    mut live: Receiver<LiveSettings>,
    initial: LiveSettings,
    ctx: OutputCtx,
) -> RunSummary {
    let metrics = &ctx.metrics;
    let mut out = ClassOutputs::open(&ctx, ctx.classes.clone(), OUTPUT_STREAM_ID);
    let mut next_record_id = FIRST_REPLACED_OUTPUT_ID;
    let mut jsonl = open_jsonl(initial.jsonl_path.as_deref(), metrics);
    let mut lsl_failed = Throttle::per_minute();
    // The label of the open stimulus, if any (compared with the output's class by name).
    let mut current_label: Option<String> = None;
    let mut summary = RunSummary::default();
    let mut labels = ctx.labels.clone();
    let heartbeat = ctx.health.heartbeat_slot("outputs");
    loop {
        heartbeat.beat();
        select! {
            recv(live) -> settings => match settings {
                Ok(s) => jsonl = open_jsonl(s.jsonl_path.as_deref(), metrics),
                Err(_) => live = crossbeam_channel::never(),
            },
            recv(labels) -> marker => match marker {
                Ok((_, text)) => {
                    if let Some(label) = text.strip_prefix(START_PREFIX) {
                        current_label = Some(label.trim().to_lowercase());
                    } else if text.starts_with(END_PREFIX) {
                        current_label = None;
                    }
                }
                // No marker streams (recording off): stop polling a closed channel.
                Err(_) => labels = crossbeam_channel::never(),
            },
            recv(estimates) -> e => {
                let Ok(e) = e else { break };
                if e.classes != out.classes {
                    tracing::warn!(
                        "the new model's classes are {} (were {}): re-creating the Emotion outlet and recording stream; LSL consumers must resolve it again",
                        e.classes.join("/"),
                        out.classes.join("/")
                    );
                    drop(out);
                    out = ClassOutputs::open(&ctx, e.classes.clone(), next_record_id);
                    next_record_id += 1;
                    metrics.emit(Event::OutputClassesChanged);
                }
                let classes = &out.classes;
                let now = lsl::local_clock();
                let latency = now - (e.timestamp + e.clock_offset);
                if let Some(outlet) = &out.outlet {
                    if let Err(err) = outlet.push(&e.probabilities, e.class_index, e.timestamp) {
                        if let Some(n) = lsl_failed.hit() {
                            tracing::warn!("LSL output push failed: {err:#} ({n} since the last report)");
                        }
                        metrics.emit(Event::OutputDropped { sink: "lsl", n: 1 });
                    }
                }
                if let Some(queue) = &mut jsonl {
                    let record = EmotionRecord {
                        timestamp: e.timestamp,
                        class: &classes[e.class_index],
                        class_index: e.class_index,
                        probabilities: &e.probabilities,
                        classes,
                        model: &e.model_id,
                        latency_ms: latency * 1e3,
                    };
                    queue.write(&record);
                }
                if let Some(tx) = &ctx.record {
                    let mut values = e.probabilities.clone();
                    values.push(e.class_index as f32);
                    let item = RecordItem::Samples { id: out.record_id, timestamps: vec![e.timestamp], values: OwnedValues::F32(values) };
                    if tx.try_send(item).is_err() {
                        metrics.emit(Event::RecordDropped { n: 1 });
                    }
                }
                metrics.emit(Event::EndToEndLatency(latency));
                metrics.emit(Event::Prediction { probabilities: &e.probabilities, classes });
                ctx.health.mark_output(Instant::now());
                summary.outputs += 1;
                if let Some(label) = &current_label {
                    summary.label_agreement.1 += 1;
                    summary.label_agreement.0 += classes[e.class_index].eq_ignore_ascii_case(label) as u64;
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

fn open_jsonl(path: Option<&Path>, metrics: &Arc<Metrics>) -> Option<JsonlQueue> {
    let path = path?;
    JsonlQueue::open(path, metrics.clone())
        .map_err(|e| {
            tracing::error!(
                "outputs.jsonl.path {}: cannot open ({e}); JSON lines output is off",
                path.display()
            )
        })
        .ok()
}
