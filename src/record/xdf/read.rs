//! XDF reader: parses chunks strictly (every inconsistency is an error naming its byte offset),
//! or leniently (everything up to the last complete chunk, for files cut short by a crash),
//! then post-processes timestamps like pyxdf.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::sync;
use super::xml::XmlElement;
use super::*;

/// How to read a file. The defaults match `pyxdf.load_xdf(..., dejitter_timestamps=False)`.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Map timestamps onto the recording computer's clock with the ClockOffset chunks (a robust
    /// linear fit of offset against time, as pyxdf does).
    pub synchronize_clocks: bool,
    /// Detect clock resets (a restarted sender) and fit each clock segment separately.
    pub handle_clock_resets: bool,
    /// Replace the timestamps of regularly sampled streams by a linear fit per segment (pyxdf's
    /// `dejitter_timestamps`). Off by default: the recorded stamps are kept.
    pub dejitter: bool,
    /// Return everything up to the last complete chunk instead of failing on a truncated or
    /// corrupt file; the problem is then reported in [`XdfFile::error`].
    pub lenient: bool,
    pub clock_reset_threshold_seconds: f64,
    pub clock_reset_threshold_stds: f64,
    pub clock_reset_threshold_offset_seconds: f64,
    pub clock_reset_threshold_offset_stds: f64,
    pub winsor_threshold: f64,
    pub jitter_break_threshold_seconds: f64,
    pub jitter_break_threshold_samples: f64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            synchronize_clocks: true,
            handle_clock_resets: true,
            dejitter: false,
            lenient: false,
            clock_reset_threshold_seconds: 5.0,
            clock_reset_threshold_stds: 5.0,
            clock_reset_threshold_offset_seconds: 1.0,
            clock_reset_threshold_offset_stds: 10.0,
            winsor_threshold: 0.0001,
            jitter_break_threshold_seconds: 1.0,
            jitter_break_threshold_samples: 500.0,
        }
    }
}

impl ReadOptions {
    /// The recorded data as they are: no synchronisation, no dejittering.
    pub fn raw() -> Self {
        ReadOptions {
            synchronize_clocks: false,
            ..Default::default()
        }
    }
}

/// Sample values of one stream, row-major: sample `k`, channel `c` is at `k * channels + c`.
/// float32 streams stay f32; double64 and the integer formats become f64 (exact for int8/16/32;
/// int64 beyond 2^53 loses precision).
#[derive(Debug, Clone, PartialEq)]
pub enum TimeSeries {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Str(Vec<String>),
}

impl TimeSeries {
    fn empty_for(format: ChannelFormat) -> Self {
        match format {
            ChannelFormat::Float32 => TimeSeries::F32(Vec::new()),
            ChannelFormat::String => TimeSeries::Str(Vec::new()),
            _ => TimeSeries::F64(Vec::new()),
        }
    }

    /// Number of values (samples x channels).
    pub fn len(&self) -> usize {
        match self {
            TimeSeries::F32(v) => v.len(),
            TimeSeries::F64(v) => v.len(),
            TimeSeries::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as f64 (None for string streams).
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        match self {
            TimeSeries::F32(v) => v.get(i).map(|&x| f64::from(x)),
            TimeSeries::F64(v) => v.get(i).copied(),
            TimeSeries::Str(_) => None,
        }
    }

    fn truncate(&mut self, n: usize) {
        match self {
            TimeSeries::F32(v) => v.truncate(n),
            TimeSeries::F64(v) => v.truncate(n),
            TimeSeries::Str(v) => v.truncate(n),
        }
    }
}

/// The StreamFooter chunk's content.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamFooter {
    pub first_timestamp: Option<f64>,
    pub last_timestamp: Option<f64>,
    pub sample_count: Option<u64>,
    pub measured_srate: Option<f64>,
    pub info: XmlElement,
}

/// One stream of a file.
#[derive(Debug, Clone)]
pub struct XdfStream {
    /// The stream id of the file's chunks.
    pub id: u32,
    pub header: StreamHeader,
    /// The StreamHeader chunk's XML as stored.
    pub header_xml: String,
    pub time_series: TimeSeries,
    /// One timestamp per sample (seconds; synchronised if so read).
    pub timestamps: Vec<f64>,
    pub clock_times: Vec<f64>,
    pub clock_values: Vec<f64>,
    /// Inclusive sample index ranges that were synchronised with one clock fit each.
    pub clock_segments: Vec<(usize, usize)>,
    /// Measured sampling rate (0 for irregular or too short streams), as pyxdf computes it.
    pub effective_srate: f64,
    pub footer: Option<StreamFooter>,
}

