//! Running as a service: config file and docs, the systemd notify protocol against a real unix
//! datagram socket, the HTTP endpoints over real TCP, signals, the unit under systemd-analyze,
//! and the install scripts staged with DESTDIR.
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use affectd::config::{self, Config, ConfigError};
use affectd::outputs::http::spawn_http;
use affectd::outputs::metrics::{Event, Health, Metrics};
use affectd::service::{
    spawn_signal_listener, spawn_watchdog, ConfigReloader, ControlEvent, Notifier,
};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

// ---------------------------------------------------------------------------------------------
// Config

#[test]
fn example_config_is_the_defaults() {
    let c = Config::load(repo("config/affectd.toml")).unwrap();
    assert_eq!(c, Config::default().with_base_dir(&repo("config")));
}

/// `section.key` of every row of the tables in config/README.md.
fn documented_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo("config/README.md")).unwrap();
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## [") {
            section = h.trim_end_matches(']').to_owned();
        } else if let Some(row) = line.strip_prefix("| `") {
            let key = row.split('`').next().unwrap();
            assert!(!section.is_empty(), "key row {key} before any section");
            keys.insert(format!("{section}.{key}"));
        }
    }
    keys
}

fn toml_keys(text: &str) -> BTreeSet<String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeSet<String>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v, out);
            }
        } else {
            out.insert(prefix.to_owned());
        }
    }
    let mut out = BTreeSet::new();
    walk("", &toml::Value::Table(text.parse().unwrap()), &mut out);
    out
}

#[test]
fn every_key_is_documented_and_every_documented_key_exists() {
    let documented = documented_keys();
    // Keys set in the example, plus the optional ones it shows commented out.
    let example = std::fs::read_to_string(repo("config/affectd.toml")).unwrap();
    let uncommented: String = example
        .lines()
        .map(|l| {
            // A commented-out key: `# snake_case_key = value`.
            let commented_key = |r: &&str| {
                r.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
            };
            l.strip_prefix("# ").filter(commented_key).unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let shown = toml_keys(&uncommented);
    assert!(shown.contains("stream.name") && shown.contains("simulate.channels"));
    let missing: Vec<_> = shown.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys in config/affectd.toml missing from README: {missing:?}"
    );

    // Every key the program knows (optional keys filled in) is documented, and nothing else is.
    let mut full = Config::default();
    full.lsl.api_config = Some("x".into());
    full.stream.name = Some("x".into());
    full.stream.source_id = Some("x".into());
    full.model.onnxruntime_library = Some("x".into());
    full.simulate.channels = Some(vec!["Fz".into()]);
    let known: BTreeSet<String> = full.flat_keys().into_keys().collect();
    assert_eq!(known, documented);
    assert_eq!(known, shown, "config/affectd.toml shows every key");
}

#[test]
fn service_config_is_valid_and_check_summarises_it() {
    // The service config names the installed onnxruntime; point it at this checkout's copy.
    let dir = tempfile::tempdir().unwrap();
    let ort = dir.path().join("libonnxruntime.so.1.31.1");
    std::fs::write(&ort, b"").unwrap();
    let text = std::fs::read_to_string(repo("systemd/affectd.toml"))
        .unwrap()
        .replace(
            "/usr/lib/affectd/libonnxruntime.so.1.31.1",
            ort.to_str().unwrap(),
        );
    let path = dir.path().join("affectd.toml");
    std::fs::write(&path, &text).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.record.directory, Path::new("/var/lib/affectd/sessions"));
    assert!(c.record.enabled && !c.outputs.jsonl.enabled);
    // Only paths and those two switches differ from the defaults.
    let mut differs: Vec<String> = Config::default().reload_plan(&c).restart;
    differs.extend(Config::default().reload_plan(&c).live);
    differs.sort();
    assert_eq!(
        differs,
        [
            "model.onnxruntime_library",
            "model.path",
            "outputs.jsonl.enabled",
            "record.directory",
            "record.enabled"
        ]
    );
    let summary = config::check(&path).unwrap();
    assert!(summary.contains("valid"), "{summary}");
    assert!(
        summary.contains("records sessions to /var/lib/affectd/sessions"),
        "{summary}"
    );
    assert!(summary.contains("127.0.0.1:9464"), "{summary}");
    assert!(!summary.contains('\n'), "one paragraph: {summary}");
}

