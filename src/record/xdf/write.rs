//! Streaming XDF writer.
//!
//! Every chunk is encoded in memory and handed to the `BufWriter` in one `write_all`, so the
//! buffer only ever reaches the file at chunk boundaries: a process killed between flushes
//! leaves a file that ends with a complete chunk (short of a kill inside the write syscall).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::*;

/// Sample values for [`XdfWriter::write_samples`], row-major (sample by sample).
#[derive(Debug, Clone, Copy)]
pub enum SampleValues<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    Str(&'a [String]),
}

impl SampleValues<'_> {
    fn len(&self) -> usize {
        match self {
            SampleValues::F32(v) => v.len(),
            SampleValues::F64(v) => v.len(),
            SampleValues::Str(v) => v.len(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XdfWriteError {
    #[error("writing {path} failed: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stream {0} was not added to the file")]
    UnknownStream(u32),
    #[error("stream {0} was already added to the file")]
    DuplicateStream(u32),
    #[error("stream {id}: {values} values for {samples} timestamps x {channels} channels")]
    ValueCount {
        id: u32,
        values: usize,
        samples: usize,
        channels: usize,
    },
    #[error("stream {id}: value {value} cannot be stored exactly as {format}")]
    NotRepresentable {
        id: u32,
        value: f64,
        format: &'static str,
    },
    #[error("stream {id}: {given} values given for a {format} stream")]
    FormatMismatch {
        id: u32,
        given: &'static str,
        format: &'static str,
    },
}

impl XdfWriteError {
    /// True for failures of the file itself (disk full, I/O error), as opposed to bad input.
    pub fn is_io(&self) -> bool {
        matches!(self, XdfWriteError::Io { .. })
    }
}

struct StreamState {
    header: StreamHeader,
    first_timestamp: Option<f64>,
    last_timestamp: f64,
    sample_count: u64,
    offsets: Vec<(f64, f64)>,
}

/// Writes one XDF file, chunk by chunk. Call [`finish`](Self::finish) to write the footers;
/// a file that is only flushed is still readable (pyxdf, [`super::read_xdf_with`] lenient).
pub struct XdfWriter {
    path: PathBuf,
    out: BufWriter<File>,
    streams: BTreeMap<u32, StreamState>,
    bytes: u64,
    chunk: Vec<u8>,
}

impl XdfWriter {
    /// Creates (truncates) the file and writes the magic and the FileHeader chunk.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, XdfWriteError> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|source| XdfWriteError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_file(file, path)
    }

    /// Starts a file on an already opened handle (`path` is used in messages).
    pub fn from_file(file: File, path: PathBuf) -> Result<Self, XdfWriteError> {
        let mut w = XdfWriter {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            streams: BTreeMap::new(),
            bytes: 0,
            chunk: Vec::new(),
        };
        w.emit_raw(MAGIC)?;
        let header = format!(
            "<?xml version=\"1.0\"?><info><version>1.0</version><datetime>{}</datetime>\
             <writer>affectd {}</writer></info>",
            super::super::utc_timestamp(std::time::SystemTime::now(), true),
            env!("CARGO_PKG_VERSION")
        );
        w.begin(TAG_FILE_HEADER, None);
        w.chunk.extend_from_slice(header.as_bytes());
        w.end_chunk()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes handed to the file so far (written or buffered).
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Writes the StreamHeader chunk of a new stream.
    pub fn add_stream(&mut self, id: u32, header: &StreamHeader) -> Result<(), XdfWriteError> {
        if self.streams.contains_key(&id) {
            return Err(XdfWriteError::DuplicateStream(id));
        }
        self.begin(TAG_STREAM_HEADER, Some(id));
        self.chunk.extend_from_slice(header.to_xml().as_bytes());
        self.end_chunk()?;
        self.streams.insert(
            id,
            StreamState {
                header: header.clone(),
                first_timestamp: None,
                last_timestamp: 0.0,
                sample_count: 0,
                offsets: Vec::new(),
            },
        );
        Ok(())
    }

    /// Writes one Samples chunk: every sample with its explicit timestamp. The values are
    /// converted to the stream's channel format when that is exact (f32 into int16, say) and
    /// refused otherwise.
    pub fn write_samples(
        &mut self,
        id: u32,
        timestamps: &[f64],
        values: SampleValues<'_>,
    ) -> Result<(), XdfWriteError> {
        let st = self
            .streams
            .get(&id)
            .ok_or(XdfWriteError::UnknownStream(id))?;
        let fmt = st.header.channel_format();
        let nch = st.header.channel_count() as usize;
        if values.len() != timestamps.len() * nch {
            return Err(XdfWriteError::ValueCount {
                id,
                values: values.len(),
                samples: timestamps.len(),
                channels: nch,
            });
        }
        if timestamps.is_empty() {
            return Ok(());
        }
        // A refused value leaves the half-built chunk unwritten.
        self.begin(TAG_SAMPLES, Some(id));
        encode_samples(&mut self.chunk, id, fmt, nch, timestamps, values)?;
        self.end_chunk()?;
        let st = self.streams.get_mut(&id).expect("checked above");
        st.first_timestamp.get_or_insert(timestamps[0]);
        st.last_timestamp = timestamps[timestamps.len() - 1];
        st.sample_count += timestamps.len() as u64;
        Ok(())
    }

    /// Writes a ClockOffset chunk: `offset` is what must be added to the stream's timestamps to
    /// reach the recording computer's clock (LSL's `time_correction`), measured at
    /// `collection_time` on the stream's own clock (local_clock() - offset, as LabRecorder does).
    pub fn write_clock_offset(
        &mut self,
        id: u32,
        collection_time: f64,
        offset: f64,
    ) -> Result<(), XdfWriteError> {
        if !self.streams.contains_key(&id) {
            return Err(XdfWriteError::UnknownStream(id));
        }
        self.begin(TAG_CLOCK_OFFSET, Some(id));
        self.chunk.extend_from_slice(&collection_time.to_le_bytes());
        self.chunk.extend_from_slice(&offset.to_le_bytes());
        self.end_chunk()?;
        self.streams
            .get_mut(&id)
            .expect("checked")
            .offsets
            .push((collection_time, offset));
        Ok(())
    }

    /// Writes a Boundary chunk (a resynchronisation point for readers of a damaged file).
    pub fn write_boundary(&mut self) -> Result<(), XdfWriteError> {
        self.begin(TAG_BOUNDARY, None);
        self.chunk.extend_from_slice(&BOUNDARY_UUID);
        self.end_chunk()
    }

    /// Pushes buffered chunks to the kernel and makes them durable (fdatasync).
    pub fn flush(&mut self) -> Result<(), XdfWriteError> {
        self.out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.io(e))
    }

    /// Writes one StreamFooter per stream (first/last timestamp, sample count, measured rate,
    /// clock offsets), flushes, fsyncs and closes the file. Returns the file size.
    pub fn finish(mut self) -> Result<u64, XdfWriteError> {
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            let xml = footer_xml(&self.streams[&id]);
            self.begin(TAG_STREAM_FOOTER, Some(id));
            self.chunk.extend_from_slice(xml.as_bytes());
            self.end_chunk()?;
        }
        self.out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_all().map_err(|e| self.io(e))?;
        Ok(self.bytes)
    }

    fn io(&self, source: std::io::Error) -> XdfWriteError {
        XdfWriteError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Starts a chunk in `self.chunk`: a placeholder for the 8-byte length form is fixed in
    /// `end_chunk`, which picks the shortest length field.
    fn begin(&mut self, tag: u16, id: Option<u32>) {
        self.chunk.clear();
        self.chunk.extend_from_slice(&[0u8; 9]);
        self.chunk.extend_from_slice(&tag.to_le_bytes());
        if let Some(id) = id {
            self.chunk.extend_from_slice(&id.to_le_bytes());
        }
    }

    fn end_chunk(&mut self) -> Result<(), XdfWriteError> {
        let len = (self.chunk.len() - 9) as u64;
        let (start, prefix): (usize, Vec<u8>) = if len <= 0xFF {
            (7, vec![1, len as u8])
        } else if len <= 0xFFFF_FFFF {
            let mut p = vec![4];
            p.extend_from_slice(&(len as u32).to_le_bytes());
            (4, p)
        } else {
            let mut p = vec![8];
            p.extend_from_slice(&len.to_le_bytes());
            (0, p)
        };
        self.chunk[start..9].copy_from_slice(&prefix);
        let chunk = std::mem::take(&mut self.chunk);
        let res = self.emit_raw(&chunk[start..]);
        self.chunk = chunk;
        res
    }

    fn emit_raw(&mut self, bytes: &[u8]) -> Result<(), XdfWriteError> {
        self.out.write_all(bytes).map_err(|e| self.io(e))?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}

fn push_varlen(out: &mut Vec<u8>, v: u64) {
    if v <= 0xFF {
        out.extend_from_slice(&[1, v as u8]);
    } else if v <= 0xFFFF_FFFF {
        out.push(4);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        out.push(8);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn encode_samples(
    out: &mut Vec<u8>,
    id: u32,
    fmt: ChannelFormat,
    nch: usize,
    timestamps: &[f64],
    values: SampleValues<'_>,
) -> Result<(), XdfWriteError> {
    push_varlen(out, timestamps.len() as u64);
    let mismatch = |given| XdfWriteError::FormatMismatch {
        id,
        given,
        format: fmt.as_str(),
    };
    for (k, ts) in timestamps.iter().enumerate() {
        out.push(8);
        out.extend_from_slice(&ts.to_le_bytes());
        let row = k * nch..(k + 1) * nch;
        match (values, fmt) {
            (SampleValues::Str(v), ChannelFormat::String) => {
                for s in &v[row] {
                    push_varlen(out, s.len() as u64);
                    out.extend_from_slice(s.as_bytes());
                }
            }
            (SampleValues::Str(_), _) => return Err(mismatch("string")),
            (_, ChannelFormat::String) => return Err(mismatch("numeric")),
            (SampleValues::F32(v), ChannelFormat::Float32) => {
                for x in &v[row] {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            (SampleValues::F32(v), _) => {
                for &x in &v[row] {
                    encode_value(out, id, fmt, f64::from(x))?;
                }
            }
            (SampleValues::F64(v), _) => {
                for &x in &v[row] {
                    encode_value(out, id, fmt, x)?;
                }
            }
        }
    }
    Ok(())
}

/// Stores `x` in format `fmt` if that loses nothing (NaN passes into float formats).
fn encode_value(
    out: &mut Vec<u8>,
    id: u32,
    fmt: ChannelFormat,
    x: f64,
) -> Result<(), XdfWriteError> {
    let refuse = || XdfWriteError::NotRepresentable {
        id,
        value: x,
        format: fmt.as_str(),
    };
    let int_in = |lo: f64, hi: f64| x.fract() == 0.0 && x >= lo && x <= hi;
    match fmt {
        ChannelFormat::Double64 => out.extend_from_slice(&x.to_le_bytes()),
        ChannelFormat::Float32 => {
            let f = x as f32;
            if f64::from(f) != x && !x.is_nan() {
                return Err(refuse());
            }
            out.extend_from_slice(&f.to_le_bytes());
        }
        ChannelFormat::Int8 if int_in(-128.0, 127.0) => out.push(x as i8 as u8),
        ChannelFormat::Int16 if int_in(-32768.0, 32767.0) => {
            out.extend_from_slice(&(x as i16).to_le_bytes())
        }
        ChannelFormat::Int32 if int_in(-2147483648.0, 2147483647.0) => {
            out.extend_from_slice(&(x as i32).to_le_bytes())
        }
        ChannelFormat::Int64 if int_in(-9.223372036854776e18, 9.223372036854775e18) => {
            out.extend_from_slice(&(x as i64).to_le_bytes())
        }
        _ => return Err(refuse()),
    }
    Ok(())
}

fn footer_xml(st: &StreamState) -> String {
    let first = st.first_timestamp.unwrap_or(0.0);
    let last = if st.sample_count > 0 {
        st.last_timestamp
    } else {
        0.0
    };
    let measured = if st.sample_count > 1 && last > first {
        (st.sample_count - 1) as f64 / (last - first)
    } else {
        0.0
    };
    let mut s = format!(
        "<?xml version=\"1.0\"?><info><writer>affectd {}</writer><first_timestamp>{}</first_timestamp>\
         <last_timestamp>{}</last_timestamp><sample_count>{}</sample_count>\
         <measured_srate>{}</measured_srate><clock_offsets>",
        env!("CARGO_PKG_VERSION"),
        format_f64(first),
        format_f64(last),
        st.sample_count,
        format_f64(measured)
    );
    for (t, v) in &st.offsets {
        s.push_str(&format!(
            "<offset><time>{}</time><value>{}</value></offset>",
            format_f64(*t),
            format_f64(*v)
        ));
    }
    s.push_str("</clock_offsets></info>");
    s
}
