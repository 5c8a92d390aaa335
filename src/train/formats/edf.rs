//! EDF, EDF+, BDF and BDF+ files (European Data Format and BioSemi's 24-bit variant): the
//! header, every signal's physical samples and the EDF+/BDF+ annotations (TALs).
//!
//! Written here because no crate in the registry reads all four: edf-rs 0.2 refuses BioSemi's
//! plain BDF and EDF+ headers whose patient field is free text (common in exports), edfplus 0.1
//! reads EDF+ only, edf-reader 0.6 plain EDF without annotations (docs/datasets.md).
//!
//! Header text is read as Latin-1, so a micro sign written as byte 0xB5 in the physical
//! dimension reaches the unit parser as 'µ'. A last data record cut short (a recording that
//! stopped mid-write) is dropped with a warning; anything else malformed is an error that names
//! the field.
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::Context;

use super::RawRecording;
use crate::features::grid::cells_for_labels;
use crate::record::labels::LabelMapping;

/// Which of the four formats a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Edf,
    EdfPlus { continuous: bool },
    Bdf,
    BdfPlus { continuous: bool },
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Edf => "EDF",
            Variant::EdfPlus { continuous: true } => "EDF+C",
            Variant::EdfPlus { continuous: false } => "EDF+D",
            Variant::Bdf => "BDF",
            Variant::BdfPlus { continuous: true } => "BDF+C",
            Variant::BdfPlus { continuous: false } => "BDF+D",
        }
    }

    fn bytes_per_sample(self) -> usize {
        match self {
            Variant::Edf | Variant::EdfPlus { .. } => 2,
            Variant::Bdf | Variant::BdfPlus { .. } => 3,
        }
    }
}

/// One signal's header fields.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalHeader {
    pub label: String,
    pub transducer: String,
    /// Unit of the physical values ("uV", "mV", ...; may be empty).
    pub physical_dimension: String,
    pub physical_min: f64,
    pub physical_max: f64,
    pub digital_min: i32,
    pub digital_max: i32,
    pub prefilter: String,
    pub samples_per_record: usize,
}

impl SignalHeader {
    /// The EDF+/BDF+ annotation channel ("EDF Annotations" / "BDF Annotations").
    pub fn is_annotations(&self) -> bool {
        self.label == "EDF Annotations" || self.label == "BDF Annotations"
    }
}

/// One annotation: `onset_s` and `duration_s` in seconds from the file start.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub onset_s: f64,
    /// None when the TAL gives no duration.
    pub duration_s: Option<f64>,
    pub text: String,
}

/// A whole file in memory.
#[derive(Debug, Clone)]
pub struct EdfFile {
    pub variant: Variant,
    pub record_duration_s: f64,
    /// Every signal, annotation channels included, in file order.
    pub signals: Vec<SignalHeader>,
    /// Physical samples of each signal (same index as `signals`; empty for annotation channels).
    pub samples: Vec<Vec<f32>>,
    /// Start of each data record, seconds from the file start (EDF+/BDF+: from its time-keeping
    /// annotation; otherwise record index x duration).
    pub record_onsets: Vec<f64>,
    pub annotations: Vec<Annotation>,
}