#[test]
fn load_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.toml");
    std::fs::write(&path, "[features]\nwindow_s = 1.0\nhop_s = 2.0\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        "features.hop_s: must be > 0 and <= features.window_s (got 2.0)"
    );
    std::fs::write(&path, "[metrics]\nlisten = \"127.0.0.1:9464\"\nport = 1\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert!(matches!(e, ConfigError::UnknownKey { .. }));
    assert_eq!(e.key(), Some("metrics.port"));
    assert!(
        e.to_string()
            .starts_with("metrics.port: unknown key (line 3)"),
        "{e}"
    );
    std::fs::write(&path, "[model]\nwatch = \"yes\"\n").unwrap();
    assert_eq!(Config::load(&path).unwrap_err().key(), Some("model.watch"));
    let e = Config::load(dir.path().join("missing.toml")).unwrap_err();
    assert!(e.to_string().contains("missing.toml"), "{e}");
    // Relative paths: against the file's directory.
    std::fs::write(&path, "[record]\ndirectory = \"rec\"\n").unwrap();
    assert_eq!(
        Config::load(&path).unwrap().record.directory,
        dir.path().join("rec")
    );
}

#[test]
fn reload_with_a_broken_config_keeps_the_running_one_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("affectd.toml");
    std::fs::write(&path, "[inference]\nsmoothing_tau_s = 1.0\n").unwrap();
    let running = Config::load(&path).unwrap();
    let metrics = Metrics::new();
    let mut r = ConfigReloader::new(&path, running.clone(), None, metrics.clone());

    std::fs::write(&path, "[inference]\nsmoothing_tau_s = -1.0\n").unwrap();
    let e = r.reload().unwrap_err();
    assert_eq!(e.key(), Some("inference.smoothing_tau_s"));
    assert_eq!(r.effective(), &running);
    assert!(metrics
        .render()
        .contains("affectd_config_reloads_total{result=\"error\"} 1"));
    assert!(metrics
        .render()
        .contains("affectd_config_last_reload_successful 0"));

    std::fs::write(
        &path,
        "[inference]\nsmoothing_tau_s = 0.5\n[features]\nhop_s = 0.5\n",
    )
    .unwrap();
    let plan = r.reload().unwrap();
    assert_eq!(plan.live, ["inference.smoothing_tau_s"]);
    assert_eq!(plan.restart, ["features.hop_s"]);
    assert_eq!(r.effective().inference.smoothing_tau_s, 0.5);
    assert_eq!(
        r.effective().features.hop_s,
        0.25,
        "restart keys are not applied live"
    );
    assert!(metrics
        .render()
        .contains("affectd_config_last_reload_successful 1"));
    // Still pending on the next reload.
    assert_eq!(r.reload().unwrap().restart, ["features.hop_s"]);
}

// ---------------------------------------------------------------------------------------------
// systemd notify protocol

