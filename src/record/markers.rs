//! The marker reader: one thread that finds LSL marker streams (by type), opens an inlet per
//! stream and forwards headers, markers and clock offsets to the recorder. liblsl handles are
//! neither Send nor Sync, so they are created and dropped on this thread only.
//!
//! What it holds is bounded by the streams on the network now: a stream the resolver no longer
//! sees for [`LOST_AFTER`] has its inlet closed and its recorder stream ended (it is opened
//! again, as a new recorder stream, if it comes back), and streams it skipped are forgotten
//! once they are gone.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use lsl::Pullable;

use super::recorder::{OwnedValues, RecordItem};
use super::xdf::{ChannelFormat, StreamHeader};

/// How often the reader looks for new streams.
const RESOLVE_EVERY: Duration = Duration::from_secs(1);
/// How often clock offsets are measured (LabRecorder: 5 s).
const OFFSET_EVERY: Duration = Duration::from_secs(5);
/// Markers are picked up this often while marker inlets are open (they are events, not a
/// signal: 50 ms is well inside a window's hop).
const POLL: Duration = Duration::from_millis(50);
/// With no marker stream open, the thread only wakes to resolve (and to see `stop`).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// A stream the resolver has not listed for this long is gone: its inlet is closed. (The
/// resolver itself forgets a stream 5 s after its last answer.)
pub const LOST_AFTER: Duration = Duration::from_secs(10);

struct Open {
    id: u32,
    key: String,
    inlet: lsl::StreamInlet,
    channels: usize,
    next_offset: Instant,
    /// When the resolver last listed the stream.
    last_seen: Instant,
}

/// How the reader knows a stream: by source_id (a restarted outlet is resumed by the same
/// inlet, which recovers by itself) or, without one, by its uid.
fn stream_key(info: &lsl::StreamInfo) -> String {
    match info.source_id() {
        s if s.is_empty() => format!("uid:{}", info.uid()),
        s => format!("src:{}|{}|{}", s, info.stream_name(), info.stream_type()),
    }
}

/// Starts the marker thread. Streams of any of `stream_types` (exact match) get ids
/// `first_id, first_id + 1, ...` in the order they are found. Only string streams are taken
/// (others are logged and skipped). A stream is known by its source_id (so a restarted outlet
/// is resumed by the same inlet, which recovers by itself) or, without one, by its uid.
/// The thread ends when `stop` is set or the recorder's channel is closed.
pub fn spawn_marker_reader(
    stream_types: Vec<String>,
    items: Sender<RecordItem>,
    first_id: u32,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("markers".into())
        .spawn(move || run_marker_reader(&stream_types, &items, first_id, &stop))
        .expect("spawning the marker thread")
}

/// The marker reader's body, for a thread the caller owns (see [`spawn_marker_reader`]).
pub fn run_marker_reader(
    stream_types: &[String],
    items: &Sender<RecordItem>,
    first_id: u32,
    stop: &AtomicBool,
) {
    if let Err(e) = run(stream_types, items, first_id, stop) {
        tracing::error!("marker reader stopped: {e}");
    }
}