impl EdfFile {
    /// Sample rate of signal `i`; None for a zero record duration.
    pub fn sample_rate_hz(&self, i: usize) -> Option<f64> {
        (self.record_duration_s > 0.0)
            .then(|| self.signals[i].samples_per_record as f64 / self.record_duration_s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EdfError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not an EDF/BDF file: {0}")]
    NotEdf(String),
    #[error("header field '{field}' is {value:?}: {why}")]
    Field {
        field: String,
        value: String,
        why: &'static str,
    },
    #[error("data record {record}: annotation {why}")]
    Annotation { record: usize, why: String },
}

fn latin1(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Fixed-width header fields read in order.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn text(&mut self, width: usize) -> String {
        let s = latin1(&self.bytes[self.pos..self.pos + width]);
        self.pos += width;
        s
    }

    fn number<T: std::str::FromStr>(&mut self, width: usize, field: &str) -> Result<T, EdfError> {
        let s = self.text(width);
        // A decimal comma appears in some writers' number fields.
        s.replace(',', ".").parse().map_err(|_| EdfError::Field {
            field: field.to_string(),
            value: s,
            why: "not a number",
        })
    }
}

fn field_error(field: impl Into<String>, value: impl ToString, why: &'static str) -> EdfError {
    EdfError::Field {
        field: field.into(),
        value: value.to_string(),
        why,
    }
}

/// Reads `path` completely.
pub fn read_edf(path: &Path) -> Result<EdfFile, EdfError> {
    read_from(
        BufReader::new(File::open(path)?),
        &path.display().to_string(),
    )
}

fn read_from(mut r: impl Read, name: &str) -> Result<EdfFile, EdfError> {
    let mut fixed = [0u8; 256];
    r.read_exact(&mut fixed)
        .map_err(|_| EdfError::NotEdf("shorter than the 256-byte header".into()))?;
    let bdf = fixed[0] == 0xFF && &fixed[1..8] == b"BIOSEMI";
    if !bdf && latin1(&fixed[..8]) != "0" {
        return Err(EdfError::NotEdf(format!(
            "version field {:?} (EDF: \"0\", BDF: 0xFF \"BIOSEMI\")",
            latin1(&fixed[..8])
        )));
    }
    let mut f = Fields {
        bytes: &fixed,
        pos: 184,
    };
    let header_bytes: usize = f.number(8, "number of bytes in header")?;
    let reserved = f.text(44);
    let records: i64 = f.number(8, "number of data records")?;
    let record_duration_s: f64 = f.number(8, "duration of a data record")?;
    let ns: usize = f.number(4, "number of signals")?;
    let continuous = !reserved.starts_with("EDF+D") && !reserved.starts_with("BDF+D");
    let variant = match (
        bdf,
        reserved.starts_with("EDF+") || reserved.starts_with("BDF+"),
    ) {
        (false, false) => Variant::Edf,
        (false, true) => Variant::EdfPlus { continuous },
        (true, false) => Variant::Bdf,
        (true, true) => Variant::BdfPlus { continuous },
    };
    if ns == 0 {
        return Err(field_error("number of signals", ns, "no signals"));
    }
    if header_bytes != 256 * (ns + 1) {
        return Err(field_error(
            "number of bytes in header",
            header_bytes,
            "must be 256 x (1 + number of signals)",
        ));
    }
    if !(record_duration_s.is_finite() && record_duration_s >= 0.0) {
        return Err(field_error(
            "duration of a data record",
            record_duration_s,
            "must be >= 0",
        ));
    }
    let mut sig = vec![0u8; 256 * ns];
    r.read_exact(&mut sig)
        .map_err(|_| EdfError::NotEdf(format!("the header of {ns} signals is cut short")))?;
    let signals = signal_headers(&sig, ns)?;
    let bytes = variant.bytes_per_sample();
    let record_bytes: usize = signals.iter().map(|s| s.samples_per_record * bytes).sum();
    if record_bytes == 0 {
        return Err(field_error(
            "number of samples in each data record",
            0,
            "all are 0",
        ));
    }
    // physical = physical_min + gain * (digital - digital_min)
    let gains: Vec<(f64, i64, f64)> = signals
        .iter()
        .map(|s| {
            let span = i64::from(s.digital_max) - i64::from(s.digital_min);
            let gain = (s.physical_max - s.physical_min) / span as f64;
            (gain, i64::from(s.digital_min), s.physical_min)
        })
        .collect();
    let mut file = EdfFile {
        variant,
        record_duration_s,
        samples: vec![Vec::new(); ns],
        signals,
        record_onsets: Vec::new(),
        annotations: Vec::new(),
    };
    let mut record = vec![0u8; record_bytes];
    let mut index = 0usize;
    loop {
        if records >= 0 && index as i64 == records {
            break;
        }
        match read_full(&mut r, &mut record)? {
            0 => break,
            n if n < record_bytes => {
                tracing::warn!(
                    "{name}: data record {index} is cut short ({n} of {record_bytes} bytes): dropped"
                );
                break;
            }
            _ => {}
        }
        let mut onset = None;
        let mut first_annotations = true;
        let mut at = 0;
        for (i, s) in file.signals.iter().enumerate() {
            let len = s.samples_per_record * bytes;
            let chunk = &record[at..at + len];
            at += len;
            if s.is_annotations() {
                let tk = parse_tals(chunk, first_annotations, &mut file.annotations)
                    .map_err(|why| EdfError::Annotation { record: index, why })?;
                if first_annotations {
                    onset = tk;
                }
                first_annotations = false;
                continue;
            }
            let (gain, dmin, pmin) = gains[i];
            let physical = |d: i32| (pmin + gain * (i64::from(d) - dmin) as f64) as f32;
            let out = &mut file.samples[i];
            if bytes == 2 {
                out.extend(
                    chunk
                        .chunks_exact(2)
                        .map(|b| physical(i32::from(i16::from_le_bytes([b[0], b[1]])))),
                );
            } else {
                // Little-endian 24-bit two's complement, sign-extended.
                out.extend(
                    chunk
                        .chunks_exact(3)
                        .map(|b| physical(i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8)),
                );
            }
        }
        let onset = match (variant, onset) {
            (Variant::EdfPlus { .. } | Variant::BdfPlus { .. }, Some(t)) => t,
            (Variant::EdfPlus { .. } | Variant::BdfPlus { .. }, None) if !first_annotations => {
                return Err(EdfError::Annotation {
                    record: index,
                    why: "list has no time-keeping entry".into(),
                })
            }
            _ => index as f64 * record_duration_s,
        };
        file.record_onsets.push(onset);
        index += 1;
    }
    if records >= 0 && (index as i64) < records {
        tracing::warn!("{name}: header announces {records} data records, the file holds {index}");
    }
    Ok(file)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn signal_headers(b: &[u8], ns: usize) -> Result<Vec<SignalHeader>, EdfError> {
    // Field-major: all labels, then all transducers, ...
    let mut f = Fields { bytes: b, pos: 0 };
    let mut column = |width: usize| (0..ns).map(|_| f.text(width)).collect::<Vec<_>>();
    let labels = column(16);
    let transducers = column(80);
    let dims = column(8);
    let pmin = column(8);
    let pmax = column(8);
    let dmin = column(8);
    let dmax = column(8);
    let prefilters = column(80);
    let spr = column(8);
    let num = |v: &str, field: &str, label: &str| -> Result<f64, EdfError> {
        v.replace(',', ".")
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| field_error(format!("{field} of signal {label:?}"), v, "not a number"))
    };
    let int = |v: &str, field: &str, label: &str| -> Result<i64, EdfError> {
        v.parse::<i64>()
            .map_err(|_| field_error(format!("{field} of signal {label:?}"), v, "not an integer"))
    };
    let mut out = Vec::with_capacity(ns);
    for (i, label) in labels.into_iter().enumerate() {
        let l = label.as_str();
        let s = SignalHeader {
            physical_min: num(&pmin[i], "physical minimum", l)?,
            physical_max: num(&pmax[i], "physical maximum", l)?,
            digital_min: int(&dmin[i], "digital minimum", l)? as i32,
            digital_max: int(&dmax[i], "digital maximum", l)? as i32,
            samples_per_record: int(&spr[i], "number of samples in each data record", l)?
                .try_into()
                .map_err(|_| {
                    field_error(
                        format!("number of samples in each data record of signal {l:?}"),
                        &spr[i],
                        "negative",
                    )
                })?,
            label,
            transducer: transducers[i].clone(),
            physical_dimension: dims[i].clone(),
            prefilter: prefilters[i].clone(),
        };
        if !s.is_annotations() {
            if s.digital_max <= s.digital_min {
                return Err(field_error(
                    format!("digital maximum of signal {:?}", s.label),
                    s.digital_max,
                    "must exceed the digital minimum",
                ));
            }
            if s.physical_max == s.physical_min {
                return Err(field_error(
                    format!("physical maximum of signal {:?}", s.label),
                    s.physical_max,
                    "equals the physical minimum",
                ));
            }
        }
        out.push(s);
    }
    Ok(out)
}

/// Parses the time-stamped annotation lists of one annotation channel in one data record,
/// appending annotations to `out`. With `time_keeping`, the first TAL's first (empty) entry is
/// the record's onset, which is returned.
fn parse_tals(
    bytes: &[u8],
    time_keeping: bool,
    out: &mut Vec<Annotation>,
) -> Result<Option<f64>, String> {
    let mut record_onset = None;
    // TALs end with 0x14 0x00; unused bytes are 0x00.
    for (k, tal) in bytes
        .split(|&b| b == 0)
        .filter(|t| !t.is_empty())
        .enumerate()
    {
        let Some(head_end) = tal.iter().position(|&b| b == 0x14) else {
            return Err(format!("list {k} has no 0x14 after its onset"));
        };
        let head = String::from_utf8_lossy(&tal[..head_end]);
        let (onset, duration) = match head.split_once('\x15') {
            Some((o, d)) => (o, Some(d)),
            None => (head.as_ref(), None),
        };
        if !(onset.starts_with('+') || onset.starts_with('-')) {
            return Err(format!("onset {onset:?} does not start with + or -"));
        }
        let onset_s: f64 = onset
            .parse()
            .map_err(|_| format!("onset {onset:?} is not a number"))?;
        let duration_s = match duration {
            None | Some("") => None,
            Some(d) => Some(
                d.parse::<f64>()
                    .ok()
                    .filter(|d| *d >= 0.0)
                    .ok_or_else(|| format!("duration {d:?} is not a number >= 0"))?,
            ),
        };
        let body = &tal[head_end + 1..];
        let mut texts: Vec<&[u8]> = body.split(|&b| b == 0x14).collect();
        texts.pop(); // after the final 0x14
        for (j, text) in texts.into_iter().enumerate() {
            if time_keeping && k == 0 && j == 0 {
                if !text.is_empty() {
                    return Err("list has no time-keeping entry".into());
                }
                record_onset = Some(onset_s);
                continue;
            }
            if text.is_empty() {
                continue;
            }
            out.push(Annotation {
                onset_s,
                duration_s,
                text: String::from_utf8_lossy(text).into_owned(),
            });
        }
    }
    Ok(record_onset)
}

/// The EEG of `file` as continuous stretches with markers from its annotations
/// ([`super::annotation_markers`]). EEG channels are the signals with an electrode label of the
/// 10-20 family and every other signal at their sample rate (ignored later unless placed);
/// signals at other rates (accelerometer, ...) are left out. An EDF+D/BDF+D file whose records
/// are not contiguous gives one stretch per contiguous run; all share the file's markers.
pub fn recordings(
    file: &EdfFile,
    source: &str,
    mapping: &LabelMapping,
) -> anyhow::Result<Vec<RawRecording>> {
    let ordinary: Vec<usize> = (0..file.signals.len())
        .filter(|&i| !file.signals[i].is_annotations())
        .collect();
    let on_grid: Vec<usize> = ordinary
        .iter()
        .copied()
        .filter(|&i| cells_for_labels(&[file.signals[i].label.as_str()]).is_ok())
        .collect();
    let labels = |idx: &[usize]| -> Vec<&str> {
        idx.iter()
            .map(|&i| file.signals[i].label.as_str())
            .collect()
    };
    anyhow::ensure!(
        !on_grid.is_empty(),
        "no signal has an electrode label of the 10-20 system (labels: {:?})",
        labels(&ordinary)
    );
    let spr = file.signals[on_grid[0]].samples_per_record;
    let rate = file
        .sample_rate_hz(on_grid[0])
        .context("the data record duration is 0: no samples to read")?;
    let mixed: Vec<usize> = on_grid
        .iter()
        .copied()
        .filter(|&i| file.signals[i].samples_per_record != spr)
        .collect();
    anyhow::ensure!(
        mixed.is_empty(),
        "EEG signals at different sample rates ({:?} at {rate} Hz, {:?} otherwise): resample them \
         to one rate first",
        labels(&[on_grid[0]]),
        labels(&mixed)
    );
    let chosen: Vec<usize> = ordinary
        .iter()
        .copied()
        .filter(|&i| file.signals[i].samples_per_record == spr)
        .collect();
    let skipped: Vec<&str> = ordinary
        .iter()
        .filter(|&&i| !chosen.contains(&i))
        .map(|&i| file.signals[i].label.as_str())
        .collect();
    if !skipped.is_empty() {
        tracing::info!("{source}: signals not at the EEG rate of {rate} Hz left out: {skipped:?}");
    }
    let (markers, ignored) = super::annotation_markers(&file.annotations, mapping);
    if !ignored.is_empty() {
        tracing::info!("{source}: annotations that are not labels, ignored: {ignored:?}");
    }
    let channels: Vec<String> = chosen
        .iter()
        .map(|&i| file.signals[i].label.clone())
        .collect();
    let units: Vec<String> = chosen
        .iter()
        .map(|&i| file.signals[i].physical_dimension.clone())
        .collect();
    // Runs of contiguous records (within half a sample period).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (r, &onset) in file.record_onsets.iter().enumerate() {
        if let Some((_, end)) = runs.last_mut() {
            let expected = file.record_onsets[*end - 1] + file.record_duration_s;
            anyhow::ensure!(
                onset >= expected - 0.5 / rate,
                "data record {r} starts at {onset} s, before the previous one ends ({expected} s)"
            );
            if onset <= expected + 0.5 / rate {
                *end = r + 1;
                continue;
            }
        }
        runs.push((r, r + 1));
    }
    let c = chosen.len();
    let stretches = runs
        .iter()
        .enumerate()
        .map(|(k, &(first, end))| {
            let n = (end - first) * spr;
            let mut data = vec![0f32; n * c];
            for (j, &i) in chosen.iter().enumerate() {
                let samples = &file.samples[i][first * spr..end * spr];
                for (t, &v) in samples.iter().enumerate() {
                    data[t * c + j] = v;
                }
            }
            let timestamps = (first..end)
                .flat_map(|r| {
                    let onset = file.record_onsets[r];
                    (0..spr).map(move |s| onset + s as f64 / rate)
                })
                .collect();
            RawRecording {
                source: if runs.len() == 1 {
                    source.to_string()
                } else {
                    format!("{source} (contiguous part {})", k + 1)
                },
                channels: channels.clone(),
                units: units.clone(),
                sample_rate_hz: rate,
                data,
                timestamps,
                markers: markers.clone(),
                group_offset: 0,
            }
        })
        .collect();
    Ok(stretches)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal EDF/BDF writer for unit tests (the integration tests use pyedflib's files).
    pub(crate) struct TestSignal {
        pub label: &'static str,
        pub dim: &'static str,
        pub digital: (i32, i32),
        pub physical: (f64, f64),
        /// One Vec per record (digital values), or TAL bytes for an annotation channel.
        pub records: Vec<Vec<i32>>,
        pub tal: Vec<Vec<u8>>,
        pub spr: usize,
    }

    /// One signal-header column: (value, width).
    type Column = dyn Fn(&TestSignal) -> (String, usize);

    fn field(s: &str, width: usize) -> Vec<u8> {
        let mut b = s.as_bytes().to_vec();
        b.resize(width, b' ');
        b
    }

    pub(crate) fn write(
        bdf: bool,
        reserved: &str,
        duration: f64,
        signals: &[TestSignal],
    ) -> Vec<u8> {
        let ns = signals.len();
        let records = signals[0].records.len().max(signals[0].tal.len());
        let mut out = Vec::new();
        if bdf {
            out.push(0xFF);
            out.extend_from_slice(b"BIOSEMI");
        } else {
            out.extend(field("0", 8));
        }
        out.extend(field("X X X X", 80));
        out.extend(field("Startdate X X X X", 80));
        out.extend(field("01.01.26", 8));
        out.extend(field("00.00.00", 8));
        out.extend(field(&(256 * (ns + 1)).to_string(), 8));
        out.extend(field(reserved, 44));
        out.extend(field(&records.to_string(), 8));
        out.extend(field(&duration.to_string(), 8));
        out.extend(field(&ns.to_string(), 4));
        let columns: [&Column; 10] = [
            &|s| (s.label.into(), 16),
            &|_| (String::new(), 80),
            &|s| (s.dim.into(), 8),
            &|s| (s.physical.0.to_string(), 8),
            &|s| (s.physical.1.to_string(), 8),
            &|s| (s.digital.0.to_string(), 8),
            &|s| (s.digital.1.to_string(), 8),
            &|_| (String::new(), 80),
            &|s| (s.spr.to_string(), 8),
            &|_| (String::new(), 32),
        ];
        for column in columns {
            for s in signals {
                let (v, w) = column(s);
                out.extend(field(&v, w));
            }
        }
        let bytes = if bdf { 3 } else { 2 };
        for r in 0..records {
            for s in signals {
                if s.label.ends_with("Annotations") {
                    let mut tal = s.tal[r].clone();
                    tal.resize(s.spr * bytes, 0);
                    out.extend(tal);
                } else {
                    for &v in &s.records[r] {
                        out.extend_from_slice(&v.to_le_bytes()[..bytes]);
                    }
                }
            }
        }
        out
    }

    fn eeg(
        label: &'static str,
        dim: &'static str,
        records: Vec<Vec<i32>>,
        bdf: bool,
    ) -> TestSignal {
        let max = if bdf { 8_388_607 } else { 32_767 };
        TestSignal {
            label,
            dim,
            digital: (-max - 1, max),
            physical: (-100.0, 100.0),
            spr: records[0].len(),
            records,
            tal: Vec::new(),
        }
    }

    fn annotations(label: &'static str, tal: Vec<Vec<u8>>, spr: usize) -> TestSignal {
        TestSignal {
            label,
            dim: "",
            digital: (-32768, 32767),
            physical: (-1.0, 1.0),
            records: Vec::new(),
            tal,
            spr,
        }
    }

    #[test]
    fn edf_plus_samples_onsets_and_annotations() {
        let tals = vec![
            b"+0\x14\x14\x00+0.5\x14stimulus_start:positive\x14\x00".to_vec(),
            b"+1\x14\x14\x00+1.25\x152.5\x14relaxed\x14second\x14\x00".to_vec(),
        ];
        let bytes = write(
            false,
            "EDF+C",
            1.0,
            &[
                eeg(
                    "EEG Fp1-REF",
                    "uV",
                    vec![vec![-32768, 0, 32767], vec![1, 2, 3]],
                    false,
                ),
                annotations("EDF Annotations", tals, 30),
            ],
        );
        let f = read_from(&bytes[..], "t").unwrap();
        assert_eq!(f.variant, Variant::EdfPlus { continuous: true });
        assert_eq!(f.record_onsets, [0.0, 1.0]);
        assert_eq!(f.sample_rate_hz(0), Some(3.0));
        let gain = 200.0 / 65535.0;
        let expect: Vec<f32> = [-32768, 0, 32767, 1, 2, 3]
            .iter()
            .map(|&d| (-100.0 + gain * f64::from(d + 32768)) as f32)
            .collect();
        assert_eq!(f.samples[0], expect);
        assert_eq!(f.samples[0][0], -100.0);
        assert_eq!(f.samples[0][2], 100.0);
        assert!(f.samples[1].is_empty());
        let a = |onset_s, duration_s, text: &str| Annotation {
            onset_s,
            duration_s,
            text: text.into(),
        };
        assert_eq!(
            f.annotations,
            [
                a(0.5, None, "stimulus_start:positive"),
                a(1.25, Some(2.5), "relaxed"),
                a(1.25, Some(2.5), "second"),
            ]
        );
    }

    #[test]
    fn bdf_24_bit_samples_sign_extend_and_record_onsets_follow_the_duration() {
        let bytes = write(
            true,
            "24BIT",
            0.5,
            &[eeg(
                "Cz",
                "mV",
                vec![vec![-8_388_608, -1], vec![8_388_607, 1]],
                true,
            )],
        );
        let f = read_from(&bytes[..], "t").unwrap();
        assert_eq!(f.variant, Variant::Bdf);
        assert_eq!(f.record_onsets, [0.0, 0.5]);
        assert_eq!(f.sample_rate_hz(0), Some(4.0));
        assert_eq!(f.signals[0].physical_dimension, "mV");
        let gain = 200.0 / 16_777_215.0;
        let p = |d: i32| (-100.0 + gain * f64::from(d + 8_388_608)) as f32;
        assert_eq!(f.samples[0], [p(-8_388_608), p(-1), p(8_388_607), p(1)]);
    }

    #[test]
    fn a_cut_last_record_is_dropped_and_bad_fields_are_named() {
        let mut bytes = write(
            false,
            "",
            1.0,
            &[eeg("O1", "uV", vec![vec![1, 2], vec![3, 4]], false)],
        );
        bytes.pop();
        let f = read_from(&bytes[..], "t").unwrap();
        assert_eq!(f.samples[0].len(), 2);
        assert_eq!(f.record_onsets, [0.0]);

        let err = |b: &[u8]| read_from(b, "t").unwrap_err().to_string();
        let mut bad = write(false, "", 1.0, &[eeg("O1", "uV", vec![vec![1]], false)]);
        bad[244..252].copy_from_slice(b"one     ");
        assert_eq!(
            err(&bad),
            "header field 'duration of a data record' is \"one\": not a number"
        );
        let mut bad = write(false, "", 1.0, &[eeg("O1", "uV", vec![vec![1]], false)]);
        bad[0] = b'9';
        assert!(
            err(&bad).starts_with("not an EDF/BDF file: version field"),
            "{}",
            err(&bad)
        );
        let mut s = eeg("O1", "uV", vec![vec![1]], false);
        s.digital = (5, 5);
        assert_eq!(
            err(&write(false, "", 1.0, &[s])),
            "header field 'digital maximum of signal \"O1\"' is \"5\": must exceed the digital minimum"
        );
        let tal = vec![b"+0\x14\x14\x00+x\x14a\x14\x00".to_vec()];
        let b = write(
            false,
            "EDF+C",
            1.0,
            &[
                eeg("O1", "uV", vec![vec![1]], false),
                annotations("EDF Annotations", tal, 20),
            ],
        );
        assert_eq!(
            err(&b),
            "data record 0: annotation onset \"+x\" is not a number"
        );
    }

    #[test]
    fn latin1_micro_sign_in_the_dimension() {
        let mut bytes = write(false, "", 1.0, &[eeg("O1", "uV", vec![vec![1]], false)]);
        // Physical dimension field of signal 0 starts after label (16) and transducer (80).
        bytes[256 + 96] = 0xB5;
        let f = read_from(&bytes[..], "t").unwrap();
        assert_eq!(f.signals[0].physical_dimension, "µV");
        assert_eq!(crate::features::units::to_microvolts("µV"), Some(1.0));
    }
}
