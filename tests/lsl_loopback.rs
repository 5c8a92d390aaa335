//! The LSL side against real liblsl on loopback (LSLAPICFG -> config/lsl_api.cfg, set by cargo's
//! [env]): simulator outlet -> acquisition thread -> ring, stall/resume, waiting, Emotion outlet.
//! Every test uses its own stream names and source_ids (tests run in parallel).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use affectd::acquire::{spawn_acquisition, AcquireConfig, AcquireEvent, StreamPredicate};
use affectd::outputs::lsl_outlet::EmotionOutlet;
use affectd::simulate::{publish, state_schedule, EegSimulator, SimConfig, SIM_DEFAULT_CHANNELS};
use crossbeam_channel::Receiver;
use lsl::Pullable;

fn unique(tag: &str) -> String {
    format!("affectd-test-{tag}-{}", std::process::id())
}

fn sim_config(tag: &str) -> SimConfig {
    let name = unique(tag);
    SimConfig {
        stream_name: name.clone(),
        source_id: format!("{name}-src"),
        seed: 11,
        state_duration_s: 0.5,
        ..SimConfig::default()
    }
}

struct Publisher {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Publisher {
    fn start(cfg: &SimConfig) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (cfg, flag) = (cfg.clone(), stop.clone());
        let handle = std::thread::spawn(move || publish(&cfg, 1.0, &flag, None));
        Self { stop, handle }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap().unwrap();
    }
}

fn acquire_config(cfg: &SimConfig) -> AcquireConfig {
    AcquireConfig {
        predicate: StreamPredicate {
            stream_type: "EEG".into(),
            name: Some(cfg.stream_name.clone()),
            source_id: Some(cfg.source_id.clone()),
        },
        resolve_timeout: Duration::from_millis(200),
        no_data_timeout: Duration::from_millis(500),
        ..AcquireConfig::default()
    }
}

