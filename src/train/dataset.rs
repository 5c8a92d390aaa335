//! Training data: DE features on the 9x9 grid with labels and groups, read from `.npz` files
//! (schema in docs/datasets.md), split by group, normalised per feature; plus a synthetic
//! generator for tests and benchmarks.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use sha2::{Digest, Sha256};

use super::npz::{Npz, NpzError};
use crate::features::{BANDS, GRID, GRID_CELLS, INPUT_LEN};

/// Number of classes (negative, neutral, positive).
pub const NUM_CLASSES: usize = crate::CLASSES.len();

/// DE features with labels. Sample `i` is `x[i * INPUT_LEN..(i + 1) * INPUT_LEN]` in
/// [band][row][col] order; cells without an electrode hold 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub x: Vec<f32>,
    /// 0 negative, 1 neutral, 2 positive.
    pub y: Vec<u8>,
    /// Samples of one group (a trial, a recording) are never split between train and test.
    pub group: Vec<i64>,
    /// Grid cells (row * 9 + col) that carry an electrode, ascending.
    pub filled_cells: Vec<usize>,
    pub description: String,
    /// sha256 (hex) of the file the data was read from.
    pub sha256: String,
}

/// Why a dataset file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Npz(#[from] NpzError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("array '{name}' has shape {found:?}, expected {expected}")]
    Shape {
        name: &'static str,
        found: Vec<usize>,
        expected: String,
    },
    #[error(
        "array 'label' holds values {values:?}; expected 0 (negative), 1 (neutral), 2 (positive){hint}"
    )]
    UnknownLabels {
        values: Vec<i64>,
        hint: &'static str,
    },
    #[error("array '{name}' holds {count} non-finite values (NaN/Inf); the first is in sample {first_sample} (flat index {first_index})")]
    NonFinite {
        name: &'static str,
        count: usize,
        first_sample: usize,
        first_index: usize,
    },
    #[error("'channels': {0}")]
    Montage(#[from] crate::features::grid::MontageError),
    #[error("the dataset holds no samples")]
    Empty,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Features of sample `i`.
    pub fn sample(&self, i: usize) -> &[f32] {
        &self.x[i * INPUT_LEN..(i + 1) * INPUT_LEN]
    }

    /// Samples per class.
    pub fn class_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &y in &self.y {
            counts[y as usize] += 1;
        }
        counts
    }

    pub fn group_count(&self) -> usize {
        self.group.iter().collect::<BTreeSet<_>>().len()
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize], description: String) -> Dataset {
        let mut x = Vec::with_capacity(indices.len() * INPUT_LEN);
        for &i in indices {
            x.extend_from_slice(self.sample(i));
        }
        Dataset {
            x,
            y: indices.iter().map(|&i| self.y[i]).collect(),
            group: indices.iter().map(|&i| self.group[i]).collect(),
            filled_cells: self.filled_cells.clone(),
            description,
            sha256: self.sha256.clone(),
        }
    }

    /// Reads a dataset in the schema of docs/datasets.md.
    pub fn load_npz(path: &Path) -> Result<Dataset, DatasetError> {
        let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let mut npz = Npz::open(path)?;

        let de = npz.floats("de")?;
        let shape = de.shape().to_vec();
        let n = *shape.first().unwrap_or(&0);
        let mut dropped = Vec::new();
        let (x, filled_cells, layout) = match shape.as_slice() {
            [_, 5, 9, 9] => {
                let x: Vec<f32> = de.iter().copied().collect();
                check_finite("de", &x, INPUT_LEN)?;
                // Cells that are 0 in every sample of every band carry no electrode.
                let filled = (0..GRID_CELLS)
                    .filter(|&c| x.chunks_exact(GRID_CELLS).any(|band| band[c] != 0.0))
                    .collect();
                (x, filled, "[N, 5, 9, 9]".to_string())
            }
            [_, c, 5] => {
                let labels = npz.strings("channels")?;
                if labels.len() != *c {
                    return Err(DatasetError::Shape {
                        name: "channels",
                        found: vec![labels.len()],
                        expected: format!("[{c}] (one label per channel of 'de' [N, {c}, 5])"),
                    });
                }
                // The live daemon's montage mapping: old names, nearest cells for channels off
                // the SEED grid, channels sharing a cell averaged.
                let grid = crate::features::GridMap::from_labels(&labels)?;
                let flat: Vec<f32> = de.iter().copied().collect();
                check_finite("de", &flat, c * BANDS)?;
                let mut per_cell = [0u32; GRID_CELLS];
                grid.cell_of_channel
                    .iter()
                    .flatten()
                    .for_each(|&cell| per_cell[cell] += 1);
                let mut x = vec![0.0f32; n * INPUT_LEN];
                for (ch, cell) in grid.cell_of_channel.iter().enumerate() {
                    let Some(cell) = *cell else {
                        dropped.push(labels[ch].clone());
                        continue;
                    };
                    let weight = 1.0 / per_cell[cell] as f32;
                    for s in 0..n {
                        for b in 0..BANDS {
                            x[s * INPUT_LEN + b * GRID_CELLS + cell] +=
                                weight * flat[(s * c + ch) * BANDS + b];
                        }
                    }
                }
                let filled = grid.filled_cells();
                (x, filled, format!("[N, {c}, 5] with channel labels"))
            }
            _ => {
                return Err(DatasetError::Shape {
                    name: "de",
                    found: shape,
                    expected: "[N, C, 5] (with 'channels') or [N, 5, 9, 9]".into(),
                })
            }
        };
        if n == 0 {
            return Err(DatasetError::Empty);
        }

        let label = npz.ints("label")?;
        if label.shape() != [n] {
            return Err(DatasetError::Shape {
                name: "label",
                found: label.shape().to_vec(),
                expected: format!("[{n}] (one label per sample of 'de')"),
            });
        }
        let bad: BTreeSet<i64> = label
            .iter()
            .copied()
            .filter(|v| !(0..=2).contains(v))
            .collect();
        if !bad.is_empty() {
            let hint = if bad.contains(&-1) {
                " (SEED's -1/0/1 must be mapped to 0/1/2)"
            } else {
                ""
            };
            return Err(DatasetError::UnknownLabels {
                values: bad.into_iter().collect(),
                hint,
            });
        }
        let y: Vec<u8> = label.iter().map(|&v| v as u8).collect();

        let (group, group_source) = read_groups(&mut npz, n)?;
        let name = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut description = format!(
            "{name}: {n} samples, de {layout}, {} grid cells filled, groups from {group_source}",
            filled_cells.len()
        );
        if !dropped.is_empty() {
            description += &format!(", channels off the grid ignored: {dropped:?}");
        }
        let ds = Dataset {
            x,
            y,
            group,
            filled_cells,
            description,
            sha256,
        };
        tracing::info!(dataset = %ds.description, classes = ?ds.class_counts(), "dataset loaded");
        Ok(ds)
    }

    /// Splits into (train, validation) keeping every group whole. Groups are assigned per class
    /// (by the group's majority label) so that both parts keep the class mix: for each class,
    /// round(val_fraction * its groups) groups go to validation, at least one when the class has
    /// two or more groups, never all of them. With a single group the validation part is empty.
    pub fn split_by_group(&self, val_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut labels_of: BTreeMap<i64, [usize; NUM_CLASSES]> = BTreeMap::new();
        for (g, y) in self.group.iter().zip(&self.y) {
            labels_of.entry(*g).or_default()[*y as usize] += 1;
        }
        let mut by_class: [Vec<i64>; NUM_CLASSES] = Default::default();
        for (g, counts) in &labels_of {
            let major = (0..NUM_CLASSES)
                .max_by_key(|&c| (counts[c], NUM_CLASSES - c))
                .unwrap_or(0);
            by_class[major].push(*g);
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut val_groups = BTreeSet::new();
        for groups in by_class.iter_mut() {
            groups.shuffle(&mut rng);
            let n = groups.len();
            if n < 2 {
                continue;
            }
            let take = ((val_fraction * n as f64).round() as usize).clamp(1, n - 1);
            val_groups.extend(groups.iter().take(take).copied());
        }
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for (i, g) in self.group.iter().enumerate() {
            if val_groups.contains(g) {
                val.push(i);
            } else {
                train.push(i);
            }
        }
        (
            self.subset(&train, format!("{} (train part)", self.description)),
            self.subset(&val, format!("{} (validation part)", self.description)),
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_finite(name: &'static str, x: &[f32], per_sample: usize) -> Result<(), DatasetError> {
    let count = x.iter().filter(|v| !v.is_finite()).count();
    if count == 0 {
        return Ok(());
    }
    let first_index = x.iter().position(|v| !v.is_finite()).unwrap_or(0);
    Err(DatasetError::NonFinite {
        name,
        count,
        first_sample: first_index / per_sample.max(1),
        first_index,
    })
}

/// Groups from 'group', else from distinct (subject, session) pairs, else one group per sample.
fn read_groups(npz: &mut Npz, n: usize) -> Result<(Vec<i64>, &'static str), DatasetError> {
    let mut read = |name: &'static str| -> Result<Option<Vec<i64>>, DatasetError> {
        if !npz.has(name) {
            return Ok(None);
        }
        let a = npz.ints(name)?;
        if a.shape() != [n] {
            return Err(DatasetError::Shape {
                name,
                found: a.shape().to_vec(),
                expected: format!("[{n}] (one value per sample of 'de')"),
            });
        }
        Ok(Some(a.iter().copied().collect()))
    };
    if let Some(g) = read("group")? {
        return Ok((g, "'group'"));
    }
    let subject = read("subject")?;
    let session = read("session")?;
    if subject.is_none() && session.is_none() {
        tracing::warn!(
            "dataset has no 'group', 'subject' or 'session': every sample is its own group, so \
             validation windows may neighbour training windows (optimistic scores)"
        );
        return Ok(((0..n as i64).collect(), "sample index (no group given)"));
    }
    let subject = subject.unwrap_or_else(|| vec![0; n]);
    let session = session.unwrap_or_else(|| vec![0; n]);
    let mut ids = BTreeMap::new();
    let group = subject
        .iter()
        .zip(&session)
        .map(|pair| {
            let next = ids.len() as i64;
            *ids.entry(pair).or_insert(next)
        })
        .collect();
    Ok((group, "(subject, session)"))
}

/// The SEED cells, ascending.
pub fn seed_filled_cells() -> Vec<usize> {
    crate::features::GridMap::from_labels(&crate::features::SEED62)
        .expect("SEED's montage is on the grid")
        .filled_cells()
}

/// Per-feature standardisation fitted on a training set: x_norm = (x - mean) / std over the
/// filled cells; empty cells get mean 0 and std 1 (so they stay 0). A feature with (near) zero
/// spread gets std 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalizer {
    pub fn fit(ds: &Dataset) -> Normalizer {
        let mut mean = vec![0.0f32; INPUT_LEN];
        let mut std = vec![1.0f32; INPUT_LEN];
        let n = ds.len();
        if n == 0 {
            return Normalizer { mean, std };
        }
        for b in 0..BANDS {
            for &cell in &ds.filled_cells {
                let f = b * GRID_CELLS + cell;
                let (mut s, mut s2) = (0.0f64, 0.0f64);
                for i in 0..n {
                    let v = ds.x[i * INPUT_LEN + f] as f64;
                    s += v;
                    s2 += v * v;
                }
                let m = s / n as f64;
                let var = (s2 / n as f64 - m * m).max(0.0);
                mean[f] = m as f32;
                let sd = var.sqrt();
                std[f] = if sd > 1e-6 { sd as f32 } else { 1.0 };
            }
        }
        Normalizer { mean, std }
    }

    /// Normalises `x` (any number of samples) in place.
    pub fn apply(&self, x: &mut [f32]) {
        for sample in x.chunks_exact_mut(INPUT_LEN) {
            for ((v, m), s) in sample.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
    }

    /// A normalised copy of the dataset's features.
    pub fn transform(&self, ds: &Dataset) -> Vec<f32> {
        let mut x = ds.x.clone();
        self.apply(&mut x);
        x
    }
}

/// Prefrontal cells of the grid (rows 0-1, the Fp/AF rows).
pub fn default_prefrontal_cells() -> Vec<usize> {
    (0..2 * GRID).collect()
}

/// A synthetic DE dataset on the SEED montage, for tests and benchmarks.
///
/// Windows come in groups of 20 consecutive windows with one class (like the trials of SEED),
/// classes rotating over groups. Each value is a band- and cell-specific baseline, plus a group
/// offset (N(0, 0.3): session drift), plus N(0, 1) noise, plus a class effect of size
/// `strength` (in noise standard deviations):
/// - prefrontal rows (Fp/AF): negative = left alpha up / right alpha down, positive = the
///   mirror image (frontal alpha asymmetry), neutral = beta and gamma up; negative and positive
///   also lower prefrontal beta by strength / 2;
/// - temporal sites (FT7/FT8, T7/T8, TP7/TP8): gamma shifted by strength / 2 * (class - 1).
pub fn synthetic_dataset(n: usize, strength: f32, seed: u64) -> Dataset {
    const GROUP_LEN: usize = 20;
    const ALPHA: usize = 2;
    const BETA: usize = 3;
    const GAMMA: usize = 4;
    let mut rng = StdRng::seed_from_u64(seed);
    let filled = seed_filled_cells();
    let mut baseline = vec![0.0f32; INPUT_LEN];
    for b in 0..BANDS {
        for &c in &filled {
            let g: f32 = rng.sample(StandardNormal);
            baseline[b * GRID_CELLS + c] = 3.0 - 0.5 * b as f32 + 0.3 * g;
        }
    }
    let left = |c: usize| c % GRID < GRID / 2;
    let right = |c: usize| c % GRID > GRID / 2;
    let prefrontal: Vec<usize> = filled.iter().copied().filter(|&c| c < 2 * GRID).collect();
    let temporal: Vec<usize> = filled
        .iter()
        .copied()
        .filter(|&c| (3..=5).contains(&(c / GRID)) && (c % GRID == 0 || c % GRID == GRID - 1))
        .collect();

    let mut x = vec![0.0f32; n * INPUT_LEN];
    let mut y = Vec::with_capacity(n);
    let mut group = Vec::with_capacity(n);
    let mut offset = vec![0.0f32; INPUT_LEN];
    for i in 0..n {
        let g = i / GROUP_LEN;
        let class = g % NUM_CLASSES;
        if i % GROUP_LEN == 0 {
            for &c in &filled {
                for b in 0..BANDS {
                    let v: f32 = rng.sample(StandardNormal);
                    offset[b * GRID_CELLS + c] = 0.3 * v;
                }
            }
        }
        let s = class as f32 - 1.0;
        let sample = &mut x[i * INPUT_LEN..(i + 1) * INPUT_LEN];
        for &c in &filled {
            for b in 0..BANDS {
                let f = b * GRID_CELLS + c;
                let noise: f32 = rng.sample(StandardNormal);
                sample[f] = baseline[f] + offset[f] + noise;
            }
        }
        for &c in &prefrontal {
            let side = if left(c) {
                1.0
            } else if right(c) {
                -1.0
            } else {
                0.0
            };
            sample[ALPHA * GRID_CELLS + c] -= strength * s * side;
            if class == 1 {
                sample[BETA * GRID_CELLS + c] += strength;
                sample[GAMMA * GRID_CELLS + c] += strength;
            } else {
                sample[BETA * GRID_CELLS + c] -= strength / 2.0;
            }
        }
        for &c in &temporal {
            sample[GAMMA * GRID_CELLS + c] += strength / 2.0 * s;
        }
        y.push(class as u8);
        group.push(g as i64);
    }
    let sha256 = hex(&Sha256::digest(
        x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    ));
    Dataset {
        x,
        y,
        group,
        filled_cells: filled,
        description: format!("synthetic: {n} samples, strength {strength}, seed {seed}"),
        sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array3, Array4};
    use ndarray_npy::{NpzWriter, WritableElement, WriteDataError};
    use py_literal::Value as PyValue;
    use std::io::Write;

    /// A numpy '<U4' text element, as np.savez stores a list of short labels.
    #[derive(Clone)]
    struct U4(String);

    impl WritableElement for U4 {
        fn type_descriptor() -> PyValue {
            PyValue::String("<U4".into())
        }
        fn write<W: Write>(&self, mut w: W) -> Result<(), WriteDataError> {
            let mut units: Vec<u32> = self.0.chars().map(|c| c as u32).collect();
            units.resize(4, 0);
            for u in units {
                w.write_all(&u.to_le_bytes())?;
            }
            Ok(())
        }
        fn write_slice<W: Write>(slice: &[Self], mut w: W) -> Result<(), WriteDataError> {
            slice.iter().try_for_each(|s| s.write(&mut w))
        }
    }

    enum Arr {
        F32(ndarray::ArrayD<f32>),
        F64(ndarray::ArrayD<f64>),
        I64(ndarray::ArrayD<i64>),
        I32(ndarray::ArrayD<i32>),
        Text(Vec<&'static str>),
    }

    fn write(dir: &Path, name: &str, arrays: Vec<(&str, Arr)>) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut npz = NpzWriter::new(std::fs::File::create(&path).unwrap());
        for (n, a) in arrays {
            match a {
                Arr::F32(a) => npz.add_array(n, &a).unwrap(),
                Arr::F64(a) => npz.add_array(n, &a).unwrap(),
                Arr::I64(a) => npz.add_array(n, &a).unwrap(),
                Arr::I32(a) => npz.add_array(n, &a).unwrap(),
                Arr::Text(v) => npz
                    .add_array(
                        n,
                        &Array1::from(v.iter().map(|s| U4(s.to_string())).collect::<Vec<_>>()),
                    )
                    .unwrap(),
            }
        }
        npz.finish().unwrap();
        path
    }

    #[test]
    fn channel_layout_lands_on_the_seed_grid() {
        let dir = tempfile::tempdir().unwrap();
        // 2 samples, channels FP1, fc6 (lower case), T3 (old name of T7), EOG (off grid).
        let de = Array3::from_shape_fn((2, 4, 5), |(n, c, b)| (100 * n + 10 * c + b) as f64);
        let path = write(
            dir.path(),
            "ok.npz",
            vec![
                ("de", Arr::F64(de.into_dyn())),
                ("channels", Arr::Text(vec!["FP1", "fc6", "T3", "EOG"])),
                ("label", Arr::I32(Array1::from(vec![2, 0]).into_dyn())),
                ("subject", Arr::I64(Array1::from(vec![1, 1]).into_dyn())),
                ("session", Arr::I64(Array1::from(vec![1, 2]).into_dyn())),
            ],
        );
        let ds = Dataset::load_npz(&path).unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.y, vec![2, 0]);
        assert_eq!(ds.group, vec![0, 1]);
        let (fp1, fc6, t7) = (3, 3 * GRID + 7, 4 * GRID);
        assert_eq!(ds.filled_cells, vec![fp1, fc6, t7]);
        // Sample 1, channel fc6 (c = 1), band 3 -> 100 + 10 + 3.
        assert_eq!(ds.sample(1)[3 * GRID_CELLS + fc6], 113.0);
        assert_eq!(ds.sample(0)[4 * GRID_CELLS + t7], 24.0);
        assert_eq!(ds.x.iter().filter(|v| **v != 0.0).count(), 2 * 3 * 5 - 1);
        assert!(ds.description.contains("EOG"));
        assert_eq!(ds.sha256.len(), 64);
    }

    #[test]
    fn grid_layout_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let mut de = Array4::<f32>::zeros((3, 5, 9, 9));
        de[[0, 2, 0, 3]] = 1.5;
        de[[2, 4, 8, 4]] = -0.5;
        let path = write(
            dir.path(),
            "grid.npz",
            vec![
                ("de", Arr::F32(de.into_dyn())),
                ("label", Arr::I64(Array1::from(vec![0, 1, 2]).into_dyn())),
                ("group", Arr::I64(Array1::from(vec![7, 7, 9]).into_dyn())),
            ],
        );
        let ds = Dataset::load_npz(&path).unwrap();
        assert_eq!(ds.filled_cells, vec![3, 8 * GRID + 4]);
        assert_eq!(ds.sample(0)[2 * GRID_CELLS + 3], 1.5);
        assert_eq!(ds.group, vec![7, 7, 9]);
    }

    #[test]
    fn schema_errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let grid = |n: usize| Arr::F32(Array4::<f32>::ones((n, 5, 9, 9)).into_dyn());
        let labels = |v: Vec<i64>| Arr::I64(Array1::from(v).into_dyn());
        let err = |p: std::path::PathBuf| Dataset::load_npz(&p).unwrap_err().to_string();

        let e = err(write(d, "a.npz", vec![("label", labels(vec![0]))]));
        assert!(e.contains("'de' is missing") && e.contains("label"), "{e}");

        let e = err(write(
            d,
            "b.npz",
            vec![
                ("de", Arr::F32(Array3::<f32>::zeros((2, 4, 3)).into_dyn())),
                ("label", labels(vec![0, 1])),
            ],
        ));
        assert!(e.contains("'de' has shape [2, 4, 3]"), "{e}");

        let e = err(write(
            d,
            "c.npz",
            vec![("de", grid(3)), ("label", labels(vec![0, 1]))],
        ));
        assert!(e.contains("'label' has shape [2], expected [3]"), "{e}");

        let e = err(write(
            d,
            "d.npz",
            vec![("de", grid(3)), ("label", labels(vec![-1, 0, 1]))],
        ));
        assert!(e.contains("[-1]") && e.contains("0/1/2"), "{e}");

        let e = err(write(
            d,
            "e.npz",
            vec![("de", grid(2)), ("label", labels(vec![0, 5]))],
        ));
        assert!(e.contains("values [5]"), "{e}");

        let mut bad = Array4::<f32>::ones((3, 5, 9, 9));
        bad[[1, 0, 0, 2]] = f32::NAN;
        bad[[2, 1, 1, 1]] = f32::INFINITY;
        let e = err(write(
            d,
            "f.npz",
            vec![
                ("de", Arr::F32(bad.into_dyn())),
                ("label", labels(vec![0, 1, 2])),
            ],
        ));
        assert!(
            e.contains("2 non-finite")
                && e.contains("sample 1")
                && e.contains(&format!("index {}", INPUT_LEN + 2)),
            "{e}"
        );

        let e = err(write(
            d,
            "g.npz",
            vec![
                ("de", grid(1)),
                ("label", Arr::F32(Array1::from(vec![0.0f32]).into_dyn())),
            ],
        ));
        assert!(
            e.contains("'label' has dtype <f4, expected an integer type"),
            "{e}"
        );

        let e = err(write(
            d,
            "h.npz",
            vec![
                ("de", Arr::F32(Array3::<f32>::zeros((1, 2, 5)).into_dyn())),
                ("channels", Arr::Text(vec!["X1", "X2"])),
                ("label", labels(vec![0])),
            ],
        ));
        assert!(e.contains("no channel") && e.contains("X1"), "{e}");

        // Two channels on one cell (T3 is the old name of T7) are averaged, as in the daemon.
        let shared = Dataset::load_npz(&write(
            d,
            "i.npz",
            vec![
                (
                    "de",
                    Arr::F32(
                        Array3::from_shape_fn((1, 2, 5), |(_, ch, _)| 1.0 + 2.0 * ch as f32)
                            .into_dyn(),
                    ),
                ),
                ("channels", Arr::Text(vec!["T3", "t7"])),
                ("label", labels(vec![0])),
            ],
        ))
        .unwrap();
        assert_eq!(shared.filled_cells, vec![36]);
        assert_eq!(shared.x[36], 2.0, "mean of 1.0 and 3.0");

        let e = err(write(
            d,
            "j.npz",
            vec![
                ("de", grid(2)),
                ("label", labels(vec![0, 1])),
                ("group", labels(vec![1])),
            ],
        ));
        assert!(e.contains("'group' has shape [1], expected [2]"), "{e}");

        std::fs::write(d.join("k.npz"), b"not a zip").unwrap();
        let e = err(d.join("k.npz"));
        assert!(e.contains("not a readable .npz"), "{e}");
        let e = err(d.join("missing.npz"));
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn group_split_keeps_groups_whole_and_classes_on_both_sides() {
        let ds = synthetic_dataset(600, 1.0, 3);
        let (train, val) = ds.split_by_group(0.25, 4);
        assert_eq!(train.len() + val.len(), 600);
        let tg: BTreeSet<i64> = train.group.iter().copied().collect();
        assert!(val.group.iter().all(|g| !tg.contains(g)));
        assert!(train.class_counts().iter().all(|c| *c > 0));
        assert!(val.class_counts().iter().all(|c| *c > 0));
        // 30 groups, 10 per class: round(0.25 * 10) = 2 or 3 per class -> 6..9 groups.
        assert!(
            (6..=9).contains(&val.group_count()),
            "{}",
            val.group_count()
        );
        assert_eq!(ds.split_by_group(0.25, 4).1, val);
    }

    #[test]
    fn normaliser_standardises_filled_cells_and_leaves_empty_ones_zero() {
        let ds = synthetic_dataset(200, 1.0, 1);
        let norm = Normalizer::fit(&ds);
        let x = norm.transform(&ds);
        let f = 2 * GRID_CELLS + 3; // alpha at FP1
        let col: Vec<f64> = (0..200).map(|i| x[i * INPUT_LEN + f] as f64).collect();
        let mean = col.iter().sum::<f64>() / 200.0;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 200.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
        assert_eq!((norm.mean[0], norm.std[0]), (0.0, 1.0)); // cell (0,0) is empty
        assert!((0..200).all(|i| x[i * INPUT_LEN] == 0.0));
    }
}
