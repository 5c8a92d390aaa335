//! The marker convention that turns a calibration session into labelled training data.
//!
//! A stimulus is bracketed by two string markers (any marker stream, first channel):
//! `stimulus_start:<label>` when it begins and `stimulus_end:<label>` when it ends. The label
//! names its emotion class through a [`LabelMapping`] (case-insensitive; default `negative`,
//! `neutral`, `positive` -> 0, 1, 2; aliases such as `sad` or `happy` can be added). Windows
//! that lie inside a stimulus become training samples of its class, and the stimulus (its
//! index in the session) is their group, so that no stimulus is split between training and
//! test data. Other markers are ignored.
//!
//! Strictness: an unknown label, an end without a start, an end whose label differs from the
//! open start, a start while another stimulus is open, or an end not after its start are
//! errors (the session's markers are wrong and must be fixed, not guessed). The one tolerated
//! defect is a recording cut short: a start that never ends (the recording stopped mid-stimulus)
//! is dropped with a warning.

use std::collections::HashMap;

use crate::CLASSES;

use super::xdf::{ChannelFormat, XdfFile, XdfStream};

pub const START_PREFIX: &str = "stimulus_start:";
pub const END_PREFIX: &str = "stimulus_end:";

/// Label -> class index, case-insensitive.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMapping {
    classes: HashMap<String, u8>,
}

impl Default for LabelMapping {
    /// The class names of [`CLASSES`] (negative, neutral, positive) -> 0, 1, 2.
    fn default() -> Self {
        let classes = CLASSES
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), i as u8))
            .collect();
        LabelMapping { classes }
    }
}

impl LabelMapping {
    /// A mapping from explicit (label, class) pairs only.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, u8)>,
    ) -> Result<Self, LabelError> {
        let mut m = LabelMapping {
            classes: HashMap::new(),
        };
        for (label, class) in pairs {
            m = m.with_alias(label, class)?;
        }
        Ok(m)
    }

    /// Adds a label (e.g. `sad` -> 0).
    pub fn with_alias(mut self, label: &str, class: u8) -> Result<Self, LabelError> {
        if usize::from(class) >= CLASSES.len() {
            return Err(LabelError::BadClass {
                label: label.to_string(),
                class,
            });
        }
        let key = label.trim().to_lowercase();
        if key.is_empty() || key.contains(':') {
            return Err(LabelError::BadLabel(label.to_string()));
        }
        self.classes.insert(key, class);
        Ok(self)
    }

    pub fn class_of(&self, label: &str) -> Option<u8> {
        self.classes.get(&label.trim().to_lowercase()).copied()
    }
}

/// One stimulus: `[start, end)` in the markers' time base.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledInterval {
    pub start: f64,
    pub end: f64,
    pub class: u8,
    /// Index of the stimulus in the session (0, 1, ...).
    pub group: i64,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelError {
    #[error("marker {marker:?} at t={time:.3}: unknown label {label:?} (known: {known})")]
    UnknownLabel {
        marker: String,
        time: f64,
        label: String,
        known: String,
    },
    #[error(
        "marker {marker:?} at t={time:.3}: stimulus {open:?} opened at t={since:.3} has not ended"
    )]
    NestedStart {
        marker: String,
        time: f64,
        open: String,
        since: f64,
    },
    #[error("marker {marker:?} at t={time:.3}: no stimulus is open")]
    UnmatchedEnd { marker: String, time: f64 },
    #[error("marker {marker:?} at t={time:.3}: the open stimulus is {open:?}")]
    MismatchedEnd {
        marker: String,
        time: f64,
        open: String,
    },
    #[error(
        "marker {marker:?} at t={time:.3}: ends {duration:.3} s after its start (must be > 0)"
    )]
    EmptyStimulus {
        marker: String,
        time: f64,
        duration: f64,
    },
    #[error("label mapping: class {class} for {label:?} is out of range (classes: 0..{})", CLASSES.len())]
    BadClass { label: String, class: u8 },
    #[error("label mapping: {0:?} is not a usable label (empty or contains ':')")]
    BadLabel(String),
}

