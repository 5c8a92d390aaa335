//! Mini-batch training with Adam and cross-entropy, fp32 or fake-quantised (QAT), with early
//! stopping on the validation loss. Deterministic for a seed and a thread count.
use std::io::IsTerminal;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::loss::cross_entropy_with_logits;
use burn::tensor::{Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::dataset::NUM_CLASSES;
use super::evaluate::{metrics, Metrics};
use super::model::{cpu_autodiff, input_tensor, logits, Cnn, FakeQuant};
use crate::features::INPUT_LEN;

/// Seed offsets so that initialisation, shuffling and dropout draw different streams.
const SHUFFLE_STREAM: u64 = 0x5eed_5eed;
const DROPOUT_STREAM: u64 = 0xd50d_d50d;

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Most epochs to run (default 20).
    pub epochs: usize,
    /// Adam learning rate (default 1e-3).
    pub lr: f64,
    /// Mini-batch size (default 64).
    pub batch: usize,
    /// Stop after this many epochs without a lower validation loss (default 4); the weights of
    /// the best epoch are kept. Without a validation set every epoch runs and the last is kept.
    pub patience: usize,
    /// Seeds the weight initialisation, the shuffling and dropout (default 0).
    pub seed: u64,
    /// Worker threads for the CPU backend (default 2; 0 = all cores). Results are reproducible
    /// for a given seed and thread count.
    pub threads: usize,
    /// Dropout after fc1 during training (default 0.3).
    pub dropout: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 20,
            lr: 1e-3,
            batch: 64,
            patience: 4,
            seed: 0,
            threads: 2,
            dropout: super::model::DEFAULT_DROPOUT,
        }
    }
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (with dropout).
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
}

/// A trained network with its history.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The kept weights, on the plain (inference) device.
    pub model: Cnn,
    pub history: Vec<EpochStats>,
    /// Epoch (1-based) whose weights were kept; 0 = the starting weights.
    pub best_epoch: usize,
    pub stopped_early: bool,
}

/// Normalised samples with labels.
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    pub x: &'a [f32],
    pub y: &'a [u8],
}

impl Split<'_> {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Runs `f` on a thread pool of `threads` workers (0 = all cores), which the CPU backend's
/// parallel kernels then use.
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start {threads} worker threads: {e}"))?;
    Ok(pool.install(f))
}

/// Scores of a network on a split (fake-quantised when `q`).
pub fn evaluate(model: &Cnn, split: Split, q: Option<&FakeQuant>) -> Metrics {
    metrics(&logits(model, split.x, q, 512), split.y)
}

