//! Which stream to take (an XPath predicate for liblsl's resolver) and what we learn about it
//! from its header.
use super::lsl_ffi::{ChannelMeta, Header};

/// Selects the input stream. Empty / `None` fields do not constrain.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamPredicate {
    pub stream_type: String,
    pub name: Option<String>,
    pub source_id: Option<String>,
}

impl Default for StreamPredicate {
    fn default() -> Self {
        Self {
            stream_type: "EEG".into(),
            name: None,
            source_id: None,
        }
    }
}

impl StreamPredicate {
    /// The predicate in liblsl's XPath 1.0 dialect, e.g. `type='EEG' and name='Cap 1'`. Values
    /// containing quotes are written so they cannot break out of their literal.
    pub fn to_xpath(&self) -> String {
        let mut clauses = Vec::new();
        if !self.stream_type.is_empty() {
            clauses.push(format!("type={}", xpath_literal(&self.stream_type)));
        }
        for (field, value) in [("name", &self.name), ("source_id", &self.source_id)] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                clauses.push(format!("{field}={}", xpath_literal(v)));
            }
        }
        if clauses.is_empty() {
            "true()".into()
        } else {
            clauses.join(" and ")
        }
    }
}

/// XPath 1.0 has no escapes inside literals: use the quote the value lacks, or concat() pieces.
fn xpath_literal(v: &str) -> String {
    if !v.contains('\'') {
        format!("'{v}'")
    } else if !v.contains('"') {
        format!("\"{v}\"")
    } else {
        let parts: Vec<String> = v.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

/// What the stream header says, parsed once at connection.
#[derive(Debug, Clone)]
pub struct StreamDescription {
    pub name: String,
    pub stream_type: String,
    pub source_id: String,
    pub channel_count: usize,
    pub nominal_srate: f64,
    /// One entry per channel from desc/channels/channel/label (XDF meta-data convention), or
    /// empty when the header does not list exactly `channel_count` channel elements.
    pub labels: Vec<String>,
    /// desc/channels/channel/type, same length rule as `labels` ("" where absent).
    pub channel_types: Vec<String>,
    /// desc/channels/channel/unit, same length rule as `labels` ("" where absent).
    pub units: Vec<String>,
    /// liblsl's channel format name, e.g. "float32".
    pub channel_format: String,
    /// The full header (`lsl_get_xml`), for the recorder.
    pub header_xml: String,
    pub hostname: String,
    pub uid: String,
}

impl StreamDescription {
    pub(crate) fn from_header(h: Header) -> Self {
        let listed = h.channels.len() == h.channel_count;
        let column = |f: fn(&ChannelMeta) -> &str| -> Vec<String> {
            if listed {
                h.channels.iter().map(|c| f(c).trim().to_string()).collect()
            } else {
                Vec::new()
            }
        };
        Self {
            labels: column(|c| &c.label),
            channel_types: column(|c| &c.kind),
            units: column(|c| &c.unit),
            name: h.name,
            stream_type: h.stream_type,
            source_id: h.source_id,
            channel_count: h.channel_count,
            nominal_srate: h.nominal_srate,
            channel_format: h.channel_format.to_string(),
            header_xml: h.xml,
            hostname: h.hostname,
            uid: h.uid,
        }
    }

    /// Whether liblsl can convert the samples to float32 (every format except strings).
    pub fn is_numeric(&self) -> bool {
        !matches!(self.channel_format.as_str(), "string" | "undefined")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lsl::{ChannelFormat, StreamInfo};

    fn info(name: &str, source_id: &str) -> StreamInfo {
        StreamInfo::new(name, "EEG", 2, 100.0, ChannelFormat::Float32, source_id).unwrap()
    }

    #[test]
    fn xpath_matches_awkward_names_through_liblsl() {
        for name in [
            "plain",
            "it's",
            "say \"hi\"",
            "both ' and \" here",
            "a]b[c or 1=1",
        ] {
            let p = StreamPredicate {
                stream_type: "EEG".into(),
                name: Some(name.into()),
                source_id: Some("src'1".into()),
            };
            let q = p.to_xpath();
            assert!(info(name, "src'1").matches_query(&q), "{q}");
            assert!(!info(&format!("{name}x"), "src'1").matches_query(&q), "{q}");
            assert!(!info(name, "src1").matches_query(&q), "{q}");
        }
    }

    #[test]
    fn empty_predicate_matches_anything() {
        let p = StreamPredicate {
            stream_type: String::new(),
            name: None,
            source_id: Some(String::new()),
        };
        assert_eq!(p.to_xpath(), "true()");
        assert!(info("x", "").matches_query(&p.to_xpath()));
    }

    fn header(listed: usize) -> Header {
        Header {
            name: "cap".into(),
            stream_type: "EEG".into(),
            source_id: "s1".into(),
            channel_count: 2,
            nominal_srate: 100.0,
            channel_format: ChannelFormat::Float32,
            hostname: "h".into(),
            uid: "u".into(),
            channels: ["Fp1", " Fp2 "][..listed]
                .iter()
                .map(|l| ChannelMeta {
                    label: l.to_string(),
                    kind: "EEG".into(),
                    unit: String::new(),
                })
                .collect(),
            xml: "<info/>".into(),
        }
    }

    #[test]
    fn description_takes_labels_only_from_a_complete_channel_list() {
        let d = StreamDescription::from_header(header(2));
        assert_eq!(d.labels, ["Fp1", "Fp2"]);
        assert_eq!(d.channel_types, ["EEG", "EEG"]);
        assert_eq!(d.units, ["", ""]);
        assert!(d.is_numeric());
        let d = StreamDescription::from_header(header(1));
        assert!(d.labels.is_empty() && d.units.is_empty() && d.channel_types.is_empty());
    }
}
