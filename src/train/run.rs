//! `affectd train`: dataset -> fp32 training -> Grad-CAM ranking -> calibration sets -> PTQ and
//! QAT -> evaluation -> the configured int8 model's parameters, ready for export.
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::calibration::{CalibrationMethod, Ranking};
use super::dataset::{default_prefrontal_cells, Dataset, Normalizer};
use super::evaluate::{metrics, Metrics};
use super::fit::{evaluate, fit, with_threads, Split, TrainOptions};
use super::gradcam::{grad_cam, CamTarget};
use super::model::{logits, Cnn, FakeQuant};
use super::net_params::{NetParams, QuantParams};
use super::quantize::{calibrate, export_params, qat, qat_options, RangeEstimator};
use super::report::{CalibrationResult, DatasetSummary, TrainReport};
use crate::features::INPUT_LEN;
use crate::infer::contract;

/// Which calibration sets besides the configured one are evaluated for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    /// Only the configured one.
    None,
    /// Prefrontal (both directions), random and all, PTQ only (cheap: ranges + one test pass).
    Ptq,
    /// The same with QAT for each (one QAT run per set).
    Qat,
}

/// Everything `affectd train` needs.
#[derive(Debug, Clone)]
pub struct TrainRunOptions {
    /// Training data (.npz, docs/datasets.md).
    pub train: PathBuf,
    /// Test data; without it `test_fraction` of the training groups are held out.
    pub test: Option<PathBuf>,
    /// Held-out share of groups when no test file is given (default 0.2).
    pub test_fraction: f64,
    /// Share of the training groups used for early stopping (default 0.15).
    pub val_fraction: f64,
    /// fp32 training (its seed also seeds the splits and the random calibration set).
    pub fp32: TrainOptions,
    /// QAT fine-tuning (default: [`qat_options`] of `fp32`).
    pub qat: TrainOptions,
    /// Run QAT (true, default) or stop at PTQ.
    pub qat_enabled: bool,
    /// The calibration set of the exported model (default prefrontal Grad-CAM, most, k = 100).
    pub calibration: CalibrationMethod,
    /// Grid cells that count as prefrontal (default rows 0-1).
    pub region_cells: Vec<usize>,
    /// Grad-CAM explains the predicted (default) or the true class.
    pub cam_target: CamTarget,
    pub range_estimator: RangeEstimator,
    /// 7 (default: exact in ORT's fused kernels on CPUs without VNNI, whose u8 x s8 pair sums
    /// saturate int16 with 8-bit weights) or 8.
    pub weight_bits: u32,
    pub compare: Compare,
    /// Where report.json, summary.txt and report.svg go (none: not written).
    pub report_dir: Option<PathBuf>,
}

impl TrainRunOptions {
    pub fn new(train: PathBuf) -> Self {
        let fp32 = TrainOptions::default();
        TrainRunOptions {
            train,
            test: None,
            test_fraction: 0.2,
            val_fraction: 0.15,
            qat: qat_options(&fp32),
            fp32,
            qat_enabled: true,
            calibration: CalibrationMethod::PrefrontalGradCam {
                k: 100,
                ranking: Ranking::MostPrefrontal,
            },
            region_cells: default_prefrontal_cells(),
            cam_target: CamTarget::Predicted,
            range_estimator: RangeEstimator::MinMax,
            weight_bits: 7,
            compare: Compare::Ptq,
            report_dir: None,
        }
    }
}

/// The trained int8 model and what its contract needs.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub net: NetParams,
    pub quant: QuantParams,
    pub normalizer: Normalizer,
    pub calibration: CalibrationMethod,
    pub region_cells: Vec<usize>,
    pub range_estimator: RangeEstimator,
    pub qat: bool,
    /// Normalised test inputs (N x INPUT_LEN), labels, and the fake-quantised logits of the
    /// exported model on them (N x 3): the reference for the ONNX parity check.
    pub test_x: Vec<f32>,
    pub test_y: Vec<u8>,
    pub test_logits: Vec<f32>,
    /// Metrics of the exported (fake-quantised) model on the test set.
    pub test_metrics: Metrics,
    pub dataset_sha256: String,
    pub dataset_description: String,
    /// Grid cells that held an electrode in the training data.
    pub trained_cells: Vec<usize>,
    pub train_samples: usize,
    pub seed: u64,
    pub report: TrainReport,
}