fn recv_all(sock: &UnixDatagram, for_: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let end = Instant::now() + for_;
    let mut buf = [0u8; 512];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return out
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn notify_ready_status_and_watchdog_follow_the_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let interval = Duration::from_millis(200);
    let notifier = Arc::new(Notifier::new(sock_path.to_str().unwrap(), Some(interval)).unwrap());
    assert_eq!(notifier.watchdog_interval(), Some(interval));

    notifier.status("waiting for an EEG stream");
    notifier.ready();
    assert_eq!(
        recv_all(&sock, Duration::from_millis(100)),
        ["STATUS=waiting for an EEG stream", "READY=1"]
    );

    let health = Health::new();
    let beating = Arc::new(AtomicBool::new(true));
    let done = Arc::new(AtomicBool::new(false));
    let beater = {
        let (health, beating, done) = (health.clone(), beating.clone(), done.clone());
        std::thread::spawn(move || {
            let hb = health.heartbeat_slot("infer");
            while !done.load(Ordering::Relaxed) {
                if beating.load(Ordering::Relaxed) {
                    hb.beat();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let watchdog = spawn_watchdog(notifier.clone(), health.clone(), stop_rx).expect("interval set");

    // Healthy: a ping every interval/2 = 100 ms.
    let pings = recv_all(&sock, Duration::from_millis(550));
    assert!(pings.iter().all(|p| p == "WATCHDOG=1"), "{pings:?}");
    assert!(
        (3..=8).contains(&pings.len()),
        "{} pings in 550 ms",
        pings.len()
    );

    // Stalled: after at most one more period the pings stop.
    beating.store(false, Ordering::Relaxed);
    let _ = recv_all(&sock, Duration::from_millis(300));
    let while_stalled = recv_all(&sock, Duration::from_millis(500));
    assert!(
        while_stalled.is_empty(),
        "pings while stalled: {while_stalled:?}"
    );
    assert!(!health.alive(interval / 2));

    // Beating again: pings resume.
    beating.store(true, Ordering::Relaxed);
    let resumed = recv_all(&sock, Duration::from_millis(400));
    assert!(resumed.len() >= 2, "{resumed:?}");

    drop(stop_tx);
    let t = Instant::now();
    watchdog.join().unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "watchdog stops promptly"
    );
    done.store(true, Ordering::Relaxed);
    beater.join().unwrap();

    notifier.stopping();
    assert_eq!(recv_all(&sock, Duration::from_millis(100)), ["STOPPING=1"]);
}

#[test]
fn no_watchdog_thread_without_an_interval() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("n.sock");
    let _sock = UnixDatagram::bind(&sock_path).unwrap();
    let n = Arc::new(Notifier::new(sock_path.to_str().unwrap(), None).unwrap());
    let (_tx, rx) = crossbeam_channel::bounded(1);
    assert!(spawn_watchdog(n, Health::new(), rx).is_none());
}

// ---------------------------------------------------------------------------------------------
// HTTP

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    // tiny_http answers HTTP/1.1 Connection: close without chunking for string bodies.
    (status, body.to_owned())
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in\n{text}"))
}

#[test]
fn http_serves_metrics_health_and_readiness() {
    let metrics = Metrics::new();
    let health = Health::new();
    let server = spawn_http(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        health.clone(),
        Duration::from_millis(300),
    )
    .unwrap();
    let addr = server.addr();
    assert_ne!(addr.port(), 0);

    for _ in 0..7 {
        metrics.emit(Event::SamplesReceived { n: 31 });
        metrics.emit(Event::WindowProcessed);
    }
    metrics.emit(Event::SamplesDropped {
        reason: "ring_overflow",
        n: 5,
    });
    metrics.emit(Event::WindowDropped {
        reason: "non_finite",
    });
    metrics.emit(Event::OutputDropped {
        sink: "jsonl",
        n: 2,
    });
    metrics.emit(Event::StreamConnected(true));
    metrics.emit(Event::ModelLoaded {
        id: "m1",
        path: "/var/lib/affectd/models/affectd-int8.onnx",
        format: "int8-qdq",
        calibration: "prefrontal-gradcam-100",
    });
    let (status, text) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(value(&text, "affectd_samples_received_total"), 217.0);
    assert_eq!(value(&text, "affectd_windows_processed_total"), 7.0);
    assert_eq!(
        value(
            &text,
            "affectd_samples_dropped_total{reason=\"ring_overflow\"}"
        ),
        5.0
    );
    assert_eq!(
        value(
            &text,
            "affectd_windows_dropped_total{reason=\"non_finite\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&text, "affectd_output_dropped_total{sink=\"jsonl\"}"),
        2.0
    );
    assert_eq!(value(&text, "affectd_stream_connected"), 1.0);
    assert!(
        text.contains("affectd_model_info{calibration=\"prefrontal-gradcam-100\""),
        "{text}"
    );

    assert_eq!(get(addr, "/healthz"), (200, "ok\n".into()));
    let (status, body) = get(addr, "/readyz");
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "no EEG stream connected\nno model loaded\nno output yet\n"
    );

    health.set_stream_connected(true);
    health.set_model_loaded(true);
    health.mark_output(Instant::now());
    assert_eq!(get(addr, "/readyz"), (200, "ready\n".into()));
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(get(addr, "/readyz"), (503, "no recent output\n".into()));
    assert_eq!(get(addr, "/nope").0, 404);

    // A second server on the same port: the error names the config key.
    let e = spawn_http(
        addr,
        metrics.clone(),
        health.clone(),
        Duration::from_secs(1),
    )
    .err()
    .expect("port in use");
    assert!(
        e.to_string()
            .starts_with("metrics.listen: cannot listen on"),
        "{e}"
    );

    server.stop();
    // tiny_http closes its listener from its accept thread, shortly after the stop.
    let t = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "stopped server still accepts"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Signals (the only test here that signals this process; SIGTERM is sent once: a second one
// would exit the test binary by design)

#[test]
fn sighup_reloads_and_sigterm_shuts_down() {
    let (rx, handle) = spawn_signal_listener().unwrap();
    let me = std::process::id() as libc::pid_t;
    // SAFETY: kill(2) on our own pid with signals signal-hook now handles.
    assert_eq!(unsafe { libc::kill(me, libc::SIGHUP) }, 0);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(2)),
        Ok(ControlEvent::Reload)
    );
    assert_eq!(unsafe { libc::kill(me, libc::SIGTERM) }, 0);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(2)),
        Ok(ControlEvent::Shutdown)
    );
    handle.close();
}

