//! XDF 1.0 (Extensible Data Format, <https://github.com/sccn/xdf>): a streaming writer and a
//! reader that matches pyxdf (the reference importer) on clock synchronisation and clock resets.
//!
//! File layout: the magic `XDF:` then chunks `[NumLengthBytes: 1|4|8][Length][Tag u16][Content]`,
//! where Length counts the tag and the content. Tags: FileHeader 1, StreamHeader 2, Samples 3,
//! ClockOffset 4, Boundary 5, StreamFooter 6. All numbers are little-endian.

mod read;
mod sync;
mod write;
pub mod xml;

use std::path::PathBuf;

pub use read::{
    read_xdf, read_xdf_with, ReadOptions, StreamFooter, TimeSeries, XdfFile, XdfStream,
};
pub use write::{SampleValues, XdfWriteError, XdfWriter};
pub use xml::XmlElement;

pub(crate) const MAGIC: &[u8; 4] = b"XDF:";
pub(crate) const TAG_FILE_HEADER: u16 = 1;
pub(crate) const TAG_STREAM_HEADER: u16 = 2;
pub(crate) const TAG_SAMPLES: u16 = 3;
pub(crate) const TAG_CLOCK_OFFSET: u16 = 4;
pub(crate) const TAG_BOUNDARY: u16 = 5;
pub(crate) const TAG_STREAM_FOOTER: u16 = 6;
/// The Boundary chunk's fixed content: readers scan for it to resynchronise after corruption.
pub(crate) const BOUNDARY_UUID: [u8; 16] = [
    0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4,
];

/// Value format of a stream's channels, as spelled in `<channel_format>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelFormat {
    Float32,
    Double64,
    Int8,
    Int16,
    Int32,
    Int64,
    String,
}

impl ChannelFormat {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "float32" => Self::Float32,
            "double64" => Self::Double64,
            "int8" => Self::Int8,
            "int16" => Self::Int16,
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            "string" => Self::String,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::Double64 => "double64",
            Self::Int8 => "int8",
            Self::Int16 => "int16",
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::String => "string",
        }
    }

    /// Bytes per value (0 for strings, which are length-prefixed).
    pub fn value_bytes(self) -> usize {
        match self {
            Self::Int8 => 1,
            Self::Int16 => 2,
            Self::Float32 | Self::Int32 => 4,
            Self::Double64 | Self::Int64 => 8,
            Self::String => 0,
        }
    }
}

/// A stream's metadata: the `<info>` element of its StreamHeader chunk (LSL's stream info XML).
///
/// The whole element is kept in `info`, so the original LSL description (`<desc>` with channel
/// labels, units, manufacturer...) and every other field survive a read-write round trip; the
/// accessors read the standard fields from it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamHeader {
    info: XmlElement,
    channel_count: u32,
    nominal_srate: f64,
    channel_format: ChannelFormat,
}

impl StreamHeader {
    /// A header with the standard fields and an empty `<desc>`.
    pub fn new(
        name: &str,
        stream_type: &str,
        channel_count: u32,
        nominal_srate: f64,
        channel_format: ChannelFormat,
        source_id: &str,
    ) -> Self {
        let mut info = XmlElement::new("info");
        for (k, v) in [
            ("name", name.to_string()),
            ("type", stream_type.to_string()),
            ("channel_count", channel_count.to_string()),
            ("nominal_srate", format_f64(nominal_srate)),
            ("channel_format", channel_format.as_str().to_string()),
            ("source_id", source_id.to_string()),
        ] {
            info.children.push(XmlElement::with_text(k, &v));
        }
        info.children.push(XmlElement::new("desc"));
        StreamHeader {
            info,
            channel_count,
            nominal_srate,
            channel_format,
        }
    }

    /// Adds (or replaces) `desc/channels` with one `<channel>` per label, in the XDF meta-data
    /// convention (`label`, and `unit`/`type` when given).
    pub fn with_channels(
        mut self,
        labels: &[&str],
        unit: Option<&str>,
        kind: Option<&str>,
    ) -> Self {
        let desc = self.info.child_mut_or_insert("desc");
        desc.children.retain(|c| c.name != "channels");
        let mut channels = XmlElement::new("channels");
        for label in labels {
            let mut ch = XmlElement::new("channel");
            ch.children.push(XmlElement::with_text("label", label));
            if let Some(u) = unit {
                ch.children.push(XmlElement::with_text("unit", u));
            }
            if let Some(k) = kind {
                ch.children.push(XmlElement::with_text("type", k));
            }
            channels.children.push(ch);
        }
        desc.children.push(channels);
        self
    }

    /// Parses an `<info>` document (a StreamHeader's content, or liblsl's `StreamInfo::to_xml`).
    pub fn from_xml(doc: &str) -> Result<Self, HeaderError> {
        let info = XmlElement::parse(doc).map_err(HeaderError)?;
        Self::from_info(info)
    }

    /// Builds a header from an already parsed `<info>` element.
    pub fn from_info(info: XmlElement) -> Result<Self, HeaderError> {
        Self::from_info_inner(info).map_err(HeaderError)
    }

