//! A loaded model: the ort session, the contract read from the file's metadata, and the model's
//! identity (sha256 of the file). Normalisation and softmax live here so that the inference thread
//! hands in raw DE grids and gets probabilities back.
use std::path::{Path, PathBuf};

use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use sha2::{Digest, Sha256};

use crate::features::{GRID_CELLS, INPUT_LEN};
use crate::infer::contract::{ContractError, ModelContract, CONTRACT_KEY};
use crate::infer::runtime::{self, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("model {} could not be loaded by ONNX Runtime: {why}", .path.display())]
    Corrupt { path: PathBuf, why: String },
    #[error("model contract: {0}")]
    Contract(#[from] ContractError),
    #[error("reading model {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("inference failed: {0}")]
    Inference(String),
}

impl ModelError {
    /// A short, fixed name of the error's kind (for metric labels).
    pub fn reason(&self) -> &'static str {
        match self {
            ModelError::NotFound(_) => "not_found",
            ModelError::Corrupt { .. } => "corrupt",
            ModelError::Contract(c) => c.reason(),
            ModelError::Io { .. } => "io",
            ModelError::Runtime(_) => "runtime",
            ModelError::Inference(_) => "inference",
        }
    }
}

pub struct Model {
    session: Session,
    contract: ModelContract,
    id: String,
    sha256: String,
    path: Option<PathBuf>,
    /// 1 / norm_std, precomputed.
    inv_std: Vec<f32>,
    /// The normalised input of one window, reused across calls.
    input: Vec<f32>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Reads and loads the model at `path` (see [`Model::from_bytes`]).
    pub fn load(path: &Path, intra_threads: usize) -> Result<Model, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ModelError::NotFound(path.to_path_buf())
            } else {
                ModelError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let mut model = Self::build(&bytes, path, intra_threads)?;
        model.path = Some(path.to_path_buf());
        Ok(model)
    }

    /// Loads a model from memory; `label` names it in errors. The session runs `intra_threads`
    /// intra-op threads (0 = ORT's default), one inter-op thread, all graph optimisations. The
    /// contract is read from metadata and validated, and the graph's input and output must match
    /// it.
    pub fn from_bytes(
        bytes: &[u8],
        label: &str,
        intra_threads: usize,
    ) -> Result<Model, ModelError> {
        Self::build(bytes, Path::new(label), intra_threads)
    }

    fn build(bytes: &[u8], path: &Path, intra_threads: usize) -> Result<Model, ModelError> {
        let sha256: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let env = runtime::environment()?;
        let corrupt = |why: String| ModelError::Corrupt {
            path: path.to_path_buf(),
            why,
        };
        let builder_err = |e: ort::Error<SessionBuilder>| corrupt(format!("session options: {e}"));
        let session = Session::builder(&env)
            .map_err(|e| corrupt(e.to_string()))?
            .with_intra_threads(intra_threads)
            .map_err(builder_err)?
            .with_inter_threads(1)
            .map_err(builder_err)?
            // Between windows the thread pool would otherwise spin and burn a core.
            .with_intra_op_spinning(false)
            .map_err(builder_err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(builder_err)?
            .commit_from_memory(bytes)
            .map_err(|e| corrupt(e.to_string()))?;
        let json = session
            .metadata()
            .map_err(|e| corrupt(format!("reading metadata: {e}")))?
            .custom(CONTRACT_KEY)
            .ok_or(ContractError::Missing)?;
        let contract = ModelContract::from_json(&json)?;
        check_graph(&session, &contract)?;
        Ok(Model {
            session,
            inv_std: contract.norm_std.iter().map(|s| 1.0 / s).collect(),
            contract,
            id: sha256[..12].to_string(),
            sha256,
            path: None,
            input: vec![0.0; INPUT_LEN],
        })
    }

    pub fn contract(&self) -> &ModelContract {
        &self.contract
    }

    /// Short identity: the first 12 hex digits of the file's sha256.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Full sha256 of the model file (hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The file the model was loaded from (None for [`Model::from_bytes`]).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs the network on already normalised input [batch, 5, 9, 9]; returns logits
    /// [batch, classes].
    pub fn logits(&mut self, normalised: &[f32], batch: usize) -> Result<Vec<f32>, ModelError> {
        if batch == 0 || normalised.len() != batch * INPUT_LEN {
            return Err(ModelError::Inference(format!(
                "input has {} values, batch {batch} needs {}",
                normalised.len(),
                batch * INPUT_LEN
            )));
        }
        let shape = self.input_shape(batch);
        run(&mut self.session, shape, normalised, |logits| {
            logits.to_vec()
        })
    }

    /// One window: normalises `raw_grid` (DE values [5, 9, 9]) with the contract's statistics,
    /// feeds 0 where no electrode is (`filled` false; per input value, or per grid cell), and
    /// returns the class probabilities.
    pub fn predict(&mut self, raw_grid: &[f32], filled: &[bool]) -> Result<Vec<f32>, ModelError> {
        let mut probs = vec![0.0; self.contract.classes.len()];
        self.predict_into(raw_grid, filled, &mut probs)?;
        Ok(probs)
    }

    /// [`Model::predict`] into a caller buffer of `classes` values; no allocation on our side.
    pub fn predict_into(
        &mut self,
        raw_grid: &[f32],
        filled: &[bool],
        probs: &mut [f32],
    ) -> Result<(), ModelError> {
        let bad = |why: String| Err(ModelError::Inference(why));
        if raw_grid.len() != INPUT_LEN {
            return bad(format!(
                "grid has {} values, expected {INPUT_LEN}",
                raw_grid.len()
            ));
        }
        if filled.len() != INPUT_LEN && filled.len() != GRID_CELLS {
            return bad(format!(
                "filled mask has {} values, expected {INPUT_LEN} or {GRID_CELLS}",
                filled.len()
            ));
        }
        if probs.len() != self.contract.classes.len() {
            return bad(format!(
                "output buffer has {} values for {} classes",
                probs.len(),
                self.contract.classes.len()
            ));
        }
        let per_cell = filled.len() == GRID_CELLS;
        for (k, slot) in self.input.iter_mut().enumerate() {
            let present = filled[if per_cell { k % GRID_CELLS } else { k }];
            *slot = if present {
                let v = raw_grid[k];
                if !v.is_finite() {
                    return bad(format!("non-finite feature {v} at input index {k}"));
                }
                (v - self.contract.norm_mean[k]) * self.inv_std[k]
            } else {
                0.0
            };
        }
        let shape = self.input_shape(1);
        let classes = probs.len();
        run(&mut self.session, shape, &self.input, |logits| {
            if logits.len() == classes {
                probs.copy_from_slice(logits);
                softmax_in_place(probs);
                Ok(())
            } else {
                Err(ModelError::Inference(format!(
                    "model returned {} logits for {classes} classes",
                    logits.len()
                )))
            }
        })?
    }

    fn input_shape(&self, batch: usize) -> [i64; 4] {
        let s = self.contract.input_shape;
        [batch as i64, s[1], s[2], s[3]]
    }
}