fn predicate(types: &[String]) -> String {
    types
        .iter()
        .map(|t| format!("type='{}'", t.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn run(
    types: &[String],
    items: &Sender<RecordItem>,
    first_id: u32,
    stop: &AtomicBool,
) -> Result<(), String> {
    if types.is_empty() {
        return Ok(());
    }
    let resolver = lsl::ContinuousResolver::new_with_pred(&predicate(types), 5.0)
        .map_err(|e| format!("cannot start the LSL resolver: {e}"))?;
    // Keys of the listed streams already handled (open, or skipped as unusable).
    let mut seen: HashSet<String> = HashSet::new();
    let mut open: Vec<Open> = Vec::new();
    let mut next_id = first_id;
    let mut next_resolve = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_resolve {
            next_resolve = Instant::now() + RESOLVE_EVERY;
            let listed = resolver.results().unwrap_or_default();
            let keys: HashSet<String> = listed.iter().map(stream_key).collect();
            let now = Instant::now();
            for o in &mut open {
                if keys.contains(&o.key) {
                    o.last_seen = now;
                }
            }
            // Lost streams: close their inlets, end their recorder streams.
            let mut i = 0;
            while i < open.len() {
                if now.duration_since(open[i].last_seen) < LOST_AFTER {
                    i += 1;
                    continue;
                }
                let o = open.swap_remove(i);
                tracing::info!(
                    "marker stream {} is gone (not on the network for {LOST_AFTER:?}); closing it",
                    o.id
                );
                seen.remove(&o.key);
                if items.send(RecordItem::EndStream { id: o.id }).is_err() {
                    return Ok(());
                }
            }
            // Skipped streams that left are forgotten (no growth with streams coming and going).
            seen.retain(|k| keys.contains(k) || open.iter().any(|o| &o.key == k));
            for info in listed {
                let key = stream_key(&info);
                if !seen.insert(key.clone()) {
                    continue;
                }
                match open_stream(&info, next_id, key) {
                    Ok((o, header)) => {
                        tracing::info!(
                            "recording marker stream {:?} (type {:?}) as stream {}",
                            header.name(),
                            header.stream_type(),
                            o.id
                        );
                        if items
                            .send(RecordItem::AddStream { id: o.id, header })
                            .is_err()
                        {
                            return Ok(());
                        }
                        next_id += 1;
                        open.push(o);
                    }
                    Err(e) => tracing::warn!("marker stream {:?}: {e}", info.stream_name()),
                }
            }
        }
        for o in &mut open {
            if pump(o, items).is_err() {
                return Ok(()); // the recorder is gone
            }
        }
        let nap = if open.is_empty() { IDLE_POLL } else { POLL };
        std::thread::sleep(nap.min(next_resolve.saturating_duration_since(Instant::now())));
    }
    Ok(())
}

fn open_stream(
    info: &lsl::StreamInfo,
    id: u32,
    key: String,
) -> Result<(Open, StreamHeader), String> {
    if info.channel_format() != lsl::ChannelFormat::String {
        return Err(format!(
            "channel format {} is not string; skipped",
            info.channel_format()
        ));
    }
    let inlet = lsl::StreamInlet::new(info, 360, 0, true)
        .map_err(|e| format!("cannot open an inlet: {e}"))?;
    // The full info (with <desc>) comes from the outlet itself.
    let full = inlet
        .info(2.0)
        .map_err(|e| format!("cannot get the stream info: {e}"))?;
    let xml = full
        .to_xml()
        .map_err(|e| format!("cannot get the stream XML: {e}"))?;
    let header = StreamHeader::from_xml(&xml).map_err(|e| format!("unusable stream XML: {e}"))?;
    debug_assert_eq!(header.channel_format(), ChannelFormat::String);
    inlet
        .open_stream(2.0)
        .map_err(|e| format!("cannot open the stream: {e}"))?;
    let channels = header.channel_count() as usize;
    Ok((
        Open {
            id,
            key,
            inlet,
            channels,
            next_offset: Instant::now(),
            last_seen: Instant::now(),
        },
        header,
    ))
}

/// Forwards the markers that arrived and, when due, a clock offset. Err: recorder gone.
fn pump(o: &mut Open, items: &Sender<RecordItem>) -> Result<(), ()> {
    let mut timestamps = Vec::new();
    let mut values = Vec::new();
    loop {
        match Pullable::<String>::pull_sample(&o.inlet, 0.0) {
            Ok((sample, ts)) if ts != 0.0 && sample.len() == o.channels => {
                timestamps.push(ts);
                values.extend(sample);
            }
            Ok(_) => break,
            Err(e) => {
                tracing::debug!("marker stream {}: {e}", o.id);
                break;
            }
        }
    }
    if !timestamps.is_empty() {
        let item = RecordItem::Samples {
            id: o.id,
            timestamps,
            values: OwnedValues::Str(values),
        };
        items.send(item).map_err(|_| ())?;
    }
    if Instant::now() >= o.next_offset {
        // A short timeout: the first estimate may take a moment; it is retried next round.
        if let Ok((offset, remote_time, _)) = o.inlet.time_correction_ex(0.05) {
            o.next_offset = Instant::now() + OFFSET_EVERY;
            let item = RecordItem::ClockOffset {
                id: o.id,
                collection_time: remote_time,
                offset,
            };
            items.send(item).map_err(|_| ())?;
        }
    }
    Ok(())
}
