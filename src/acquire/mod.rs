//! Acquisition: resolve an LSL EEG stream, own its inlet on one thread, move samples into a
//! lock-free ring buffer for the feature thread.
//!
//! The thread owns every liblsl handle it uses (they are not Send). It talks to the rest of the
//! daemon through [`AcquireEvent`]s on a bounded channel, a [`SampleReader`] per connection, and
//! an optional raw tap for the recorder.
//!
//! Memory stays bounded whatever the input rate: the ring is the buffer for samples, and the
//! per-chunk counts (samples, drops, gaps) are summed here while the events channel is full and
//! sent as one event when it has room, so a consumer that falls behind gets fewer, bigger
//! events, never a growing queue. Other events wait for room (the thread keeps beating).
mod lsl_ffi;
mod ring;
mod stream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};

use crate::outputs::metrics::Heartbeat;
use lsl_ffi::{Inlet, LslError, ResolvedInfo, Resolver};
pub use ring::SampleReader;
pub use stream::{StreamDescription, StreamPredicate};

/// How long one blocking pull may wait: bounds the reaction to `stop`.
const PULL_TIMEOUT_S: f64 = 0.05;
/// How long a wait for room in the events channel lasts before `stop` is looked at again.
const ROOM_WAIT: Duration = Duration::from_millis(50);
/// How often the resolver's results are looked at while no stream matches, and the longest
/// nap: bounds the reaction to a new stream and to `stop` while searching. (The liblsl resolver
/// sends its queries on its own thread; polling faster only costs idle CPU.)
const SEARCH_POLL: Duration = Duration::from_millis(250);
/// liblsl forgets a vanished stream after this long.
const RESOLVER_FORGET_S: f64 = 5.0;
/// Fetching the full header of a just-resolved stream gives up after this long.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock offset estimates are taken this often (XDF recorders use ~5 s).
const CLOCK_OFFSET_EVERY: Duration = Duration::from_secs(5);
const CLOCK_OFFSET_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct AcquireConfig {
    pub predicate: StreamPredicate,
    /// Period of [`AcquireEvent::Waiting`] reports while no stream matches.
    pub resolve_timeout: Duration,
    /// No samples for this long = [`AcquireEvent::Stalled`].
    pub no_data_timeout: Duration,
    /// Ring capacity in seconds of data at the nominal rate.
    pub ring_seconds: f64,
    /// Samples moved per pull (size of the preallocated pull buffer).
    pub max_chunk_samples: usize,
    /// Seconds liblsl buffers in the inlet before it silently drops the oldest samples.
    pub inlet_buffer_s: i32,
}

impl Default for AcquireConfig {
    fn default() -> Self {
        Self {
            predicate: StreamPredicate::default(),
            resolve_timeout: Duration::from_secs(1),
            no_data_timeout: Duration::from_secs(2),
            ring_seconds: 10.0,
            max_chunk_samples: 512,
            inlet_buffer_s: 30,
        }
    }
}

/// Why samples were discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleDrop {
    /// The consumer did not keep up and the ring was full (newest samples dropped).
    RingOverflow,
    /// The recorder's tap channel was full.
    RawTapFull,
}

/// A copy of each pulled chunk for the recorder (timestamps on the source clock).
#[derive(Debug, Clone)]
pub struct RawChunk {
    pub timestamps: Vec<f64>,
    /// Interleaved [sample][channel].
    pub data: Vec<f32>,
    pub channels: usize,
}

// Connected is large but rare; boxing it would only add an allocation per connection.
#[allow(clippy::large_enum_variant)]
pub enum AcquireEvent {
    /// No matching stream yet; sent every `resolve_timeout`.
    Waiting {
        predicate: StreamPredicate,
        waited: Duration,
    },
    /// A stream was found and opened. Each connection comes with a NEW reader; earlier readers
    /// stop receiving data.
    Connected {
        description: StreamDescription,
        reader: SampleReader,
    },
    /// Samples received and offered to the ring.
    Samples {
        count: usize,
    },
    Dropped {
        reason: SampleDrop,
        count: usize,
    },
    /// The timestamps jumped by more than 1.5 sample periods: about `missing_samples` were lost
    /// (by the source, the network, or an overrun inlet buffer) before `at_timestamp`. `gaps`
    /// is how many jumps this event sums (more than one while the consumer is behind; then
    /// `at_timestamp` is the latest).
    Gap {
        missing_samples: u64,
        at_timestamp: f64,
        gaps: u64,
    },
    /// liblsl's clock offset estimate: add `offset` to source timestamps to map them to the local
    /// clock; `collection_time` is the source clock when it was measured (XDF ClockOffset).
    ClockOffset {
        collection_time: f64,
        offset: f64,
    },
    /// No data for `since` (>= no_data_timeout): the outlet is probably gone. liblsl keeps trying
    /// to reconnect to the same source_id by itself.
    Stalled {
        since: Duration,
    },
    /// Data flows again after a stall.
    Resumed,
    /// Acquisition cannot continue (the thread ends after sending this).
    Fatal(String),
}