impl XdfStream {
    pub fn sample_count(&self) -> usize {
        self.timestamps.len()
    }
    pub fn channel_count(&self) -> usize {
        self.header.channel_count() as usize
    }
    /// Values of sample `k` as f64 (numeric streams only).
    pub fn sample_f64(&self, k: usize) -> Option<Vec<f64>> {
        let n = self.channel_count();
        (0..n)
            .map(|c| self.time_series.get_f64(k * n + c))
            .collect()
    }
    /// The strings of sample `k` (string streams only).
    pub fn sample_str(&self, k: usize) -> Option<&[String]> {
        let n = self.channel_count();
        match &self.time_series {
            TimeSeries::Str(v) => v.get(k * n..(k + 1) * n),
            _ => None,
        }
    }
}

/// A whole file: streams in the order their headers appear.
#[derive(Debug)]
pub struct XdfFile {
    pub file_header: Option<XmlElement>,
    pub streams: Vec<XdfStream>,
    /// Lenient reads only: what stopped the read before the end of the file.
    pub error: Option<XdfError>,
    /// Offset just past the last chunk that was read completely.
    pub complete_bytes: u64,
}

impl XdfFile {
    pub fn stream(&self, id: u32) -> Option<&XdfStream> {
        self.streams.iter().find(|s| s.id == id)
    }
}

/// Reads a file strictly, with pyxdf's default clock synchronisation (no dejittering).
pub fn read_xdf(path: impl AsRef<Path>) -> Result<XdfFile, XdfError> {
    read_xdf_with(path, &ReadOptions::default())
}

/// Reads a file with explicit options.
pub fn read_xdf_with(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<XdfFile, XdfError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| XdfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path.to_path_buf(), &bytes, opts)
}

struct Partial {
    id: u32,
    header: StreamHeader,
    header_xml: String,
    values: TimeSeries,
    timestamps: Vec<f64>,
    last_timestamp: f64,
    clock_times: Vec<f64>,
    clock_values: Vec<f64>,
    footer: Option<StreamFooter>,
}

