//! Export and inference against real ONNX Runtime sessions: the int8 QDQ and fp32 graphs written
//! from random networks are checked against the plain-Rust reference forward passes, against the
//! onnx checker (Python venv), and through Model's loading and error paths.
use std::path::Path;
use std::process::Command;

use prost::Message;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use affectd::features::FeatureConfig;
use affectd::features::{BANDS, GRID_CELLS, INPUT_LEN};
use affectd::infer::contract::{
    Calibration, ContractError, FeatureSpec, ModelContract, CONTRACT_KEY,
};
use affectd::infer::model::{softmax, Model, ModelError};
use affectd::infer::runtime;
use affectd::onnx_proto::ModelProto;
use affectd::train::export::{build_fp32_model, build_qdq_model, fused_op_types, install_model};
use affectd::train::net_params::{NetParams, QuantParams};
use affectd::train::reference::{calibrate_minmax, forward_fake_quant, forward_fp32, random_net};

const VENV_PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");

fn contract() -> ModelContract {
    // Non-trivial statistics so that a wrong normalisation shows.
    let mut c = ModelContract::new(
        affectd::CLASSES.iter().map(|s| s.to_string()).collect(),
        FeatureSpec::of(&FeatureConfig::default()),
    );
    c.norm_mean = (0..INPUT_LEN).map(|k| 1.0 + (k % 7) as f32 * 0.5).collect();
    c.norm_std = (0..INPUT_LEN)
        .map(|k| 0.5 + (k % 5) as f32 * 0.25)
        .collect();
    c.calibration = Calibration {
        method: "random".into(),
        k: 256,
        ranking: "most-prefrontal".into(),
        region_cells: vec![3, 4, 5, 12, 14],
    };
    c.provenance.dataset_sha256 = "0".repeat(64);
    c.provenance.dataset_description = "random inputs (test)".into();
    c.provenance.seed = 42;
    c.provenance.command = "cargo test --test onnx_export".into();
    c
}

fn normal_inputs(seed: u64, batch: usize) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    (0..batch * INPUT_LEN)
        .map(|_| normal.sample(&mut rng))
        .collect()
}

fn quantised_net(weight_bits: u32) -> (NetParams, QuantParams) {
    let net = random_net(42, 3);
    let calibration = normal_inputs(1, 64);
    let q = calibrate_minmax(&net, &calibration, 64, weight_bits);
    (net, q)
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

struct Parity {
    /// Fraction of rows with the same argmax.
    agreement: f64,
    /// Fraction of rows whose logits all agree to 1e-6 of the logit range.
    exact: f64,
    max_diff: f32,
    logit_range: f32,
}

fn parity(a: &[f32], b: &[f32], classes: usize) -> Parity {
    assert_eq!(a.len(), b.len());
    let rows = a.len() / classes;
    let logit_range = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let rows_where = |pred: &dyn Fn(&[f32], &[f32]) -> bool| {
        let n = a
            .chunks(classes)
            .zip(b.chunks(classes))
            .filter(|(x, y)| pred(x, y))
            .count();
        n as f64 / rows as f64
    };
    Parity {
        agreement: rows_where(&|x, y| argmax(x) == argmax(y)),
        exact: rows_where(&|x, y| {
            x.iter()
                .zip(y)
                .all(|(u, v)| (u - v).abs() <= 1e-6 * logit_range)
        }),
        max_diff: a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())),
        logit_range,
    }
}

/// ORT logits of `bytes` with graph optimisations off: the QDQ graph run in float, no fused
/// int8 kernels.
fn unoptimised_logits(bytes: &[u8], x: &[f32], batch: usize) -> Vec<f32> {
    use ort::session::{builder::GraphOptimizationLevel, Session};
    let env = runtime::environment().unwrap();
    let mut session = Session::builder(&env)
        .unwrap()
        .with_optimization_level(GraphOptimizationLevel::Disable)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_memory(bytes)
        .unwrap();
    let tensor = ort::value::TensorRef::from_array_view(([batch, 5, 9, 9], x)).unwrap();
    let out = session.run(ort::inputs![tensor]).unwrap();
    out[0].try_extract_tensor::<f32>().unwrap().1.to_vec()
}

