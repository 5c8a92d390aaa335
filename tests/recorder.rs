//! The recorder thread on real files: rotation, clean stop, SIGKILL, disk full.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use affectd::record::xdf::{
    read_xdf, read_xdf_with, ChannelFormat, ReadOptions, StreamHeader, TimeSeries,
};
use affectd::record::{spawn_recorder, OwnedValues, RecordItem, RecorderConfig, RecorderEvent};
use crossbeam_channel::{bounded, unbounded};

const NCH: usize = 4;
const SRATE: f64 = 250.0;

fn eeg_header() -> StreamHeader {
    StreamHeader::new(
        "SimEEG",
        "EEG",
        NCH as u32,
        SRATE,
        ChannelFormat::Float32,
        "sim-1",
    )
    .with_channels(&["Fp1", "Fp2", "T7", "T8"], Some("microvolts"), Some("EEG"))
}

fn marker_header() -> StreamHeader {
    StreamHeader::new("Stim", "Markers", 1, 0.0, ChannelFormat::String, "stim-1")
}

/// Deterministic EEG: sample k at t = 100 + k / 250 with values derived from k.
fn chunk(first: usize, n: usize) -> RecordItem {
    let timestamps = (first..first + n)
        .map(|k| 100.0 + k as f64 / SRATE)
        .collect();
    let values = (first..first + n)
        .flat_map(|k| (0..NCH).map(move |c| value(k, c)))
        .collect();
    RecordItem::Samples {
        id: 1,
        timestamps,
        values: OwnedValues::F32(values),
    }
}

fn value(k: usize, c: usize) -> f32 {
    ((k * NCH + c) as f32 * 0.01).sin() * 50.0
}

fn config(dir: &Path) -> RecorderConfig {
    RecorderConfig {
        directory: dir.to_path_buf(),
        rotate_max_bytes: 0,
        rotate_max_duration: Duration::ZERO,
        flush_interval: Duration::from_millis(100),
        file_prefix: "session".into(),
    }
}

fn xdf_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xdf"))
        .collect();
    v.sort();
    v
}

fn python() -> PathBuf {
    std::env::var("AFFECTD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// (stream name, sample count, timestamps) per stream as pyxdf loads the file (no sync).
fn pyxdf_counts(path: &Path) -> Vec<(String, usize, Vec<f64>)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pyxdf_dump.py");
    let out = Command::new(python())
        .arg(script)
        .arg(path)
        .arg("--no-sync")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyxdf failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ts: Vec<f64> = s["time_stamps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().parse().unwrap())
                .collect();
            (s["name"].as_str().unwrap().to_string(), ts.len(), ts)
        })
        .collect()
}

