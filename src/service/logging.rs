//! Logs via tracing to stderr. Under systemd, stderr goes to journald (`$JOURNAL_STREAM` names
//! it); then lines carry no ANSI colours and no timestamps (journald stamps them) and start with
//! an sd-daemon priority prefix (`<3>` error .. `<7>` debug) so `journalctl -p warning` works.
//! The level is a tracing EnvFilter string that a reload can change.
//!
//! Lines go through a bounded queue to a writer thread ([`LOG_QUEUE_LINES`]): a stalled stderr
//! (a pipe nobody reads) drops lines, counted in `affectd_log_lines_dropped_total`, and never
//! blocks the thread that logs.
use std::fmt;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Log lines waiting for the writer thread; beyond this, new lines are dropped (counted).
pub const LOG_QUEUE_LINES: usize = 4096;

/// The writer thread's guard (dropped by [`flush_logs`]) and its drop counter.
static WRITER: OnceLock<(Mutex<Option<WorkerGuard>>, ErrorCounter)> = OnceLock::new();

/// Log lines dropped so far because the log writer was behind (0 before [`init_logging`]).
pub fn log_lines_dropped() -> u64 {
    WRITER.get().map_or(0, |(_, c)| c.dropped_lines() as u64)
}

/// Writes the queued log lines out (waits up to about a second) and stops the writer thread;
/// later lines are lost. Call once, at the end of `main`.
pub fn flush_logs() {
    if let Some((guard, _)) = WRITER.get() {
        drop(guard.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("log.level: not a tracing filter ({0})")]
    BadFilter(String),
    #[error("cannot change the log level: {0}")]
    Reload(String),
}

/// Changes the level of the installed subscriber.
#[derive(Clone)]
pub struct ReloadHandle(reload::Handle<EnvFilter, Registry>);

impl ReloadHandle {
    pub fn set_level(&self, level: &str) -> Result<(), LoggingError> {
        let filter =
            EnvFilter::try_new(level).map_err(|e| LoggingError::BadFilter(e.to_string()))?;
        self.0
            .reload(filter)
            .map_err(|e| LoggingError::Reload(e.to_string()))
    }
}

/// Installs the global subscriber (once; later calls leave the first in place and return a
/// handle to a filter that is not installed). An invalid `level` falls back to "info" with a
/// warning; config validation normally rules that out.
pub fn init_logging(level: &str) -> ReloadHandle {
    let (filter, bad) = match EnvFilter::try_new(level) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("affectd-log")
        .finish(std::io::stderr());
    let counter = writer.error_counter();
    // A second call's writer is dropped here; its subscriber is not installed either.
    let _ = WRITER.set((Mutex::new(Some(guard)), counter));
    let journal = stderr_is_journal();
    let ansi = !journal && std::io::stderr().is_terminal();
    let journal_layer = journal.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(writer.clone())
            .with_ansi(false)
            .event_format(JournalPrefix(
                tracing_subscriber::fmt::format().without_time(),
            ))
    });
    let terminal_layer = (!journal).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(writer.clone())
            .with_ansi(ansi)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journal_layer)
        .with(terminal_layer)
        .try_init();
    if let Some(e) = bad {
        tracing::warn!("log.level {level:?} is not a tracing filter ({e}); using \"info\"");
    }
    ReloadHandle(handle)
}

/// At most one log line per period for an event that can repeat at any rate (drops under a
/// flood, a dead sink): [`Throttle::hit`] counts, and says when a line is due and how many
/// events it covers.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    count: u64,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            count: 0,
        }
    }

    pub fn per_minute() -> Self {
        Self::new(Duration::from_secs(60))
    }

    /// One event; see [`Throttle::hit_n`].
    pub fn hit(&mut self) -> Option<u64> {
        self.hit_n(1)
    }

    /// `n` events. Some(events since the last line, these included) when a line is due: at the
    /// first event, then at most once per period.
    pub fn hit_n(&mut self, n: u64) -> Option<u64> {
        self.count += n;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// True when stderr is the journald stream systemd set up (`$JOURNAL_STREAM` = "dev:inode" of
/// stderr), not merely inherited by a child started from a service.
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat writes only into the zeroed stat buffer we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev == dev && st.st_ino == ino
}

/// sd-daemon(3) priority prefix before each line.
struct JournalPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}