#[test]
fn int8_qdq_model_matches_the_fake_quant_reference() {
    const N: usize = 1000;
    let x = normal_inputs(2, N);
    for bits in [7, 8] {
        let (net, q) = quantised_net(bits);
        let bytes = build_qdq_model(&net, &q, &contract()).unwrap();
        let mut model = Model::from_bytes(&bytes, "qdq-test", 1).unwrap();
        assert_eq!(model.contract().quantization.weight_bits, bits);
        let fused = model.logits(&x, N).unwrap();
        let reference = forward_fake_quant(&net, &q, &x, N);
        let p = parity(&fused, &reference, 3);
        let unfused = parity(&unoptimised_logits(&bytes, &x, N), &reference, 3);
        eprintln!(
            "{bits}-bit weights, {N} random inputs, logit range {:.2}: fused int8 ORT vs reference: \
             argmax agreement {:.1} %, bit-exact rows {:.1} %, max |logit diff| {:.3e}; unfused \
             QDQ ORT (float) vs reference: {:.1} %, {:.1} %, {:.3e}",
            p.logit_range,
            100.0 * p.agreement,
            100.0 * p.exact,
            p.max_diff,
            100.0 * unfused.agreement,
            100.0 * unfused.exact,
            unfused.max_diff,
        );
        assert!(
            p.agreement >= 0.99,
            "{bits}-bit argmax agreement {}",
            p.agreement
        );
        // The unfused graph does the same arithmetic in float: only rare rounding ties differ.
        assert!(
            unfused.agreement >= 0.99,
            "{bits}-bit unfused agreement {}",
            unfused.agreement
        );
        assert!(
            unfused.exact >= 0.95,
            "{bits}-bit unfused exact rows {}",
            unfused.exact
        );
        if bits == 7 {
            // No int16 saturation in the u8 x s8 kernels: the integer pipeline is the reference's,
            // up to a stray one-level rounding tie in a requantisation.
            assert!(p.exact >= 0.99, "7-bit exact rows {}", p.exact);
        }
    }
}

#[test]
fn fp32_model_matches_the_fp32_reference() {
    const N: usize = 200;
    let net = random_net(7, 3);
    let x = normal_inputs(3, N);
    let bytes = build_fp32_model(&net, &contract()).unwrap();
    let mut model = Model::from_bytes(&bytes, "fp32-test", 1).unwrap();
    assert_eq!(model.contract().quantization.format, "fp32");
    let ort = model.logits(&x, N).unwrap();
    let reference = forward_fp32(&net, &x, N);
    let p = parity(&ort, &reference, 3);
    eprintln!(
        "fp32: max |logit diff| {:.3e} (logit range {:.2}), argmax agreement {:.2} %",
        p.max_diff,
        p.logit_range,
        100.0 * p.agreement
    );
    assert!(p.max_diff < 1e-4, "fp32 max diff {}", p.max_diff);
    assert!(
        p.logit_range > 0.1,
        "degenerate network: logits {}",
        p.logit_range
    );
}

#[test]
fn ort_fuses_the_int8_graph_into_integer_kernels() {
    let (net, q) = quantised_net(7);
    let ops = fused_op_types(&build_qdq_model(&net, &q, &contract()).unwrap()).unwrap();
    eprintln!("optimised int8 graph: {ops:?}");
    assert_eq!(
        ops.iter().filter(|o| *o == "QLinearConv").count(),
        3,
        "{ops:?}"
    );
    let int8_dense = [
        "QGemm",
        "MatMulInteger",
        "QLinearMatMul",
        "MatMulIntegerToFloat",
    ];
    assert_eq!(
        ops.iter()
            .filter(|o| int8_dense.contains(&o.as_str()))
            .count(),
        3,
        "{ops:?}"
    );
    for float_op in ["Conv", "Gemm", "MatMul", "DequantizeLinear"] {
        assert!(
            !ops.iter().any(|o| o == float_op),
            "float {float_op} left: {ops:?}"
        );
    }
    let fp32_ops = fused_op_types(&build_fp32_model(&net, &contract()).unwrap()).unwrap();
    eprintln!("optimised fp32 graph: {fp32_ops:?}");
    assert!(!fp32_ops.iter().any(|o| o.starts_with('Q')), "{fp32_ops:?}");
}