/// A bounds-checked little-endian cursor over a byte slice that knows its file offset.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], XdfError> {
        let available = self.data.len() - self.pos;
        if n > available {
            return Err(XdfError::Truncated {
                offset: self.pos as u64,
                what: what.to_string(),
                needed: n as u64,
                available: available as u64,
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, XdfError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, XdfError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &str) -> Result<u32, XdfError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn f64(&mut self, what: &str) -> Result<f64, XdfError> {
        Ok(f64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    /// XDF variable-length integer: a width byte (1, 4 or 8) then the value.
    fn varlen(&mut self, what: &str) -> Result<u64, XdfError> {
        let at = self.pos as u64;
        match self.u8(what)? {
            1 => Ok(u64::from(self.u8(what)?)),
            4 => Ok(u64::from(self.u32(what)?)),
            8 => Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap())),
            width => Err(XdfError::BadLengthWidth { offset: at, width }),
        }
    }
}

fn parse(path: PathBuf, data: &[u8], opts: &ReadOptions) -> Result<XdfFile, XdfError> {
    if data.len() < 4 || &data[..4] != MAGIC {
        return Err(XdfError::BadMagic {
            path,
            found: data[..data.len().min(4)].to_vec(),
        });
    }
    let mut file = XdfFile {
        file_header: None,
        streams: Vec::new(),
        error: None,
        complete_bytes: 4,
    };
    let mut partials: Vec<Partial> = Vec::new();
    let mut index: HashMap<u32, usize> = HashMap::new();
    let mut cur = Cursor { data, pos: 4 };
    while cur.pos < data.len() {
        let start = cur.pos;
        match read_chunk(&mut cur, &mut file, &mut partials, &mut index) {
            Ok(()) => file.complete_bytes = cur.pos as u64,
            Err(e) if opts.lenient => {
                tracing::warn!(
                    "{}: reading stopped at byte {start} ({e}); keeping the {} complete bytes before",
                    path.display(),
                    start
                );
                file.error = Some(e);
                break;
            }
            Err(e) => return Err(e),
        }
    }
    file.streams = partials
        .into_iter()
        .map(|p| finish_stream(p, opts))
        .collect();
    Ok(file)
}

fn read_chunk(
    cur: &mut Cursor<'_>,
    file: &mut XdfFile,
    partials: &mut Vec<Partial>,
    index: &mut HashMap<u32, usize>,
) -> Result<(), XdfError> {
    let start = cur.pos as u64;
    let length = cur.varlen("chunk length")?;
    let body_at = cur.pos;
    if length < 2 {
        return Err(XdfError::ChunkTooShort {
            offset: start,
            tag: 0,
            length,
        });
    }
    let available = (cur.data.len() - body_at) as u64;
    if length > available {
        return Err(XdfError::Truncated {
            offset: start,
            what: "chunk".to_string(),
            needed: length,
            available,
        });
    }
    let body = &cur.data[body_at..body_at + length as usize];
    cur.pos = body_at + length as usize;
    let mut c = Cursor {
        data: &cur.data[..body_at + length as usize],
        pos: body_at,
    };
    let tag = c.u16("chunk tag")?;
    let needs_id = matches!(
        tag,
        TAG_STREAM_HEADER | TAG_SAMPLES | TAG_CLOCK_OFFSET | TAG_STREAM_FOOTER
    );
    if needs_id && length < 6 {
        return Err(XdfError::ChunkTooShort {
            offset: start,
            tag,
            length,
        });
    }
    let xml_text = |from: usize| String::from_utf8_lossy(&body[from..]).into_owned();
    match tag {
        TAG_FILE_HEADER => {
            let text = xml_text(2);
            let root = XmlElement::parse(&text).map_err(|message| XdfError::BadXml {
                offset: start,
                what: "file header",
                message,
            })?;
            file.file_header = Some(root);
        }
        TAG_STREAM_HEADER => {
            let id = c.u32("stream id")?;
            let text = xml_text(6);
            let header = StreamHeader::from_xml(&text).map_err(|e| XdfError::BadXml {
                offset: start,
                what: "stream header",
                message: format!("stream {id}: {}", e.0),
            })?;
            let p = Partial {
                id,
                values: TimeSeries::empty_for(header.channel_format()),
                header,
                header_xml: text,
                timestamps: Vec::new(),
                last_timestamp: 0.0,
                clock_times: Vec::new(),
                clock_values: Vec::new(),
                footer: None,
            };
            match index.get(&id) {
                // A repeated header (e.g. a re-announced stream) replaces the metadata only.
                Some(&i) => {
                    partials[i].header = p.header;
                    partials[i].header_xml = p.header_xml;
                }
                None => {
                    index.insert(id, partials.len());
                    partials.push(p);
                }
            }
        }
        TAG_SAMPLES => {
            let id = c.u32("stream id")?;
            let i = stream_slot(index, id, start, tag)?;
            read_samples(&mut c, start, &mut partials[i])?;
        }
        TAG_CLOCK_OFFSET => {
            let id = c.u32("stream id")?;
            let i = stream_slot(index, id, start, tag)?;
            if length != 2 + 4 + 16 {
                return Err(XdfError::BadClockOffset {
                    offset: start,
                    message: format!("length {length}, expected 22"),
                });
            }
            let t = c.f64("clock offset time")?;
            let v = c.f64("clock offset value")?;
            partials[i].clock_times.push(t);
            partials[i].clock_values.push(v);
        }
        TAG_STREAM_FOOTER => {
            let id = c.u32("stream id")?;
            let i = stream_slot(index, id, start, tag)?;
            let text = xml_text(6);
            let root = XmlElement::parse(&text).map_err(|message| XdfError::BadXml {
                offset: start,
                what: "stream footer",
                message: format!("stream {id}: {message}"),
            })?;
            partials[i].footer = Some(parse_footer(root));
        }
        // Boundary chunks only help resynchronisation; unknown tags are skipped (forward
        // compatibility, as pyxdf does).
        TAG_BOUNDARY => {}
        other => tracing::debug!("skipping chunk with unknown tag {other} at byte {start}"),
    }
    Ok(())
}

fn parse_footer(info: XmlElement) -> StreamFooter {
    let num = |k: &str| info.child_text(k).and_then(|t| t.parse::<f64>().ok());
    StreamFooter {
        first_timestamp: num("first_timestamp"),
        last_timestamp: num("last_timestamp"),
        sample_count: info
            .child_text("sample_count")
            .and_then(|t| t.parse::<u64>().ok()),
        measured_srate: num("measured_srate"),
        info,
    }
}

/// Decodes a Samples chunk into temporaries and appends them only if the whole chunk is sound.
/// The slot of a stream announced earlier in the file; a chunk for an unknown id is corrupt.
fn stream_slot(
    index: &HashMap<u32, usize>,
    id: u32,
    offset: u64,
    tag: u16,
) -> Result<usize, XdfError> {
    index.get(&id).copied().ok_or(XdfError::UnknownStream {
        offset,
        tag,
        stream_id: id,
    })
}

fn read_samples(c: &mut Cursor<'_>, start: u64, s: &mut Partial) -> Result<(), XdfError> {
    let id = s.id;
    let bad = |message: String| XdfError::BadSamples {
        offset: start,
        stream_id: id,
        message,
    };
    let nsamples = c.varlen("sample count")?;
    let nch = s.header.channel_count() as usize;
    let fmt = s.header.channel_format();
    let tdiff = if s.header.nominal_srate() > 0.0 {
        1.0 / s.header.nominal_srate()
    } else {
        0.0
    };
    // Each sample takes at least one byte: a cheap guard against absurd counts.
    let left = (c.data.len() - c.pos) as u64;
    if nsamples > left {
        return Err(bad(format!("claims {nsamples} samples in {left} bytes")));
    }
    let n = nsamples as usize;
    let mut stamps = Vec::with_capacity(n);
    let mut last = s.last_timestamp;
    let mut values = TimeSeries::empty_for(fmt);
    let to_bad = |e: XdfError| match e {
        XdfError::Truncated {
            needed,
            available,
            what,
            ..
        } => bad(format!(
            "{what} needs {needed} bytes but the chunk has {available} left"
        )),
        XdfError::BadLengthWidth { width, .. } => {
            bad(format!("string length field has {width} bytes"))
        }
        other => other,
    };
    for _ in 0..n {
        let ts = match c.u8("timestamp flag").map_err(to_bad)? {
            0 => last + tdiff,
            8 => c.f64("timestamp").map_err(to_bad)?,
            other => {
                return Err(bad(format!(
                    "timestamp field has {other} bytes (must be 0 or 8)"
                )))
            }
        };
        last = ts;
        stamps.push(ts);
        match &mut values {
            TimeSeries::Str(v) => {
                for _ in 0..nch {
                    let len = c.varlen("string length").map_err(to_bad)?;
                    let raw = c.take(len as usize, "string value").map_err(to_bad)?;
                    v.push(String::from_utf8_lossy(raw).into_owned());
                }
            }
            TimeSeries::F32(v) => {
                let raw = c.take(4 * nch, "sample values").map_err(to_bad)?;
                v.extend(
                    raw.chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap())),
                );
            }
            TimeSeries::F64(v) => {
                let w = fmt.value_bytes();
                let raw = c.take(w * nch, "sample values").map_err(to_bad)?;
                v.extend(raw.chunks_exact(w).map(|b| decode_numeric(fmt, b)));
            }
        }
    }
    if c.pos != c.data.len() {
        return Err(bad(format!(
            "{} bytes left over after {n} samples",
            c.data.len() - c.pos
        )));
    }
    s.last_timestamp = last;
    s.timestamps.extend_from_slice(&stamps);
    match (&mut s.values, values) {
        (TimeSeries::F32(a), TimeSeries::F32(b)) => a.extend(b),
        (TimeSeries::F64(a), TimeSeries::F64(b)) => a.extend(b),
        (TimeSeries::Str(a), TimeSeries::Str(b)) => a.extend(b),
        _ => return Err(bad("stream format changed between headers".into())),
    }
    Ok(())
}

