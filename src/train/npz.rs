//! Reading NumPy `.npz` archives whose arrays may come in any of several dtypes, including the
//! fixed-width text arrays (`<U..`, `|S..`) that `np.savez` writes for a list of strings.
//!
//! ndarray-npy reads one element type per call; the dataset schema accepts float32 or float64
//! features and any integer type for labels, so each reader tries the accepted types in turn and
//! reports the file's real dtype when none fits.
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use ndarray::{ArrayD, IxDyn, OwnedRepr};
use ndarray_npy::{NpzReader, ReadDataError, ReadNpyError, ReadNpzError, ReadableElement};
use py_literal::Value as PyValue;

/// Why an array could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a readable .npz archive ({reason}); write it with numpy.savez \
         (savez_compressed archives are not supported by this build)"
    )]
    Archive { path: String, reason: String },
    #[error("array '{name}' is missing (the archive holds: {found:?})")]
    Missing { name: String, found: Vec<String> },
    #[error("array '{name}' has dtype {found}, expected {expected}")]
    Dtype {
        name: String,
        found: String,
        expected: &'static str,
    },
    #[error("array '{name}' cannot be read: {reason}")]
    Read { name: String, reason: String },
}

/// An open archive plus the names of its arrays.
pub struct Npz {
    reader: NpzReader<BufReader<File>>,
    names: Vec<String>,
}

impl Npz {
    pub fn open(path: &Path) -> Result<Self, NpzError> {
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|source| NpzError::Open {
            path: shown.clone(),
            source,
        })?;
        let archive = |e: ReadNpzError| NpzError::Archive {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let mut reader = NpzReader::new(BufReader::new(file)).map_err(archive)?;
        let names = reader.names().map_err(archive)?;
        Ok(Npz { reader, names })
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn missing(&self, name: &str) -> NpzError {
        NpzError::Missing {
            name: name.into(),
            found: self.names.clone(),
        }
    }

    /// Tries to read `name` as element type `T`. `Ok(None)` means "the dtype is not `T`";
    /// the descriptor of the stored array is returned through `desc`.
    fn try_read<T: ReadableElement>(
        &mut self,
        name: &str,
        desc: &mut String,
    ) -> Result<Option<ArrayD<T>>, NpzError> {
        if !self.has(name) {
            return Err(self.missing(name));
        }
        match self.reader.by_name::<OwnedRepr<T>, IxDyn>(name) {
            Ok(a) => Ok(Some(a)),
            Err(ReadNpzError::Npy(ReadNpyError::WrongDescriptor(d))) => {
                *desc = py_desc(&d);
                Ok(None)
            }
            Err(e) => Err(NpzError::Read {
                name: name.into(),
                reason: e.to_string(),
            }),
        }
    }

    /// Reads a float32 or float64 array as f32 values.
    pub fn floats(&mut self, name: &str) -> Result<ArrayD<f32>, NpzError> {
        let mut desc = String::new();
        if let Some(a) = self.try_read::<f32>(name, &mut desc)? {
            return Ok(a);
        }
        if let Some(a) = self.try_read::<f64>(name, &mut desc)? {
            return Ok(a.mapv(|v| v as f32));
        }
        Err(NpzError::Dtype {
            name: name.into(),
            found: desc,
            expected: "float32 or float64",
        })
    }

    /// Reads an array of any fixed-size integer type as i64 values.
    pub fn ints(&mut self, name: &str) -> Result<ArrayD<i64>, NpzError> {
        let mut desc = String::new();
        macro_rules! attempt {
            ($($t:ty),*) => {$(
                if let Some(a) = self.try_read::<$t>(name, &mut desc)? {
                    return Ok(a.mapv(|v| v as i64));
                }
            )*};
        }
        attempt!(i64, i32, i16, i8, u8, u16, u32);
        if let Some(a) = self.try_read::<u64>(name, &mut desc)? {
            return Ok(a.mapv(|v| i64::try_from(v).unwrap_or(i64::MAX)));
        }
        Err(NpzError::Dtype {
            name: name.into(),
            found: desc,
            expected: "an integer type",
        })
    }

    /// Reads a text array (numpy `<U..` or `|S..`, as `np.savez` stores a list of str).
    pub fn strings(&mut self, name: &str) -> Result<Vec<String>, NpzError> {
        let mut desc = String::new();
        match self.try_read::<NpyText>(name, &mut desc)? {
            Some(a) => Ok(a.into_iter().map(|t| t.0).collect()),
            None => Err(NpzError::Dtype {
                name: name.into(),
                found: desc,
                expected: "a text array (<U.. or |S..; not dtype=object)",
            }),
        }
    }
}

fn py_desc(d: &PyValue) -> String {
    match d {
        PyValue::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One element of a numpy fixed-width text array.
#[derive(Debug, Clone, PartialEq)]
struct NpyText(String);

impl ReadableElement for NpyText {
    fn read_to_end_exact_vec<R: Read>(
        mut reader: R,
        type_desc: &PyValue,
        len: usize,
    ) -> Result<Vec<Self>, ReadDataError> {
        let PyValue::String(desc) = type_desc else {
            return Err(ReadDataError::WrongDescriptor(type_desc.clone()));
        };
        // '<U7' = 7 UTF-32 code units per element (little endian), '|S7' / 'S7' = 7 bytes.
        let (unicode, width) = if let Some(w) = desc.strip_prefix("<U") {
            (true, w)
        } else if let Some(w) = desc.strip_prefix("|S").or_else(|| desc.strip_prefix("S")) {
            (false, w)
        } else {
            return Err(ReadDataError::WrongDescriptor(type_desc.clone()));
        };
        let width: usize = width
            .parse()
            .map_err(|_| ReadDataError::WrongDescriptor(type_desc.clone()))?;
        let item_bytes = if unicode { 4 * width } else { width };
        let mut bytes = vec![0u8; item_bytes * len];
        reader.read_exact(&mut bytes)?;
        let mut extra = [0u8; 1];
        if reader.read(&mut extra)? != 0 {
            return Err(ReadDataError::ExtraBytes(1));
        }
        let parse_err = |what: &str| ReadDataError::ParseData(what.to_string().into());
        let mut out = Vec::with_capacity(len);
        for item in bytes.chunks_exact(item_bytes.max(1)).take(len) {
            let text: String = if unicode {
                item.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .take_while(|&u| u != 0)
                    .map(|u| char::from_u32(u).ok_or_else(|| parse_err("invalid UTF-32 code")))
                    .collect::<Result<_, _>>()?
            } else {
                let end = item.iter().position(|&b| b == 0).unwrap_or(item.len());
                String::from_utf8(item[..end].to_vec()).map_err(|_| parse_err("invalid UTF-8"))?
            };
            out.push(NpyText(text));
        }
        if item_bytes == 0 {
            out.resize(len, NpyText(String::new()));
        }
        Ok(out)
    }
}