/// Runs the single-input single-output session and hands the f32 output to `take`.
fn run<T>(
    session: &mut Session,
    shape: [i64; 4],
    input: &[f32],
    take: impl FnOnce(&[f32]) -> T,
) -> Result<T, ModelError> {
    let fail = |e: ort::Error| ModelError::Inference(e.to_string());
    let tensor = TensorRef::from_array_view((shape, input)).map_err(fail)?;
    let outputs = session.run(ort::inputs![tensor]).map_err(fail)?;
    let (_, data) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
    Ok(take(data))
}

/// Checks that the graph has the contract's input (f32 [N, 5, 9, 9]) and output (f32
/// [N, classes]).
fn check_graph(session: &Session, contract: &ModelContract) -> Result<(), ContractError> {
    let invalid = |field, why: String| Err(ContractError::Invalid { field, why });
    let [input] = session.inputs() else {
        return invalid(
            "input_name",
            format!("graph has {} inputs, expected 1", session.inputs().len()),
        );
    };
    let [output] = session.outputs() else {
        return invalid(
            "output_name",
            format!("graph has {} outputs, expected 1", session.outputs().len()),
        );
    };
    if input.name() != contract.input_name {
        return invalid(
            "input_name",
            format!(
                "graph input is '{}', contract says '{}'",
                input.name(),
                contract.input_name
            ),
        );
    }
    if output.name() != contract.output_name {
        return invalid(
            "output_name",
            format!(
                "graph output is '{}', contract says '{}'",
                output.name(),
                contract.output_name
            ),
        );
    }
    let want_in = &contract.input_shape[1..];
    let want_out = [contract.classes.len() as i64];
    for (field, value, want) in [
        ("input_shape", input.dtype(), want_in),
        ("classes", output.dtype(), &want_out[..]),
    ] {
        let ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        } = value
        else {
            return invalid(
                field,
                format!("graph value is {value:?}, expected a float tensor"),
            );
        };
        // Dimension 0 is the batch (symbolic: -1); the rest must match exactly.
        if shape.len() != want.len() + 1 || shape[1..] != *want {
            return invalid(
                field,
                format!("graph shape {:?} does not match [N, {want:?}]", &shape[..]),
            );
        }
    }
    Ok(())
}

/// Numerically stable softmax of one row of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let mut out = logits.to_vec();
    softmax_in_place(&mut out);
    out
}

fn softmax_in_place(v: &mut [f32]) {
    let max = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_can_be_loaded_on_one_thread_and_served_on_another() {
        fn assert_send<T: Send>() {}
        assert_send::<Model>();
    }

    #[test]
    fn softmax_is_a_stable_distribution() {
        // Large logits must not overflow exp().
        assert_eq!(softmax(&[1000.0, 1000.0, -1000.0]), vec![0.5, 0.5, 0.0]);
        let p = softmax(&[3.0, 3.0 + 2f32.ln(), 3.0 - 2f32.ln()]);
        let expected = [2.0 / 7.0, 4.0 / 7.0, 1.0 / 7.0];
        for (a, b) in p.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{p:?}");
        }
        let q = softmax(&[0.5, -0.25]);
        let expected = 1.0 / (1.0 + (-0.75f32).exp());
        assert!((q[0] - expected).abs() < 1e-7 && (q.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