fn decode_numeric(fmt: ChannelFormat, b: &[u8]) -> f64 {
    match fmt {
        ChannelFormat::Int8 => f64::from(b[0] as i8),
        ChannelFormat::Int16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
        ChannelFormat::Int32 => f64::from(i32::from_le_bytes(b.try_into().unwrap())),
        ChannelFormat::Int64 => i64::from_le_bytes(b.try_into().unwrap()) as f64,
        ChannelFormat::Double64 => f64::from_le_bytes(b.try_into().unwrap()),
        ChannelFormat::Float32 | ChannelFormat::String => unreachable!("decoded elsewhere"),
    }
}

fn finish_stream(p: Partial, opts: &ReadOptions) -> XdfStream {
    let mut s = XdfStream {
        id: p.id,
        header: p.header,
        header_xml: p.header_xml,
        time_series: p.values,
        timestamps: p.timestamps,
        clock_times: p.clock_times,
        clock_values: p.clock_values,
        clock_segments: Vec::new(),
        effective_srate: 0.0,
        footer: p.footer,
    };
    if opts.synchronize_clocks {
        truncate_corrupted_offsets(&mut s);
        s.clock_segments = sync::synchronize(
            &mut s.timestamps,
            &s.clock_times,
            &s.clock_values,
            opts,
            s.id,
        );
    }
    let srate = s.header.nominal_srate();
    if opts.dejitter {
        s.effective_srate = sync::dejitter(&mut s.timestamps, srate, opts);
    } else if srate != 0.0 && s.timestamps.len() > 1 {
        let duration = s.timestamps[s.timestamps.len() - 1] - s.timestamps[0];
        s.effective_srate = (s.timestamps.len() - 1) as f64 / duration;
    }
    s
}

