//! The systemd notify protocol (sd_notify(3)): newline-separated `KEY=VALUE` datagrams sent to
//! the unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract socket written `@name`).
//!
//! The watchdog pings only while the pipeline's loops keep beating ([`Health::alive`]): a
//! stalled or deadlocked pipeline stops the pings and systemd restarts the service after
//! `WatchdogSec`, while a merely absent EEG stream (loops still beating from their receive
//! timeouts) does not.
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::outputs::metrics::Health;

pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd asked for, if it did (`$NOTIFY_SOCKET`), with the watchdog interval
    /// from `$WATCHDOG_USEC` when `$WATCHDOG_PID` is unset or names this process.
    pub fn from_env() -> Option<Notifier> {
        let target = std::env::var("NOTIFY_SOCKET").ok()?;
        let watchdog = watchdog_interval_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        match Notifier::new(&target, watchdog) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={target} is unusable, not notifying systemd: {e}");
                None
            }
        }
    }

    /// A notifier for an explicit socket: a filesystem path, or `@name` for an abstract socket.
    pub fn new(target: &str, watchdog: Option<Duration>) -> io::Result<Notifier> {
        let addr = if let Some(name) = target.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if target.starts_with('/') {
            SocketAddr::from_pathname(Path::new(target))?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET must be an absolute path or start with '@'",
            ));
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
            watchdog,
        })
    }

    /// Sends one notification (several `KEY=VALUE` lines).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        Ok(())
    }

    fn send(&self, state: &str) {
        if let Err(e) = self.notify(state) {
            tracing::warn!("systemd notify {state:?} failed: {e}");
        }
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// Reload started; `ready()` again when it is done. MONOTONIC_USEC is what systemd >= 253
    /// requires for Type=notify-reload; older versions and Type=notify ignore it.
    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Free-form status shown by `systemctl status` (one line).
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", status.replace('\n', " ")));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }
}

/// The watchdog interval from the values of WATCHDOG_USEC and WATCHDOG_PID.
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != my_pid {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass; CLOCK_MONOTONIC always exists on
    // Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// Pings WATCHDOG=1 every interval/2 while `health.alive(interval/2)`; a pipeline loop that
/// stops beating for half the interval stops the pings (logged once per stall). Ends when `stop`
/// receives or its senders are dropped. None when systemd asked for no watchdog.
pub fn spawn_watchdog(
    notifier: Arc<Notifier>,
    health: Arc<Health>,
    stop: Receiver<()>,
) -> Option<JoinHandle<()>> {
    let interval = notifier.watchdog_interval()?;
    let period = interval / 2;
    let spawned = std::thread::Builder::new()
        .name("affectd-watchdog".into())
        .spawn(move || {
            let mut stalled_logged = false;
            loop {
                let stalled = health.stalled(period);
                if stalled.is_empty() {
                    notifier.watchdog();
                    stalled_logged = false;
                } else if !stalled_logged {
                    tracing::error!(
                        "pipeline stalled ({}): no heartbeat for {period:?}; \
                         withholding WATCHDOG=1 so systemd restarts affectd",
                        stalled.join(", ")
                    );
                    stalled_logged = true;
                }
                match stop.recv_timeout(period) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!("cannot start the watchdog thread: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_env_parsing() {
        assert_eq!(
            watchdog_interval_from(Some("10000000"), None, 7),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            watchdog_interval_from(Some("10000000"), Some("7"), 7),
            Some(Duration::from_secs(10))
        );
        assert_eq!(watchdog_interval_from(Some("10000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
    }

    #[test]
    fn abstract_socket_round_trip() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("affectd-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        let n = Notifier::new(&format!("@{name}"), None).unwrap();
        n.reloading();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..len]).unwrap();
        let usec: u64 = msg
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .expect(msg)
            .parse()
            .unwrap();
        assert!(usec > 0 && usec <= monotonic_usec());
    }

    #[test]
    fn relative_socket_paths_are_refused() {
        assert!(Notifier::new("notify.sock", None).is_err());
    }
}
