//! Simulator properties: determinism, the class effects (present with effect_strength 1, absent
//! with 0), blink topography, marker/state consistency.
use super::*;

fn cfg(seed: u64, effect: f64) -> SimConfig {
    SimConfig {
        seed,
        effect_strength: effect,
        state_duration_s: 4.0,
        ..SimConfig::default()
    }
}

fn channel(cfg: &SimConfig, label: &str) -> usize {
    cfg.channels.iter().position(|c| c == label).unwrap()
}

/// Mean periodogram power in [lo, hi) Hz over 1 s windows of one channel within [from, to).
fn band_power(s: &SynthSession, ch: usize, from: usize, to: usize, lo: f64, hi: f64) -> f64 {
    let fs = s.sample_rate_hz;
    let n = fs as usize;
    let nch = s.channels.len();
    let fft = realfft::RealFftPlanner::<f64>::new().plan_fft_forward(n);
    let mut spec = fft.make_output_vec();
    let (mut total, mut windows) = (0.0, 0);
    let mut start = from;
    while start + n <= to {
        let mut x: Vec<f64> = (start..start + n)
            .map(|i| s.data[i * nch + ch] as f64)
            .collect();
        let mean = x.iter().sum::<f64>() / n as f64;
        x.iter_mut().for_each(|v| *v -= mean);
        fft.process(&mut x, &mut spec).unwrap();
        total += spec
            .iter()
            .enumerate()
            .filter(|(k, _)| (*k as f64) >= lo && (*k as f64) < hi)
            .map(|(_, c)| c.norm_sqr())
            .sum::<f64>();
        windows += 1;
        start += n;
    }
    total / windows as f64
}

