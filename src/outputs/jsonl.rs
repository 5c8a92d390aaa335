//! JSON lines output: one object per window, to stdout or appended to a file.
//!
//! The outputs thread never writes itself: [`JsonlQueue`] serialises the record and hands the
//! line to a writer thread through a bounded queue. A reader that stalls (a pipe nobody reads)
//! or goes away (a closed pipe) costs lines, counted in `affectd_outputs_dropped_total
//! {sink="jsonl"}`, never the cadence of the other outputs.
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Serialize;

use crate::outputs::metrics::{Event, Metrics};
use crate::service::logging::Throttle;

/// Lines waiting for the writer thread (about 64 s of outputs at a 0.25 s hop); further lines
/// are dropped while it is blocked.
pub const QUEUE_LINES: usize = 256;
/// When the queue is dropped, the writer gets this long to write what is left (a file on
/// shutdown); a writer stuck on a stalled pipe is left behind.
const DRAIN_ON_CLOSE: Duration = Duration::from_secs(1);

/// One emotion estimate, as written to the JSON lines sink.
#[derive(Debug, Clone, Serialize)]
pub struct EmotionRecord<'a> {
    /// Window end on the source's LSL clock (seconds).
    pub timestamp: f64,
    pub class: &'a str,
    pub class_index: usize,
    /// Smoothed probabilities, in class order.
    pub probabilities: &'a [f32],
    pub classes: &'a [String],
    /// Model identity (sha256 prefix) that produced the estimate.
    pub model: &'a str,
    /// Sample timestamp of the window end to output, on the LSL clock (milliseconds).
    pub latency_ms: f64,
}

pub struct JsonlSink {
    out: Box<dyn Write + Send>,
}

impl JsonlSink {
    /// `"-"` is standard output; anything else is a file, created if needed and appended to.
    pub fn open(target: &Path) -> io::Result<Self> {
        let out: Box<dyn Write + Send> = if target == Path::new("-") {
            Box::new(io::stdout())
        } else {
            let file = OpenOptions::new().create(true).append(true).open(target)?;
            Box::new(BufWriter::new(file))
        };
        Ok(Self { out })
    }

    pub fn from_writer(out: Box<dyn Write + Send>) -> Self {
        Self { out }
    }

    /// Writes one line and flushes it, so a reader tailing the file sees each window at once.
    pub fn write(&mut self, record: &EmotionRecord) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.write_line(b"")
    }

    /// Writes `line` (serialised JSON, without its newline) and flushes.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

/// A [`JsonlSink`] on a writer thread of its own, behind a bounded queue.
pub struct JsonlQueue {
    lines: Option<Sender<Vec<u8>>>,
    done: Receiver<()>,
    metrics: Arc<Metrics>,
    full: Throttle,
}

impl JsonlQueue {
    /// Opens `target` (see [`JsonlSink::open`]) and starts its writer thread.
    pub fn open(target: &Path, metrics: Arc<Metrics>) -> io::Result<Self> {
        Self::start(JsonlSink::open(target)?, metrics)
    }

    pub fn start(sink: JsonlSink, metrics: Arc<Metrics>) -> io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(QUEUE_LINES);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let m = metrics.clone();
        // Detached on purpose: a writer blocked on a stalled pipe must not hold up shutdown.
        std::thread::Builder::new()
            .name("jsonl-writer".into())
            .spawn(move || {
                write_lines(sink, rx, &m);
                drop(done_tx);
            })?;
        Ok(Self {
            lines: Some(tx),
            done,
            metrics,
            full: Throttle::per_minute(),
        })
    }

    /// Queues one record; never blocks. A full queue drops it (counted, logged once a minute).
    pub fn write(&mut self, record: &EmotionRecord) {
        let line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("JSON lines output: cannot serialise an estimate: {e}");
                return self.dropped();
            }
        };
        let Some(tx) = &self.lines else { return };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if let Some(n) = self.full.hit() {
                    tracing::warn!(
                        "JSON lines output is not keeping up (its reader is slow or stalled): \
                         {n} lines dropped, queue of {QUEUE_LINES} full"
                    );
                }
                self.dropped();
            }
            // The writer thread ended (it only does when the queue closes); nothing to do.
            Err(TrySendError::Disconnected(_)) => self.dropped(),
        }
    }

    fn dropped(&self) {
        self.metrics.emit(Event::OutputDropped {
            sink: "jsonl",
            n: 1,
        });
    }
}

impl Drop for JsonlQueue {
    fn drop(&mut self) {
        drop(self.lines.take());
        // Disconnected once the writer has written the rest (or the time is up).
        let _ = self.done.recv_timeout(DRAIN_ON_CLOSE);
    }
}

fn write_lines(mut sink: JsonlSink, lines: Receiver<Vec<u8>>, metrics: &Metrics) {
    let mut failed = Throttle::per_minute();
    for line in lines {
        if let Err(e) = sink.write_line(&line) {
            if let Some(n) = failed.hit() {
                tracing::warn!("JSON lines output failed: {e} ({n} lines lost)");
            }
            metrics.emit(Event::OutputDropped {
                sink: "jsonl",
                n: 1,
            });
        }
    }
}
