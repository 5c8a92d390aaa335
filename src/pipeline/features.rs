//! The feature thread: ring buffer -> filters + DE + grid -> the inference channel. It also
//! turns acquisition's events into metrics, health and the recorder's stream header.
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::messages::{EegRecordMsg, FeatureMsg, WindowMsg};
use super::recording::recorded_eeg_header;
use crate::acquire::{AcquireEvent, SampleReader, StreamDescription};
use crate::features::units::channel_scales;
use crate::features::{FeatureConfig, FeatureExtractor, GridMap, WindowOutcome};
use crate::outputs::metrics::{Event, Health, Metrics};
use crate::service::logging::Throttle;

/// A timestamp step longer than this many sample periods is a gap (lost samples).
const GAP_PERIODS: f64 = 2.0;

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
pub(super) struct FeatureCtx {
    pub template: FeatureConfig,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub record_headers: Option<Sender<EegRecordMsg>>,
    /// `stream.default_unit`: for channels whose description declares no unit.
    pub default_unit: String,
}

/// The connected stream as the feature thread sees it.
struct Connection {
    reader: SampleReader,
    extractor: FeatureExtractor,
    nominal_period: f64,
    last_timestamp: Option<f64>,
}

/// Feature thread: ring buffer -> filters + DE + grid -> inference channel.
pub(super) fn feature_loop(
    events: Receiver<AcquireEvent>,
    out: Sender<FeatureMsg>,
    ctx: FeatureCtx,
) {
    let metrics = &ctx.metrics;
    let heartbeat = ctx.health.heartbeat_slot("features");
    let mut connection: Option<Connection> = None;
    let mut clock_offset = 0.0;
    let mut acquisition_done = false;
    let mut data = Vec::new();
    let mut timestamps = vec![0.0f64; 512];
    let mut drops = Throttle::per_minute();
    loop {
        heartbeat.beat();
        // Acquisition events: block only when there is no stream to read (then there is
        // nothing else to wait for); otherwise take all that are queued (a bounded few).
        let mut event = if connection.is_some() || acquisition_done {
            events.try_recv()
        } else {
            events.recv_timeout(super::IDLE_BEAT).map_err(|e| {
                if e.is_disconnected() {
                    TryRecvError::Disconnected
                } else {
                    TryRecvError::Empty
                }
            })
        };
        while let Ok(ev) = event {
            handle_event(
                ev,
                &mut connection,
                &mut clock_offset,
                &mut drops,
                &ctx,
                &out,
            );
            event = events.try_recv();
        }
        if matches!(event, Err(TryRecvError::Disconnected)) {
            acquisition_done = true;
        }
        // A reader whose connection acquisition has left (stream lost) and that is read to
        // its end: nothing more will come through it.
        if connection
            .as_ref()
            .is_some_and(|c| !c.reader.is_live() && c.reader.available() == 0)
        {
            connection = None;
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

/// One acquisition event: metrics, health, the recorder's header, a new connection.
fn handle_event(
    event: AcquireEvent,
    connection: &mut Option<Connection>,
    clock_offset: &mut f64,
    drops: &mut Throttle,
    ctx: &FeatureCtx,
    out: &Sender<FeatureMsg>,
) {
    let metrics = &ctx.metrics;
    match event {
        AcquireEvent::Connected {
            description,
            reader,
        } => {
            *connection = connect(&description, reader, ctx, out);
            *clock_offset = 0.0;
        }
        AcquireEvent::Waiting { predicate, waited } => {
            tracing::warn!(
                    "waiting for an LSL stream matching {} ({:.0} s so far); not ready until it appears",
                    predicate.to_xpath(),
                    waited.as_secs_f64()
                );
        }
        AcquireEvent::Samples { count } => metrics.emit(Event::SamplesReceived { n: count as u64 }),
        AcquireEvent::Dropped { reason, count } => {
            let reason = sample_drop_reason(reason);
            if let Some(n) = drops.hit_n(count as u64) {
                tracing::warn!(
                    "{n} EEG samples dropped ({reason}) since the last report: the stream \
                         comes faster than the pipeline can take it; see \
                         affectd_samples_dropped_total"
                );
            }
            metrics.emit(Event::SamplesDropped {
                reason,
                n: count as u64,
            })
        }
        AcquireEvent::Gap {
            missing_samples,
            gaps,
            ..
        } => metrics.emit(Event::StreamGap {
            gaps,
            missing_samples,
        }),
        AcquireEvent::ClockOffset {
            collection_time,
            offset,
        } => {
            *clock_offset = offset;
            if let Some(tx) = &ctx.record_headers {
                // The bridge drains this promptly; if it cannot, an offset is not worth
                // waiting for (the next comes in 5 s).
                if tx
                    .try_send(EegRecordMsg::ClockOffset {
                        collection_time,
                        offset,
                    })
                    .is_err()
                {
                    metrics.emit(Event::RecordDropped { n: 1 });
                }
            }
        }
        AcquireEvent::Stalled { since } => {
            tracing::warn!(
                "no data from the stream for {:.1} s; waiting for it to come back",
                since.as_secs_f64()
            );
            ctx.health.set_stream_connected(false);
            metrics.emit(Event::StreamConnected(false));
        }
        AcquireEvent::Resumed => {
            tracing::info!("stream data resumed");
            ctx.health.set_stream_connected(true);
            metrics.emit(Event::StreamConnected(true));
        }
        AcquireEvent::Fatal(why) => tracing::error!("acquisition: {why}"),
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
    let placed: Vec<bool> = grid.cell_of_channel.iter().map(Option::is_some).collect();
    let scales = channel_scales(
        &description.units,
        &description.labels,
        description.channel_count,
        &placed,
        &ctx.default_unit,
    );
    let (scales, defaulted) = match scales {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("stream '{}' cannot be used: {e}", description.name);
            return None;
        }
    };
    if defaulted {
        tracing::warn!(
            "stream '{}' does not declare the unit of its EEG channels; taking them as {} \
             (stream.default_unit)",
            description.name,
            ctx.default_unit
        );
    }
    let extractor = match FeatureExtractor::new(cfg, grid) {
        Ok(x) => x.with_channel_scales(scales),
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
