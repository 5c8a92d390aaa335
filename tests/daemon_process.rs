//! The `affectd` binary as a service manager runs it: signals, reload, recording on stop.
mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use affectd::config::Config;
use affectd::record::xdf::read_xdf;
use common::*;

fn write_config(path: &std::path::Path, config: &Config) {
    std::fs::write(path, toml::to_string(config).unwrap()).unwrap();
}

fn signal(child: &Child, sig: i32) {
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn wait_for(mut ready: impl FnMut() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_and_sigterm_flushes_the_recording() {
    let work = tempfile::tempdir().unwrap();
    let sessions = work.path().join("sessions");
    let config_path = work.path().join("affectd.toml");
    let mut config = Config::default();
    config.lsl.api_config = Some(repo_path("config/lsl_api.cfg"));
    config.model.path = repo_path("models/affectd-int8.onnx");
    config.metrics.listen = free_addr();
    config.outputs.jsonl.path = work.path().join("out.jsonl");
    config.outputs.lsl.name = format!("affectd-process-test-{}", std::process::id());
    config.record.enabled = true;
    config.record.directory = sessions.clone();
    write_config(&config_path, &config);

    let mut child = Command::new(env!("CARGO_BIN_EXE_affectd"))
        .args(["run", "--simulate", "--config"])
        .arg(&config_path)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr = config.metrics.listen;
    let serving = wait_for(
        || std::net::TcpStream::connect(addr).is_ok() && http_get(addr, "/readyz").0 == 200,
        Duration::from_secs(30),
    );
    assert!(serving, "daemon never became ready");

    // A broken config on SIGHUP: refused, the running one stays, the metric says so.
    std::fs::write(&config_path, "[features]\nhop_s = -1.0\n").unwrap();
    signal(&child, libc::SIGHUP);
    let refused = wait_for(
        || {
            metric(
                &http_get(addr, "/metrics").1,
                "affectd_config_last_reload_successful",
            ) == Some(0.0)
        },
        Duration::from_secs(5),
    );
    assert!(refused, "reload of a broken config not reported");
    assert_eq!(http_get(addr, "/readyz").0, 200, "still serving");

    // SIGTERM: stops within 2 s, with a complete recording.
    std::thread::sleep(Duration::from_secs(2));
    let asked = Instant::now();
    signal(&child, libc::SIGTERM);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "not stopped within 2 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("hop_s"), "the refusal names the key:\n{log}");

    let files: Vec<_> = std::fs::read_dir(&sessions)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let xdf = read_xdf(&files[0]).expect("strict read: the file is complete");
    for stream in &xdf.streams {
        assert!(
            stream.footer.is_some(),
            "{} has its footer",
            stream.header.name()
        );
    }
    let eeg = xdf
        .streams
        .iter()
        .find(|s| s.header.stream_type() == "EEG")
        .unwrap();
    assert!(
        eeg.sample_count() > 400,
        "{} EEG samples",
        eeg.sample_count()
    );
    let jsonl = std::fs::read_to_string(work.path().join("out.jsonl")).unwrap();
    let emotion = xdf
        .streams
        .iter()
        .find(|s| s.header.stream_type() == "Emotion")
        .unwrap();
    assert_eq!(
        emotion.sample_count(),
        jsonl.lines().count(),
        "every output written to JSON lines is in the recording"
    );
}