/// Converts markers `(timestamp, text)` (any order; sorted here by time) into stimuli.
pub fn labelled_intervals(
    markers: &[(f64, String)],
    mapping: &LabelMapping,
) -> Result<Vec<LabelledInterval>, LabelError> {
    let mut sorted: Vec<&(f64, String)> = markers.iter().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let known = || {
        let mut k: Vec<&str> = mapping.classes.keys().map(String::as_str).collect();
        k.sort_unstable();
        k.join(", ")
    };
    let mut open: Option<(f64, String, u8)> = None;
    let mut seen_start = false;
    let mut out = Vec::new();
    for (time, text) in sorted {
        let (is_start, label) = if let Some(l) = text.trim().strip_prefix(START_PREFIX) {
            (true, l.trim())
        } else if let Some(l) = text.trim().strip_prefix(END_PREFIX) {
            (false, l.trim())
        } else {
            continue;
        };
        let class = mapping
            .class_of(label)
            .ok_or_else(|| LabelError::UnknownLabel {
                marker: text.clone(),
                time: *time,
                label: label.to_string(),
                known: known(),
            })?;
        if is_start {
            if let Some((since, open_label, _)) = &open {
                return Err(LabelError::NestedStart {
                    marker: text.clone(),
                    time: *time,
                    open: open_label.clone(),
                    since: *since,
                });
            }
            open = Some((*time, label.to_string(), class));
            seen_start = true;
            continue;
        }
        let Some((start, open_label, _)) = open.take() else {
            // A recording that began during a stimulus sees its end first: nothing to label yet.
            if out.is_empty() && !seen_start {
                tracing::warn!("marker {text:?} at t={time:.3} ends a stimulus that began before the recording: ignored");
                continue;
            }
            return Err(LabelError::UnmatchedEnd {
                marker: text.clone(),
                time: *time,
            });
        };
        if open_label.to_lowercase() != label.to_lowercase() {
            return Err(LabelError::MismatchedEnd {
                marker: text.clone(),
                time: *time,
                open: open_label,
            });
        }
        if *time <= start {
            return Err(LabelError::EmptyStimulus {
                marker: text.clone(),
                time: *time,
                duration: time - start,
            });
        }
        out.push(LabelledInterval {
            start,
            end: *time,
            class,
            group: out.len() as i64,
            label: open_label,
        });
    }
    if let Some((since, label, _)) = open {
        tracing::warn!("stimulus {label:?} started at t={since:.3} never ended (recording cut short?): dropped");
    }
    Ok(out)
}

/// The streams of a recorded session that the offline path needs.
#[derive(Debug)]
pub struct SessionStreams<'a> {
    pub eeg: &'a XdfStream,
    /// String-valued streams (markers), in file order.
    pub markers: Vec<&'a XdfStream>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    #[error("no stream of type \"EEG\" in the file")]
    NoEeg,
    #[error("several EEG streams in the file ({0}); record one per session")]
    SeveralEeg(String),
    #[error("the EEG stream {0:?} holds strings, not numbers")]
    EegNotNumeric(String),
}

/// Picks the EEG stream (type "EEG", case-insensitive; exactly one) and the marker streams
/// (every string stream).
pub fn session_streams(xdf: &XdfFile) -> Result<SessionStreams<'_>, SessionError> {
    let eegs: Vec<&XdfStream> = xdf
        .streams
        .iter()
        .filter(|s| s.header.stream_type().eq_ignore_ascii_case("EEG"))
        .collect();
    let eeg = match eegs.as_slice() {
        [] => return Err(SessionError::NoEeg),
        [one] => *one,
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|s| format!("{:?} (id {})", s.header.name(), s.id))
                .collect();
            return Err(SessionError::SeveralEeg(names.join(", ")));
        }
    };
    if eeg.header.channel_format() == ChannelFormat::String {
        return Err(SessionError::EegNotNumeric(eeg.header.name().to_string()));
    }
    let markers = xdf
        .streams
        .iter()
        .filter(|s| s.header.channel_format() == ChannelFormat::String)
        .collect();
    Ok(SessionStreams { eeg, markers })
}