/// pyxdf's guard against a liblsl bug (pylsl#67): when a stream holds more samples than its
/// footer counts AND its last clock offset is an outlier, both extras are dropped.
fn truncate_corrupted_offsets(s: &mut XdfStream) {
    let Some(count) = s.footer.as_ref().and_then(|f| f.sample_count) else {
        return;
    };
    let count = count as usize;
    if s.timestamps.len() <= count || s.clock_times.len() < 3 {
        return;
    }
    if !sync::last_clock_offset_is_outlier(&s.clock_times, &s.clock_values) {
        return;
    }
    tracing::warn!(
        "stream {}: {} samples but the footer counts {count} and the last clock offset is an \
         outlier: dropping both (pylsl#67)",
        s.id,
        s.timestamps.len()
    );
    s.clock_times.pop();
    s.clock_values.pop();
    s.timestamps.truncate(count);
    s.time_series
        .truncate(count * s.header.channel_count() as usize);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(samples: usize, footer_count: u64, clock_times: Vec<f64>) -> XdfStream {
        let header = StreamHeader::new("s", "EEG", 1, 1.0, ChannelFormat::Float32, "");
        XdfStream {
            id: 1,
            header,
            header_xml: String::new(),
            time_series: TimeSeries::F32((0..samples).map(|k| k as f32).collect()),
            timestamps: (0..samples).map(|k| k as f64).collect(),
            clock_values: vec![0.0; clock_times.len()],
            clock_times,
            clock_segments: Vec::new(),
            effective_srate: 0.0,
            footer: Some(StreamFooter {
                first_timestamp: None,
                last_timestamp: None,
                sample_count: Some(footer_count),
                measured_srate: None,
                info: XmlElement::new("info"),
            }),
        }
    }

    #[test]
    fn extra_samples_with_an_outlying_last_offset_are_dropped_like_pyxdf() {
        // Both conditions: one sample more than the footer and a last offset 12 intervals late (> 10x the median).
        let mut s = stream(11, 10, vec![0.0, 5.0, 10.0, 15.0, 75.0]);
        truncate_corrupted_offsets(&mut s);
        assert_eq!((s.sample_count(), s.time_series.len()), (10, 10));
        assert_eq!(s.clock_times, vec![0.0, 5.0, 10.0, 15.0]);
        // Only one condition: nothing is touched.
        let mut s = stream(11, 10, vec![0.0, 5.0, 10.0, 15.0, 20.0]);
        truncate_corrupted_offsets(&mut s);
        assert_eq!((s.sample_count(), s.clock_times.len()), (11, 5));
        let mut s = stream(10, 10, vec![0.0, 5.0, 10.0, 15.0, 75.0]);
        truncate_corrupted_offsets(&mut s);
        assert_eq!((s.sample_count(), s.clock_times.len()), (10, 5));
    }
}