impl TrainOutcome {
    /// The contract's quantisation section.
    pub fn quantization_contract(&self) -> contract::Quantization {
        contract::Quantization {
            format: "int8-qdq".into(),
            weight_bits: self.quant.weight_bits,
            activation_bits: 8,
            range_estimator: self.range_estimator.name().into(),
            qat: self.qat,
        }
    }

    /// The contract's calibration section.
    pub fn calibration_contract(&self) -> contract::Calibration {
        contract::Calibration {
            method: self.calibration.name().into(),
            k: match self.calibration {
                CalibrationMethod::PrefrontalGradCam { k, .. }
                | CalibrationMethod::Random { k, .. } => k.min(self.train_samples),
                CalibrationMethod::All => self.train_samples,
            },
            ranking: self.calibration.ranking_name().into(),
            region_cells: self.region_cells.clone(),
        }
    }
}

/// Loads, trains, calibrates, quantises and evaluates; see the module docs.
pub fn run(opts: &TrainRunOptions) -> anyhow::Result<TrainOutcome> {
    if !(opts.weight_bits == 7 || opts.weight_bits == 8) {
        anyhow::bail!("weight bits must be 7 or 8, got {}", opts.weight_bits);
    }
    if let Some(bad) = opts
        .region_cells
        .iter()
        .find(|c| **c >= crate::features::GRID_CELLS)
    {
        anyhow::bail!("region cell {bad} is off the 9x9 grid (cells are 0..80)");
    }
    let data = Dataset::load_npz(&opts.train)?;
    let (train_all, test) = match &opts.test {
        Some(path) => (data, Dataset::load_npz(path)?),
        None => data.split_by_group(opts.test_fraction, opts.fp32.seed),
    };
    if test.is_empty() {
        anyhow::bail!(
            "no test samples: the data has a single group; give --test or data with several groups"
        );
    }
    with_threads(opts.fp32.threads, || run_on(opts, train_all, test))?
}