/// Trains `init` on `train`, early-stopping on `val`. `q` turns on fake quantisation (QAT).
/// `label` names the run in progress output.
pub fn fit(
    init: Cnn,
    train: Split,
    val: Split,
    q: Option<&FakeQuant>,
    opts: &TrainOptions,
    label: &str,
) -> Fitted {
    let device = cpu_autodiff();
    // From plain (detached) weights: a trained network's parameters are not graph leaves.
    let mut model = init.valid().to_device(&device).train();
    let mut optim = AdamConfig::new().init();
    let mut rng = StdRng::seed_from_u64(opts.seed ^ SHUFFLE_STREAM);
    let mut drop_rng = StdRng::seed_from_u64(opts.seed ^ DROPOUT_STREAM);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let batch = opts.batch.max(1);
    let batches = train.len().div_ceil(batch);

    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new((opts.epochs * batches) as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(label.to_string());
        bar
    });

    let mut history = Vec::new();
    // The starting weights compete too (epoch 0): fine-tuning (QAT) never returns a network that
    // is worse on validation than the one it started from.
    let mut best: Option<(f64, Cnn, usize)> =
        (!val.is_empty()).then(|| (evaluate(&model.valid(), val, q).loss, model.clone(), 0));
    let mut since_best = 0;
    let mut stopped_early = false;
    let mut xb = Vec::with_capacity(batch * INPUT_LEN);
    let mut yb = Vec::with_capacity(batch * NUM_CLASSES);
    for epoch in 1..=opts.epochs {
        let start = Instant::now();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for idx in order.chunks(batch) {
            xb.clear();
            yb.clear();
            for &i in idx {
                xb.extend_from_slice(&train.x[i * INPUT_LEN..(i + 1) * INPUT_LEN]);
                let mut one_hot = [0.0f32; NUM_CLASSES];
                one_hot[train.y[i] as usize] = 1.0;
                yb.extend_from_slice(&one_hot);
            }
            let target: Tensor<2> = Tensor::from_data(
                TensorData::new(yb.clone(), [idx.len(), NUM_CLASSES]),
                &device,
            );
            let out = model.forward(input_tensor(&xb, &device), q, Some(&mut drop_rng));
            let loss = cross_entropy_with_logits(out, target);
            loss_sum += loss.clone().into_scalar::<f32>() as f64 * idx.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(opts.lr, model, grads);
            if let Some(bar) = &progress {
                bar.inc(1);
            }
        }
        let train_loss = loss_sum / train.len().max(1) as f64;
        let (val_loss, val_accuracy) = if val.is_empty() {
            (None, None)
        } else {
            let m = evaluate(&model.valid(), val, q);
            (Some(m.loss), Some(m.accuracy))
        };
        let stats = EpochStats {
            epoch,
            train_loss,
            val_loss,
            val_accuracy,
            seconds: start.elapsed().as_secs_f64(),
        };
        match &progress {
            Some(bar) => bar.set_message(format!(
                "epoch {epoch}: loss {train_loss:.4} val loss {:.4} val acc {:.3}",
                val_loss.unwrap_or(f64::NAN),
                val_accuracy.unwrap_or(f64::NAN)
            )),
            None => tracing::info!(
                run = label,
                epoch,
                train_loss = format!("{train_loss:.4}"),
                val_loss = format!("{:.4}", val_loss.unwrap_or(f64::NAN)),
                val_accuracy = format!("{:.3}", val_accuracy.unwrap_or(f64::NAN)),
                seconds = format!("{:.1}", stats.seconds),
                "epoch done"
            ),
        }
        history.push(stats);
        if let Some(vl) = val_loss {
            if best.as_ref().is_none_or(|(b, _, _)| vl < *b) {
                best = Some((vl, model.clone(), epoch));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= opts.patience {
                    stopped_early = epoch < opts.epochs;
                    break;
                }
            }
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let (model, best_epoch) = match best {
        Some((_, m, e)) => (m.valid(), e),
        None => (model.valid(), history.len()),
    };
    Fitted {
        model,
        history,
        best_epoch,
        stopped_early,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::dataset::{synthetic_dataset, Normalizer};
    use crate::train::model::cpu;

    fn prepared(n: usize, strength: f32, seed: u64) -> (Vec<f32>, Vec<u8>, Vec<f32>, Vec<u8>) {
        let ds = synthetic_dataset(n, strength, seed);
        let (train, val) = ds.split_by_group(0.25, seed);
        let norm = Normalizer::fit(&train);
        (norm.transform(&train), train.y, norm.transform(&val), val.y)
    }

    #[test]
    fn fp32_training_learns_the_synthetic_classes_far_above_chance() {
        let (tx, ty, vx, vy) = prepared(1200, 1.5, 1);
        let opts = TrainOptions {
            epochs: 7,
            ..TrainOptions::default()
        };
        let start = Instant::now();
        let fitted = with_threads(2, || {
            fit(
                Cnn::new(1, opts.dropout, &cpu()),
                Split { x: &tx, y: &ty },
                Split { x: &vx, y: &vy },
                None,
                &opts,
                "test",
            )
        })
        .unwrap();
        let m = evaluate(&fitted.model.valid(), Split { x: &vx, y: &vy }, None);
        eprintln!(
            "fp32: {} train, {} val, accuracy {:.3}, {:.1} s, history {:?}",
            ty.len(),
            vy.len(),
            m.accuracy,
            start.elapsed().as_secs_f64(),
            fitted.history
        );
        assert!(m.accuracy > 0.9, "validation accuracy {}", m.accuracy);
        assert!(fitted.history[0].train_loss > fitted.history.last().unwrap().train_loss);
    }

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let (tx, ty, vx, vy) = prepared(300, 0.8, 2);
        let opts = TrainOptions {
            epochs: 1,
            ..TrainOptions::default()
        };
        let run = |seed: u64| {
            let opts = TrainOptions {
                seed,
                ..opts.clone()
            };
            with_threads(2, || {
                fit(
                    Cnn::new(seed, opts.dropout, &cpu()),
                    Split { x: &tx, y: &ty },
                    Split { x: &vx, y: &vy },
                    None,
                    &opts,
                    "test",
                )
                .model
                .to_net_params()
            })
            .unwrap()
        };
        let a = run(7);
        // (assert! rather than assert_eq!: the parameters are too long to print.)
        assert!(a == run(7), "same seed, different weights");
        assert!(a != run(8), "different seeds, same weights");
    }
}
