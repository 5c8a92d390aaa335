//! Sinks for the emotion output and the daemon's own health: the LSL "Emotion" outlet, JSON
//! lines, Prometheus metrics and the HTTP endpoints that serve them.
pub mod http;
pub mod jsonl;
pub mod lsl_outlet;
pub mod metrics;
