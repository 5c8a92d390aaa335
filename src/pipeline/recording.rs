//! The recording side of the pipeline: raw EEG chunks to recorder items once their stream is
//! announced, marker streams to the log, the live agreement and the recorder, and the recorder's
//! events to metrics.
use std::sync::Arc;

use crossbeam_channel::{select, Receiver, Sender};

use super::messages::EegRecordMsg;
use crate::acquire::RawChunk;
use crate::outputs::metrics::{Event, Metrics};
use crate::record::recorder::{OwnedValues, RecordItem, RecorderEvent};
use crate::record::xdf::{ChannelFormat, StreamHeader};
use crossbeam_channel::TrySendError;

/// Recorder stream ids: the EEG input, the daemon's own output, then marker streams.
pub(super) const EEG_STREAM_ID: u32 = 1;
pub(super) const OUTPUT_STREAM_ID: u32 = 2;
pub(super) const FIRST_MARKER_STREAM_ID: u32 = 10;
/// Output streams re-created for a model with other classes (a hot swap) count up from here.
pub(super) const FIRST_REPLACED_OUTPUT_ID: u32 = 1_000_000;
/// Raw chunks the recorder bridge keeps while their stream has not been announced.
const MAX_UNANNOUNCED_CHUNKS: usize = 1024;

/// The EEG stream's own LSL header, recorded as it came, except that samples are stored as
/// float32 (what the inlet delivers to the pipeline).
pub(super) fn recorded_eeg_header(
    lsl_xml: &str,
) -> Result<StreamHeader, crate::record::xdf::HeaderError> {
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

/// Raw EEG chunks -> recorder items, after the stream's header (chunks that arrive before the
/// header of their stream wait for it, up to [`MAX_UNANNOUNCED_CHUNKS`]; a stream the feature
/// thread refuses is never announced, so its chunks are dropped and counted).
pub(super) fn record_bridge(
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
/// recorder when recording. Never waits on either for markers: a full queue drops them
/// (counted: `affectd_output_dropped_total{sink="labels"}`, `affectd_recorder_dropped_total`).
/// Stream announcements and ends wait (the recorder always drains). Ends when the marker reader
/// does.
pub(super) fn marker_tee(
    markers: Receiver<RecordItem>,
    record: Option<Sender<RecordItem>>,
    labels: Sender<(f64, String)>,
    metrics: &Metrics,
) {
    let mut labels = Some(labels);
    for item in markers {
        if let RecordItem::Samples {
            timestamps,
            values: OwnedValues::Str(texts),
            ..
        } = &item
        {
            for (t, text) in timestamps.iter().zip(texts) {
                tracing::info!("marker at {t:.3}: {text}");
                if let Some(tx) = &labels {
                    match tx.try_send((*t, text.clone())) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => metrics.emit(Event::OutputDropped {
                            sink: "labels",
                            n: 1,
                        }),
                        // The outputs thread is gone (shutdown): keep recording markers.
                        Err(TrySendError::Disconnected(_)) => labels = None,
                    }
                }
            }
        }
        if let Some(record) = &record {
            match item {
                item @ RecordItem::Samples { .. } => {
                    if record.try_send(item).is_err() {
                        metrics.emit(Event::RecordDropped { n: 1 });
                    }
                }
                other => {
                    let _ = record.send(other);
                }
            }
        }
    }
}

/// The recorder's events become log lines and metrics. Ends when the recorder does.
pub(super) fn recorder_events(events: Receiver<RecorderEvent>, metrics: Arc<Metrics>) {
    let (mut bytes, mut dropped) = (0u64, 0u64);
    for event in events {
        match event {
            RecorderEvent::FileOpened(path) => tracing::info!("recording to {}", path.display()),
            RecorderEvent::FileClosed { path, bytes } => {
                tracing::info!("recording closed: {} ({bytes} bytes)", path.display())
            }
            // The recorder reports running totals; the metrics take increments.
            RecorderEvent::BytesWritten(total) => {
                metrics.emit(Event::RecorderBytes(total.saturating_sub(bytes)));
                bytes = total;
            }
            RecorderEvent::Stopped { reason, kind } => {
                tracing::error!("recording stopped: {reason}; inference goes on");
                metrics.emit(Event::RecorderStopped { reason: kind });
            }
            RecorderEvent::Dropped { items: total } => {
                metrics.emit(Event::RecordDropped {
                    n: total.saturating_sub(dropped),
                });
                dropped = total;
            }
        }
    }
}
