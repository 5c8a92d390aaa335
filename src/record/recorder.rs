//! The recorder thread: owns the session's XDF file, writes what the pipeline sends it, flushes
//! and fdatasyncs on a timer (so a killed process loses at most one flush interval), rotates
//! files by size or age, and on a write error (disk full) stops writing but keeps draining its
//! channel so that producers never block.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::xdf::{SampleValues, StreamHeader, XdfWriteError, XdfWriter};

/// Longest allowed flush interval: the crash-safety promise is "at most 1 s lost".
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Where session files go (created if missing).
    pub directory: PathBuf,
    /// Start a new file once the current one holds this many bytes (0: no size limit).
    pub rotate_max_bytes: u64,
    /// Start a new file once the current one is this old (zero: no age limit).
    pub rotate_max_duration: Duration,
    /// Flush + fdatasync period; values above [`MAX_FLUSH_INTERVAL`] are capped to it.
    pub flush_interval: Duration,
    /// File names are `<file_prefix>-<UTC time>.xdf`.
    pub file_prefix: String,
}

/// Sample values as the pipeline owns them (row-major, sample by sample).
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValues {
    F32(Vec<f32>),
    Str(Vec<String>),
}

/// What producers send the recorder. Stream ids are chosen by the producers (unique per stream).
#[derive(Debug, Clone)]
pub enum RecordItem {
    AddStream {
        id: u32,
        header: StreamHeader,
    },
    Samples {
        id: u32,
        timestamps: Vec<f64>,
        values: OwnedValues,
    },
    ClockOffset {
        id: u32,
        collection_time: f64,
        offset: f64,
    },
    /// The stream is gone from the network: files opened from now on (rotation) do not
    /// announce it again. Its samples so far stay in the current file.
    EndStream {
        id: u32,
    },
}

/// Notifications from the recorder (best effort: sent with `try_send`).
#[derive(Debug, Clone, PartialEq)]
pub enum RecorderEvent {
    FileOpened(PathBuf),
    FileClosed {
        path: PathBuf,
        bytes: u64,
    },
    /// Total bytes written over all files so far, after each flush.
    BytesWritten(u64),
    /// Recording stopped for good (e.g. disk full); the reason names the file and the error,
    /// `kind` is one of a fixed set for metrics: `disk_full`, `io_error`, `write_error`.
    Stopped {
        reason: String,
        kind: &'static str,
    },
    /// Total items dropped so far (after a stop, or refused as malformed).
    Dropped {
        items: u64,
    },
}

/// What the recorder did, returned when its thread ends.
#[derive(Debug, Clone, Default)]
pub struct RecorderSummary {
    pub files: Vec<PathBuf>,
    pub bytes_written: u64,
    pub samples_written: u64,
    pub items_dropped: u64,
    /// Why recording stopped early, if it did.
    pub stopped: Option<String>,
}

/// Starts the recorder thread. It ends when every sender of `items` is dropped, after writing
/// the footers of the current file and fsyncing it.
pub fn spawn_recorder(
    cfg: RecorderConfig,
    items: Receiver<RecordItem>,
    events: Sender<RecorderEvent>,
) -> JoinHandle<RecorderSummary> {
    std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || run_recorder(cfg, items, events))
        .expect("spawning the recorder thread")
}

/// The recorder's body, for a thread the caller owns (see [`spawn_recorder`]).
pub fn run_recorder(
    cfg: RecorderConfig,
    items: Receiver<RecordItem>,
    events: Sender<RecorderEvent>,
) -> RecorderSummary {
    Recorder::new(cfg, events).run(items)
}

struct Recorder {
    cfg: RecorderConfig,
    events: Sender<RecorderEvent>,
    writer: Option<XdfWriter>,
    opened_at: Instant,
    /// Live streams in announcement order, with their latest clock offset, for re-announcing
    /// after a rotation (ended streams are removed).
    streams: Vec<(u32, StreamHeader)>,
    last_offset: HashMap<u32, (f64, f64)>,
    bytes_closed: u64,
    /// File size after the last Boundary chunk.
    boundary_at: u64,
    summary: RecorderSummary,
    dropped_reported: u64,
}