fn eeg_of(path: &Path, opts: &ReadOptions) -> (Vec<f64>, Vec<f32>) {
    let f = read_xdf_with(path, opts).unwrap();
    let s = f
        .streams
        .iter()
        .find(|s| s.header.name() == "SimEEG")
        .unwrap();
    match &s.time_series {
        TimeSeries::F32(v) => (s.timestamps.clone(), v.clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rotates_by_size_and_every_file_stands_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = unbounded();
    let (etx, erx) = unbounded();
    let cfg = RecorderConfig {
        rotate_max_bytes: 20_000,
        ..config(&dir.path().join("sessions"))
    };
    let handle = spawn_recorder(cfg, rx, etx);
    tx.send(RecordItem::AddStream {
        id: 1,
        header: eeg_header(),
    })
    .unwrap();
    tx.send(RecordItem::AddStream {
        id: 2,
        header: marker_header(),
    })
    .unwrap();
    tx.send(RecordItem::ClockOffset {
        id: 1,
        collection_time: 99.0,
        offset: 0.5,
    })
    .unwrap();
    let total = 2000;
    for first in (0..total).step_by(25) {
        tx.send(chunk(first, 25)).unwrap();
        if first % 500 == 0 {
            let marker = RecordItem::Samples {
                id: 2,
                timestamps: vec![100.0 + first as f64 / SRATE],
                values: OwnedValues::Str(vec![format!("stimulus_start:m{first}")]),
            };
            tx.send(marker).unwrap();
        }
    }
    drop(tx);
    let summary = handle.join().unwrap();
    assert!(summary.stopped.is_none());
    assert_eq!(summary.samples_written, total as u64 + 4);
    let files = xdf_files(&dir.path().join("sessions"));
    assert_eq!(files, summary.files);
    // 2000 samples x (9 + 16) bytes = 50 kB: three files of ~20 kB.
    assert!(files.len() >= 3, "{files:?}");
    let events: Vec<RecorderEvent> = erx.try_iter().collect();
    let mut all_ts = Vec::new();
    let mut all_vals = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        // session-<UTC time>Z.xdf, with _NNN added when two files open in the same millisecond.
        let stem = name
            .strip_prefix("session-")
            .and_then(|n| n.strip_suffix(".xdf"));
        let time = stem.map(|s| s.split('_').next().unwrap());
        assert!(time.is_some_and(|t| t.ends_with('Z')), "{name}");
        assert!(events.contains(&RecorderEvent::FileOpened(path.clone())));
        let size = std::fs::metadata(path).unwrap().len();
        assert!(
            events.contains(&RecorderEvent::FileClosed {
                path: path.clone(),
                bytes: size
            }),
            "{events:?}"
        );
        // Strict read: complete file with footers, both streams announced, the clock offset
        // carried over so each file synchronises on its own.
        let f = read_xdf(path).unwrap();
        assert_eq!(f.streams.len(), 2);
        let eeg = f.streams.iter().find(|s| s.id == 1).unwrap();
        assert_eq!(eeg.header, eeg_header());
        assert_eq!(
            eeg.footer.as_ref().unwrap().sample_count,
            Some(eeg.sample_count() as u64)
        );
        assert_eq!(eeg.clock_values, vec![0.5]);
        assert!(size < 20_000 + 1_000, "{size}");
        let (ts, vals) = eeg_of(path, &ReadOptions::raw());
        all_ts.extend(ts);
        all_vals.extend(vals);
        let py = pyxdf_counts(path);
        assert_eq!(
            py.iter().find(|s| s.0 == "SimEEG").unwrap().1,
            eeg.sample_count()
        );
    }
    // Together the files hold every sample once, in order.
    let expect_ts: Vec<f64> = (0..total).map(|k| 100.0 + k as f64 / SRATE).collect();
    let expect_vals: Vec<f32> = (0..total)
        .flat_map(|k| (0..NCH).map(move |c| value(k, c)))
        .collect();
    assert_eq!(all_ts, expect_ts);
    assert_eq!(all_vals, expect_vals);
}

#[test]
fn rotates_by_duration() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = unbounded();
    let (etx, _erx) = unbounded();
    let cfg = RecorderConfig {
        rotate_max_duration: Duration::from_millis(300),
        ..config(dir.path())
    };
    let handle = spawn_recorder(cfg, rx, etx);
    tx.send(RecordItem::AddStream {
        id: 1,
        header: eeg_header(),
    })
    .unwrap();
    let start = Instant::now();
    let mut k = 0;
    while start.elapsed() < Duration::from_millis(1000) {
        tx.send(chunk(k, 10)).unwrap();
        k += 10;
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(tx);
    let summary = handle.join().unwrap();
    // ~1 s in 300 ms files: 3 rotations (4 files), give or take one for scheduling.
    assert!(
        (3..=5).contains(&summary.files.len()),
        "{:?}",
        summary.files
    );
    let n: usize = summary
        .files
        .iter()
        .map(|p| eeg_of(p, &ReadOptions::raw()).0.len())
        .sum();
    assert_eq!(n, k);
}

#[test]
fn an_unwritable_directory_stops_recording_without_blocking_producers() {
    let (tx, rx) = bounded(2);
    let (etx, erx) = unbounded();
    // A directory below a character device cannot be created.
    let cfg = config(Path::new("/dev/full/sessions"));
    let handle = spawn_recorder(cfg, rx, etx);
    tx.send(RecordItem::AddStream {
        id: 1,
        header: eeg_header(),
    })
    .unwrap();
    let t = Instant::now();
    for first in (0..5000).step_by(10) {
        tx.send(chunk(first, 10)).unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "producer blocked: {:?}",
        t.elapsed()
    );
    drop(tx);
    let summary = handle.join().unwrap();
    let reason = summary.stopped.expect("stopped");
    assert!(reason.contains("/dev/full/sessions"), "{reason}");
    assert_eq!(summary.items_dropped, 501);
    let events: Vec<RecorderEvent> = erx.try_iter().collect();
    assert!(events.iter().any(
        |e| matches!(e, RecorderEvent::Stopped { reason: r, kind: "io_error" } if *r == reason)
    ));
    assert!(
        events.contains(&RecorderEvent::Dropped { items: 501 }),
        "{events:?}"
    );
}

#[test]
fn disk_full_stops_recording_with_a_clear_reason_and_keeps_draining() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    // A 64 KiB tmpfs is a real full disk; mounting needs privileges (root in this sandbox/CI).
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); /dev/full covers the writer");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());

    let (tx, rx) = bounded(4);
    let (etx, erx) = unbounded();
    let handle = spawn_recorder(config(&mnt), rx, etx);
    tx.send(RecordItem::AddStream {
        id: 1,
        header: eeg_header(),
    })
    .unwrap();
    // 200 kB of samples into 64 kB: the disk fills up about a third of the way in.
    let t = Instant::now();
    let total = 8000;
    for first in (0..total).step_by(50) {
        tx.send(chunk(first, 50)).unwrap();
        if first % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(120)); // let a few flushes happen
        }
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "producer blocked: {:?}",
        t.elapsed()
    );
    drop(tx);
    let summary = handle.join().expect("recorder thread must not panic");
    let reason = summary.stopped.clone().expect("recording must stop");
    assert!(reason.contains("No space left on device"), "{reason}");
    assert!(reason.contains(mnt.to_str().unwrap()), "{reason}");
    assert!(summary.items_dropped > 0);
    let events: Vec<RecorderEvent> = erx.try_iter().collect();
    assert!(events.iter().any(|e| matches!(
        e,
        RecorderEvent::Stopped {
            kind: "disk_full",
            ..
        }
    )));
    // What reached the disk before it filled is readable (no footers).
    let files = xdf_files(&mnt);
    assert_eq!(files.len(), 1);
    let lenient = ReadOptions {
        lenient: true,
        ..ReadOptions::raw()
    };
    let (ts, vals) = eeg_of(&files[0], &lenient);
    assert!(!ts.is_empty() && ts.len() < total, "{}", ts.len());
    assert_eq!(
        vals[..NCH],
        (0..NCH).map(|c| value(0, c)).collect::<Vec<_>>()
    );
}

