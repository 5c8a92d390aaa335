//! Single-window inference cost through ONNX Runtime on one intra-op thread: the fp32 graph vs
//! the int8 QDQ graph (7- and 8-bit weights) for the same random network, and `Model::predict`
//! (normalisation + softmax included). Prints the model file sizes first.
//!
//! Run: `cargo bench --bench inference`.
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use affectd::features::{FeatureConfig, GRID_CELLS, INPUT_LEN};
use affectd::infer::contract::{FeatureSpec, ModelContract};
use affectd::infer::model::Model;
use affectd::train::export::{build_fp32_model, build_qdq_model};
use affectd::train::reference::{calibrate_minmax, random_net};

fn contract() -> ModelContract {
    let mut c = ModelContract::new(
        affectd::CLASSES.iter().map(|s| s.to_string()).collect(),
        FeatureSpec::of(&FeatureConfig::default()),
    );
    c.norm_mean = vec![2.0; INPUT_LEN];
    c.norm_std = vec![0.5; INPUT_LEN];
    c.quantization.weight_bits = 7;
    c.calibration.method = "random".into();
    c.calibration.k = 64;
    c.provenance.dataset_description = "random network (benchmark)".into();
    c.provenance.seed = 42;
    c.provenance.command = "cargo bench --bench inference".into();
    c
}

fn inference(c: &mut Criterion) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    let calibration: Vec<f32> = (0..64 * INPUT_LEN)
        .map(|_| normal.sample(&mut rng))
        .collect();
    let window: Vec<f32> = (0..INPUT_LEN).map(|_| normal.sample(&mut rng)).collect();
    let raw: Vec<f32> = window.iter().map(|v| 2.0 + 0.5 * v).collect();
    let filled = vec![true; GRID_CELLS];

    let net = random_net(42, 3);
    let fp32 = build_fp32_model(&net, &contract()).unwrap();
    let int8_7 = build_qdq_model(
        &net,
        &calibrate_minmax(&net, &calibration, 64, 7),
        &contract(),
    )
    .unwrap();
    let int8_8 = build_qdq_model(
        &net,
        &calibrate_minmax(&net, &calibration, 64, 8),
        &contract(),
    )
    .unwrap();
    println!(
        "model file sizes: fp32 {} bytes, int8 (7-bit weights) {} bytes, int8 (8-bit) {} bytes",
        fp32.len(),
        int8_7.len(),
        int8_8.len()
    );

    interleaved_summary(
        &[("fp32", &fp32), ("int8_w7", &int8_7), ("int8_w8", &int8_8)],
        &window,
    );

    let mut group = c.benchmark_group("ort_single_window_1_thread");
    for (name, bytes) in [("fp32", &fp32), ("int8_w7", &int8_7), ("int8_w8", &int8_8)] {
        let mut model = Model::from_bytes(bytes, name, 1).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| black_box(model.logits(black_box(&window), 1).unwrap()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("predict_with_normalisation");
    let mut probs = [0f32; 3];
    for (name, bytes) in [("fp32", &fp32), ("int8_w7", &int8_7)] {
        let mut model = Model::from_bytes(bytes, name, 1).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                model
                    .predict_into(black_box(&raw), &filled, &mut probs)
                    .unwrap();
                black_box(probs)
            })
        });
    }
    group.finish();
}

/// The machine is shared, so besides criterion's runs (one model after another) time the models
/// interleaved call by call and print min and median: the minimum is the least load-sensitive.
fn interleaved_summary(models: &[(&str, &Vec<u8>)], window: &[f32]) {
    const CALLS: usize = 3000;
    let mut loaded: Vec<Model> = models
        .iter()
        .map(|(name, bytes)| Model::from_bytes(bytes, name, 1).unwrap())
        .collect();
    let mut times = vec![Vec::with_capacity(CALLS); loaded.len()];
    for _ in 0..CALLS {
        for (model, t) in loaded.iter_mut().zip(&mut times) {
            let start = std::time::Instant::now();
            black_box(model.logits(black_box(window), 1).unwrap());
            t.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    for ((name, _), t) in models.iter().zip(&mut times) {
        t.sort_by(f64::total_cmp);
        println!(
            "interleaved {CALLS} calls, {name}: min {:.1} us, median {:.1} us",
            t[0],
            t[CALLS / 2]
        );
    }
}

criterion_group!(benches, inference);
criterion_main!(benches);