/// The pipeline after loading (separate so tests can feed synthetic data).
pub fn run_on(
    opts: &TrainRunOptions,
    train_all: Dataset,
    test: Dataset,
) -> anyhow::Result<TrainOutcome> {
    let started = Instant::now();
    let (train, val) = train_all.split_by_group(opts.val_fraction, opts.fp32.seed.wrapping_add(1));
    if train.is_empty() {
        anyhow::bail!("no training samples left after the validation split");
    }
    let norm = Normalizer::fit(&train);
    let (tx, vx, sx) = (
        norm.transform(&train),
        norm.transform(&val),
        norm.transform(&test),
    );
    let tr = Split {
        x: &tx,
        y: &train.y,
    };
    let va = Split { x: &vx, y: &val.y };
    let te = Split { x: &sx, y: &test.y };
    tracing::info!(
        train = train.len(),
        validation = val.len(),
        test = test.len(),
        "training fp32"
    );

    let t = Instant::now();
    let fp32 = fit(
        Cnn::new(opts.fp32.seed, opts.fp32.dropout, &super::model::cpu()),
        tr,
        va,
        None,
        &opts.fp32,
        "fp32",
    );
    let fp32_seconds = t.elapsed().as_secs_f64();
    let fp32_test = evaluate(&fp32.model, te, None);
    tracing::info!(accuracy = fp32_test.accuracy, "fp32 test");

    let t = Instant::now();
    let cam = grad_cam(
        &fp32.model,
        &tx,
        &train.y,
        opts.cam_target,
        &opts.region_cells,
        256,
    );
    let gradcam_seconds = t.elapsed().as_secs_f64();

    let mut methods = vec![opts.calibration.clone()];
    if opts.compare != Compare::None {
        let k = match opts.calibration {
            CalibrationMethod::PrefrontalGradCam { k, .. }
            | CalibrationMethod::Random { k, .. } => k,
            CalibrationMethod::All => 100,
        };
        for m in [
            CalibrationMethod::PrefrontalGradCam {
                k,
                ranking: Ranking::MostPrefrontal,
            },
            CalibrationMethod::PrefrontalGradCam {
                k,
                ranking: Ranking::LeastPrefrontal,
            },
            CalibrationMethod::Random {
                k,
                seed: opts.fp32.seed,
            },
            CalibrationMethod::All,
        ] {
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
    }

    let mut results = Vec::new();
    let mut chosen: Option<(Cnn, FakeQuant, Metrics)> = None;
    for (i, method) in methods.iter().enumerate() {
        let idx = method.select(train.len(), &cam.region_mass);
        let mut calib = Vec::with_capacity(idx.len() * INPUT_LEN);
        for &j in &idx {
            calib.extend_from_slice(&tx[j * INPUT_LEN..(j + 1) * INPUT_LEN]);
        }
        let fq = calibrate(&fp32.model, &calib, opts.range_estimator, opts.weight_bits);
        let ptq = evaluate(&fp32.model, te, Some(&fq));
        let run_qat = opts.qat_enabled && (i == 0 || opts.compare == Compare::Qat);
        let (qat_metrics, qat_seconds, qat_best_epoch, model) = if run_qat {
            let t = Instant::now();
            let fitted = qat(
                &fp32.model,
                &fq,
                tr,
                va,
                &opts.qat,
                &format!("QAT {}", method.label()),
            );
            let m = evaluate(&fitted.model, te, Some(&fq));
            let seconds = t.elapsed().as_secs_f64();
            (
                Some(m),
                Some(seconds),
                Some(fitted.best_epoch),
                fitted.model,
            )
        } else {
            (None, None, None, fp32.model.clone())
        };
        tracing::info!(
            calibration = method.label(),
            ptq = ptq.accuracy,
            qat = qat_metrics.as_ref().map(|m| m.accuracy),
            "quantised"
        );
        let mean_mass = if idx.is_empty() {
            0.0
        } else {
            idx.iter().map(|&j| cam.region_mass[j] as f64).sum::<f64>() / idx.len() as f64
        };
        results.push(CalibrationResult {
            label: method.label(),
            method: method.clone(),
            samples: idx.len(),
            mean_region_mass: mean_mass,
            input_scale: fq.input_scale,
            activation_scales: fq.activation_scales,
            ptq,
            qat: qat_metrics.clone(),
            qat_seconds,
            qat_best_epoch,
        });
        if i == 0 {
            let m = qat_metrics.unwrap_or_else(|| results[0].ptq.clone());
            chosen = Some((model, fq, m));
        }
    }
    let (model, fq, test_metrics) = chosen.expect("the configured method runs first");
    let (net, quant) = export_params(&model, &fq);
    let test_logits = logits(&model, &sx, Some(&fq), 512);
    debug_assert_eq!(
        metrics(&test_logits, &test.y).accuracy,
        test_metrics.accuracy
    );

    let report = TrainReport {
        dataset: DatasetSummary::of(&train_all, &train, &val, &test),
        fp32_options: opts.fp32.clone(),
        qat_options: opts.qat.clone(),
        weight_bits: opts.weight_bits,
        range_estimator: opts.range_estimator.name().into(),
        fp32_history: fp32.history.clone(),
        fp32_best_epoch: fp32.best_epoch,
        fp32_seconds,
        fp32_test,
        gradcam_seconds,
        region_cells: opts.region_cells.clone(),
        mean_cam: cam.mean_map(),
        mean_region_mass: cam.region_mass.iter().map(|v| *v as f64).sum::<f64>()
            / cam.region_mass.len().max(1) as f64,
        calibrations: results,
        chosen: opts.calibration.label(),
        chosen_test: test_metrics.clone(),
        total_seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(dir) = &opts.report_dir {
        report.write_all(dir)?;
    }
    Ok(TrainOutcome {
        net,
        quant,
        normalizer: norm,
        calibration: opts.calibration.clone(),
        region_cells: opts.region_cells.clone(),
        range_estimator: opts.range_estimator,
        qat: opts.qat_enabled,
        test_x: sx,
        test_y: test.y.clone(),
        test_logits,
        test_metrics,
        dataset_sha256: train_all.sha256.clone(),
        dataset_description: train_all.description.clone(),
        trained_cells: train_all.filled_cells.clone(),
        train_samples: train.len(),
        seed: opts.fp32.seed,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::dataset::synthetic_dataset;
    use crate::train::model::cpu;

    fn options(fp32_epochs: usize, qat_epochs: usize, compare: Compare) -> TrainRunOptions {
        let mut opts = TrainRunOptions::new(PathBuf::from("unused.npz"));
        opts.fp32.epochs = fp32_epochs;
        opts.qat.epochs = qat_epochs;
        opts.compare = compare;
        opts
    }

    #[test]
    fn pipeline_on_synthetic_data_keeps_int8_accuracy_and_hands_over_consistent_params() {
        let data = synthetic_dataset(1800, 1.5, 11);
        let (train, test) = data.split_by_group(0.2, 11);
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(6, 2, Compare::Ptq);
        opts.report_dir = Some(dir.path().to_path_buf());
        let out = with_threads(2, || run_on(&opts, train, test))
            .unwrap()
            .unwrap();
        let r = &out.report;
        eprintln!("{}", r.summary());
        assert!(r.fp32_test.accuracy > 0.9, "fp32 {}", r.fp32_test.accuracy);
        assert!(
            out.test_metrics.accuracy >= r.fp32_test.accuracy - 0.01,
            "int8 QAT {} vs fp32 {}",
            out.test_metrics.accuracy,
            r.fp32_test.accuracy
        );
        // Configured set first, then least / random / all for comparison.
        let labels: Vec<&str> = r.calibrations.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "prefrontal-most k=100",
                "prefrontal-least k=100",
                "random k=100",
                "all"
            ]
        );
        assert!(r.calibrations[0].mean_region_mass >= r.calibrations[1].mean_region_mass);
        // NetParams + QuantParams alone reproduce the fake-quantised test logits.
        let model = Cnn::from_net_params(&out.net, 0.0, &cpu()).unwrap();
        let fq = FakeQuant {
            input_scale: out.quant.input_scale,
            activation_scales: out.quant.activation_scales.clone().try_into().unwrap(),
            weight_bits: out.quant.weight_bits,
        };
        assert_eq!(logits(&model, &out.test_x, Some(&fq), 512), out.test_logits);
        assert_eq!(out.quant.weight_scales.len(), 6);
        assert_eq!(out.calibration_contract().k, 100);
        assert_eq!(out.calibration_contract().ranking, "most-prefrontal");
        assert_eq!(out.quantization_contract().weight_bits, 7);
        for f in ["report.json", "summary.txt", "report.svg"] {
            assert!(
                std::fs::metadata(dir.path().join(f)).unwrap().len() > 100,
                "{f}"
            );
        }
        let svg = std::fs::read_to_string(dir.path().join("report.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("negative"));
    }

    /// Timings and the calibration comparison on a SEED-sized synthetic set (not run by default):
    /// `cargo test --release --lib train::run::tests::measure -- --ignored --nocapture`
    /// (env MEASURE_N, MEASURE_STRENGTH, MEASURE_BITS, MEASURE_RANGE=minmax|mse).
    #[test]
    #[ignore]
    fn measure() {
        let env = |k: &str, d: f64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let n = env("MEASURE_N", 10000.0) as usize;
        let data = synthetic_dataset(n, env("MEASURE_STRENGTH", 1.0) as f32, 5);
        let (train, test) = data.split_by_group(0.2, 5);
        let mut opts = TrainRunOptions::new(PathBuf::from("unused.npz"));
        opts.compare = Compare::Qat;
        opts.weight_bits = env("MEASURE_BITS", 8.0) as u32;
        if std::env::var("MEASURE_RANGE").as_deref() == Ok("mse") {
            opts.range_estimator = RangeEstimator::Mse;
        }
        let out = with_threads(2, || run_on(&opts, train, test))
            .unwrap()
            .unwrap();
        let r = &out.report;
        println!("{}", r.summary());
        let per_epoch: Vec<f64> = r.fp32_history.iter().map(|e| e.seconds).collect();
        println!("fp32 seconds per epoch: {per_epoch:.2?}");
        for c in &r.calibrations {
            println!(
                "{}: QAT {:.1} s for {} epochs",
                c.label,
                c.qat_seconds.unwrap_or(0.0),
                opts.qat.epochs
            );
        }
    }
}