const CHILD_ENV: &str = "AFFECTD_RECORDER_CHILD_DIR";

/// Entry point of the SIGKILL test's child process: records real-time EEG until killed.
#[test]
#[ignore = "child process of sigkill_leaves_a_readable_file_missing_at_most_the_last_second"]
fn recorder_child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (tx, rx) = unbounded();
    let (etx, _erx) = unbounded();
    let cfg = RecorderConfig {
        flush_interval: Duration::from_millis(250),
        ..config(Path::new(&dir))
    };
    let _handle = spawn_recorder(cfg, rx, etx);
    tx.send(RecordItem::AddStream {
        id: 1,
        header: eeg_header(),
    })
    .unwrap();
    tx.send(RecordItem::AddStream {
        id: 2,
        header: marker_header(),
    })
    .unwrap();
    println!("CHILD_STARTED");
    let start = Instant::now();
    let mut k = 0;
    loop {
        // Send everything due by now, in chunks of 10 samples (40 ms).
        let due = (start.elapsed().as_secs_f64() * SRATE) as usize;
        while k + 10 <= due {
            tx.send(chunk(k, 10)).unwrap();
            k += 10;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkill_leaves_a_readable_file_missing_at_most_the_last_second() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "recorder_child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap().contains("CHILD_STARTED")),
        "child did not start"
    );
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL
    let alive = started.elapsed().as_secs_f64();
    child.wait().unwrap();

    let files = xdf_files(dir.path());
    assert_eq!(files.len(), 1);
    // Strictly it is incomplete (no footers) but every chunk on disk is whole or the reader
    // says where it stops; leniently it loads.
    let lenient = ReadOptions {
        lenient: true,
        ..ReadOptions::raw()
    };
    let (ts, vals) = eeg_of(&files[0], &lenient);
    let f = read_xdf_with(&files[0], &lenient).unwrap();
    assert!(f.streams.iter().all(|s| s.footer.is_none()));
    // The samples on disk are exactly the first ones sent.
    let n = ts.len();
    assert_eq!(
        ts,
        (0..n).map(|k| 100.0 + k as f64 / SRATE).collect::<Vec<_>>()
    );
    assert_eq!(
        vals,
        (0..n)
            .flat_map(|k| (0..NCH).map(move |c| value(k, c)))
            .collect::<Vec<_>>()
    );
    // At most 1 s lost: the child had sent about `alive` seconds of data when it died.
    let recorded = n as f64 / SRATE;
    eprintln!(
        "child alive {alive:.3} s, recorded {recorded:.3} s, lost {:.3} s",
        alive - recorded
    );
    assert!(
        recorded >= alive - 1.0,
        "recorded {recorded:.3} s of {alive:.3} s"
    );
    // pyxdf loads the same file with the same samples.
    let py = pyxdf_counts(&files[0]);
    let eeg = py.iter().find(|s| s.0 == "SimEEG").unwrap();
    assert_eq!(eeg.2, ts);
}