#[test]
fn exported_models_pass_the_onnx_full_checker() {
    assert!(
        Path::new(VENV_PYTHON).exists(),
        "{VENV_PYTHON} is missing: run scripts/setup (the test command does)"
    );
    let (net, q) = quantised_net(8);
    let dir = tempfile::tempdir().unwrap();
    let models = [
        ("int8.onnx", build_qdq_model(&net, &q, &contract()).unwrap()),
        ("fp32.onnx", build_fp32_model(&net, &contract()).unwrap()),
    ];
    for (name, bytes) in models {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = Command::new(VENV_PYTHON)
            .arg("-c")
            .arg(
                "import sys, json, onnx\n\
                 m = onnx.load(sys.argv[1])\n\
                 onnx.checker.check_model(m, full_check=True)\n\
                 meta = {p.key: p.value for p in m.metadata_props}\n\
                 print(json.loads(meta[sys.argv[2]])['features']['window_s'], m.opset_import[0].version)",
            )
            .arg(&path)
            .arg(CONTRACT_KEY)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "onnx checker rejected {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.0 21");
    }
}

#[test]
fn load_reports_missing_corrupt_and_contractless_models() {
    let dir = tempfile::tempdir().unwrap();
    let (net, q) = quantised_net(7);
    let bytes = build_qdq_model(&net, &q, &contract()).unwrap();

    let missing = dir.path().join("missing.onnx");
    match Model::load(&missing, 1) {
        Err(ModelError::NotFound(p)) => assert_eq!(p, missing),
        other => panic!("expected NotFound, got {other:?}"),
    }

    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    match Model::load(&truncated, 1) {
        Err(e @ ModelError::Corrupt { .. }) => {
            let text = e.to_string();
            assert!(text.contains(truncated.to_str().unwrap()), "{text}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    let mut proto = ModelProto::decode(bytes.as_slice()).unwrap();
    proto.metadata_props.clear();
    match Model::from_bytes(&proto.encode_to_vec(), "no-contract", 1) {
        Err(ModelError::Contract(ContractError::Missing)) => {}
        other => panic!("expected Contract(Missing), got {other:?}"),
    }

    // A contract that names another input than the graph has.
    let mut proto = ModelProto::decode(bytes.as_slice()).unwrap();
    let mut wrong = contract();
    wrong.input_name = "eeg".into();
    proto.metadata_props[0].value = Some(wrong.to_json());
    match Model::from_bytes(&proto.encode_to_vec(), "wrong-input", 1) {
        Err(ModelError::Contract(ContractError::Invalid { field, why })) => {
            assert_eq!(field, "input_name");
            assert!(why.contains("de_grid") && why.contains("eeg"), "{why}");
        }
        other => panic!("expected Contract(Invalid), got {other:?}"),
    }

    // A valid file: identity is the file's sha256 prefix, the path is kept.
    let good = dir.path().join("good.onnx");
    std::fs::write(&good, &bytes).unwrap();
    let model = Model::load(&good, 1).unwrap();
    let sha = Command::new("sha256sum").arg(&good).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout);
    assert_eq!(model.id(), &sha[..12]);
    assert_eq!(model.path(), Some(good.as_path()));
}

#[test]
fn the_contract_read_from_the_file_is_checked_against_the_daemon_by_field() {
    let (net, q) = quantised_net(7);
    let bytes = build_qdq_model(&net, &q, &contract()).unwrap();
    let model = Model::from_bytes(&bytes, "serves", 1).unwrap();
    // The export sets the format fields; everything else comes back as written.
    let mut written = contract();
    written.quantization.weight_bits = q.weight_bits;
    assert_eq!(model.contract(), &written);
    let daemon = |f: fn(&mut FeatureConfig)| {
        let mut cfg = FeatureConfig::default();
        f(&mut cfg);
        FeatureSpec::of(&cfg)
    };
    let field = |d: FeatureSpec, rate: f64| match model.contract().check_serves(&d, rate, false) {
        Err(ContractError::Mismatch { field, .. }) => field,
        other => panic!("expected Mismatch, got {other:?}"),
    };
    model
        .contract()
        .check_serves(&daemon(|_| {}), 200.0, false)
        .unwrap();
    assert_eq!(
        field(daemon(|f| f.window_s = 2.0), 200.0),
        "features.window_s"
    );
    assert_eq!(field(daemon(|f| f.hop_s = 0.5), 200.0), "features.hop_s");
    assert_eq!(
        field(daemon(|f| f.notch_hz = Some(60.0)), 200.0),
        "features.notch_hz"
    );
    assert_eq!(
        field(daemon(|f| f.bandpass_hz = None), 200.0),
        "features.bandpass_hz"
    );
    assert_eq!(
        field(daemon(|f| f.bands_hz[4] = [31.0, 45.0]), 200.0),
        "features.bands_hz"
    );
    assert_eq!(field(daemon(|_| {}), 64.0), "features.min_sample_rate_hz");
}

#[test]
fn predict_normalises_masks_empty_cells_and_applies_softmax() {
    let (net, q) = quantised_net(7);
    let c = contract();
    let bytes = build_qdq_model(&net, &q, &c).unwrap();
    let mut model = Model::from_bytes(&bytes, "predict", 1).unwrap();
    let x = normal_inputs(11, 1);
    // Cells in column 0 have no electrode: their raw values are garbage and must be ignored.
    let cell_filled: Vec<bool> = (0..GRID_CELLS).map(|cell| cell % 9 != 0).collect();
    let mut expected_input = x.clone();
    let mut raw = vec![0f32; INPUT_LEN];
    for k in 0..INPUT_LEN {
        if cell_filled[k % GRID_CELLS] {
            raw[k] = c.norm_mean[k] + c.norm_std[k] * x[k];
        } else {
            raw[k] = f32::NAN;
            expected_input[k] = 0.0;
        }
    }
    let expected = softmax(&model.logits(&expected_input, 1).unwrap());
    let per_cell = model.predict(&raw, &cell_filled).unwrap();
    let per_value_mask: Vec<bool> = (0..BANDS * GRID_CELLS)
        .map(|k| cell_filled[k % GRID_CELLS])
        .collect();
    let per_value = model.predict(&raw, &per_value_mask).unwrap();
    for probs in [&per_cell, &per_value] {
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{probs:?}");
        for (a, b) in probs.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6, "{probs:?} vs {expected:?}");
        }
    }
    // The unnormalised grid gives a different answer (the statistics are really applied).
    let all_filled = vec![true; GRID_CELLS];
    let unnormalised = softmax(
        &model
            .logits(
                &raw.iter()
                    .map(|v| if v.is_nan() { 0.0 } else { *v })
                    .collect::<Vec<_>>(),
                1,
            )
            .unwrap(),
    );
    assert_ne!(unnormalised, expected);
    // A NaN in a filled cell is an error, not a NaN probability.
    match model.predict(&raw, &all_filled) {
        Err(ModelError::Inference(why)) => assert!(why.contains("non-finite"), "{why}"),
        other => panic!("expected Inference error, got {other:?}"),
    }
    assert!(matches!(
        model.predict(&raw[1..], &all_filled),
        Err(ModelError::Inference(_))
    ));
}

#[test]
fn install_model_replaces_by_rename_and_leaves_no_temp_file() {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let first = install_model(b"first model", &models, "affectd.onnx").unwrap();
    assert_eq!(first, models.join("affectd.onnx"));
    let mut reader = std::fs::File::open(&first).unwrap();
    let inode = std::fs::metadata(&first).unwrap().ino();
    let second = install_model(b"second, longer model", &models, "affectd.onnx").unwrap();
    assert_eq!(std::fs::read(&second).unwrap(), b"second, longer model");
    // The old file was replaced, not rewritten: a reader that had it open still sees it whole.
    let mut old = Vec::new();
    reader.read_to_end(&mut old).unwrap();
    assert_eq!(old, b"first model");
    assert_ne!(std::fs::metadata(&second).unwrap().ino(), inode);
    let names: Vec<_> = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["affectd.onnx".to_string()]);
    assert!(install_model(b"x", &models, "../escape.onnx").is_err());
}