impl Recorder {
    fn new(mut cfg: RecorderConfig, events: Sender<RecorderEvent>) -> Self {
        cfg.flush_interval = cfg.flush_interval.min(MAX_FLUSH_INTERVAL);
        Recorder {
            cfg,
            events,
            writer: None,
            opened_at: Instant::now(),
            streams: Vec::new(),
            last_offset: HashMap::new(),
            bytes_closed: 0,
            boundary_at: 0,
            summary: RecorderSummary::default(),
            dropped_reported: 0,
        }
    }

    fn run(mut self, items: Receiver<RecordItem>) -> RecorderSummary {
        let mut next_flush = Instant::now() + self.cfg.flush_interval;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            match items.recv_timeout(wait) {
                Ok(item) => self.handle(item),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_flush {
                self.tick();
                next_flush = Instant::now() + self.cfg.flush_interval;
            }
        }
        self.close_file();
        self.report_dropped();
        self.summary
    }

    fn stopped(&self) -> bool {
        self.summary.stopped.is_some()
    }

    fn handle(&mut self, item: RecordItem) {
        if self.stopped() {
            self.summary.items_dropped += 1;
            return;
        }
        if let RecordItem::EndStream { id } = item {
            self.streams.retain(|(i, _)| *i != id);
            self.last_offset.remove(&id);
            return;
        }
        if let RecordItem::AddStream { id, header } = &item {
            if let Some((_, known)) = self.streams.iter().find(|(i, _)| i == id) {
                if known != header {
                    tracing::warn!("recorder: stream {id} announced again with another header; keeping the first");
                }
                return;
            }
            self.streams.push((*id, header.clone()));
        }
        if self.writer.is_none() && !self.open_file() {
            self.summary.items_dropped += 1;
            return;
        }
        let writer = self.writer.as_mut().expect("opened above");
        let res = match &item {
            RecordItem::AddStream { id, header } => writer.add_stream(*id, header),
            RecordItem::Samples {
                id,
                timestamps,
                values,
            } => {
                let v = match values {
                    OwnedValues::F32(v) => SampleValues::F32(v),
                    OwnedValues::Str(v) => SampleValues::Str(v),
                };
                writer.write_samples(*id, timestamps, v).map(|()| {
                    self.summary.samples_written += timestamps.len() as u64;
                })
            }
            RecordItem::ClockOffset {
                id,
                collection_time,
                offset,
            } => {
                self.last_offset.insert(*id, (*collection_time, *offset));
                writer.write_clock_offset(*id, *collection_time, *offset)
            }
            // Handled above (it writes nothing).
            RecordItem::EndStream { .. } => Ok(()),
        };
        match res {
            Ok(()) => self.rotate_if_due(),
            Err(e) if e.is_io() => {
                self.summary.items_dropped += 1;
                self.stop(e);
            }
            Err(e) => {
                tracing::warn!("recorder: dropped an item: {e}");
                self.summary.items_dropped += 1;
            }
        }
    }

    /// Periodic work: boundary chunk, flush + fdatasync, age-based rotation, counters.
    fn tick(&mut self) {
        if let Some(w) = self.writer.as_mut() {
            // A Boundary chunk after new data gives readers of a damaged file (pyxdf scans for
            // them) a place to resynchronise.
            if w.bytes_written() > self.boundary_at {
                if let Err(e) = w.write_boundary() {
                    return self.stop(e);
                }
                self.boundary_at = w.bytes_written();
            }
            match w.flush() {
                Ok(()) => {
                    let total = self.bytes_closed + w.bytes_written();
                    let _ = self.events.try_send(RecorderEvent::BytesWritten(total));
                    self.rotate_if_due();
                }
                Err(e) => self.stop(e),
            }
        }
        self.report_dropped();
    }