impl std::fmt::Debug for AcquireEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Waiting { predicate, waited } => {
                write!(f, "Waiting({}, {waited:?})", predicate.to_xpath())
            }
            Self::Connected { description, .. } => write!(
                f,
                "Connected({} {} ch @ {} Hz)",
                description.name, description.channel_count, description.nominal_srate
            ),
            Self::Samples { count } => write!(f, "Samples({count})"),
            Self::Dropped { reason, count } => write!(f, "Dropped({reason:?}, {count})"),
            Self::Gap {
                missing_samples,
                at_timestamp,
                gaps,
            } => write!(f, "Gap({gaps}: {missing_samples} before {at_timestamp})"),
            Self::ClockOffset {
                collection_time,
                offset,
            } => write!(f, "ClockOffset({offset} at {collection_time})"),
            Self::Stalled { since } => write!(f, "Stalled({since:?})"),
            Self::Resumed => write!(f, "Resumed"),
            Self::Fatal(m) => write!(f, "Fatal({m})"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum AcquireError {
    #[error("acquisition config: {0}")]
    Config(&'static str),
    #[error(transparent)]
    Lsl(#[from] LslError),
    #[error("stream '{name}': {problem}")]
    Unsupported { name: String, problem: String },
}

/// Starts the acquisition thread. It runs until `stop` is set (honoured within ~250 ms), the
/// events receiver is dropped, or a fatal error (reported as [`AcquireEvent::Fatal`]).
pub fn spawn_acquisition(
    cfg: AcquireConfig,
    events: Sender<AcquireEvent>,
    raw_tap: Option<Sender<RawChunk>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("affectd-acquire".into())
        .spawn(move || run_acquisition(cfg, events, raw_tap, stop, None))
        .expect("the OS could not start the acquisition thread")
}

/// The acquisition body, for a thread the caller owns (see [`spawn_acquisition`]); beats
/// `heartbeat` at least every [`PULL_TIMEOUT_S`] / [`SEARCH_POLL`] while it runs.
pub fn run_acquisition(
    cfg: AcquireConfig,
    events: Sender<AcquireEvent>,
    raw_tap: Option<Sender<RawChunk>>,
    stop: Arc<AtomicBool>,
    heartbeat: Option<Heartbeat>,
) {
    let mut acq = Acquisition {
        cfg,
        events,
        raw_tap,
        stop,
        heartbeat,
        tally: Tally::default(),
    };
    if let Err(e) = acq.run() {
        tracing::error!(error = %e, "acquisition stopped");
        let _ = acq.events.send(AcquireEvent::Fatal(e.to_string()));
    }
}

struct Acquisition {
    cfg: AcquireConfig,
    events: Sender<AcquireEvent>,
    raw_tap: Option<Sender<RawChunk>>,
    stop: Arc<AtomicBool>,
    heartbeat: Option<Heartbeat>,
    tally: Tally,
}

/// Counts not yet sent as events (the events channel was full).
#[derive(Debug, Default)]
struct Tally {
    samples: usize,
    ring_dropped: usize,
    tap_dropped: usize,
    gaps: u64,
    gap_missing: u64,
    gap_at: f64,
}

/// The events receiver is gone.
struct Gone;

/// Ok(true): sent; Ok(false): the channel is full (keep counting, send later).
fn offer(events: &Sender<AcquireEvent>, ev: AcquireEvent) -> Result<bool, Gone> {
    match events.try_send(ev) {
        Ok(()) => Ok(true),
        Err(TrySendError::Full(_)) => Ok(false),
        Err(TrySendError::Disconnected(_)) => Err(Gone),
    }
}

/// Why a connection ended.
enum Ended {
    /// Stop requested or nobody listens any more.
    Quit,
    /// The stream is gone for good (not recoverable by liblsl): resolve again.
    Lost,
}

impl Acquisition {
    /// Whether stop was requested; every wait of this thread goes through here, so it also
    /// beats the heartbeat.
    fn stopped(&self) -> bool {
        if let Some(h) = &self.heartbeat {
            h.beat();
        }
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`, waking early when stop is requested.
    fn nap(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopped() && Instant::now() < until {
            std::thread::sleep(SEARCH_POLL.min(until.saturating_duration_since(Instant::now())));
        }
    }

    /// Sends an event that must not be lost, waiting for room in the channel (beating the
    /// heartbeat). False when the receiver is gone or stop was requested meanwhile.
    fn emit(&mut self, ev: AcquireEvent) -> bool {
        if !self.flush_tally() {
            return false;
        }
        let mut ev = ev;
        loop {
            match self.events.send_timeout(ev, ROOM_WAIT) {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(back)) if !self.stopped() => ev = back,
                Err(_) => return false,
            }
        }
    }

    /// Sends the summed counts the channel has room for; the rest wait for the next call.
    /// False when the receiver is gone.
    fn flush_tally(&mut self) -> bool {
        let (events, t) = (&self.events, &mut self.tally);
        let mut flush = || -> Result<(), Gone> {
            if t.samples > 0 {
                if !offer(events, AcquireEvent::Samples { count: t.samples })? {
                    return Ok(());
                }
                t.samples = 0;
            }
            for (reason, count) in [
                (SampleDrop::RingOverflow, &mut t.ring_dropped),
                (SampleDrop::RawTapFull, &mut t.tap_dropped),
            ] {
                if *count > 0 {
                    let ev = AcquireEvent::Dropped {
                        reason,
                        count: *count,
                    };
                    if !offer(events, ev)? {
                        return Ok(());
                    }
                    *count = 0;
                }
            }
            if t.gaps > 0 {
                let ev = AcquireEvent::Gap {
                    missing_samples: t.gap_missing,
                    at_timestamp: t.gap_at,
                    gaps: t.gaps,
                };
                if !offer(events, ev)? {
                    return Ok(());
                }
                (t.gaps, t.gap_missing) = (0, 0);
            }
            Ok(())
        };
        flush().is_ok()
    }

    fn run(&mut self) -> Result<(), AcquireError> {
        let c = &self.cfg;
        if c.max_chunk_samples == 0 {
            return Err(AcquireError::Config("max_chunk_samples must be > 0"));
        }
        if !(c.ring_seconds.is_finite() && c.ring_seconds > 0.0) {
            return Err(AcquireError::Config("ring_seconds must be > 0"));
        }
        if c.inlet_buffer_s <= 0 {
            return Err(AcquireError::Config("inlet_buffer_s must be > 0"));
        }
        loop {
            let Some(info) = self.resolve()? else {
                return Ok(());
            };
            let inlet = match Inlet::open(&info, self.cfg.inlet_buffer_s, true) {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(error = %e, "could not open inlet; resolving again");
                    self.nap(self.cfg.resolve_timeout);
                    continue;
                }
            };
            drop(info);
            let Some(header) = self.header(&inlet)? else {
                if self.stopped() {
                    return Ok(());
                }
                continue;
            };
            let desc = StreamDescription::from_header(header);
            match self.stream(inlet, desc)? {
                Ended::Quit => return Ok(()),
                Ended::Lost => continue,
            }
        }
    }

    /// Waits for a matching stream, reporting `Waiting` periodically. None = stop requested.
    fn resolve(&mut self) -> Result<Option<ResolvedInfo>, AcquireError> {
        let resolver = Resolver::new(&self.cfg.predicate.to_xpath(), RESOLVER_FORGET_S)?;
        let started = Instant::now();
        let every = self.cfg.resolve_timeout.max(Duration::from_millis(100));
        let mut next_report = started + every;
        while !self.stopped() {
            if let Some(info) = resolver.results()?.into_iter().next() {
                return Ok(Some(info));
            }
            if Instant::now() >= next_report {
                next_report += every;
                let waited = started.elapsed();
                tracing::info!(
                    predicate = %self.cfg.predicate.to_xpath(),
                    waited_s = waited.as_secs_f64(),
                    "waiting for an LSL stream matching the predicate"
                );
                if !self.emit(AcquireEvent::Waiting {
                    predicate: self.cfg.predicate.clone(),
                    waited,
                }) {
                    return Ok(None);
                }
            }
            self.nap(SEARCH_POLL);
        }
        Ok(None)
    }

    /// The full header, in short attempts so a stop request is seen. None = gave up.
    fn header(&self, inlet: &Inlet) -> Result<Option<lsl_ffi::Header>, AcquireError> {
        let started = Instant::now();
        while !self.stopped() && started.elapsed() < HEADER_TIMEOUT {
            match inlet.full_info(0.1) {
                Ok(h) => return Ok(Some(h)),
                Err(LslError::Timeout) => continue,
                Err(LslError::Lost) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Pulls one connection's data until stop or loss.
    fn stream(&mut self, mut inlet: Inlet, desc: StreamDescription) -> Result<Ended, AcquireError> {
        let unsupported = |problem: String| AcquireError::Unsupported {
            name: desc.name.clone(),
            problem,
        };
        if !desc.is_numeric() {
            return Err(unsupported(format!(
                "channel format {} is not numeric",
                desc.channel_format
            )));
        }
        let srate = desc.nominal_srate;
        if !(srate.is_finite() && srate > 0.0) {
            return Err(unsupported(
                "irregular sampling rate; EEG needs a nominal rate".into(),
            ));
        }
        let ch = desc.channel_count;
        let (mut writer, reader) =
            ring::sample_ring(ch, (srate * self.cfg.ring_seconds).ceil() as usize);
        tracing::info!(
            name = %desc.name, source_id = %desc.source_id, host = %desc.hostname,
            channels = ch, srate, labels = ?desc.labels, "connected to LSL stream"
        );
        if !self.emit(AcquireEvent::Connected {
            description: desc,
            reader,
        }) {
            return Ok(Ended::Quit);
        }

        let n = self.cfg.max_chunk_samples;
        let mut data = vec![0f32; n * ch];
        let mut ts = vec![0f64; n];
        let period = 1.0 / srate;
        let mut last_ts: Option<f64> = None;
        let mut last_data = Instant::now();
        let mut stalled = false;
        let mut next_offset = Instant::now();

        while !self.stopped() {
            if !stalled && Instant::now() >= next_offset {
                next_offset = Instant::now() + CLOCK_OFFSET_EVERY;
                match inlet.time_correction(0.1) {
                    Ok(tc) => {
                        let ev = AcquireEvent::ClockOffset {
                            collection_time: tc.remote_time,
                            offset: tc.offset,
                        };
                        if !self.emit(ev) {
                            return Ok(Ended::Quit);
                        }
                    }
                    // No estimate yet (the first takes a few round trips): retry soon.
                    Err(LslError::Timeout) => next_offset = Instant::now() + CLOCK_OFFSET_RETRY,
                    Err(LslError::Lost) => return Ok(self.lost()),
                    Err(e) => return Err(e.into()),
                }
            }
            let got = match inlet.pull_chunk(&mut data, &mut ts, PULL_TIMEOUT_S) {
                Ok(k) => k,
                Err(LslError::Lost) => return Ok(self.lost()),
                Err(e) => return Err(e.into()),
            };
            if got == 0 {
                let since = last_data.elapsed();
                if !stalled && since >= self.cfg.no_data_timeout {
                    stalled = true;
                    tracing::warn!(since_s = since.as_secs_f64(), "no EEG data: stream stalled");
                    if !self.emit(AcquireEvent::Stalled { since }) {
                        return Ok(Ended::Quit);
                    }
                }
                continue;
            }
            last_data = Instant::now();
            if stalled {
                stalled = false;
                tracing::info!("EEG data flows again");
                if !self.emit(AcquireEvent::Resumed) {
                    return Ok(Ended::Quit);
                }
            }
            let (data, ts) = (&data[..got * ch], &ts[..got]);
            for &t in ts {
                if let Some(prev) = last_ts {
                    let step = t - prev;
                    if step > 1.5 * period {
                        let missing = ((step / period).round() as u64).saturating_sub(1);
                        self.tally.gaps += 1;
                        self.tally.gap_missing += missing;
                        self.tally.gap_at = t;
                    }
                }
                last_ts = Some(t);
            }
            self.tally.ring_dropped += writer.push(data, ts);
            self.tally.samples += got;
            self.tap(data, ts, ch);
            if !self.flush_tally() {
                return Ok(Ended::Quit);
            }
        }
        Ok(Ended::Quit)
    }

    /// Offers a copy to the recorder (a full tap drops it, counted).
    fn tap(&mut self, data: &[f32], ts: &[f64], channels: usize) {
        let Some(tap) = &self.raw_tap else {
            return;
        };
        let chunk = RawChunk {
            timestamps: ts.to_vec(),
            data: data.to_vec(),
            channels,
        };
        match tap.try_send(chunk) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.tally.tap_dropped += ts.len(),
            Err(TrySendError::Disconnected(_)) => {
                tracing::warn!("raw tap receiver is gone; no longer copying chunks");
                self.raw_tap = None;
            }
        }
    }

    fn lost(&self) -> Ended {
        tracing::warn!("LSL stream lost for good (no source_id to recover by); resolving again");
        Ended::Lost
    }
}
