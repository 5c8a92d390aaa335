//! Signals as control events on a channel: SIGTERM/SIGINT ask for a graceful stop, SIGHUP for a
//! config reload. A second SIGTERM/SIGINT while a graceful stop is under way exits at once
//! (exit code 1), so a stuck shutdown can still be interrupted.
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlEvent {
    /// SIGTERM or SIGINT: stop gracefully (flush the recording, close outlets).
    Shutdown,
    /// SIGHUP: reload the config file.
    Reload,
}

/// Keeps the signal thread running; dropping it (or [`SignalHandle::close`]) stops delivery.
/// The second-signal immediate exit stays armed for the life of the process.
pub struct SignalHandle {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalHandle {
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SignalHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn spawn_signal_listener() -> std::io::Result<(Receiver<ControlEvent>, SignalHandle)> {
    let terminating = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        // Registered first: on the first signal the flag is still false, so only the second
        // one exits.
        signal_hook::flag::register_conditional_shutdown(sig, 1, terminating.clone())?;
        signal_hook::flag::register(sig, terminating.clone())?;
    }
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let handle = signals.handle();
    // Bounded; a full queue (a signal storm while the control loop is busy) drops the signal:
    // a queued reload covers another, and a second SIGTERM exits by itself (above).
    let (tx, rx): (Sender<ControlEvent>, _) = crossbeam_channel::bounded(16);
    let thread = std::thread::Builder::new()
        .name("affectd-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let event = match sig {
                    SIGHUP => ControlEvent::Reload,
                    _ => ControlEvent::Shutdown,
                };
                tracing::info!(
                    "received {}: {event:?}",
                    signal_hook::low_level::signal_name(sig).unwrap_or("signal")
                );
                if let Err(crossbeam_channel::TrySendError::Disconnected(_)) = tx.try_send(event) {
                    break;
                }
            }
        })?;
    Ok((
        rx,
        SignalHandle {
            handle,
            thread: Some(thread),
        },
    ))
}
