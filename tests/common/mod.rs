//! Helpers shared by the integration tests: a daemon running in-process on real components
//! (liblsl on loopback, ort with the shipped int8 model), and small LSL/HTTP clients.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use affectd::config::Config;
use affectd::pipeline::{run, RunOptions, RunSummary};
use affectd::service::signals::ControlEvent;
use affectd::simulate::SimConfig;
use crossbeam_channel::Sender;

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A free loopback port (bound, read, released).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A simulator config with names unique to this test (tests run in parallel on one LSL network).
pub fn sim_config(tag: &str, seed: u64) -> SimConfig {
    let name = format!("affectd-test-{tag}-{}", std::process::id());
    SimConfig {
        source_id: format!("{name}-source"),
        stream_name: name,
        seed,
        state_duration_s: 6.0,
        ..SimConfig::default()
    }
}

pub fn spawn_simulator(sim: &SimConfig, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let sim = sim.clone();
    std::thread::spawn(move || affectd::simulate::publish(&sim, 1.0, &stop, None).unwrap())
}

/// A config that reads `stream_name`, serves metrics on a free port and publishes its Emotion
/// stream as `<stream_name>-emotion`.
pub fn daemon_config(stream_name: &str) -> Config {
    let mut config = Config::default();
    config.stream.name = Some(stream_name.to_string());
    config.model.path = repo_path("models/affectd-int8.onnx");
    config.metrics.listen = free_addr();
    config.outputs.jsonl.enabled = false;
    config.outputs.lsl.name = format!("{stream_name}-emotion");
    config.outputs.lsl.source_id = format!("{stream_name}-emotion-source");
    config
}

pub struct Daemon {
    pub control: Sender<ControlEvent>,
    pub handle: JoinHandle<anyhow::Result<RunSummary>>,
    pub metrics_addr: SocketAddr,
}

impl Daemon {
    pub fn start(config: Config, config_path: Option<PathBuf>) -> Daemon {
        let (control, control_rx) = crossbeam_channel::unbounded();
        let metrics_addr = config.metrics.listen;
        let handle = std::thread::spawn(move || {
            let opts = RunOptions {
                config_path,
                ..RunOptions::default()
            };
            run(config, opts, control_rx, None)
        });
        Daemon {
            control,
            handle,
            metrics_addr,
        }
    }

    pub fn stop(self) -> RunSummary {
        self.control.send(ControlEvent::Shutdown).unwrap();
        self.handle.join().unwrap().unwrap()
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_addr, "/metrics").1
    }
}

/// GET over a plain TCP connection: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

/// The value of one sample line of a Prometheus text exposition (exact series name + labels).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
