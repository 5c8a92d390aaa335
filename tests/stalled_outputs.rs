//! Outputs never wait on a consumer: the daemon binary writes JSON lines to a stdout pipe that
//! nobody reads (stalled: a 4 KiB pipe fills in seconds) or whose reader closed it, and its
//! Emotion outputs keep the hop rate on LSL while the lost lines are counted.
mod common;
#[path = "common/lsl_source.rs"]
mod lsl_source;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use affectd::simulate::SimConfig;
use common::*;
use lsl::Pullable;
use lsl_source::{Killed, Source};

/// A pipe with the smallest buffer Linux allows (one page): (read end, write end).
fn small_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    assert!(unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096) } > 0);
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Runs the daemon with JSON lines to `stdout` for `stalled_for`, then counts Emotion outputs
/// for 10 s: (outputs, the hop rate's count, metrics text).
fn outputs_with_stdout(tag: &str, stdout: Stdio, stalled_for: Duration) -> (usize, f64, String) {
    let sim = sim_config(tag, 21);
    let mut config = daemon_config(&sim.stream_name);
    config.lsl.api_config = Some(repo_path("config/lsl_api.cfg"));
    config.record.marker_types.clear();
    config.outputs.jsonl.enabled = true;
    config.outputs.jsonl.path = "-".into();
    let hop = config.features.hop_s;
    let work = tempfile::tempdir().unwrap();
    let config_path = work.path().join("affectd.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let log = std::fs::File::create(work.path().join("stderr.log")).unwrap();

    let mut source = Source::new(&SimConfig { ..sim });
    let child = Command::new(env!("CARGO_BIN_EXE_affectd"))
        .args(["run", "--config"])
        .arg(&config_path)
        .stdout(stdout)
        .stderr(log)
        .spawn()
        .unwrap();
    let child = Killed(child);
    let addr = config.metrics.listen;
    let started = Instant::now();
    while !(std::net::TcpStream::connect(addr).is_ok() && http_get(addr, "/readyz").0 == 200) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "daemon never became ready"
        );
        source.real_time(Duration::from_millis(500));
    }
    let emotion = lsl::resolve_bypred(&format!("name='{}'", config.outputs.lsl.name), 1, 20.0)
        .unwrap()
        .pop()
        .expect("the daemon publishes its Emotion stream");
    let inlet = lsl::StreamInlet::new(&emotion, 360, 0, true).unwrap();
    inlet.open_stream(5.0).unwrap();
    // Long enough for the pipe and then the JSON lines queue to fill.
    source.real_time(stalled_for);
    while inlet
        .pull_sample(0.0)
        .is_ok_and(|(_, t): (Vec<f32>, f64)| t != 0.0)
    {}
    let listen = Duration::from_secs(10);
    let mut got = 0;
    let t = Instant::now();
    while t.elapsed() < listen {
        source.real_time(Duration::from_millis(100));
        while inlet
            .pull_sample(0.0)
            .is_ok_and(|(_, t): (Vec<f32>, f64)| t != 0.0)
        {
            got += 1;
        }
    }
    let metrics = http_get(addr, "/metrics").1;
    assert!(
        http_get(addr, "/readyz").0 == 200,
        "not ready with a stalled stdout"
    );
    drop(child);
    (got, listen.as_secs_f64() / hop, metrics)
}

#[test]
fn a_stdout_pipe_nobody_reads_does_not_stop_the_lsl_outputs() {
    let (read, write) = small_pipe();
    // `read` stays open and unread until the end of the test: writes block once it is full.
    // 4 KiB is ~20 lines; with the queue (256 lines at 4 per s) that is ~70 s of outputs, so
    // after 10 s of waiting the writer is blocked and the queue is filling.
    let (got, expected, metrics) =
        outputs_with_stdout("stall", Stdio::from(write), Duration::from_secs(10));
    drop(read);
    assert!(
        got as f64 >= 0.8 * expected,
        "{got} outputs in 10 s with a stalled stdout; the hop rate gives {expected:.0}"
    );
    println!(
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("dropped"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_closed_stdout_costs_json_lines_not_outputs() {
    let (read, write) = small_pipe();
    drop(read);
    let (got, expected, metrics) =
        outputs_with_stdout("closed", Stdio::from(write), Duration::from_secs(3));
    assert!(
        got as f64 >= 0.8 * expected,
        "{got} outputs in 10 s with a closed stdout; the hop rate gives {expected:.0}"
    );
    let lost = metric(&metrics, "affectd_output_dropped_total{sink=\"jsonl\"}").unwrap_or(0.0);
    assert!(
        lost >= expected * 0.8,
        "JSON lines lost to the closed pipe: {lost}"
    );
}