#[test]
fn second_sigterm_child() {
    if std::env::var_os("AFFECTD_SIGNAL_CHILD").is_none() {
        return; // only runs as the child of the test below
    }
    let (rx, _handle) = spawn_signal_listener().unwrap();
    let me = std::process::id() as libc::pid_t;
    // SAFETY: kill(2) on our own pid.
    unsafe { libc::kill(me, libc::SIGTERM) };
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(2)),
        Ok(ControlEvent::Shutdown)
    );
    println!("FIRST-SIGTERM-DELIVERED");
    // A stuck graceful stop: the second signal must end the process with code 1.
    unsafe { libc::kill(me, libc::SIGINT) };
    std::thread::sleep(Duration::from_secs(5));
    println!("STILL-ALIVE");
}

#[test]
fn a_second_stop_signal_exits_at_once() {
    let t = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "second_sigterm_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AFFECTD_SIGNAL_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FIRST-SIGTERM-DELIVERED"), "{stdout}");
    assert!(!stdout.contains("STILL-ALIVE"), "{stdout}");
    assert_eq!(out.status.code(), Some(1));
    assert!(t.elapsed() < Duration::from_secs(4));
}

// ---------------------------------------------------------------------------------------------
// systemd unit

/// The units: the single service and the per-headset template.
const UNITS: [&str; 2] = ["affectd.service", "affectd@.service"];

/// A unit with its commands pointed at this build, so `verify` can check they exist.
fn unit_for_this_build(dir: &Path, name: &str) -> PathBuf {
    let unit = std::fs::read_to_string(repo(&format!("systemd/{name}")))
        .unwrap()
        .replace("/usr/bin/affectd", env!("CARGO_BIN_EXE_affectd"));
    let path = dir.join(name);
    std::fs::write(&path, unit).unwrap();
    path
}

fn systemd_analyze() -> Option<&'static str> {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED: systemd-analyze is not installed");
    }
    ok.then_some("systemd-analyze")
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let Some(sa) = systemd_analyze() else { return };
    let dir = tempfile::tempdir().unwrap();
    for name in UNITS {
        let unit = unit_for_this_build(dir.path(), name);
        let out = Command::new(sa)
            .args(["verify", "--man=no"])
            .arg(&unit)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "verify {name} failed:\n{stderr}"
        );
    }
}

#[test]
fn unit_exposure_score_is_at_most_2() {
    let Some(sa) = systemd_analyze() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The template is scored as an instance, the way it runs.
    for (name, scored) in [UNITS[0], "affectd@lab1.service"].into_iter().zip(UNITS) {
        let path = dir.path().join(name);
        std::fs::copy(repo(&format!("systemd/{scored}")), &path).unwrap();
        let out = Command::new(sa)
            .args(["security", "--offline=yes"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() && text.is_empty() {
            println!("SKIPPED: this systemd-analyze has no offline security analysis");
            return;
        }
        let prefix = format!("Overall exposure level for {name}: ");
        let score: f64 = text
            .lines()
            .find_map(|l| l.split(prefix.as_str()).nth(1))
            .and_then(|r| r.split_whitespace().next())
            .expect("exposure line")
            .parse()
            .unwrap();
        println!("systemd-analyze security exposure of {name}: {score}");
        assert!(score <= 2.0, "{name}: exposure {score} > 2.0:\n{text}");
    }
}

/// The template differs from the single unit only in the lines that name the instance: the
/// hardening, limits and lifecycle settings are the same, line for line.
#[test]
fn template_unit_matches_the_single_unit() {
    let settings = |name: &str| -> Vec<String> {
        std::fs::read_to_string(repo(&format!("systemd/{name}")))
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    };
    let (single, template) = (settings(UNITS[0]), settings(UNITS[1]));
    let key = |l: &String| l.split('=').next().unwrap().to_string();
    let per_instance: Vec<String> = template
        .iter()
        .filter(|l| l.contains("%i"))
        .map(key)
        .collect();
    assert_eq!(
        per_instance,
        ["Description", "ExecStartPre", "ExecStart", "StateDirectory"],
        "the template's per-instance settings"
    );
    let shared = |lines: &[String], drop: &dyn Fn(&String) -> bool| -> Vec<String> {
        lines.iter().filter(|l| !drop(l)).cloned().collect()
    };
    assert_eq!(
        shared(&single, &|l| per_instance.contains(&key(l))),
        shared(&template, &|l| l.contains("%i")),
        "affectd@.service has drifted from affectd.service"
    );
    // Each instance has its own config and state directory.
    assert!(
        template.contains(&"ExecStart=/usr/bin/affectd run --config /etc/affectd/%i.toml".into())
    );
    assert!(template
        .contains(&"StateDirectory=affectd/%i affectd/%i/models affectd/%i/sessions".into()));
}

// ---------------------------------------------------------------------------------------------
// Install / uninstall, staged with DESTDIR

fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                walk(root, &p, out);
            } else {
                out.insert(format!("/{}", p.strip_prefix(root).unwrap().display()));
            }
        }
    }
    let mut out = BTreeSet::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