/// All markers of these streams (first channel of each sample) as `(timestamp, text)`, by time.
pub fn marker_events(streams: &[&XdfStream]) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    for s in streams {
        for k in 0..s.sample_count() {
            if let Some(v) = s.sample_str(k).and_then(|v| v.first()) {
                out.push((s.timestamps[k], v.clone()));
            }
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(list: &[(f64, &str)]) -> Vec<(f64, String)> {
        list.iter().map(|(t, s)| (*t, s.to_string())).collect()
    }

    #[test]
    fn converts_a_well_formed_session() {
        let mapping = LabelMapping::default()
            .with_alias("sad", 0)
            .unwrap()
            .with_alias("Happy", 2)
            .unwrap();
        let markers = m(&[
            (1.0, "session_start"),
            (2.0, "stimulus_start:Positive"),
            (12.0, "stimulus_end:positive"),
            (20.0, "stimulus_start:sad"),
            (15.0, "fixation"),
            (30.5, "stimulus_end:sad"),
            (31.0, "stimulus_start:neutral"),
            (40.0, "stimulus_end:neutral"),
            (41.0, "stimulus_start:HAPPY"),
            (50.0, "stimulus_end:happy"),
        ]);
        let iv = labelled_intervals(&markers, &mapping).unwrap();
        let got: Vec<(f64, f64, u8, i64)> = iv
            .iter()
            .map(|i| (i.start, i.end, i.class, i.group))
            .collect();
        assert_eq!(
            got,
            vec![
                (2.0, 12.0, 2, 0),
                (20.0, 30.5, 0, 1),
                (31.0, 40.0, 1, 2),
                (41.0, 50.0, 2, 3)
            ]
        );
    }

    #[test]
    fn out_of_order_input_is_sorted_and_a_cut_recording_keeps_complete_stimuli() {
        let markers = m(&[
            (12.0, "stimulus_end:neutral"),
            (2.0, "stimulus_start:neutral"),
            (20.0, "stimulus_start:negative"),
        ]);
        let iv = labelled_intervals(&markers, &LabelMapping::default()).unwrap();
        assert_eq!(iv.len(), 1);
        assert_eq!((iv[0].start, iv[0].end, iv[0].class), (2.0, 12.0, 1));
    }

    #[test]
    fn bad_sequences_are_errors() {
        let map = LabelMapping::default();
        let err = |list: &[(f64, &str)]| labelled_intervals(&m(list), &map).unwrap_err();
        assert!(
            matches!(err(&[(1.0, "stimulus_start:angry")]), LabelError::UnknownLabel { label, .. } if label == "angry")
        );
        assert!(matches!(
            err(&[
                (1.0, "stimulus_start:neutral"),
                (2.0, "stimulus_end:neutral"),
                (3.0, "stimulus_end:neutral")
            ]),
            LabelError::UnmatchedEnd { time, .. } if time == 3.0
        ));
        // A recording that starts inside a stimulus: its end comes first and is skipped.
        let iv = labelled_intervals(
            &m(&[
                (1.0, "stimulus_end:neutral"),
                (2.0, "stimulus_start:positive"),
                (4.0, "stimulus_end:positive"),
            ]),
            &map,
        )
        .unwrap();
        assert_eq!(iv.len(), 1);
        assert_eq!((iv[0].start, iv[0].end, iv[0].class), (2.0, 4.0, 2));
        assert!(matches!(
            err(&[(1.0, "stimulus_start:neutral"), (2.0, "stimulus_start:positive")]),
            LabelError::NestedStart { since, .. } if since == 1.0
        ));
        assert!(matches!(
            err(&[(1.0, "stimulus_start:neutral"), (2.0, "stimulus_end:positive")]),
            LabelError::MismatchedEnd { open, .. } if open == "neutral"
        ));
        assert!(matches!(
            err(&[
                (1.0, "stimulus_start:neutral"),
                (1.0, "stimulus_end:neutral")
            ]),
            LabelError::EmptyStimulus { .. }
        ));
        let msg = err(&[(3.25, "stimulus_start:angry")]).to_string();
        assert!(
            msg.contains("angry") && msg.contains("3.250") && msg.contains("negative"),
            "{msg}"
        );
    }

    #[test]
    fn mapping_rejects_bad_entries() {
        assert!(matches!(
            LabelMapping::default().with_alias("x", 3),
            Err(LabelError::BadClass { class: 3, .. })
        ));
        assert!(matches!(
            LabelMapping::default().with_alias("a:b", 1),
            Err(LabelError::BadLabel(_))
        ));
        let m = LabelMapping::from_pairs([("calm", 1)]).unwrap();
        assert_eq!(m.class_of(" CALM "), Some(1));
        assert_eq!(m.class_of("neutral"), None);
    }
}
