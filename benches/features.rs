//! Per-hop cost of FeatureExtractor::push for 62 channels: pushing one hop of samples, the last
//! of which completes a window (filters for every sample + one periodogram/DE/grid pass), and
//! its two parts alone (the filter cascade over one hop, 62 periodograms of one window).
use std::hint::black_box;

use affectd::features::filter::{butter_bandpass_sos, iirnotch, SosBank, NOTCH_Q};
use affectd::features::spectrum::Periodogram;
use affectd::features::{
    FeatureConfig, FeatureExtractor, GridMap, WindowOutcome, DEFAULT_BANDS_HZ, SEED62,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn bench_push_hop(c: &mut Criterion) {
    let mut group = c.benchmark_group("push_one_hop_62ch");
    for fs in [200.0, 1000.0] {
        let cfg = FeatureConfig {
            sample_rate_hz: fs,
            ..FeatureConfig::default()
        };
        let grid = GridMap::from_labels(&SEED62).expect("SEED montage");
        let channels = grid.channel_count();
        let mut fx = FeatureExtractor::new(cfg.clone(), grid).expect("valid config");
        let hop = cfg.hop_samples();
        // Ten seconds of deterministic multichannel signal, cycled.
        let n = (10.0 * fs) as usize;
        let data: Vec<f32> = (0..n * channels)
            .map(|i| {
                let (s, ch) = (i / channels, i % channels);
                let t = s as f64 / fs;
                (20.0 * (2.0 * std::f64::consts::PI * (8.0 + ch as f64 * 0.3) * t).sin()
                    + ((i * 7919 % 1000) as f64 - 500.0) * 0.01) as f32
            })
            .collect();
        let mut next = 0usize;
        let mut t = 0.0;
        // Fill the first window so every measured hop emits a window.
        while fx.config().window_samples() > next {
            fx.push(&data[next * channels..(next + 1) * channels], t);
            next += 1;
            t += 1.0 / fs;
        }
        group.bench_with_input(BenchmarkId::from_parameter(fs), &fs, |b, _| {
            b.iter(|| {
                let mut emitted = None;
                for _ in 0..hop {
                    let s = next % n;
                    emitted = fx.push(&data[s * channels..(s + 1) * channels], t);
                    next += 1;
                    t += 1.0 / fs;
                }
                assert!(matches!(emitted, Some(WindowOutcome::Ready(_))));
                black_box(emitted)
            })
        });
    }
    group.finish();
}

fn bench_components(c: &mut Criterion) {
    let mut group = c.benchmark_group("components_62ch");
    for fs in [200.0, 1000.0] {
        let cfg = FeatureConfig {
            sample_rate_hz: fs,
            ..FeatureConfig::default()
        };
        let (w, hop) = (cfg.window_samples(), cfg.hop_samples());
        let mut sections = vec![iirnotch(50.0, NOTCH_Q, fs)];
        sections.extend(butter_bandpass_sos(1.0, 50.0, fs));
        let mut bank = SosBank::new(sections, 62);
        let mut x = vec![0.0f64; 62];
        group.bench_with_input(BenchmarkId::new("filter_one_hop", fs), &fs, |b, _| {
            b.iter(|| {
                for i in 0..hop {
                    x.iter_mut()
                        .enumerate()
                        .for_each(|(c, v)| *v = ((i + c) % 17) as f64);
                    bank.process(&mut x);
                }
                black_box(&x);
            })
        });
        let mut pg = Periodogram::new(w, fs, &DEFAULT_BANDS_HZ);
        let samples: Vec<f32> = (0..w).map(|i| ((i * 7919) % 101) as f32).collect();
        let mut out = [0.0; 5];
        group.bench_with_input(
            BenchmarkId::new("periodogram_62_windows", fs),
            &fs,
            |b, _| {
                b.iter(|| {
                    for _ in 0..62 {
                        pg.band_powers(&samples[..w / 2], &samples[w / 2..], &mut out);
                    }
                    black_box(out)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_push_hop, bench_components);
criterion_main!(benches);
