//! Thread lifetimes: every pipeline thread is started here, and its end, normal or a panic, is
//! reported on one channel the control loop watches. Before shutdown no thread may end (each
//! ends only when its input closes, which happens at shutdown), so any exit then is a failure:
//! the control loop stops the daemon with an error and the process exits non-zero, and systemd
//! restarts it. A panic hook logs each panic once, through the log, with the thread's name.
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::outputs::metrics::Health;

/// How a supervised thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitKind {
    Returned,
    /// The panic message.
    Panicked(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadExit {
    pub name: &'static str,
    pub kind: ExitKind,
}

impl std::fmt::Display for ThreadExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ExitKind::Returned => write!(f, "thread {} ended", self.name),
            ExitKind::Panicked(why) => write!(f, "thread {} panicked: {why}", self.name),
        }
    }
}

/// Starts and tracks the pipeline's threads.
pub struct Supervisor {
    health: Arc<Health>,
    exits_tx: Sender<ThreadExit>,
    exits: Receiver<ThreadExit>,
    running: Vec<(&'static str, JoinHandle<()>)>,
}

/// Test hook: `AFFECTD_TEST_PANIC=<thread name>` makes that supervised thread panic as it starts
/// (the fault tests use it on the release binary; documented in docs/service.md).
pub const PANIC_ENV: &str = "AFFECTD_TEST_PANIC";

impl Supervisor {
    pub fn new(health: Arc<Health>) -> Supervisor {
        install_panic_hook();
        let (exits_tx, exits) = unbounded();
        Supervisor {
            health,
            exits_tx,
            exits,
            running: Vec::new(),
        }
    }

    /// Runs `body` on a new named thread whose end is reported on [`Supervisor::exits`] and in
    /// [`Health`] (a thread that has ended makes the daemon not alive).
    pub fn spawn(
        &mut self,
        name: &'static str,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let tx = self.exits_tx.clone();
        let health = self.health.clone();
        let inject = std::env::var(PANIC_ENV).is_ok_and(|v| v == name);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    if inject {
                        panic!("injected by {PANIC_ENV}");
                    }
                    body()
                }));
                let kind = match result {
                    Ok(()) => ExitKind::Returned,
                    Err(payload) => ExitKind::Panicked(panic_message(payload.as_ref())),
                };
                health.mark_thread_exited(name);
                let _ = tx.send(ThreadExit { name, kind });
            })?;
        self.running.push((name, handle));
        Ok(())
    }

    /// Like [`Supervisor::spawn`], for a thread whose result the caller wants at the end: it
    /// arrives on the returned channel (nothing arrives if the thread panicked).
    pub fn spawn_with_result<T: Send + 'static>(
        &mut self,
        name: &'static str,
        body: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<Receiver<T>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.spawn(name, move || {
            let _ = tx.send(body());
        })?;
        Ok(rx)
    }

    /// Thread ends, in the order they happen.
    pub fn exits(&self) -> &Receiver<ThreadExit> {
        &self.exits
    }

    /// Waits up to `timeout` for every thread to end and joins the ones that did. Returns the
    /// panics reported while waiting and the names still running, which are left behind (the
    /// process is about to exit). Exits the caller already took from [`Self::exits`] count too.
    pub fn wait_all(mut self, timeout: Duration) -> (Vec<ThreadExit>, Vec<&'static str>) {
        let deadline = Instant::now() + timeout;
        let mut panics = Vec::new();
        let all_ended = |health: &Health| {
            let ended = health.exited_threads();
            self.running.iter().all(|(name, _)| ended.contains(name))
        };
        while !all_ended(&self.health) {
            match self
                .exits
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(exit) if matches!(exit.kind, ExitKind::Panicked(_)) => panics.push(exit),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let ended = self.health.exited_threads();
        let mut stuck = Vec::new();
        for (name, handle) in self.running.drain(..) {
            if ended.contains(&name) {
                let _ = handle.join();
            } else {
                stuck.push(name);
            }
        }
        (panics, stuck)
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

/// Panics are logged once, through tracing (the journal under systemd), with thread and place;
/// the default hook's stderr print is replaced, not doubled. Without a log subscriber (library
/// use, tests) the previous hook runs instead.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !tracing::dispatcher::has_been_set() {
                return previous(info);
            }
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("unnamed");
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = panic_message(info.payload());
            tracing::error!("panic in thread {name} at {place}: {message}");
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_and_panics_are_reported_and_mark_health() {
        let health = Health::new();
        let mut sup = Supervisor::new(health.clone());
        sup.spawn("calm", || {}).unwrap();
        sup.spawn("boom", || panic!("kaput {}", 7)).unwrap();
        let result = sup.spawn_with_result("answer", || 42).unwrap();
        let mut seen: Vec<ThreadExit> = (0..3)
            .map(|_| sup.exits().recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        seen.sort_by_key(|e| e.name);
        assert_eq!(seen[0].name, "answer");
        assert_eq!(seen[1].kind, ExitKind::Panicked("kaput 7".into()));
        assert_eq!(seen[2].kind, ExitKind::Returned);
        assert_eq!(result.recv().unwrap(), 42);
        let mut exited = health.exited_threads();
        exited.sort();
        assert_eq!(exited, ["answer", "boom", "calm"]);
    }

    #[test]
    fn wait_all_names_threads_that_do_not_end() {
        let mut sup = Supervisor::new(Health::new());
        let (release, hold) = crossbeam_channel::bounded::<()>(0);
        sup.spawn("quick", || {}).unwrap();
        sup.spawn("stuck", move || {
            let _ = hold.recv();
        })
        .unwrap();
        let (panics, stuck) = sup.wait_all(Duration::from_millis(200));
        assert!(panics.is_empty());
        assert_eq!(stuck, ["stuck"]);
        drop(release);
    }
}