    fn from_info_inner(info: XmlElement) -> Result<Self, String> {
        if info.name != "info" {
            return Err(format!("root element is <{}>, expected <info>", info.name));
        }
        let field = |k: &str| info.child_text(k).ok_or_else(|| format!("missing <{k}>"));
        let channel_count = field("channel_count")?
            .parse::<u32>()
            .map_err(|e| format!("bad <channel_count>: {e}"))?;
        if channel_count == 0 {
            return Err("<channel_count> is 0".into());
        }
        // pyxdf requires nominal_srate too; an empty one means irregular.
        let srate_text = field("nominal_srate")?;
        let nominal_srate = if srate_text.is_empty() {
            0.0
        } else {
            srate_text
                .parse::<f64>()
                .map_err(|e| format!("bad <nominal_srate>: {e}"))?
        };
        if !nominal_srate.is_finite() || nominal_srate < 0.0 {
            return Err(format!("bad <nominal_srate>: {nominal_srate}"));
        }
        let fmt_text = field("channel_format")?;
        let channel_format = ChannelFormat::parse(fmt_text)
            .ok_or_else(|| format!("unknown <channel_format> {fmt_text:?}"))?;
        Ok(StreamHeader {
            info,
            channel_count,
            nominal_srate,
            channel_format,
        })
    }

    pub fn name(&self) -> &str {
        self.info.child_text("name").unwrap_or("")
    }
    pub fn stream_type(&self) -> &str {
        self.info.child_text("type").unwrap_or("")
    }
    pub fn source_id(&self) -> &str {
        self.info.child_text("source_id").unwrap_or("")
    }
    pub fn channel_count(&self) -> u32 {
        self.channel_count
    }
    /// Nominal sampling rate in Hz; 0 for irregular streams (markers).
    pub fn nominal_srate(&self) -> f64 {
        self.nominal_srate
    }
    pub fn channel_format(&self) -> ChannelFormat {
        self.channel_format
    }
    /// The `<desc>` element, if any.
    pub fn desc(&self) -> Option<&XmlElement> {
        self.info.child("desc")
    }
    /// The whole `<info>` element.
    pub fn info(&self) -> &XmlElement {
        &self.info
    }

    /// Channel labels from `desc/channels/channel/label` (empty if the stream has none; a
    /// channel without a label gives "").
    pub fn channel_labels(&self) -> Vec<String> {
        self.channel_field("label")
    }

    /// Channel units from `desc/channels/channel/unit`, like [`Self::channel_labels`].
    pub fn channel_units(&self) -> Vec<String> {
        self.channel_field("unit")
    }

    /// Channel types from `desc/channels/channel/type`, like [`Self::channel_labels`].
    pub fn channel_types(&self) -> Vec<String> {
        self.channel_field("type")
    }

    fn channel_field(&self, field: &str) -> Vec<String> {
        self.desc()
            .and_then(|d| d.child("channels"))
            .map(|chs| {
                chs.children_named("channel")
                    .map(|c| c.child_text(field).unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The header as an XML document, as written into the StreamHeader chunk.
    pub fn to_xml(&self) -> String {
        format!("<?xml version=\"1.0\"?>{}", self.info.to_xml())
    }
}

/// Formats a float so that it parses back to the same value (Rust's shortest round-trip form).
pub(crate) fn format_f64(v: f64) -> String {
    format!("{v:?}")
}

/// A stream header (`<info>` XML) that cannot be used: the message says which field and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unusable stream header: {0}")]
pub struct HeaderError(pub String);

/// Everything that can be wrong with an XDF file, with the byte offset where it was found.
#[derive(Debug, thiserror::Error)]
pub enum XdfError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an XDF file: it starts with {found:?}, not \"XDF:\"")]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("truncated at byte {offset}: {what} needs {needed} bytes, only {available} left")]
    Truncated {
        offset: u64,
        what: String,
        needed: u64,
        available: u64,
    },
    #[error("corrupt chunk at byte {offset}: length field has {width} bytes (must be 1, 4 or 8)")]
    BadLengthWidth { offset: u64, width: u8 },
    #[error("corrupt chunk at byte {offset}: length {length} is too short for tag {tag}")]
    ChunkTooShort { offset: u64, tag: u16, length: u64 },
    #[error("corrupt {what} at byte {offset}: {message}")]
    BadXml {
        offset: u64,
        what: &'static str,
        message: String,
    },
    #[error(
        "chunk at byte {offset} (tag {tag}) refers to stream {stream_id}, which has no header"
    )]
    UnknownStream {
        offset: u64,
        tag: u16,
        stream_id: u32,
    },
    #[error("corrupt samples chunk at byte {offset} (stream {stream_id}): {message}")]
    BadSamples {
        offset: u64,
        stream_id: u32,
        message: String,
    },
    #[error("corrupt clock offset chunk at byte {offset}: {message}")]
    BadClockOffset { offset: u64, message: String },
}

impl XdfError {
    /// Byte offset of the problem in the file, when there is one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            XdfError::Io { .. } | XdfError::BadMagic { .. } => None,
            XdfError::Truncated { offset, .. }
            | XdfError::BadLengthWidth { offset, .. }
            | XdfError::ChunkTooShort { offset, .. }
            | XdfError::BadXml { offset, .. }
            | XdfError::UnknownStream { offset, .. }
            | XdfError::BadSamples { offset, .. }
            | XdfError::BadClockOffset { offset, .. } => Some(*offset),
        }
    }
}
