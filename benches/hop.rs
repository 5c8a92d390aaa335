//! What one hop costs the daemon on one core: push one hop of 62-channel samples through the
//! feature extractor (which completes a window) and run the shipped int8 model on it.
//! `cargo bench --bench hop` (after scripts/setup). Figures: BENCHMARKS.md.
use std::hint::black_box;

use affectd::features::{
    FeatureConfig, FeatureExtractor, GridMap, WindowOutcome, GRID_CELLS, SEED62,
};
use affectd::infer::model::Model;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn bench_hop(c: &mut Criterion) {
    let model_path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/affectd-int8.onnx");
    let mut model = Model::load(model_path.as_ref(), 1).expect("shipped model loads");
    let mut group = c.benchmark_group("features_plus_inference_per_hop_62ch");
    for fs in [200.0, 1000.0] {
        let cfg = FeatureConfig {
            sample_rate_hz: fs,
            ..FeatureConfig::default()
        };
        let grid = GridMap::from_labels(&SEED62).expect("SEED montage");
        let mut filled = vec![false; GRID_CELLS];
        grid.filled_cells()
            .into_iter()
            .for_each(|c| filled[c] = true);
        let channels = grid.channel_count();
        let mut fx = FeatureExtractor::new(cfg.clone(), grid).expect("valid config");
        // Ten seconds of a deterministic broadband multichannel signal, cycled.
        let n = (10.0 * fs) as usize;
        let data: Vec<f32> = (0..n * channels)
            .map(|i| {
                let (s, ch) = (i / channels, i % channels);
                let t = s as f64 / fs;
                (20.0 * (2.0 * std::f64::consts::PI * (8.0 + ch as f64 * 0.3) * t).sin()
                    + ((i * 7919 % 1000) as f64 - 500.0) * 0.05) as f32
            })
            .collect();
        let mut next = 0usize;
        let mut push = |fx: &mut FeatureExtractor| {
            let s = next % n;
            next += 1;
            fx.push(&data[s * channels..(s + 1) * channels], next as f64 / fs)
        };
        for _ in 0..cfg.window_samples() {
            push(&mut fx);
        }
        let mut probabilities = vec![0.0f32; 3];
        group.bench_with_input(BenchmarkId::from_parameter(fs), &fs, |b, _| {
            b.iter(|| {
                let mut emitted = None;
                for _ in 0..cfg.hop_samples() {
                    emitted = push(&mut fx);
                }
                let Some(WindowOutcome::Ready(window)) = emitted else {
                    panic!("every hop completes a window")
                };
                model
                    .predict_into(&window.grid, &filled, &mut probabilities)
                    .unwrap();
                black_box(&probabilities);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_hop);
criterion_main!(benches);