/// Waits for the first event `want` accepts; the skipped events are appended to `skipped`.
fn wait_for(
    rx: &Receiver<AcquireEvent>,
    within: Duration,
    skipped: &mut Vec<AcquireEvent>,
    want: impl Fn(&AcquireEvent) -> bool,
) -> Option<AcquireEvent> {
    let deadline = Instant::now() + within;
    while let Ok(ev) = rx.recv_deadline(deadline) {
        if want(&ev) {
            return Some(ev);
        }
        skipped.push(ev);
    }
    None
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn acquisition_receives_the_simulator_sample_exactly() {
    let cfg = sim_config("exact");
    let publisher = Publisher::start(&cfg);
    // Markers, read through the safe `lsl` API as an independent check.
    let marker_info = lsl::resolve_bypred(&format!("name='{}-markers'", cfg.stream_name), 1, 5.0)
        .unwrap()
        .pop()
        .expect("marker stream resolves");
    let marker_inlet = lsl::StreamInlet::new(&marker_info, 360, 0, true).unwrap();
    marker_inlet.open_stream(5.0).unwrap();

    let (tx, rx) = crossbeam_channel::unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    let acq = spawn_acquisition(acquire_config(&cfg), tx, None, stop.clone());
    let mut other = Vec::new();
    let Some(AcquireEvent::Connected {
        description,
        mut reader,
    }) = wait_for(&rx, Duration::from_secs(5), &mut other, |e| {
        matches!(e, AcquireEvent::Connected { .. })
    })
    else {
        panic!("no Connected event; got {other:?}");
    };
    assert_eq!(description.labels, SIM_DEFAULT_CHANNELS);
    assert!(description.units.iter().all(|u| u == "microvolts"));
    assert!(description.channel_types.iter().all(|t| t == "EEG"));
    assert_eq!(
        (description.channel_count, description.nominal_srate),
        (62, 200.0)
    );
    assert_eq!(description.source_id, cfg.source_id);
    assert!(description
        .header_xml
        .contains("<manufacturer>affectd simulator</manufacturer>"));
    assert_eq!(reader.channels(), 62);

    // Read for 1.5 s of wall time.
    let ch = reader.channels();
    let (mut data, mut ts) = (Vec::new(), Vec::new());
    let (mut buf, mut tbuf) = (vec![0f32; 64 * ch], vec![0f64; 64]);
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        if reader.wait(Duration::from_millis(100)) {
            let n = reader.read(&mut buf, &mut tbuf);
            // Sample i is pushed when its time start + i / rate has come: now - stamp = delay.
            latencies.push(lsl::local_clock() - tbuf[n - 1]);
            data.extend_from_slice(&buf[..n * ch]);
            ts.extend_from_slice(&tbuf[..n]);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = ts.len() as f64 / elapsed;
    assert!(
        (170.0..230.0).contains(&rate),
        "{} samples in {elapsed:.2} s",
        ts.len()
    );
    for w in ts.windows(2) {
        assert!((w[1] - w[0] - 1.0 / 200.0).abs() < 1e-9, "timestamps {w:?}");
    }

    // Exactly the samples a second simulator with the same seed produces, from some index on.
    let mut reference = EegSimulator::new(cfg.clone()).unwrap();
    let mut ref_data = vec![0f32; 2000 * ch];
    reference.fill(&mut ref_data);
    let k0 = ref_data
        .chunks_exact(ch)
        .position(|s| s == &data[..ch])
        .expect("first received sample is one of the simulator's first 2000");
    let n = ts.len().min(2000 - k0);
    assert!(n > 250);
    assert_eq!(&data[..n * ch], &ref_data[k0 * ch..(k0 + n) * ch]);
    let start = ts[0] - k0 as f64 / 200.0;

    // Markers: every 0.5 s an end/start pair, at a sample's timestamp, naming the right classes.
    let mut markers: Vec<(String, f64)> = Vec::new();
    while markers.len() < 2 {
        let (m, t): (Vec<String>, f64) = marker_inlet.pull_sample(2.0).unwrap();
        assert!(t != 0.0, "no marker within 2 s");
        // The very first marker (start of trial 0) has no end before it.
        if markers.is_empty() && m[0].starts_with("stimulus_start") {
            continue;
        }
        markers.push((m[0].clone(), t));
    }
    let (end, start_marker) = (&markers[0], &markers[1]);
    assert_eq!(end.1, start_marker.1);
    let index = ((end.1 - start) * 200.0).round();
    assert!((end.1 - start - index / 200.0).abs() < 1e-9);
    assert_eq!(index as u64 % 100, 0, "trial boundary every 100 samples");
    let before = affectd::CLASSES[state_schedule(&cfg, (index - 1.0) / 200.0)];
    let after = affectd::CLASSES[state_schedule(&cfg, index / 200.0)];
    assert_eq!(end.0, format!("stimulus_end:{before}"));
    assert_eq!(start_marker.0, format!("stimulus_start:{after}"));

    // Events: samples counted, no gaps, a clock offset near 0 (same machine).
    stop.store(true, Ordering::Relaxed);
    let t_stop = Instant::now();
    acq.join().unwrap();
    let stop_latency = t_stop.elapsed();
    let events: Vec<AcquireEvent> = other.into_iter().chain(rx.try_iter()).collect();
    let counted: usize = events
        .iter()
        .map(|e| match e {
            AcquireEvent::Samples { count } => *count,
            _ => 0,
        })
        .sum();
    assert!(counted >= ts.len(), "{counted} counted < {} read", ts.len());
    assert!(
        !events.iter().any(|e| matches!(
            e,
            AcquireEvent::Gap { .. } | AcquireEvent::Dropped { .. } | AcquireEvent::Stalled { .. }
        )),
        "{events:?}"
    );
    let offset = events.iter().find_map(|e| match e {
        AcquireEvent::ClockOffset { offset, .. } => Some(*offset),
        _ => None,
    });
    assert!(offset.is_some_and(|o| o.abs() < 0.01), "offset {offset:?}");
    publisher.stop();

    let (p50, p95) = (
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.95),
    );
    eprintln!(
        "sample-to-reader latency p50 {:.2} ms p95 {:.2} ms; acquisition stop {:?}",
        p50 * 1e3,
        p95 * 1e3,
        stop_latency
    );
    assert!(p95 < 0.1, "p95 latency {p95}");
    assert!(
        stop_latency < Duration::from_millis(500),
        "{stop_latency:?}"
    );
}

#[test]
fn stalls_when_the_outlet_goes_and_resumes_when_it_returns() {
    let cfg = sim_config("stall");
    let publisher = Publisher::start(&cfg);
    let (tx, rx) = crossbeam_channel::unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    let acq_cfg = acquire_config(&cfg);
    let acq = spawn_acquisition(acq_cfg.clone(), tx, None, stop.clone());
    let mut skipped = Vec::new();
    let Some(AcquireEvent::Connected { mut reader, .. }) =
        wait_for(&rx, Duration::from_secs(5), &mut skipped, |e| {
            matches!(e, AcquireEvent::Connected { .. })
        })
    else {
        panic!("no Connected: {skipped:?}");
    };
    assert!(wait_for(&rx, Duration::from_secs(2), &mut skipped, |e| {
        matches!(e, AcquireEvent::Samples { .. })
    })
    .is_some());

    publisher.stop();
    let gone = Instant::now();
    let stalled = wait_for(&rx, Duration::from_secs(3), &mut skipped, |e| {
        matches!(e, AcquireEvent::Stalled { .. })
    });
    let after = gone.elapsed();
    let Some(AcquireEvent::Stalled { since }) = stalled else {
        panic!("no Stalled: {skipped:?}");
    };
    assert!(since >= acq_cfg.no_data_timeout);
    assert!(
        after < acq_cfg.no_data_timeout + Duration::from_millis(500),
        "Stalled after {after:?}"
    );

    let publisher = Publisher::start(&cfg);
    let back = Instant::now();
    skipped.clear();
    let resumed = wait_for(&rx, Duration::from_secs(8), &mut skipped, |e| {
        matches!(e, AcquireEvent::Resumed)
    });
    assert!(resumed.is_some(), "no Resumed: {skipped:?}");
    eprintln!("resumed {:?} after the outlet restarted", back.elapsed());
    // The restarted outlet's clock starts later: the same reader sees a gap, not a new connection.
    let gap = wait_for(&rx, Duration::from_secs(2), &mut skipped, |e| {
        matches!(e, AcquireEvent::Gap { .. })
    });
    assert!(
        matches!(gap, Some(AcquireEvent::Gap { missing_samples, .. }) if missing_samples > 50),
        "{gap:?}"
    );
    assert!(!skipped
        .iter()
        .any(|e| matches!(e, AcquireEvent::Connected { .. })));
    assert!(reader.wait(Duration::from_secs(1)));
    let mut buf = vec![0f32; 62 * 8];
    let mut t = [0f64; 8];
    assert!(reader.read(&mut buf, &mut t) > 0);

    stop.store(true, Ordering::Relaxed);
    acq.join().unwrap();
    publisher.stop();
}

#[test]
fn unmatched_predicate_reports_waiting_and_stops_promptly() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    let predicate = StreamPredicate {
        stream_type: "EEG".into(),
        name: Some(unique("nobody's stream")),
        source_id: None,
    };
    let cfg = AcquireConfig {
        predicate: predicate.clone(),
        resolve_timeout: Duration::from_millis(200),
        ..AcquireConfig::default()
    };
    let acq = spawn_acquisition(cfg, tx, None, stop.clone());
    let mut waited = Vec::new();
    for _ in 0..3 {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(AcquireEvent::Waiting {
                predicate: p,
                waited: w,
            }) => {
                assert_eq!(p, predicate);
                waited.push(w);
            }
            other => panic!("expected Waiting, got {other:?}"),
        }
    }
    assert!(waited.windows(2).all(|w| w[1] > w[0]), "{waited:?}");
    assert!(waited[0] >= Duration::from_millis(200));
    let t = Instant::now();
    stop.store(true, Ordering::Relaxed);
    acq.join().unwrap();
    let took = t.elapsed();
    eprintln!("stopped {took:?} after the request while resolving");
    assert!(took < Duration::from_millis(300), "{took:?}");
}

