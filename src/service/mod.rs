//! Running as a service: systemd notify protocol (READY, WATCHDOG), signals.