#[test]
fn install_and_uninstall_with_destdir() {
    let t = tempfile::tempdir().unwrap();
    let stage = t.path().join("stage");
    let native = t.path().join("native");
    let models = t.path().join("models");
    std::fs::create_dir_all(&native).unwrap();
    std::fs::create_dir_all(&models).unwrap();
    // The real liblsl (the installed binary is run below); a stand-in for ONNX Runtime, which is
    // only loaded by `affectd run`.
    let real_lsl = Path::new(env!("AFFECTD_NATIVE_LIB_DIR")).join("liblsl.so.1.18.0");
    std::fs::copy(real_lsl, native.join("liblsl.so.1.18.0")).unwrap();
    std::os::unix::fs::symlink("liblsl.so.1.18.0", native.join("liblsl.so.2")).unwrap();
    std::fs::write(native.join("libonnxruntime.so.1.31.1"), b"ort").unwrap();
    std::fs::write(models.join("affectd-int8.onnx"), b"model").unwrap();
    std::fs::write(models.join("MODEL_CARD.md"), b"card").unwrap();

    let run = |script: &str, args: &[&str]| {
        let out = Command::new("bash")
            .arg(repo(script))
            .args(args)
            .env("DESTDIR", &stage)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let install_args = [
        "--binary",
        env!("CARGO_BIN_EXE_affectd"),
        "--native",
        native.to_str().unwrap(),
        "--models",
        models.to_str().unwrap(),
    ];
    run("scripts/install.sh", &install_args);
    let expected: BTreeSet<String> = [
        "/usr/bin/affectd",
        "/usr/lib/affectd/liblsl.so.1.18.0",
        "/usr/lib/affectd/liblsl.so.2",
        "/usr/lib/affectd/libonnxruntime.so.1.31.1",
        "/usr/lib/systemd/system/affectd.service",
        "/usr/lib/systemd/system/affectd@.service",
        "/usr/lib/sysusers.d/affectd.conf",
        "/usr/lib/tmpfiles.d/affectd.conf",
        "/etc/affectd/affectd.toml",
        "/var/lib/affectd/models/affectd-int8.onnx",
        "/var/lib/affectd/models/MODEL_CARD.md",
        "/usr/share/doc/affectd/config.md",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        repo("docs/service.md")
            .exists()
            .then(|| "/usr/share/doc/affectd/service.md".to_string()),
    )
    .collect();
    assert_eq!(files_under(&stage), expected);
    assert!(stage.join("var/lib/affectd/sessions").is_dir());
    // Installed stripped, and it still runs with the libraries installed beside it.
    let installed = stage.join("usr/bin/affectd");
    let built = std::fs::metadata(env!("CARGO_BIN_EXE_affectd"))
        .unwrap()
        .len();
    assert!(
        std::fs::metadata(&installed).unwrap().len() < built / 2,
        "the installed binary is not stripped"
    );
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(
        version.status.success() && String::from_utf8_lossy(&version.stdout).contains("affectd"),
        "the installed binary does not run: {}",
        String::from_utf8_lossy(&version.stderr)
    );
    assert_eq!(
        std::fs::read_link(stage.join("usr/lib/affectd/liblsl.so.2")).unwrap(),
        Path::new("liblsl.so.1.18.0")
    );
    assert_eq!(
        std::fs::read(stage.join("etc/affectd/affectd.toml")).unwrap(),
        std::fs::read(repo("systemd/affectd.toml")).unwrap()
    );
    // The binary finds the libraries installed beside it.
    let readelf = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_affectd")])
        .output();
    if let Ok(o) = readelf {
        let d = String::from_utf8_lossy(&o.stdout);
        assert!(
            d.contains("$ORIGIN/../lib/affectd"),
            "no $ORIGIN rpath:\n{d}"
        );
    }

    // A second install keeps the admin's config.
    std::fs::write(
        stage.join("etc/affectd/affectd.toml"),
        "[log]\nlevel = \"debug\"\n",
    )
    .unwrap();
    run("scripts/install.sh", &install_args);
    assert_eq!(
        std::fs::read_to_string(stage.join("etc/affectd/affectd.toml")).unwrap(),
        "[log]\nlevel = \"debug\"\n"
    );
    assert!(stage.join("etc/affectd/affectd.toml.new").is_file());

    // Uninstall keeps config and state; --purge removes them.
    std::fs::write(stage.join("var/lib/affectd/sessions/s1.xdf"), b"xdf").unwrap();
    run("scripts/uninstall.sh", &[]);
    assert_eq!(
        files_under(&stage),
        [
            "/etc/affectd/affectd.toml",
            "/var/lib/affectd/models/MODEL_CARD.md",
            "/var/lib/affectd/models/affectd-int8.onnx",
            "/var/lib/affectd/sessions/s1.xdf"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    run("scripts/uninstall.sh", &["--purge"]);
    assert!(files_under(&stage).is_empty(), "{:?}", files_under(&stage));
}

#[test]
fn install_refuses_a_missing_binary() {
    let t = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(repo("scripts/install.sh"))
        .args(["--binary", "/nonexistent/affectd"])
        .env("DESTDIR", t.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no affectd binary at /nonexistent/affectd")
    );
    assert!(files_under(t.path()).is_empty());
}

#[test]
fn log_level_reloads_and_bad_filters_name_the_key() {
    let handle = affectd::service::init_logging("info");
    handle.set_level("debug,affectd=trace").unwrap();
    let e = handle.set_level("=][").unwrap_err();
    assert!(e.to_string().starts_with("log.level:"), "{e}");
}

#[test]
fn grafana_dashboard_imports_as_is_and_shows_every_metric() {
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("grafana/affectd.json")).unwrap())
            .unwrap();
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS");
    let mut exprs = String::new();
    for p in dash["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}");
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    // One of every event, so that every metric family is rendered.
    let m = Metrics::new();
    let classes = vec!["a".to_string()];
    for e in [
        // First: a class-set change clears the probability series that Prediction sets again.
        Event::OutputClassesChanged,
        Event::SamplesReceived { n: 1 },
        Event::SamplesDropped {
            reason: "gap",
            n: 1,
        },
        Event::StreamGap {
            gaps: 1,
            missing_samples: 1,
        },
        Event::StreamConnected(true),
        Event::WindowProcessed,
        Event::WindowDropped {
            reason: "non_finite",
        },
        Event::InferenceDuration(Duration::from_micros(50)),
        Event::EndToEndLatency(0.001),
        Event::Prediction {
            probabilities: &[1.0],
            classes: &classes,
        },
        Event::ModelLoaded {
            id: "i",
            path: "p",
            format: "f",
            calibration: "c",
        },
        Event::ModelRejected { reason: "contract" },
        Event::ModelSwapped,
        Event::MontageCoverage(0.5),
        Event::OutputDropped { sink: "lsl", n: 1 },
        Event::RecorderBytes(10),
        Event::RecorderStopped {
            reason: "disk_full",
        },
        Event::RecordDropped { n: 1 },
        Event::ConfigReloaded { ok: true },
    ] {
        m.emit(e);
    }
    let families: Vec<String> = m
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    assert!(families.len() >= 20, "{families:?}");
    let missing: Vec<_> = families
        .iter()
        .filter(|f| !exprs.contains(f.as_str()))
        .collect();
    assert!(missing.is_empty(), "metrics without a panel: {missing:?}");
    // And the dashboard asks for nothing that does not exist.
    for word in exprs.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(base) = word.strip_prefix("affectd_") {
            let name = format!("affectd_{base}");
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                families.iter().any(|f| f == name),
                "dashboard uses unknown {name}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hardening: liblsl and onnxruntime under MemoryDenyWriteExecute, and the syscalls they use
// against the unit's SystemCallFilter. The child is this test binary re-run with one test.

/// An int8 QDQ Conv + ReLU model (ORT fuses it into QLinearConv), written with the onnx package.
const QDQ_MODEL_PY: &str = r#"
import sys, numpy as np, onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh
rng = np.random.default_rng(0)
w = rng.integers(-63, 64, size=(8, 5, 3, 3)).astype(np.int8)
b = rng.integers(-100, 100, size=(8,)).astype(np.int32)
inits = [nh.from_array(w, "w_q"), nh.from_array(np.array(0.01, np.float32), "w_s"),
         nh.from_array(np.array(0, np.int8), "w_z"), nh.from_array(b, "b_q"),
         nh.from_array(np.array(0.05 * 0.01, np.float32), "b_s"), nh.from_array(np.array(0, np.int32), "b_z"),
         nh.from_array(np.array(0.05, np.float32), "x_s"), nh.from_array(np.array(0, np.int8), "x_z"),
         nh.from_array(np.array(0.02, np.float32), "y_s"), nh.from_array(np.array(-128, np.int8), "y_z")]
nodes = [h.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["x_q"]),
         h.make_node("DequantizeLinear", ["x_q", "x_s", "x_z"], ["x_d"]),
         h.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_d"]),
         h.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b_d"]),
         h.make_node("Conv", ["x_d", "w_d", "b_d"], ["c"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c"], ["r"]),
         h.make_node("QuantizeLinear", ["r", "y_s", "y_z"], ["r_q"]),
         h.make_node("DequantizeLinear", ["r_q", "y_s", "y_z"], ["y"])]
g = h.make_graph(nodes, "qdq", [h.make_tensor_value_info("x", T.FLOAT, [1, 5, 9, 9])],
                 [h.make_tensor_value_info("y", T.FLOAT, [1, 8, 9, 9])], inits)
m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
m.ir_version = 8
onnx.checker.check_model(m, full_check=True)
onnx.save(m, sys.argv[1])
"#;

fn native_lib_dir() -> Option<PathBuf> {
    std::env::var_os("AFFECTD_NATIVE_LIB_DIR").map(PathBuf::from)
}

#[test]
fn hardening_child() {
    let Some(model) = std::env::var_os("AFFECTD_HARDENING_CHILD") else {
        return; // only runs as the child of the test below
    };
    // PR_SET_MDWE (65), PR_MDWE_REFUSE_EXEC_GAIN (1): what MemoryDenyWriteExecute= enforces.
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            65,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        // Kernels before 6.3 have no PR_SET_MDWE (systemd then uses a seccomp filter instead).
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "PR_SET_MDWE: {e}");
        println!("NOTE: kernel without PR_SET_MDWE; running without it");
    }

    let lib = native_lib_dir().unwrap().join("libonnxruntime.so.1.31.1");
    let env = ort::init_from(&lib)
        .unwrap()
        .with_telemetry(false)
        .build()
        .unwrap();
    let mut session = ort::session::Session::builder(&env)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_file(PathBuf::from(model))
        .unwrap();
    let x: Vec<f32> = (0..405)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 20.0)
        .collect();
    let mut sum = 0.0f32;
    for _ in 0..50 {
        let input = ort::value::Tensor::from_array(([1usize, 5, 9, 9], x.clone())).unwrap();
        let out = session.run(ort::inputs!["x" => input]).unwrap();
        let (_, y) = out["y"].try_extract_tensor::<f32>().unwrap();
        sum += y.iter().sum::<f32>();
    }
    assert!(sum.is_finite() && sum > 0.0);

    use lsl::{Pullable, Pushable};
    let id = format!("affectd-hardening-{}", std::process::id());
    let info = lsl::StreamInfo::new(
        "hardening",
        "EEG",
        4,
        100.0,
        lsl::ChannelFormat::Float32,
        &id,
    )
    .unwrap();
    let outlet = lsl::StreamOutlet::new(&info, 0, 10).unwrap();
    let found = lsl::resolve_byprop("source_id", &id, 1, 5.0).unwrap();
    assert!(!found.is_empty(), "LSL resolve under MDWE found nothing");
    let inlet = lsl::StreamInlet::new(&found[0], 10, 0, true).unwrap();
    inlet.open_stream(5.0).unwrap();
    let mut got = 0;
    let t = Instant::now();
    while got < 5 && t.elapsed() < Duration::from_secs(5) {
        outlet.push_sample(&vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let (s, ts): (Vec<f32>, f64) = inlet.pull_sample(0.2).unwrap();
        if ts != 0.0 {
            assert_eq!(s, [1.0, 2.0, 3.0, 4.0]);
            got += 1;
        }
    }
    assert_eq!(got, 5, "LSL samples under MDWE");
    println!("HARDENING-CHILD-OK");
}

/// The syscalls a systemd group stands for, nested groups expanded.
fn syscall_group(group: &str, out: &mut BTreeSet<String>) {
    let o = Command::new("systemd-analyze")
        .args(["syscall-filter", group])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&o.stdout).lines().skip(1) {
        let w = line.trim();
        if w.is_empty() || w.starts_with('#') {
            continue;
        }
        if w.starts_with('@') {
            syscall_group(w, out);
        } else {
            out.insert(w.to_owned());
        }
    }
}

#[test]
fn libraries_run_under_mdwe_and_within_the_syscall_filter() {
    let Some(native) = native_lib_dir() else {
        println!("SKIPPED: AFFECTD_NATIVE_LIB_DIR unset (run scripts/setup)");
        return;
    };
    let python = native.join("../../.venv/bin/python");
    if !python.exists() || systemd_analyze().is_none() {
        println!("SKIPPED: needs {} and systemd-analyze", python.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("qdq.onnx");
    let st = Command::new(&python)
        .args(["-c", QDQ_MODEL_PY])
        .arg(&model)
        .status()
        .unwrap();
    assert!(st.success(), "model script failed");

    let me = std::env::current_exe().unwrap();
    let trace = dir.path().join("strace.txt");
    let use_strace = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = if use_strace {
        let mut c = Command::new("strace");
        c.args(["-f", "-qq", "-c", "-U", "name", "-o"])
            .arg(&trace)
            .arg(&me);
        c
    } else {
        println!("strace missing: checking MDWE only");
        Command::new(&me)
    };
    // The child gets the unit's Environment= and an empty HOME, to see what it writes there.
    let unit = std::fs::read_to_string(repo("systemd/affectd.service")).unwrap();
    for kv in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        let (k, v) = kv.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let out = cmd
        .args([
            "--exact",
            "hardening_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AFFECTD_HARDENING_CHILD", &model)
        .env("HOME", &home)
        .env_remove("XDG_CACHE_HOME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("HARDENING-CHILD-OK"),
        "child failed under MDWE:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = files_under(&home);
    assert!(
        written.is_empty(),
        "the libraries wrote into HOME: {written:?}"
    );
    if !use_strace {
        return;
    }
    let used: BTreeSet<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("syscall") && !l.starts_with('-') && *l != "total"
        })
        .map(str::to_owned)
        .collect();
    assert!(used.contains("mmap") && used.contains("sendto"), "{used:?}");
    let mut allowed = BTreeSet::new();
    syscall_group("@system-service", &mut allowed);
    syscall_group("@default", &mut allowed);
    let denied_groups: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter=~"))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(denied_groups.contains(&"@privileged"));
    let mut denied = BTreeSet::new();
    for g in &denied_groups {
        syscall_group(g, &mut denied);
    }
    let outside: Vec<&String> = used
        .iter()
        .filter(|s| !allowed.contains(*s) || denied.contains(*s))
        .collect();
    println!(
        "{} syscalls used by ort + liblsl + the test harness; outside the filter: {outside:?}",
        used.len()
    );
    assert!(
        outside.is_empty(),
        "syscalls the unit's filter refuses: {outside:?}"
    );

    // The address families liblsl opens (default liblsl config, so IPv6 too) are the unit's.
    let sockets = dir.path().join("sockets.txt");
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-e", "trace=socket", "-o"])
        .arg(&sockets)
        .arg(&me);
    for kv in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        let (k, v) = kv.split_once('=').unwrap();
        c.env(k, v);
    }
    let st = c
        .args(["--exact", "hardening_child", "--test-threads=1"])
        .env("AFFECTD_HARDENING_CHILD", &model)
        .env("HOME", &home)
        .env_remove("LSLAPICFG")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let families: BTreeSet<String> = std::fs::read_to_string(&sockets)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split("socket(")
                .nth(1)?
                .split(',')
                .next()
                .map(str::to_owned)
        })
        .collect();
    let allowed_families: BTreeSet<String> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("RestrictAddressFamilies="))
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect();
    println!("address families used: {families:?}");
    assert!(
        families.contains("AF_INET") && families.contains("AF_NETLINK"),
        "{families:?}"
    );
    assert!(
        families.is_subset(&allowed_families),
        "{families:?} not within {allowed_families:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Logging under journald: the child logs with stderr being the file whose dev:inode is
// $JOURNAL_STREAM, as systemd sets it up.

#[test]
fn journald_child() {
    if std::env::var_os("AFFECTD_JOURNALD_CHILD").is_none() {
        return; // only runs as the child of the test below
    }
    let _log = affectd::service::init_logging("info");
    tracing::warn!("stream lost");
    tracing::info!("model loaded");
    tracing::debug!("not shown at info");
    // Lines go through the log writer thread: written out before the process ends.
    affectd::service::logging::flush_logs();
}

#[test]
fn logs_under_journald_have_priorities_and_no_timestamps_or_colours() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr");
    let file = std::fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    let run = |journal: Option<String>| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args([
            "--exact",
            "journald_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AFFECTD_JOURNALD_CHILD", "1")
        .env_remove("JOURNAL_STREAM")
        .stdout(std::process::Stdio::null())
        .stderr(f);
        if let Some(j) = journal {
            c.env("JOURNAL_STREAM", j);
        }
        assert!(c.status().unwrap().success());
        std::fs::read_to_string(&path).unwrap()
    };
    let journal = run(Some(format!("{}:{}", meta.dev(), meta.ino())));
    // Exactly: priority prefix, level, target, message; no timestamp, no ANSI colours.
    assert_eq!(
        journal,
        "<4> WARN service: stream lost\n<6> INFO service: model loaded\n"
    );

    // A JOURNAL_STREAM that is not our stderr (inherited by a child): normal lines, timestamped.
    let plain = run(Some("1:1".into()));
    let line = plain
        .lines()
        .find(|l| l.contains("stream lost"))
        .expect(&plain);
    assert!(!line.starts_with('<'), "{plain}");
    assert!(
        line.contains('T') && line.contains('Z'),
        "timestamped: {line}"
    );
}