/// A name no other test on this machine (other worktrees included) uses.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("affectd-test-{tag}-{}-{nanos}", std::process::id())
}

#[test]
fn marker_reader_forwards_headers_markers_and_clock_offsets() {
    use affectd::record::markers::spawn_marker_reader;
    use lsl::Pushable;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let stype = unique("markers");
    let mut info = lsl::StreamInfo::new(
        "TestStim",
        &stype,
        1,
        0.0,
        lsl::ChannelFormat::String,
        &unique("src"),
    )
    .unwrap();
    info.desc()
        .append_child_value("manufacturer", "affectd-tests");
    let outlet = lsl::StreamOutlet::new(&info, 0, 360).unwrap();
    let (tx, rx) = unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_marker_reader(
        vec!["SomethingElse".into(), stype.clone()],
        tx,
        100,
        stop.clone(),
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let item = rx
        .recv_deadline(deadline)
        .expect("no AddStream within 10 s");
    let RecordItem::AddStream { id: 100, header } = item else {
        panic!("expected AddStream for id 100, got {item:?}");
    };
    assert_eq!(
        (header.name(), header.stream_type()),
        ("TestStim", stype.as_str())
    );
    assert_eq!(
        header.desc().unwrap().child_text("manufacturer"),
        Some("affectd-tests")
    );

    let t = lsl::local_clock();
    let sent = [
        (t, "stimulus_start:positive"),
        (t + 0.5, "stimulus_end:positive"),
        (t + 0.75, "note with spaces"),
    ];
    for (ts, m) in sent {
        lsl::ExPushable::push_sample_ex(&outlet, &vec![m.to_string()], ts, true).unwrap();
    }
    outlet.push_sample(&vec!["late".to_string()]).unwrap();
    let (mut got, mut offsets) = (Vec::new(), Vec::new());
    while got.len() < 4 || offsets.is_empty() {
        match rx
            .recv_deadline(deadline)
            .expect("markers or clock offset missing")
        {
            RecordItem::Samples {
                id: 100,
                timestamps,
                values: OwnedValues::Str(v),
            } => {
                got.extend(timestamps.into_iter().zip(v));
            }
            RecordItem::ClockOffset {
                id: 100,
                collection_time,
                offset,
            } => offsets.push((collection_time, offset)),
            other => panic!("unexpected {other:?}"),
        }
    }
    let want: Vec<(f64, String)> = sent.iter().map(|(t, m)| (*t, m.to_string())).collect();
    assert_eq!(got[..3], want[..]);
    assert_eq!(got[3].1, "late");
    // Same machine: the offset is (close to) zero, measured at about now on the stream's clock.
    let (ct, off) = offsets[0];
    assert!(off.abs() < 0.01, "{off}");
    assert!((ct - lsl::local_clock()).abs() < 10.0, "{ct}");
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
}

#[test]
fn replay_publishes_original_metadata_values_and_relative_timing() {
    use affectd::record::replay::{replay, ReplaySpeed};
    use affectd::record::xdf::{SampleValues, XdfWriter};
    use lsl::Pullable;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.xdf");
    let (eeg_src, mk_src) = (unique("eeg"), unique("mk"));
    let labels = ["Fp1", "Fp2", "T7", "T8"];
    let eeg_h = StreamHeader::new(
        "ReplayEEG",
        "EEG",
        4,
        SRATE,
        ChannelFormat::Float32,
        &eeg_src,
    )
    .with_channels(&labels, Some("microvolts"), Some("EEG"));
    let mk_h = StreamHeader::new(
        "ReplayMarkers",
        "Markers",
        1,
        0.0,
        ChannelFormat::String,
        &mk_src,
    );
    let n = 400;
    // Jittered stamps far from the current clock: replay must shift them.
    let eeg_ts: Vec<f64> = (0..n)
        .map(|k| 5000.0 + k as f64 / SRATE + 1e-4 * ((k * 31) % 7) as f64)
        .collect();
    let eeg_vals: Vec<f32> = (0..n)
        .flat_map(|k| (0..NCH).map(move |c| value(k, c)))
        .collect();
    let markers = [
        (5000.2, "stimulus_start:neutral"),
        (5001.4, "stimulus_end:neutral"),
    ];
    {
        let mut w = XdfWriter::create(&path).unwrap();
        w.add_stream(1, &eeg_h).unwrap();
        w.add_stream(2, &mk_h).unwrap();
        w.write_samples(1, &eeg_ts, SampleValues::F32(&eeg_vals))
            .unwrap();
        for (t, m) in markers {
            w.write_samples(2, &[t], SampleValues::Str(&[m.to_string()]))
                .unwrap();
        }
        w.finish().unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, path2) = (stop.clone(), path.clone());
    let player =
        std::thread::spawn(move || replay(&[path2], ReplaySpeed::AsFastAsPossible, false, &stop2));

    let find = |src: &str| {
        let found = lsl::resolve_byprop("source_id", src, 1, 10.0).unwrap();
        let inlet = lsl::StreamInlet::new(&found[0], 360, 0, false).unwrap();
        inlet.open_stream(5.0).unwrap();
        inlet
    };
    let eeg_in = find(&eeg_src);
    let mk_in = find(&mk_src);
    // The outlet carries the original description: labels, units.
    let seen = StreamHeader::from_xml(&eeg_in.info(5.0).unwrap().to_xml().unwrap()).unwrap();
    assert_eq!(seen.channel_labels(), labels);
    assert_eq!(
        (seen.name(), seen.stream_type(), seen.source_id()),
        ("ReplayEEG", "EEG", eeg_src.as_str())
    );
    assert_eq!(
        (
            seen.channel_count(),
            seen.nominal_srate(),
            seen.channel_format()
        ),
        (4, SRATE, ChannelFormat::Float32)
    );
    let unit = seen.desc().unwrap().child("channels").unwrap().children[2].child_text("unit");
    assert_eq!(unit, Some("microvolts"));

    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut ts, mut vals, mut mk) = (Vec::new(), Vec::new(), Vec::new());
    while (ts.len() < n || mk.len() < 2) && Instant::now() < deadline {
        let (s, t): (Vec<f32>, f64) = eeg_in.pull_sample(0.05).unwrap();
        if t != 0.0 {
            ts.push(t);
            vals.extend(s);
        }
        let (s, t): (Vec<String>, f64) = mk_in.pull_sample(0.0).unwrap();
        if t != 0.0 {
            mk.push((t, s[0].clone()));
        }
    }
    let stats = player.join().unwrap().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(stats.samples_pushed, n as u64 + 2);
    assert_eq!((stats.streams, stats.passes), (2, 1));
    assert_eq!(ts.len(), n);
    assert_eq!(vals, eeg_vals);
    // Relative timing preserved exactly (to float rounding), within and across streams, and
    // shifted onto the current LSL clock.
    for k in 0..n {
        assert!(
            ((ts[k] - ts[0]) - (eeg_ts[k] - eeg_ts[0])).abs() < 1e-9,
            "sample {k}"
        );
    }
    assert!((ts[0] - lsl::local_clock()).abs() < 30.0);
    let mk_rel: Vec<(f64, String)> = mk.iter().map(|(t, s)| (t - ts[0], s.clone())).collect();
    for ((t, s), (want_t, want_s)) in mk_rel.iter().zip(markers) {
        assert!(
            (t - (want_t - eeg_ts[0])).abs() < 1e-9,
            "{t} vs {}",
            want_t - eeg_ts[0]
        );
        assert_eq!(s, want_s);
    }
}

