//! XDF reader and writer against the public example files (values from their README) and
//! against pyxdf, the reference importer, run from the test venv.

use std::path::{Path, PathBuf};
use std::process::Command;

use affectd::record::xdf::{
    read_xdf, read_xdf_with, ChannelFormat, ReadOptions, SampleValues, StreamHeader, TimeSeries,
    XdfError, XdfFile, XdfWriteError, XdfWriter,
};
use serde_json::Value;

fn public(name: &str) -> PathBuf {
    // The public example files (MIT, xdf-modules/example-files) are vendored with their licence.
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/xdf")
        .join(name);
    assert!(path.exists(), "missing example file {}", path.display());
    path
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("AFFECTD_PYTHON") {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// pyxdf's view of a file (scripts/pyxdf_dump.py), flags as that script takes them.
fn pyxdf(path: &Path, flags: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pyxdf_dump.py");
    let out = Command::new(python())
        .arg(script)
        .arg(path)
        .args(flags)
        .output()
        .expect("running the venv python (scripts/setup creates .venv)");
    assert!(
        out.status.success(),
        "pyxdf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The dump writes floats as repr strings (exact; serde_json's own float parsing is not).
fn num(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y} (tol {tol})");
    }
}

/// Every stream of `ours` equals pyxdf's: header fields, labels, values (exact), timestamps and
/// clock offsets (within `tol`), clock segments.
fn assert_same_as_pyxdf(ours: &XdfFile, py: &Value, tol: f64) {
    let pys = py["streams"].as_array().unwrap();
    assert_eq!(ours.streams.len(), pys.len(), "stream count");
    for p in pys {
        let id = p["id"].as_u64().unwrap() as u32;
        let s = ours
            .stream(id)
            .unwrap_or_else(|| panic!("stream {id} missing"));
        assert_eq!(s.header.name(), p["name"].as_str().unwrap());
        assert_eq!(s.header.stream_type(), p["type"].as_str().unwrap());
        assert_eq!(
            s.header.channel_count() as u64,
            p["channel_count"].as_u64().unwrap()
        );
        assert_eq!(s.header.nominal_srate(), num(&p["nominal_srate"]));
        assert_eq!(
            s.header.channel_format().as_str(),
            p["channel_format"].as_str().unwrap()
        );
        assert_eq!(s.header.source_id(), p["source_id"].as_str().unwrap_or(""));
        let labels: Vec<String> = p["channel_labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        assert_eq!(s.header.channel_labels(), labels, "labels of {id}");
        close(
            &s.timestamps,
            &f64s(&p["time_stamps"]),
            tol,
            &format!("timestamps of {id}"),
        );
        close(&s.clock_times, &f64s(&p["clock_times"]), 0.0, "clock times");
        close(
            &s.clock_values,
            &f64s(&p["clock_values"]),
            0.0,
            "clock values",
        );
        let segs: Vec<(usize, usize)> = p["clock_segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s[0].as_u64().unwrap() as usize,
                    s[1].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(s.clock_segments, segs, "clock segments of {id}");
        let rows = p["time_series"].as_array().unwrap();
        assert_eq!(rows.len(), s.sample_count());
        for (k, row) in rows.iter().enumerate() {
            let row = row.as_array().unwrap();
            match &s.time_series {
                TimeSeries::Str(_) => {
                    let want: Vec<&str> = row.iter().map(|v| v.as_str().unwrap()).collect();
                    assert_eq!(
                        s.sample_str(k).unwrap(),
                        want.as_slice(),
                        "sample {k} of {id}"
                    );
                }
                _ => assert_eq!(
                    s.sample_f64(k).unwrap(),
                    f64s(&Value::Array(row.clone())),
                    "sample {k} of {id}"
                ),
            }
        }
    }
}

#[test]
fn minimal_xdf_reads_as_documented() {
    let raw = read_xdf_with(public("minimal.xdf"), &ReadOptions::raw()).unwrap();
    assert_eq!(raw.streams.len(), 2);
    let eeg = raw.stream(0).unwrap();
    assert_eq!(
        (eeg.header.name(), eeg.header.stream_type()),
        ("SendDataC", "EEG")
    );
    assert_eq!(
        (eeg.header.channel_count(), eeg.header.nominal_srate()),
        (3, 10.0)
    );
    assert_eq!(eeg.header.channel_format(), ChannelFormat::Int16);
    let table = [
        [192, 255, 238],
        [12, 22, 32],
        [13, 23, 33],
        [14, 24, 34],
        [15, 25, 35],
        [12, 22, 32],
        [13, 23, 33],
        [14, 24, 34],
        [15, 25, 35],
    ];
    assert_eq!(eeg.sample_count(), 9);
    for (k, row) in table.iter().enumerate() {
        assert_eq!(eeg.sample_f64(k).unwrap(), row.map(f64::from).to_vec());
    }
    let expect_ts: Vec<f64> = (1..=9).map(|k| 5.0 + k as f64 / 10.0).collect();
    close(&eeg.timestamps, &expect_ts, 1e-9, "raw timestamps");
    assert_eq!(
        (eeg.clock_times.as_slice(), eeg.clock_values.as_slice()),
        (&[6.1, 7.1][..], &[-0.1, -0.1][..])
    );
    let footer = eeg.footer.as_ref().unwrap();
    assert_eq!(
        (
            footer.first_timestamp,
            footer.last_timestamp,
            footer.sample_count
        ),
        (Some(5.1), Some(5.9), Some(9))
    );

    let strs = raw.stream(0x02C0FFEE).unwrap();
    assert_eq!(
        (strs.header.name(), strs.header.channel_format()),
        ("SendDataString", ChannelFormat::String)
    );
    assert_eq!(strs.sample_count(), 9);
    let first = &strs.sample_str(0).unwrap()[0];
    assert!(
        first.starts_with("<?xml") && first.contains("<sample_count>9</sample_count>"),
        "{first}"
    );
    let rest: Vec<&str> = (1..9)
        .map(|k| strs.sample_str(k).unwrap()[0].as_str())
        .collect();
    assert_eq!(
        rest,
        ["Hello", "World", "from", "LSL", "Hello", "World", "from", "LSL"]
    );
    close(
        &strs.timestamps,
        &expect_ts,
        1e-9,
        "string stream timestamps",
    );

    // Synchronised: the constant -0.1 s offset applies to all samples of stream 0 (even those
    // before the first offset measurement); the string stream has no offsets and stays.
    let synced = read_xdf(public("minimal.xdf")).unwrap();
    let shifted: Vec<f64> = expect_ts.iter().map(|t| t - 0.1).collect();
    close(
        &synced.stream(0).unwrap().timestamps,
        &shifted,
        1e-9,
        "synced timestamps",
    );
    close(
        &synced.stream(0x02C0FFEE).unwrap().timestamps,
        &expect_ts,
        1e-9,
        "unsynced string stream",
    );
    assert_eq!(synced.stream(0).unwrap().clock_segments, vec![(0, 8)]);
}

#[test]
fn clock_resets_xdf_reads_as_documented() {
    let raw = read_xdf_with(
        public("clock_resets.xdf"),
        &ReadOptions {
            dejitter: true,
            ..ReadOptions::raw()
        },
    )
    .unwrap();
    assert_eq!(raw.streams.len(), 2);
    let markers = raw.stream(1).unwrap();
    assert_eq!(
        (markers.header.name(), markers.header.stream_type()),
        ("MyMarkerStream", "Markers")
    );
    assert_eq!(markers.header.source_id(), "myuidw43536");
    assert_eq!(markers.sample_count(), 175);
    let first: Vec<&str> = (0..5)
        .map(|k| markers.sample_str(k).unwrap()[0].as_str())
        .collect();
    assert_eq!(first, ["XXX", "Test", "Blah", "Test", "Test-1-2-3"]);
    let last: Vec<&str> = (170..175)
        .map(|k| markers.sample_str(k).unwrap()[0].as_str())
        .collect();
    assert_eq!(
        last,
        ["Test-1-2-3", "Testtest", "Test", "Test-1-2-3", "XXX"]
    );
    close(
        &markers.timestamps[..5],
        &[
            653153.212188,
            653156.001700,
            653158.235593,
            653158.674409,
            653161.255786,
        ],
        1e-6,
        "marker stamps",
    );
    close(
        &markers.timestamps[170..],
        &[255.326187, 255.794242, 257.288286, 258.881481, 259.653828],
        1e-6,
        "marker stamps",
    );
    assert_eq!(markers.footer.as_ref().unwrap().sample_count, Some(175));

    let eeg = raw.stream(2).unwrap();
    assert_eq!(
        (
            eeg.header.name(),
            eeg.header.channel_count(),
            eeg.header.nominal_srate()
        ),
        ("BioSemi", 8, 100.0)
    );
    assert_eq!(eeg.sample_count(), 27815);
    // README table (its stamps are pyxdf's dejittered ones).
    close(
        &eeg.timestamps[..2],
        &[653150.314061, 653150.324786],
        1e-6,
        "eeg stamps",
    );
    close(
        &eeg.timestamps[27813..],
        &[262.007853, 262.018644],
        1e-6,
        "eeg stamps",
    );
    close(
        &eeg.sample_f64(0).unwrap(),
        &[0.142, 0.463, 0.354, 0.220, 0.761, 0.323, 0.312, 0.861],
        5e-4,
        "first row",
    );
    close(
        &eeg.sample_f64(27814).unwrap(),
        &[0.873, 0.064, 0.684, 0.153, 0.306, 0.123, 0.711, 0.892],
        5e-4,
        "last row",
    );
    assert_eq!(eeg.clock_times.len(), 115);
    close(
        &eeg.clock_times[..2],
        &[653156.026144, 653161.027186],
        1e-6,
        "clock times",
    );
    close(
        &eeg.clock_values[113..],
        &[1121.166, 1121.166],
        1e-3,
        "clock values",
    );

    // Synchronised with reset handling: two clock segments per stream, and the two halves land
    // on one continuous, increasing time line (the raw stamps jump back by ~653000 s).
    let synced = read_xdf(public("clock_resets.xdf")).unwrap();
    let (m, e) = (synced.stream(1).unwrap(), synced.stream(2).unwrap());
    assert_eq!(m.clock_segments, vec![(0, 90), (91, 174)]);
    assert_eq!(e.clock_segments, vec![(0, 12875), (12876, 27814)]);
    for s in [m, e] {
        assert!(
            s.timestamps.windows(2).all(|w| w[1] > w[0] - 0.05),
            "stream {} not monotonic",
            s.id
        );
        assert!(s.timestamps[0] > 800.0 && s.timestamps[s.timestamps.len() - 1] < 1400.0);
    }
    // Without reset handling one fit spans the jump and squashes the first segment's ~170 s of
    // markers into under a second.
    let span = |t: &[f64]| t[90] - t[0];
    assert!(span(&m.timestamps) > 100.0);
    let naive = read_xdf_with(
        public("clock_resets.xdf"),
        &ReadOptions {
            handle_clock_resets: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(span(&naive.stream(1).unwrap().timestamps).abs() < 1.0);
}

#[test]
fn empty_streams_xdf_reads_as_documented() {
    let raw = read_xdf_with(public("empty_streams.xdf"), &ReadOptions::raw()).unwrap();
    assert_eq!(raw.streams.len(), 4);
    let counts: Vec<(u32, usize)> = (1..=4)
        .map(|id| (id, raw.stream(id).unwrap().sample_count()))
        .collect();
    assert_eq!(counts, vec![(1, 1), (2, 0), (3, 0), (4, 10)]);
    let ctrl = raw.stream(1).unwrap();
    assert_eq!(
        (ctrl.header.name(), ctrl.header.source_id()),
        ("ctrl", "kassia")
    );
    assert_eq!(ctrl.sample_str(0).unwrap(), ["{\"state\": 2}".to_string()]);
    close(&ctrl.timestamps, &[91725.014004246], 1e-9, "ctrl stamp");
    for id in [2, 3] {
        let s = raw.stream(id).unwrap();
        assert!(s.time_series.is_empty());
        assert_eq!(s.footer.as_ref().unwrap().sample_count, Some(0));
        assert_eq!(s.clock_times.len(), 7);
    }
    assert_eq!(
        raw.stream(2).unwrap().header.channel_format(),
        ChannelFormat::String
    );
    assert_eq!(
        raw.stream(3).unwrap().header.channel_format(),
        ChannelFormat::Float32
    );
    assert_eq!(raw.stream(3).unwrap().header.channel_labels(), ["ch:00"]);
    let data = raw.stream(4).unwrap();
    assert_eq!(data.header.channel_format(), ChannelFormat::Int32);
    assert_eq!(data.header.channel_labels(), ["ch:00"]);
    assert_eq!(
        data.time_series,
        TimeSeries::F64((0..10).map(f64::from).collect())
    );
    let stamps: Vec<f64> = (0..10).map(|k| 91725.21394789348 + k as f64).collect();
    close(&data.timestamps, &stamps, 1e-6, "data stamps");
    assert_eq!(
        data.header.desc().unwrap().child_text("manufacturer"),
        Some("pylsltools")
    );
    // Synchronising leaves empty streams empty and without clock segments.
    let synced = read_xdf(public("empty_streams.xdf")).unwrap();
    assert!(synced.stream(2).unwrap().clock_segments.is_empty());
    assert_eq!(synced.stream(4).unwrap().clock_segments, vec![(0, 9)]);
}

#[test]
fn public_files_match_pyxdf() {
    for name in ["minimal.xdf", "clock_resets.xdf", "empty_streams.xdf"] {
        let p = public(name);
        // Raw values and stamps: bit-identical.
        let ours = read_xdf_with(&p, &ReadOptions::raw()).unwrap();
        assert_same_as_pyxdf(&ours, &pyxdf(&p, &["--no-sync"]), 0.0);
        // Synchronised (robust fit, clock resets): the same to well below a microsecond.
        assert_same_as_pyxdf(&read_xdf(&p).unwrap(), &pyxdf(&p, &[]), 1e-7);
    }
    let p = public("clock_resets.xdf");
    let dejittered = read_xdf_with(
        &p,
        &ReadOptions {
            dejitter: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_same_as_pyxdf(&dejittered, &pyxdf(&p, &["--dejitter"]), 1e-6);
}

struct Written {
    path: PathBuf,
    /// File size after each Samples chunk of the EEG stream, with the EEG samples so far.
    boundaries: Vec<(u64, usize)>,
    eeg: Vec<f32>,
    eeg_ts: Vec<f64>,
    markers: Vec<(f64, String)>,
}

const EEG_LABELS: [&str; 4] = ["Fp1", "Fp2", "T7", "O1"];

fn write_session(dir: &Path) -> Written {
    let path = dir.join("session.xdf");
    let mut w = XdfWriter::create(&path).unwrap();
    let eeg_header = StreamHeader::new(
        "SimEEG",
        "EEG",
        4,
        250.0,
        ChannelFormat::Float32,
        "sim-eeg-1",
    )
    .with_channels(&EEG_LABELS, Some("microvolts"), Some("EEG"));
    w.add_stream(7, &eeg_header).unwrap();
    let markers = StreamHeader::new(
        "Stim <markers> & co",
        "Markers",
        1,
        0.0,
        ChannelFormat::String,
        "stim",
    );
    w.add_stream(9, &markers).unwrap();
    let ints = StreamHeader::new("Counter", "misc", 2, 10.0, ChannelFormat::Int16, "");
    w.add_stream(3, &ints).unwrap();
    let doubles = StreamHeader::new(
        "Emotion",
        "Emotion",
        3,
        4.0,
        ChannelFormat::Double64,
        "affectd",
    )
    .with_channels(&["negative", "neutral", "positive"], None, None);
    w.add_stream(4, &doubles).unwrap();

    let (mut eeg, mut eeg_ts, mut boundaries, mut markers_out) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let t0 = 1000.123456789;
    let mut k = 0usize;
    // Chunk sizes from 1 sample (tiny chunk, 1-byte length field) to 300 (4-byte length).
    for (c, n) in [1usize, 17, 300, 64, 5].into_iter().enumerate() {
        let ts: Vec<f64> = (k..k + n)
            .map(|i| t0 + i as f64 / 250.0 + 1e-5 * ((i * 7919) % 13) as f64)
            .collect();
        let vals: Vec<f32> = (0..n * 4)
            .map(|j| ((k * 4 + j) as f32 * 0.37).sin() * 100.0 + j as f32 * 1e-3)
            .collect();
        w.write_samples(7, &ts, SampleValues::F32(&vals)).unwrap();
        w.flush().unwrap();
        k += n;
        eeg.extend_from_slice(&vals);
        eeg_ts.extend_from_slice(&ts);
        boundaries.push((std::fs::metadata(&path).unwrap().len(), k));
        let text = if c == 2 {
            "ü".repeat(200)
        } else {
            format!("stimulus_start:class{c}")
        };
        let t = ts[0];
        w.write_samples(9, &[t], SampleValues::Str(std::slice::from_ref(&text)))
            .unwrap();
        markers_out.push((t, text));
        w.write_clock_offset(7, t + 0.5, -0.25 + 1e-6 * c as f64)
            .unwrap();
        w.write_clock_offset(9, t + 0.5, 0.125).unwrap();
        w.write_boundary().unwrap();
    }
    w.write_samples(
        3,
        &[5.0, 5.1],
        SampleValues::F32(&[-32768.0, 32767.0, 0.0, 12.0]),
    )
    .unwrap();
    w.write_samples(
        4,
        &[5.0, 5.25],
        SampleValues::F64(&[0.1, 0.2, 0.7, 1.0 / 3.0, 1e-300, 0.5]),
    )
    .unwrap();
    w.finish().unwrap();
    Written {
        path,
        boundaries,
        eeg,
        eeg_ts,
        markers: markers_out,
    }
}

#[test]
fn written_files_read_back_in_our_reader_and_in_pyxdf() {
    let dir = tempfile::tempdir().unwrap();
    let wr = write_session(dir.path());
    let raw = read_xdf_with(&wr.path, &ReadOptions::raw()).unwrap();
    assert!(raw.error.is_none());
    let eeg = raw.stream(7).unwrap();
    assert_eq!(eeg.header.name(), "SimEEG");
    assert_eq!(eeg.header.source_id(), "sim-eeg-1");
    assert_eq!(eeg.header.channel_labels(), EEG_LABELS);
    let unit = eeg
        .header
        .desc()
        .unwrap()
        .child("channels")
        .unwrap()
        .children[0]
        .child_text("unit");
    assert_eq!(unit, Some("microvolts"));
    assert_eq!(eeg.time_series, TimeSeries::F32(wr.eeg.clone()));
    assert_eq!(eeg.timestamps, wr.eeg_ts);
    let footer = eeg.footer.as_ref().unwrap();
    assert_eq!(footer.sample_count, Some(wr.eeg_ts.len() as u64));
    assert_eq!(footer.first_timestamp, Some(wr.eeg_ts[0]));
    assert_eq!(footer.last_timestamp, Some(*wr.eeg_ts.last().unwrap()));
    let measured = footer.measured_srate.unwrap();
    assert!((measured - 250.0).abs() < 1.0, "{measured}");
    let m = raw.stream(9).unwrap();
    assert_eq!(m.header.name(), "Stim <markers> & co");
    let got: Vec<(f64, String)> = (0..m.sample_count())
        .map(|k| (m.timestamps[k], m.sample_str(k).unwrap()[0].clone()))
        .collect();
    assert_eq!(got, wr.markers);
    assert_eq!(
        raw.stream(3).unwrap().time_series,
        TimeSeries::F64(vec![-32768.0, 32767.0, 0.0, 12.0])
    );
    assert_eq!(
        raw.stream(4).unwrap().time_series,
        TimeSeries::F64(vec![0.1, 0.2, 0.7, 1.0 / 3.0, 1e-300, 0.5])
    );
    assert_eq!(
        raw.stream(4).unwrap().header.channel_labels(),
        ["negative", "neutral", "positive"]
    );
    assert_eq!(eeg.clock_times.len(), 5);

    // The external reference reader sees the same file.
    assert_same_as_pyxdf(&raw, &pyxdf(&wr.path, &["--no-sync"]), 0.0);
    let synced = read_xdf(&wr.path).unwrap();
    assert_same_as_pyxdf(&synced, &pyxdf(&wr.path, &[]), 1e-9);
    // Synchronisation moved the EEG by about -0.25 s.
    assert!((synced.stream(7).unwrap().timestamps[0] - (wr.eeg_ts[0] - 0.25)).abs() < 1e-4);
}

#[test]
fn truncated_files_fail_strictly_and_read_leniently_up_to_the_last_complete_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let wr = write_session(dir.path());
    let bytes = std::fs::read(&wr.path).unwrap();
    // Cut 10 bytes into the chunk after each boundary: that chunk is lost, everything before
    // it is kept.
    for &(boundary, samples) in &wr.boundaries[..4] {
        let cut = dir.path().join(format!("cut{boundary}.xdf"));
        std::fs::write(&cut, &bytes[..boundary as usize + 10]).unwrap();
        let err = read_xdf(&cut).unwrap_err();
        assert!(matches!(err, XdfError::Truncated { .. }), "{err}");
        assert_eq!(err.offset(), Some(boundary), "{err}");
        assert!(
            err.to_string().contains(&format!("byte {boundary}")),
            "{err}"
        );

        let lenient = read_xdf_with(
            &cut,
            &ReadOptions {
                lenient: true,
                ..ReadOptions::raw()
            },
        )
        .unwrap();
        assert_eq!(lenient.complete_bytes, boundary);
        assert_eq!(lenient.error.as_ref().unwrap().offset(), Some(boundary));
        let eeg = lenient.stream(7).unwrap();
        assert_eq!(eeg.sample_count(), samples);
        assert_eq!(eeg.timestamps, wr.eeg_ts[..samples]);
        assert!(eeg.footer.is_none());
        let py = pyxdf(&cut, &["--no-sync"]);
        let py_eeg = py["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == 7)
            .unwrap();
        assert_eq!(f64s(&py_eeg["time_stamps"]), eeg.timestamps);
    }
    // A cut deep inside the 300-sample chunk (which follows boundary 1 after a marker, two
    // clock offsets and a boundary chunk): the 18 samples before it survive.
    let cut = dir.path().join("mid.xdf");
    std::fs::write(&cut, &bytes[..wr.boundaries[1].0 as usize + 500]).unwrap();
    let lenient = read_xdf_with(
        &cut,
        &ReadOptions {
            lenient: true,
            ..ReadOptions::raw()
        },
    )
    .unwrap();
    assert_eq!(lenient.stream(7).unwrap().sample_count(), 18);
    assert!(matches!(lenient.error, Some(XdfError::Truncated { .. })));
}

fn chunk(tag: u16, body: &[u8]) -> Vec<u8> {
    let mut c = vec![4];
    c.extend_from_slice(&((body.len() + 2) as u32).to_le_bytes());
    c.extend_from_slice(&tag.to_le_bytes());
    c.extend_from_slice(body);
    c
}

fn header_chunk(id: u32, xml: &str) -> Vec<u8> {
    let mut body = id.to_le_bytes().to_vec();
    body.extend_from_slice(xml.as_bytes());
    chunk(2, &body)
}

#[test]
fn corrupt_files_give_errors_naming_offset_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let good_header = "<info><name>x</name><type>EEG</type><channel_count>1</channel_count>\
                       <nominal_srate>10</nominal_srate><channel_format>float32</channel_format></info>";
    let err = read_xdf(write("magic.xdf", b"XDG:rest")).unwrap_err();
    assert!(
        matches!(err, XdfError::BadMagic { .. }) && err.to_string().contains("magic.xdf"),
        "{err}"
    );
    assert!(matches!(
        read_xdf(dir.path().join("absent.xdf")).unwrap_err(),
        XdfError::Io { .. }
    ));

    let mut f = b"XDF:".to_vec();
    f.extend(header_chunk(1, good_header));
    let at = f.len() as u64;
    f.extend_from_slice(&[3, 0, 0]);
    let err = read_xdf(write("width.xdf", &f)).unwrap_err();
    assert!(
        matches!(err, XdfError::BadLengthWidth { offset, width: 3 } if offset == at),
        "{err}"
    );

    let mut f = b"XDF:".to_vec();
    let at = f.len() as u64;
    f.extend(header_chunk(1, "<info><name>x</name>"));
    let err = read_xdf(write("xml.xdf", &f)).unwrap_err();
    assert!(
        matches!(err, XdfError::BadXml { offset, .. } if offset == at),
        "{err}"
    );

    let mut f = b"XDF:".to_vec();
    f.extend(header_chunk(1, &good_header.replace("float32", "float16")));
    let err = read_xdf(write("fmt.xdf", &f)).unwrap_err();
    assert!(err.to_string().contains("float16"), "{err}");

    // Samples for a stream that was never declared.
    let mut f = b"XDF:".to_vec();
    let at = f.len() as u64;
    f.extend(chunk(3, &[5, 0, 0, 0, 1, 0]));
    let err = read_xdf(write("unknown.xdf", &f)).unwrap_err();
    assert!(
        matches!(err, XdfError::UnknownStream { offset, stream_id: 5, .. } if offset == at),
        "{err}"
    );

    // A samples chunk whose content does not match its length (one sample, float32, plus junk).
    let mut f = b"XDF:".to_vec();
    f.extend(header_chunk(1, good_header));
    let at = f.len() as u64;
    let mut body = 1u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[1, 1, 0]);
    body.extend_from_slice(&1.5f32.to_le_bytes());
    body.extend_from_slice(&[9, 9]);
    f.extend(chunk(3, &body));
    let err = read_xdf(write("junk.xdf", &f)).unwrap_err();
    assert!(
        matches!(&err, XdfError::BadSamples { offset, stream_id: 1, message } if *offset == at && message.contains("left over")),
        "{err}"
    );

    // A bad timestamp flag.
    let mut f = b"XDF:".to_vec();
    f.extend(header_chunk(1, good_header));
    let mut body = 1u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[1, 1, 4]);
    body.extend_from_slice(&1.5f32.to_le_bytes());
    f.extend(chunk(3, &body));
    let err = read_xdf(write("flag.xdf", &f)).unwrap_err();
    assert!(
        err.to_string().contains("timestamp field has 4 bytes"),
        "{err}"
    );
}

#[test]
fn writer_refuses_bad_input_and_reports_disk_full() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = XdfWriter::create(dir.path().join("w.xdf")).unwrap();
    let h = StreamHeader::new("c", "misc", 2, 0.0, ChannelFormat::Int16, "");
    w.add_stream(1, &h).unwrap();
    assert!(matches!(
        w.add_stream(1, &h),
        Err(XdfWriteError::DuplicateStream(1))
    ));
    assert!(matches!(
        w.write_samples(2, &[1.0], SampleValues::F32(&[1.0, 2.0])),
        Err(XdfWriteError::UnknownStream(2))
    ));
    assert!(matches!(
        w.write_samples(1, &[1.0], SampleValues::F32(&[1.0])),
        Err(XdfWriteError::ValueCount {
            values: 1,
            samples: 1,
            channels: 2,
            ..
        })
    ));
    assert!(matches!(
        w.write_samples(1, &[1.0], SampleValues::F32(&[1.5, 2.0])),
        Err(XdfWriteError::NotRepresentable { value, .. }) if value == 1.5
    ));
    assert!(matches!(
        w.write_samples(1, &[1.0], SampleValues::F64(&[40000.0, 2.0])),
        Err(XdfWriteError::NotRepresentable { .. })
    ));
    let s = vec!["a".to_string(), "b".to_string()];
    assert!(matches!(
        w.write_samples(1, &[1.0], SampleValues::Str(&s)),
        Err(XdfWriteError::FormatMismatch { .. })
    ));
    // Refused input leaves no trace: the file holds only the valid sample.
    w.write_samples(1, &[2.0], SampleValues::F32(&[3.0, -4.0]))
        .unwrap();
    let path = w.path().to_path_buf();
    w.finish().unwrap();
    let f = read_xdf_with(&path, &ReadOptions::raw()).unwrap();
    assert_eq!(
        f.stream(1).unwrap().time_series,
        TimeSeries::F64(vec![3.0, -4.0])
    );

    // /dev/full accepts the open and fails every write with ENOSPC.
    let mut w = XdfWriter::create("/dev/full").unwrap();
    w.add_stream(1, &h).unwrap();
    let err = w.flush().unwrap_err();
    assert!(err.is_io());
    match &err {
        XdfWriteError::Io { source, path } => {
            assert_eq!(source.raw_os_error(), Some(28), "{err}");
            assert_eq!(path, Path::new("/dev/full"));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("/dev/full"), "{err}");
}

#[test]
fn session_streams_pick_the_eeg_and_the_marker_streams() {
    use affectd::record::labels::{
        labelled_intervals, marker_events, session_streams, LabelMapping, SessionError,
    };
    let f = read_xdf(public("clock_resets.xdf")).unwrap();
    let s = session_streams(&f).unwrap();
    assert_eq!(s.eeg.header.name(), "BioSemi");
    let names: Vec<&str> = s.markers.iter().map(|m| m.header.name()).collect();
    assert_eq!(names, ["MyMarkerStream"]);
    let events = marker_events(&s.markers);
    assert_eq!(events.len(), 175);
    assert!(events.windows(2).all(|w| w[0].0 <= w[1].0));
    // Its markers follow no stimulus convention: nothing to label, no error.
    assert!(labelled_intervals(&events, &LabelMapping::default())
        .unwrap()
        .is_empty());
    let none = read_xdf(public("empty_streams.xdf")).unwrap();
    assert_eq!(session_streams(&none).unwrap_err(), SessionError::NoEeg);

    // A written calibration session: EEG plus markers in the documented convention.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calib.xdf");
    let mut w = XdfWriter::create(&path).unwrap();
    w.add_stream(
        1,
        &StreamHeader::new("E", "EEG", 1, 10.0, ChannelFormat::Float32, "e"),
    )
    .unwrap();
    w.add_stream(
        2,
        &StreamHeader::new("M", "Markers", 1, 0.0, ChannelFormat::String, "m"),
    )
    .unwrap();
    let ts: Vec<f64> = (0..100).map(|k| k as f64 / 10.0).collect();
    w.write_samples(1, &ts, SampleValues::F32(&vec![0.0; 100]))
        .unwrap();
    for (t, m) in [
        (1.0, "stimulus_start:sad"),
        (4.0, "stimulus_end:sad"),
        (5.0, "stimulus_start:happy"),
        (9.0, "stimulus_end:happy"),
    ] {
        w.write_samples(2, &[t], SampleValues::Str(&[m.to_string()]))
            .unwrap();
    }
    w.finish().unwrap();
    let f = read_xdf(&path).unwrap();
    let s = session_streams(&f).unwrap();
    let mapping = LabelMapping::default()
        .with_alias("sad", 0)
        .unwrap()
        .with_alias("happy", 2)
        .unwrap();
    let iv = labelled_intervals(&marker_events(&s.markers), &mapping).unwrap();
    let got: Vec<(f64, f64, u8, i64)> = iv
        .iter()
        .map(|i| (i.start, i.end, i.class, i.group))
        .collect();
    assert_eq!(got, vec![(1.0, 4.0, 0, 0), (5.0, 9.0, 2, 1)]);
}

#[test]
fn damaged_files_never_panic_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let wr = write_session(dir.path());
    let good = std::fs::read(&wr.path).unwrap();
    let bad = dir.path().join("bad.xdf");
    // Deterministic pseudo-random damage: flipped bytes, and cuts at arbitrary places.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut failed, mut lenient_ok) = (0, 0);
    for round in 0..300 {
        let mut bytes = good.clone();
        if round % 2 == 0 {
            for _ in 0..1 + next() % 4 {
                let i = 4 + (next() as usize) % (bytes.len() - 4);
                bytes[i] ^= 1 << (next() % 8);
            }
        } else {
            bytes.truncate(4 + (next() as usize) % (bytes.len() - 4));
        }
        std::fs::write(&bad, &bytes).unwrap();
        if read_xdf(&bad).is_err() {
            failed += 1;
        }
        let lenient = ReadOptions {
            lenient: true,
            ..ReadOptions::default()
        };
        if let Ok(f) = read_xdf_with(&bad, &lenient) {
            lenient_ok += 1;
            assert!(f.complete_bytes <= bytes.len() as u64);
        }
    }
    // Most damage is detected, and the lenient reader always returns something (the header
    // chunks come first and are rarely hit).
    assert!(failed > 150, "{failed}");
    assert!(lenient_ok > 250, "{lenient_ok}");
}
