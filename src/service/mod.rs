//! Running as a service: the systemd notify protocol (READY, RELOADING, STOPPING, WATCHDOG driven
//! by the pipeline's heartbeat), signals (SIGTERM/SIGINT stop, SIGHUP reload) and journald-friendly
//! logging with a reloadable level. The unit, sysusers/tmpfiles snippets and the install scripts
//! are in systemd/ and scripts/; docs/service.md explains them.
pub mod logging;
pub mod notify;
pub mod reload;
pub mod signals;

pub use logging::{init_logging, ReloadHandle};
pub use notify::{spawn_watchdog, Notifier};
pub use reload::ConfigReloader;
pub use signals::{spawn_signal_listener, ControlEvent, SignalHandle};