    fn report_dropped(&mut self) {
        if self.summary.items_dropped != self.dropped_reported {
            self.dropped_reported = self.summary.items_dropped;
            let _ = self.events.try_send(RecorderEvent::Dropped {
                items: self.dropped_reported,
            });
        }
    }

    fn rotate_if_due(&mut self) {
        let Some(w) = self.writer.as_ref() else {
            return;
        };
        let by_size =
            self.cfg.rotate_max_bytes > 0 && w.bytes_written() >= self.cfg.rotate_max_bytes;
        let by_age = !self.cfg.rotate_max_duration.is_zero()
            && self.opened_at.elapsed() >= self.cfg.rotate_max_duration;
        if !(by_size || by_age) {
            return;
        }
        self.close_file();
        if self.stopped() || !self.open_file() {
            return;
        }
        // The new file must stand alone: announce every stream again, with its latest offset.
        let writer = self.writer.as_mut().expect("just opened");
        let mut res = Ok(());
        for (id, header) in &self.streams {
            res = res.and_then(|()| writer.add_stream(*id, header));
            if let Some(&(t, o)) = self.last_offset.get(id) {
                res = res.and_then(|()| writer.write_clock_offset(*id, t, o));
            }
        }
        if let Err(e) = res {
            self.stop(e);
        }
    }

    /// Opens a new file (creating the directory); false (and stopped) if that fails.
    fn open_file(&mut self) -> bool {
        match self.create_file() {
            Ok(w) => {
                tracing::info!("recording to {}", w.path().display());
                let _ = self
                    .events
                    .try_send(RecorderEvent::FileOpened(w.path().to_path_buf()));
                self.summary.files.push(w.path().to_path_buf());
                self.writer = Some(w);
                self.opened_at = Instant::now();
                self.boundary_at = 0;
                true
            }
            Err(e) => {
                self.stop(e);
                false
            }
        }
    }

    fn create_file(&self) -> Result<XdfWriter, XdfWriteError> {
        let dir = &self.cfg.directory;
        let io = |path: PathBuf| move |source| XdfWriteError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.clone()))?;
        let stamp = super::utc_timestamp(SystemTime::now(), false);
        // Never overwrite: a second file within the same millisecond gets a suffix that
        // keeps the names in chronological order ('_' sorts after '.').
        for n in 0u32.. {
            let name = match n {
                0 => format!("{}-{stamp}.xdf", self.cfg.file_prefix),
                n => format!("{}-{stamp}_{n:03}.xdf", self.cfg.file_prefix),
            };
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return XdfWriter::from_file(file, path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(path)(e)),
            }
        }
        unreachable!("u32 file suffixes exhausted")
    }

    /// Finishes the current file (footers, fsync).
    fn close_file(&mut self) {
        let Some(w) = self.writer.take() else { return };
        let path = w.path().to_path_buf();
        match w.finish() {
            Ok(bytes) => {
                self.bytes_closed += bytes;
                self.summary.bytes_written = self.bytes_closed;
                tracing::info!("closed {} ({bytes} bytes)", path.display());
                let _ = self
                    .events
                    .try_send(RecorderEvent::FileClosed { path, bytes });
            }
            Err(e) => self.stop(e),
        }
    }

    fn stop(&mut self, e: XdfWriteError) {
        if let Some(w) = self.writer.take() {
            self.bytes_closed += w.bytes_written();
            self.summary.bytes_written = self.bytes_closed;
        }
        let kind = match &e {
            XdfWriteError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                "disk_full"
            }
            XdfWriteError::Io { .. } => "io_error",
            _ => "write_error",
        };
        let reason = format!("recording stopped: {e}");
        tracing::error!("{reason}; inference goes on, further recording items are dropped");
        let _ = self.events.try_send(RecorderEvent::Stopped {
            reason: reason.clone(),
            kind,
        });
        self.summary.stopped = Some(reason);
    }
}