#[test]
fn replay_paces_real_time_and_at_the_requested_factor() {
    use affectd::record::replay::{replay, ReplaySpeed};
    use affectd::record::xdf::{SampleValues, XdfWriter};
    use lsl::Pullable;
    use std::sync::atomic::AtomicBool;

    for (speed, factor) in [
        (ReplaySpeed::RealTime, 1.0),
        (ReplaySpeed::Factor(4.0), 4.0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pace.xdf");
        let src = unique("pace");
        let mut w = XdfWriter::create(&path).unwrap();
        w.add_stream(
            1,
            &StreamHeader::new("Pace", "EEG", 1, 100.0, ChannelFormat::Float32, &src),
        )
        .unwrap();
        // 1.2 s of data.
        let ts: Vec<f64> = (0..121).map(|k| k as f64 / 100.0).collect();
        let v: Vec<f32> = (0..121).map(|k| k as f32).collect();
        w.write_samples(1, &ts, SampleValues::F32(&v)).unwrap();
        w.finish().unwrap();
        let player =
            std::thread::spawn(move || replay(&[path], speed, false, &AtomicBool::new(false)));
        let found = lsl::resolve_byprop("source_id", &src, 1, 10.0).unwrap();
        let inlet = lsl::StreamInlet::new(&found[0], 360, 0, false).unwrap();
        inlet.open_stream(5.0).unwrap();
        // Arrival times against the data's own time line (a real-time replay does not wait for
        // consumers, so the first samples may be missed).
        let mut arrivals: Vec<(Instant, f32)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while arrivals.last().is_none_or(|a| a.1 < 120.0) && Instant::now() < deadline {
            let (s, t): (Vec<f32>, f64) = inlet.pull_sample(0.05).unwrap();
            if t != 0.0 {
                arrivals.push((Instant::now(), s[0]));
            }
        }
        let stats = player.join().unwrap().unwrap();
        assert_eq!(stats.samples_pushed, 121);
        assert!(
            arrivals.len() >= 60,
            "{speed:?}: only {} samples",
            arrivals.len()
        );
        let (first, last) = (arrivals[0], arrivals[arrivals.len() - 1]);
        let wall = last.0.duration_since(first.0).as_secs_f64();
        let data = f64::from(last.1 - first.1) / 100.0 / factor;
        assert!(
            (wall - data).abs() < 0.25 * data + 0.03,
            "{speed:?}: {wall:.3} s for {data:.3} s of data"
        );
    }
}
