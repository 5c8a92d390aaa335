//! `affectd train` and `affectd retrain`: build the dataset, run the training pipeline
//! ([`super::run`]), then export the int8 model, verify it in ONNX Runtime and install it.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::calibration::{CalibrationMethod, Ranking};
use super::dataset::Dataset;
use super::export::{build_fp32_model, build_qdq_model, fused_op_types, install_model};
use super::formats::{raw_dataset, RawArgs};
use super::gradcam::CamTarget;
use super::quantize::RangeEstimator;
use super::recordings::{session_files, sessions_dataset, simulated_dataset};
use super::run::{run_on, Compare, TrainOutcome, TrainRunOptions};
use crate::config::Config;
use crate::features::FeatureConfig;
use crate::infer::contract::{FeatureSpec, LabelSource, ModelContract, Provenance};
use crate::infer::model::Model;

/// Argmax agreement the installed int8 model must reach with the fake-quantised training graph.
const MIN_PARITY: f64 = 0.99;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training data: an .npz feature dataset (docs/datasets.md).
    #[arg(long, conflicts_with = "synthetic")]
    data: Option<PathBuf>,
    /// Held-out test data (.npz); without it whole groups of --data are held out.
    #[arg(long)]
    test: Option<PathBuf>,
    /// Train on simulated sessions of this many seconds each (the built-in default data).
    #[arg(long)]
    synthetic: Option<f64>,
    /// Number of simulated training sessions (one more, with its own seed, is the test set).
    #[arg(long, default_value_t = 3)]
    synthetic_sessions: u64,
    /// Strength of the simulator's class effects.
    #[arg(long, default_value_t = 1.0)]
    effect_strength: f64,
    #[command(flatten)]
    raw: RawArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct RetrainArgs {
    /// Directory of recorded sessions (.xdf with stimulus markers, docs/sessions.md).
    #[arg(long)]
    sessions: PathBuf,
    /// Label aliases, LABEL=CLASS (e.g. sad=negative); may repeat.
    #[arg(long = "label")]
    labels: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// Config whose [features] section sets window, hop and filters.
    #[arg(long, default_value = "config/affectd.toml")]
    config: PathBuf,
    /// Where the model is installed (atomically); default: the config's model.path.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory for report.json, summary.txt, report.svg.
    #[arg(long, default_value = "reports")]
    report_dir: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most fp32 epochs (default 20; early stopping on validation loss).
    #[arg(long)]
    epochs: Option<usize>,
    /// Epochs without a lower validation loss before fp32 training stops (default 4).
    #[arg(long)]
    patience: Option<usize>,
    /// QAT fine-tuning epochs.
    #[arg(long)]
    qat_epochs: Option<usize>,
    /// Training threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Calibration set that sets the quantisation ranges.
    #[arg(long, value_enum, default_value_t = CalibrationArg::Prefrontal)]
    calibration: CalibrationArg,
    /// Samples in the calibration set (prefrontal / random).
    #[arg(long, default_value_t = 100)]
    k: usize,
    /// Prefrontal ranking direction: most (the method) or least (what the published code did).
    #[arg(long, value_enum, default_value_t = RankingArg::Most)]
    ranking: RankingArg,
    /// Grad-CAM explains the predicted or the true class.
    #[arg(long, value_enum, default_value_t = CamArg::Predicted)]
    cam_target: CamArg,
    #[arg(long, value_enum, default_value_t = RangeArg::Minmax)]
    range: RangeArg,
    /// Weight bits: 7 (default: exact in ORT's fused kernels on every x86 CPU, including AVX2
    /// without VNNI, where 8-bit weights saturate int16 sums) or 8.
    #[arg(long, default_value_t = 7)]
    weight_bits: u32,
    /// Stop after calibration (PTQ), no QAT fine-tuning.
    #[arg(long)]
    no_qat: bool,
    /// Which other calibration sets to evaluate for the report.
    #[arg(long, value_enum, default_value_t = CompareArg::Ptq)]
    compare: CompareArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CalibrationArg {
    Prefrontal,
    Random,
    All,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
enum RankingArg {
    Most,
    Least,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
enum CamArg {
    Predicted,
    True,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
enum RangeArg {
    Minmax,
    Mse,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
enum CompareArg {
    None,
    Ptq,
    Qat,
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.common.config)?;
    let features = feature_config(&config);
    if !args.raw.raw.is_empty() {
        let (data, labels) = raw_dataset(&args.raw, &features, &config.stream.default_unit)?;
        let (train, test) = data.split_by_group(0.2, args.common.seed);
        anyhow::ensure!(
            !test.is_empty(),
            "the raw recordings hold a single labelled stimulus; more are needed to hold some out \
             for testing"
        );
        let out = args.common.out.clone().unwrap_or(config.model.path.clone());
        return train_and_install(&args.common, train, test, &features, labels, &out);
    }
    let (train, test) = match (&args.data, args.synthetic) {
        (Some(path), _) => {
            let train = Dataset::load_npz(path)?;
            match &args.test {
                Some(test) => (train, Dataset::load_npz(test)?),
                None => train.split_by_group(0.2, args.common.seed),
            }
        }
        (None, Some(seconds)) => {
            let mut sim = crate::pipeline::sim_config(&config.simulate);
            sim.effect_strength = args.effect_strength;
            let seeds: Vec<u64> = (0..args.synthetic_sessions)
                .map(|i| 1000 + args.common.seed * 100 + i)
                .collect();
            let test_seed = [2000 + args.common.seed];
            tracing::info!(
                "simulating {} training sessions and 1 test session of {seconds} s",
                seeds.len()
            );
            (
                simulated_dataset(&sim, &seeds, seconds, &features)?,
                simulated_dataset(&sim, &test_seed, seconds, &features)?,
            )
        }
        (None, None) => anyhow::bail!("give --data FILE.npz, --raw PATH... or --synthetic SECONDS"),
    };
    let labels = match &args.data {
        Some(path) => LabelSource {
            kind: "npz".into(),
            description: format!("'label' array of {}", path.display()),
        },
        None => LabelSource {
            kind: "simulator".into(),
            description: "the simulated states".into(),
        },
    };
    let out = args.common.out.clone().unwrap_or(config.model.path.clone());
    train_and_install(&args.common, train, test, &features, labels, &out)
}

pub fn retrain(args: RetrainArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.common.config)?;
    let features = feature_config(&config);
    let mapping = super::formats::label_mapping(&args.labels)?;
    let files = session_files(&args.sessions)?;
    let data = sessions_dataset(&files, &features, &mapping, &config.stream.default_unit)?;
    let (train, test) = data.split_by_group(0.2, args.common.seed);
    anyhow::ensure!(
        !test.is_empty(),
        "the sessions hold a single labelled stimulus; record several to hold some out for testing"
    );
    let labels = LabelSource {
        kind: "markers".into(),
        description: format!(
            "stimulus_start:/stimulus_end: markers in {} session file(s) under {}",
            files.len(),
            args.sessions.display()
        ),
    };
    let out = args.common.out.clone().unwrap_or(config.model.path.clone());
    train_and_install(&args.common, train, test, &features, labels, &out)
}

fn feature_config(config: &Config) -> FeatureConfig {
    crate::pipeline::feature_config(config, 0.0)
}

fn run_options(args: &CommonArgs) -> TrainRunOptions {
    let mut opts = TrainRunOptions::new(PathBuf::new());
    opts.fp32.seed = args.seed;
    if let Some(epochs) = args.epochs {
        opts.fp32.epochs = epochs;
    }
    if let Some(patience) = args.patience {
        opts.fp32.patience = patience;
    }
    opts.fp32.threads = args.threads;
    opts.qat = super::quantize::qat_options(&opts.fp32);
    if let Some(e) = args.qat_epochs {
        opts.qat.epochs = e;
    }
    opts.qat_enabled = !args.no_qat;
    opts.calibration = match args.calibration {
        CalibrationArg::Prefrontal => CalibrationMethod::PrefrontalGradCam {
            k: args.k,
            ranking: match args.ranking {
                RankingArg::Most => Ranking::MostPrefrontal,
                RankingArg::Least => Ranking::LeastPrefrontal,
            },
        },
        CalibrationArg::Random => CalibrationMethod::Random {
            k: args.k,
            seed: args.seed,
        },
        CalibrationArg::All => CalibrationMethod::All,
    };
    opts.cam_target = match args.cam_target {
        CamArg::Predicted => CamTarget::Predicted,
        CamArg::True => CamTarget::True,
    };
    opts.range_estimator = match args.range {
        RangeArg::Minmax => RangeEstimator::MinMax,
        RangeArg::Mse => RangeEstimator::Mse,
    };
    opts.weight_bits = args.weight_bits;
    opts.compare = match args.compare {
        CompareArg::None => Compare::None,
        CompareArg::Ptq => Compare::Ptq,
        CompareArg::Qat => Compare::Qat,
    };
    opts.report_dir = Some(args.report_dir.clone());
    opts
}

fn train_and_install(
    args: &CommonArgs,
    train: Dataset,
    test: Dataset,
    features: &FeatureConfig,
    labels: LabelSource,
    out: &Path,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let opts = run_options(args);
    let outcome = super::fit::with_threads(opts.fp32.threads, || run_on(&opts, train, test))??;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let contract = contract_for(&outcome, features, labels, &command);
    let export = export_and_verify(&outcome, &contract)?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .with_context(|| format!("--out {}: not a file path", out.display()))?;
    let installed = install_model(&export.int8, dir, &name.to_string_lossy())?;
    std::fs::create_dir_all(&args.report_dir)?;
    std::fs::write(
        args.report_dir.join("export.json"),
        serde_json::to_string_pretty(&export.report)?,
    )?;
    println!("{}", outcome.report.summary());
    println!("{}", export.report.summary());
    println!(
        "installed {} ({} bytes) in {:.1} s; report in {}",
        installed.display(),
        export.int8.len(),
        started.elapsed().as_secs_f64(),
        args.report_dir.display()
    );
    Ok(())
}

/// The contract the exported model carries (see src/infer/contract.rs).
pub fn contract_for(
    outcome: &TrainOutcome,
    features: &FeatureConfig,
    labels: LabelSource,
    command: &str,
) -> ModelContract {
    let classes = crate::CLASSES.iter().map(|c| c.to_string()).collect();
    ModelContract {
        labels,
        trained_cells: outcome.trained_cells.clone(),
        norm_mean: outcome.normalizer.mean.clone(),
        norm_std: outcome.normalizer.std.clone(),
        quantization: outcome.quantization_contract(),
        calibration: outcome.calibration_contract(),
        provenance: Provenance {
            affectd_version: env!("CARGO_PKG_VERSION").into(),
            dataset_sha256: outcome.dataset_sha256.clone(),
            dataset_description: outcome.dataset_description.clone(),
            train_samples: outcome.train_samples,
            seed: outcome.seed,
            command: command.into(),
            created: crate::record::utc_timestamp(std::time::SystemTime::now(), true),
            test_accuracy: outcome.test_metrics.accuracy,
            test_macro_f1: outcome.test_metrics.macro_f1,
        },
        ..ModelContract::new(classes, FeatureSpec::of(features))
    }
}

/// What the export check measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    pub int8_bytes: usize,
    pub fp32_bytes: usize,
    /// Op types of the int8 graph after ORT's optimisation (expect QLinearConv, QGemm...).
    pub fused_op_types: Vec<String>,
    /// Argmax agreement between ORT's int8 run and the fake-quantised training graph.
    pub argmax_agreement: f64,
    pub max_logit_difference: f32,
    pub ort_test_accuracy: f64,
    /// Median single-window latency through ORT, one intra-op thread (microseconds).
    pub int8_latency_us: f64,
    pub fp32_latency_us: f64,
}

impl ExportReport {
    pub fn summary(&self) -> String {
        format!(
            "export: int8 {} bytes vs fp32 {} bytes; ORT ops {}; ORT vs fake-quant argmax agreement {:.2} % \
             (max logit difference {:.4}); ORT test accuracy {:.3}; single-window latency int8 {:.0} us vs fp32 {:.0} us",
            self.int8_bytes,
            self.fp32_bytes,
            self.fused_op_types.join(","),
            100.0 * self.argmax_agreement,
            self.max_logit_difference,
            self.ort_test_accuracy,
            self.int8_latency_us,
            self.fp32_latency_us
        )
    }
}

struct Exported {
    int8: Vec<u8>,
    report: ExportReport,
}

/// Writes the int8 (and, for comparison, fp32) ONNX models, runs them in ORT and refuses an
/// int8 model that does not reproduce the training graph's decisions.
fn export_and_verify(outcome: &TrainOutcome, contract: &ModelContract) -> anyhow::Result<Exported> {
    let int8 = build_qdq_model(&outcome.net, &outcome.quant, contract)?;
    let fp32 = build_fp32_model(&outcome.net, contract)?;
    let mut int8_model = Model::from_bytes(&int8, "exported int8 model", 1)?;
    let mut fp32_model = Model::from_bytes(&fp32, "exported fp32 model", 1)?;
    let n = outcome.test_y.len();
    let classes = contract.classes.len();
    let ort_logits = int8_model.logits(&outcome.test_x, n)?;
    let argmax = |row: &[f32]| crate::infer::smoothing::argmax(row);
    let mut agree = 0;
    let mut correct = 0;
    let mut max_diff = 0.0f32;
    for i in 0..n {
        let ort = &ort_logits[i * classes..(i + 1) * classes];
        let reference = &outcome.test_logits[i * classes..(i + 1) * classes];
        agree += (argmax(ort) == argmax(reference)) as usize;
        correct += (argmax(ort) == outcome.test_y[i] as usize) as usize;
        for (a, b) in ort.iter().zip(reference) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    let agreement = agree as f64 / n.max(1) as f64;
    anyhow::ensure!(
        agreement >= MIN_PARITY,
        "the exported int8 model agrees with the fake-quantised training graph on only {:.2} % of \
         the test windows (needs {:.0} %); not installed",
        100.0 * agreement,
        100.0 * MIN_PARITY
    );
    let window = &outcome.test_x[..crate::features::INPUT_LEN];
    let report = ExportReport {
        int8_bytes: int8.len(),
        fp32_bytes: fp32.len(),
        fused_op_types: fused_op_types(&int8)?,
        argmax_agreement: agreement,
        max_logit_difference: max_diff,
        ort_test_accuracy: correct as f64 / n.max(1) as f64,
        int8_latency_us: median_latency_us(&mut int8_model, window)?,
        fp32_latency_us: median_latency_us(&mut fp32_model, window)?,
    };
    Ok(Exported { int8, report })
}

fn median_latency_us(model: &mut Model, window: &[f32]) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(300);
    for _ in 0..300 {
        let t = Instant::now();
        model.logits(window, 1)?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