#[test]
fn emotion_outlet_delivers_labelled_probabilities() {
    let name = unique("emotion");
    let classes: Vec<String> = affectd::CLASSES.iter().map(|c| c.to_string()).collect();
    let outlet = EmotionOutlet::new(&name, &format!("{name}-src"), &classes, 4.0).unwrap();

    let info = lsl::resolve_bypred(&format!("name='{name}' and type='Emotion'"), 1, 5.0)
        .unwrap()
        .pop()
        .expect("Emotion stream resolves");
    let inlet = lsl::StreamInlet::new(&info, 360, 0, true).unwrap();
    let mut full = inlet.info(5.0).unwrap();
    assert_eq!(full.channel_count(), 4);
    assert_eq!(full.nominal_srate(), 4.0);
    let desc = full.desc();
    let mut labels = Vec::new();
    let mut ch = desc.child("channels").child("channel");
    while !ch.empty() {
        labels.push((ch.child_value_named("label"), ch.child_value_named("type")));
        ch = ch.next_sibling_named("channel");
    }
    let expected: Vec<(String, String)> = vec![
        ("p_negative".into(), "probability".into()),
        ("p_neutral".into(), "probability".into()),
        ("p_positive".into(), "probability".into()),
        ("class_index".into(), "class".into()),
    ];
    assert_eq!(labels, expected);
    let mut listed = Vec::new();
    let mut c = desc.child("classes").child("class");
    while !c.empty() {
        listed.push(c.child_value());
        c = c.next_sibling_named("class");
    }
    assert_eq!(listed, classes);

    inlet.open_stream(5.0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !outlet.has_consumers() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let t0 = lsl::local_clock();
    let pushed = [
        ([0.7f32, 0.2, 0.1], 0usize, t0),
        ([0.1, 0.3, 0.6], 2, t0 + 0.25),
        ([0.2, 0.5, 0.3], 1, t0 + 0.5),
    ];
    for (p, k, t) in &pushed {
        outlet.push(p, *k, *t).unwrap();
    }
    for (p, k, t) in &pushed {
        let (sample, ts): (Vec<f32>, f64) = inlet.pull_sample(2.0).unwrap();
        assert_eq!(ts, *t);
        assert_eq!(&sample[..3], p);
        assert_eq!(sample[3], *k as f32);
    }

    let e = outlet.push(&[0.5, 0.5], 0, t0).unwrap_err();
    assert!(
        e.to_string()
            .contains("expected 3 class probabilities, got 2"),
        "{e}"
    );
    let e = outlet.push(&[0.2, 0.3, 0.5], 3, t0).unwrap_err();
    assert!(e.to_string().contains("class index 3"), "{e}");
}

#[test]
fn full_ring_and_full_tap_are_counted_and_keep_the_oldest_samples() {
    let cfg = sim_config("overflow");
    let publisher = Publisher::start(&cfg);
    let (tx, rx) = crossbeam_channel::unbounded();
    let (tap_tx, tap_rx) = crossbeam_channel::bounded(2);
    let stop = Arc::new(AtomicBool::new(false));
    let acq_cfg = AcquireConfig {
        ring_seconds: 0.1, // 20 samples
        ..acquire_config(&cfg)
    };
    let acq = spawn_acquisition(acq_cfg, tx, Some(tap_tx), stop.clone());
    let mut skipped = Vec::new();
    let Some(AcquireEvent::Connected { mut reader, .. }) =
        wait_for(&rx, Duration::from_secs(5), &mut skipped, |e| {
            matches!(e, AcquireEvent::Connected { .. })
        })
    else {
        panic!("no Connected: {skipped:?}");
    };
    // Nobody reads for 0.6 s (~120 samples).
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    acq.join().unwrap();
    publisher.stop();

    let events: Vec<AcquireEvent> = rx.try_iter().collect();
    let sum = |f: &dyn Fn(&AcquireEvent) -> usize| events.iter().map(f).sum::<usize>();
    let received = sum(&|e| match e {
        AcquireEvent::Samples { count } => *count,
        _ => 0,
    });
    let dropped = |reason| {
        sum(&|e| match e {
            AcquireEvent::Dropped { reason: r, count } if *r == reason => *count,
            _ => 0,
        })
    };
    let ring_dropped = dropped(affectd::acquire::SampleDrop::RingOverflow);
    let tap_dropped = dropped(affectd::acquire::SampleDrop::RawTapFull);
    assert!(received > 60, "received {received}");
    assert_eq!(ring_dropped, received - 20, "the ring holds 20 samples");

    // The ring kept the first 20 samples; the tap holds the first two chunks, the rest counted.
    let mut data = vec![0f32; 62 * 40];
    let mut ts = vec![0f64; 40];
    assert_eq!(reader.read(&mut data, &mut ts), 20);
    assert!(!reader.is_live(), "acquisition stopped: the writer is gone");
    let tapped: Vec<_> = tap_rx.try_iter().collect();
    assert_eq!(tapped.len(), 2);
    let tap_samples: usize = tapped.iter().map(|c| c.timestamps.len()).sum();
    assert_eq!(tap_dropped, received - tap_samples);
    let tap_ts: Vec<f64> = tapped.iter().flat_map(|c| c.timestamps.clone()).collect();
    let tap_data: Vec<f32> = tapped.iter().flat_map(|c| c.data.clone()).collect();
    let k = tap_ts.len().min(20);
    assert_eq!(&tap_ts[..k], &ts[..k]);
    assert_eq!(&tap_data[..k * 62], &data[..k * 62]);
    assert!(tapped.iter().all(|c| c.channels == 62));
}

#[test]
fn a_stream_without_source_id_is_resolved_again_after_loss() {
    let cfg = SimConfig {
        source_id: String::new(),
        ..sim_config("nosrc")
    };
    let publisher = Publisher::start(&cfg);
    let (tx, rx) = crossbeam_channel::unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    let acq_cfg = AcquireConfig {
        predicate: StreamPredicate {
            source_id: None,
            ..acquire_config(&cfg).predicate
        },
        ..acquire_config(&cfg)
    };
    let acq = spawn_acquisition(acq_cfg, tx, None, stop.clone());
    let mut skipped = Vec::new();
    let connected = |e: &AcquireEvent| matches!(e, AcquireEvent::Connected { .. });
    let Some(AcquireEvent::Connected { reader: first, .. }) =
        wait_for(&rx, Duration::from_secs(5), &mut skipped, connected)
    else {
        panic!("no Connected: {skipped:?}");
    };
    assert!(first.wait(Duration::from_secs(2)));
    publisher.stop();
    std::thread::sleep(Duration::from_millis(300));
    let publisher = Publisher::start(&cfg);
    let second = wait_for(&rx, Duration::from_secs(10), &mut skipped, connected);
    let Some(AcquireEvent::Connected { reader: second, .. }) = second else {
        panic!("no second Connected: {skipped:?}");
    };
    assert!(second.wait(Duration::from_secs(2)));
    assert!(!first.is_live(), "the first connection's ring is retired");
    stop.store(true, Ordering::Relaxed);
    acq.join().unwrap();
    publisher.stop();
}