/// Per class, the per-trial values of `f(trial_start, trial_end)`.
fn per_class(s: &SynthSession, f: impl Fn(usize, usize) -> f64) -> [Vec<f64>; 3] {
    let mut out: [Vec<f64>; 3] = Default::default();
    let mut start = 0;
    for i in 1..=s.states.len() {
        if i == s.states.len()
            || s.states[i] != s.states[start]
            || (i - start) as f64 >= 4.0 * s.sample_rate_hz
        {
            out[s.states[start] as usize].push(f(start, i));
            start = i;
        }
    }
    out
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Welch's t statistic of a - b.
fn t_stat(a: &[f64], b: &[f64]) -> f64 {
    let var = |v: &[f64]| {
        let m = mean(v);
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    };
    (mean(a) - mean(b)) / (var(a) / a.len() as f64 + var(b) / b.len() as f64).sqrt()
}

/// log(left / right) frontal alpha power per trial, by class.
fn alpha_asymmetry(s: &SynthSession, c: &SimConfig) -> [Vec<f64>; 3] {
    let left: Vec<usize> = ["F3", "F7", "AF3", "FP1"]
        .iter()
        .map(|l| channel(c, l))
        .collect();
    let right: Vec<usize> = ["F4", "F8", "AF4", "FP2"]
        .iter()
        .map(|l| channel(c, l))
        .collect();
    per_class(s, |a, b| {
        let p = |chs: &[usize]| {
            chs.iter()
                .map(|&ch| band_power(s, ch, a, b, 8.0, 14.0))
                .sum::<f64>()
        };
        (p(&left) / p(&right)).ln()
    })
}

/// log beta+gamma power over the given sites per trial, by class.
fn fast_power(s: &SynthSession, c: &SimConfig, sites: &[&str]) -> [Vec<f64>; 3] {
    let chs: Vec<usize> = sites.iter().map(|l| channel(c, l)).collect();
    per_class(s, |a, b| {
        chs.iter()
            .map(|&ch| band_power(s, ch, a, b, 14.0, 48.0))
            .sum::<f64>()
            .ln()
    })
}

#[test]
fn deterministic_for_a_seed_and_independent_of_chunking() {
    let c = cfg(7, 1.0);
    let n = 1000 * c.channels.len();
    let mut a = EegSimulator::new(c.clone()).unwrap();
    let mut whole = vec![0f32; n];
    a.fill(&mut whole);
    let mut b = EegSimulator::new(c.clone()).unwrap();
    let mut pieces = vec![0f32; n];
    let mut at = 0;
    for len in [1, 7, 62 * 3, 62 * 250].iter().cycle() {
        let len = (len / 62).max(1) * 62;
        let end = (at + len).min(n);
        b.fill(&mut pieces[at..end]);
        at = end;
        if at == n {
            break;
        }
    }
    assert_eq!(whole, pieces);
    assert_eq!(b.sample_index(), 1000);
    let mut other = EegSimulator::new(cfg(8, 1.0)).unwrap();
    let mut o = vec![0f32; n];
    other.fill(&mut o);
    assert_ne!(whole, o);
    assert!(whole.iter().all(|v| v.is_finite()));
}

#[test]
fn schedule_balances_classes_and_matches_states_and_markers() {
    let c = cfg(3, 1.0);
    let s = synth_session(&c, 36.0).unwrap(); // 9 trials of 4 s
    let mut counts = [0usize; 3];
    for trial in 0..9 {
        counts[state_schedule(&c, trial as f64 * 4.0 + 0.5)] += 1;
    }
    assert_eq!(counts, [3, 3, 3]);
    for (i, &st) in s.states.iter().enumerate() {
        assert_eq!(st as usize, state_schedule(&c, i as f64 / 200.0));
    }
    // One start per trial, one end per trial, alternating, each naming the trial's class.
    assert_eq!(s.markers.len(), 18);
    for (k, pair) in s.markers.chunks(2).enumerate() {
        let class = crate::CLASSES[state_schedule(&c, k as f64 * 4.0)];
        assert_eq!(pair[0], (k as f64 * 4.0, format!("stimulus_start:{class}")));
        assert_eq!(
            pair[1],
            ((k + 1) as f64 * 4.0, format!("stimulus_end:{class}"))
        );
    }
    let sim = EegSimulator::new(c.clone()).unwrap();
    assert_eq!(sim.state(), s.states[0] as usize);
}

#[test]
fn frontal_alpha_asymmetry_follows_the_class_only_with_an_effect() {
    for seed in [1, 2] {
        let c = cfg(seed, 1.0);
        let s = synth_session(&c, 240.0).unwrap();
        let [neg, neu, pos] = alpha_asymmetry(&s, &c);
        // Positive: less left alpha than right (lower log ratio); negative: the reverse.
        assert!(
            t_stat(&neg, &neu) > 3.0,
            "seed {seed}: neg {neg:?} neu {neu:?}"
        );
        assert!(
            t_stat(&neu, &pos) > 3.0,
            "seed {seed}: neu {neu:?} pos {pos:?}"
        );

        let c0 = cfg(seed, 0.0);
        let s0 = synth_session(&c0, 240.0).unwrap();
        let [neg0, _, pos0] = alpha_asymmetry(&s0, &c0);
        assert!(
            t_stat(&neg0, &pos0).abs() < 2.5,
            "seed {seed}: {neg0:?} vs {pos0:?}"
        );
    }
}

#[test]
fn temporal_and_prefrontal_fast_activity_follow_the_class() {
    let c = cfg(4, 1.0);
    let s = synth_session(&c, 120.0).unwrap();
    let [neg, neu, pos] = fast_power(&s, &c, &["T7", "T8", "FT7", "FT8", "TP7", "TP8"]);
    assert!(t_stat(&pos, &neu) > 3.0, "pos {pos:?} neu {neu:?}");
    assert!(t_stat(&neu, &neg) > 3.0, "neu {neu:?} neg {neg:?}");
    let [neg, neu, pos] = fast_power(&s, &c, &["FP1", "FPZ", "FP2", "AF3", "AF4"]);
    assert!(t_stat(&pos, &neu) > 3.0 && t_stat(&neg, &neu) > 3.0);

    let c0 = cfg(4, 0.0);
    let s0 = synth_session(&c0, 120.0).unwrap();
    let [neg0, neu0, pos0] = fast_power(&s0, &c0, &["T7", "T8", "FT7", "FT8", "TP7", "TP8"]);
    assert!(t_stat(&pos0, &neg0).abs() < 2.5 && t_stat(&pos0, &neu0).abs() < 2.5);
}

#[test]
fn blinks_are_strongest_at_the_front() {
    let c = SimConfig {
        seed: 5,
        line_freq_hz: 0.0,
        ..SimConfig::default()
    };
    let s = synth_session(&c, 120.0).unwrap();
    let nch = c.channels.len();
    // Large slow deflections: the 99.5th percentile of |x - 2 s moving mean| (removes drift).
    let peak = |label: &str| {
        let ch = channel(&c, label);
        let x: Vec<f64> = (0..s.states.len())
            .map(|i| s.data[i * nch + ch] as f64)
            .collect();
        let mut dev: Vec<f64> = x
            .chunks(400)
            .flat_map(|w| {
                let m = w.iter().sum::<f64>() / w.len() as f64;
                w.iter().map(move |v| (v - m).abs())
            })
            .collect();
        dev.sort_by(f64::total_cmp);
        dev[dev.len() * 995 / 1000]
    };
    let (fp1, fp2, af3, c3, oz) = (
        peak("FP1"),
        peak("FP2"),
        peak("AF3"),
        peak("C3"),
        peak("OZ"),
    );
    assert!(fp1 > af3 && af3 > c3, "FP1 {fp1} AF3 {af3} C3 {c3}");
    assert!(
        fp1 > 1.5 * oz && fp2 > 1.5 * oz,
        "FP1 {fp1} FP2 {fp2} OZ {oz}"
    );
}

#[test]
fn unknown_labels_get_background_and_bad_configs_are_named() {
    let c = SimConfig {
        channels: vec!["EOG-left".into(), "Fp1".into()],
        ..SimConfig::default()
    };
    let s = synth_session(&c, 2.0).unwrap();
    assert_eq!(s.data.len(), 2 * 400);
    assert!(s.data.iter().all(|v| v.is_finite()));

    let bad = SimConfig {
        line_freq_hz: 120.0,
        ..SimConfig::default()
    };
    let e = EegSimulator::new(bad).err().unwrap();
    assert!(e.to_string().contains("line_freq_hz"), "{e}");
    assert!(matches!(
        synth_session(&SimConfig::default(), f64::NAN),
        Err(SimConfigError::Seconds(_))
    ));
    let none = SimConfig {
        channels: vec![],
        ..SimConfig::default()
    };
    assert_eq!(
        EegSimulator::new(none).err(),
        Some(SimConfigError::NoChannels)
    );
}
