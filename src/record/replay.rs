//! Replay of recorded XDF files as live LSL streams, with their original metadata (name, type,
//! channels, rate, source_id, the whole `<desc>`) and timing.
//!
//! Timestamps: every sample keeps its (clock-synchronised) time relative to the first sample of
//! its file, shifted onto the current LSL clock when the file starts; the speed only changes
//! how fast samples are pushed, never their timestamps (so features computed from a fast replay
//! equal those of a real-time one). Successive files (e.g. a rotated session) and loops follow
//! each other without the timestamps ever going back.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use lsl::ExPushable;

use super::xdf::{
    read_xdf_with, ChannelFormat, ReadOptions, StreamHeader, TimeSeries, XdfFile, XdfStream,
    XmlElement,
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplaySpeed {
    RealTime,
    /// `Factor(2.0)` plays twice as fast as recorded.
    Factor(f64),
    AsFastAsPossible,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayStats {
    pub files: usize,
    /// Distinct outlets opened.
    pub streams: usize,
    pub samples_pushed: u64,
    /// Completed passes over all files.
    pub passes: u32,
}

/// How long outlets stay open after the last sample, so that consumers receive it.
const LINGER: Duration = Duration::from_secs(1);
/// Paced replays wait for consumers this long after the first one connects (to let the
/// others connect) before starting.
const CONSUMER_GRACE: Duration = Duration::from_secs(1);

/// Publishes the streams of `files` (in order; repeated while `looped`) until done or `stop`.
/// Non-real-time replays first wait for consumers (all outlets, or any plus a grace second):
/// data pushed before an inlet connects would be lost.
pub fn replay(
    files: &[PathBuf],
    speed: ReplaySpeed,
    looped: bool,
    stop: &AtomicBool,
) -> anyhow::Result<ReplayStats> {
    if let ReplaySpeed::Factor(f) = speed {
        anyhow::ensure!(
            f.is_finite() && f > 0.0,
            "replay speed factor must be > 0, got {f}"
        );
    }
    anyhow::ensure!(!files.is_empty(), "no files to replay");
    let recordings = files
        .iter()
        .map(|p| read_recording(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut outlets: HashMap<String, lsl::StreamOutlet> = HashMap::new();
    let mut stats = ReplayStats {
        files: files.len(),
        ..Default::default()
    };
    // Create all outlets up front, so that consumers can connect before the first sample.
    for rec in &recordings {
        for s in &rec.streams {
            let key = outlet_key(&s.header);
            if let Entry::Vacant(slot) = outlets.entry(key) {
                let info = stream_info(&s.header)?;
                let outlet = lsl::StreamOutlet::new(&info, 0, 360).map_err(|e| {
                    anyhow::anyhow!("cannot create an outlet for {:?}: {e}", s.header.name())
                })?;
                slot.insert(outlet);
            }
        }
    }
    stats.streams = outlets.len();
    if speed != ReplaySpeed::RealTime && !wait_for_consumers(&outlets, stop) {
        return Ok(stats);
    }
    let mut last_pushed = f64::NEG_INFINITY;
    'passes: loop {
        for (rec, path) in recordings.iter().zip(files) {
            tracing::info!("replaying {}", path.display());
            let events = schedule(&rec.streams);
            let Some(&(t0, _, _)) = events.first() else {
                continue;
            };
            // Shift onto the LSL clock, never before what was already pushed.
            let base = lsl::local_clock().max(last_pushed + 1e-3);
            let started = Instant::now();
            for &(t, si, k) in &events {
                if stop.load(Ordering::Relaxed) {
                    break 'passes;
                }
                let rel = t - t0;
                let due = match speed {
                    ReplaySpeed::RealTime => Some(rel),
                    ReplaySpeed::Factor(f) => Some(rel / f),
                    ReplaySpeed::AsFastAsPossible => None,
                };
                if let Some(due) = due {
                    let wait = due - started.elapsed().as_secs_f64();
                    if wait > 0.0005 {
                        std::thread::sleep(Duration::from_secs_f64(wait));
                    }
                }
                let s = &rec.streams[si];
                let outlet = &outlets[&outlet_key(&s.header)];
                let ts = base + rel;
                push(outlet, s, k, ts)
                    .with_context(|| format!("pushing to {:?}", s.header.name()))?;
                last_pushed = last_pushed.max(ts);
                stats.samples_pushed += 1;
            }
        }
        stats.passes += 1;
        if !looped || stop.load(Ordering::Relaxed) {
            break;
        }
    }
    let linger_until = Instant::now() + LINGER;
    while Instant::now() < linger_until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(stats)
}

/// Reads a recording leniently: a session cut short by a crash replays up to its last complete
/// chunk (with a warning), as pyxdf would load it.
fn read_recording(path: &std::path::Path) -> anyhow::Result<XdfFile> {
    let opts = ReadOptions {
        lenient: true,
        ..Default::default()
    };
    let file = read_xdf_with(path, &opts).with_context(|| format!("reading {}", path.display()))?;
    if let Some(e) = &file.error {
        tracing::warn!(
            "{}: replaying the part before the damage ({e})",
            path.display()
        );
    }
    Ok(file)
}

/// Streams with the same identity in several files (a rotated session) share one outlet.
fn outlet_key(h: &StreamHeader) -> String {
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
        h.name(),
        h.stream_type(),
        h.source_id(),
        h.channel_count(),
        h.channel_format().as_str()
    )
}

/// Every sample of every stream as (timestamp, stream index, sample index), in time order.
fn schedule(streams: &[XdfStream]) -> Vec<(f64, usize, usize)> {
    let mut events: Vec<(f64, usize, usize)> = streams
        .iter()
        .enumerate()
        .flat_map(|(si, s)| {
            s.timestamps
                .iter()
                .enumerate()
                .map(move |(k, &t)| (t, si, k))
        })
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    events
}

fn wait_for_consumers(outlets: &HashMap<String, lsl::StreamOutlet>, stop: &AtomicBool) -> bool {
    tracing::info!(
        "replay: waiting for consumers of {} stream(s)",
        outlets.len()
    );
    let mut first_seen: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let with = outlets.values().filter(|o| o.have_consumers()).count();
        if with == outlets.len() {
            return true;
        }
        if with > 0 {
            let since = *first_seen.get_or_insert_with(Instant::now);
            if since.elapsed() >= CONSUMER_GRACE {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn push(outlet: &lsl::StreamOutlet, s: &XdfStream, k: usize, ts: f64) -> anyhow::Result<()> {
    let n = s.channel_count();
    let row = k * n..(k + 1) * n;
    let res = match &s.time_series {
        TimeSeries::F32(v) => outlet.push_sample_ex(&v[row].to_vec(), ts, true),
        TimeSeries::F64(v) => outlet.push_sample_ex(&v[row].to_vec(), ts, true),
        TimeSeries::Str(v) => outlet.push_sample_ex(&v[row].to_vec(), ts, true),
    };
    res.map_err(|e| anyhow::anyhow!("{e}"))
}

/// The outlet's StreamInfo: the original fields and a copy of the original `<desc>` tree.
fn stream_info(h: &StreamHeader) -> anyhow::Result<lsl::StreamInfo> {
    let format = match h.channel_format() {
        ChannelFormat::Float32 => lsl::ChannelFormat::Float32,
        ChannelFormat::Double64 => lsl::ChannelFormat::Double64,
        ChannelFormat::Int8 => lsl::ChannelFormat::Int8,
        ChannelFormat::Int16 => lsl::ChannelFormat::Int16,
        ChannelFormat::Int32 => lsl::ChannelFormat::Int32,
        ChannelFormat::Int64 => lsl::ChannelFormat::Int64,
        ChannelFormat::String => lsl::ChannelFormat::String,
    };
    let mut info = lsl::StreamInfo::new(
        h.name(),
        h.stream_type(),
        h.channel_count(),
        h.nominal_srate(),
        format,
        h.source_id(),
    )
    .map_err(|e| anyhow::anyhow!("cannot build the stream info of {:?}: {e}", h.name()))?;
    if let Some(desc) = h.desc() {
        let mut target = info.desc();
        for child in &desc.children {
            copy_into(&mut target, child);
        }
    }
    Ok(info)
}

/// Appends `e` (recursively) under `parent`. liblsl's element API has no attributes: they are
/// not carried over.
fn copy_into(parent: &mut lsl::XMLElement, e: &XmlElement) {
    if e.children.is_empty() {
        parent.append_child_value(&e.name, &e.text);
        return;
    }
    let mut node = parent.append_child(&e.name);
    for c in &e.children {
        copy_into(&mut node, c);
    }
}
