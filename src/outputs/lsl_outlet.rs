//! The emotion estimate as an LSL stream (type "Emotion", float32): one channel per class
//! probability (`p_<class>`) and a `class_index` channel, labelled per the XDF meta-data
//! convention, with the class names in order under desc/classes.
use anyhow::Context;
use lsl::{ChannelFormat, ExPushable, StreamInfo, StreamOutlet};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmotionOutletError {
    #[error("the emotion outlet needs at least one class")]
    NoClasses,
    #[error("nominal rate must be finite and >= 0 Hz (0 = irregular), got {0}")]
    Rate(f64),
    #[error("expected {expected} class probabilities, got {got}")]
    ProbabilityCount { expected: usize, got: usize },
    #[error("class index {index} out of range for {classes} classes")]
    ClassIndex { index: usize, classes: usize },
}

/// Owns an LSL outlet; like every liblsl handle it stays on the thread that created it.
pub struct EmotionOutlet {
    outlet: StreamOutlet,
    classes: usize,
}

impl EmotionOutlet {
    pub fn new(
        name: &str,
        source_id: &str,
        classes: &[String],
        nominal_rate_hz: f64,
    ) -> anyhow::Result<Self> {
        if classes.is_empty() {
            return Err(EmotionOutletError::NoClasses.into());
        }
        if !(nominal_rate_hz.is_finite() && nominal_rate_hz >= 0.0) {
            return Err(EmotionOutletError::Rate(nominal_rate_hz).into());
        }
        let mut info = StreamInfo::new(
            name,
            "Emotion",
            (classes.len() + 1) as u32,
            nominal_rate_hz,
            ChannelFormat::Float32,
            source_id,
        )
        .with_context(|| format!("creating the Emotion stream info '{name}'"))?;
        let mut desc = info.desc();
        desc.append_child_value("manufacturer", "affectd");
        let mut chans = desc.append_child("channels");
        for class in classes {
            chans
                .append_child("channel")
                .append_child_value("label", &format!("p_{class}"))
                .append_child_value("type", "probability")
                .append_child_value("unit", "probability");
        }
        chans
            .append_child("channel")
            .append_child_value("label", "class_index")
            .append_child_value("type", "class")
            .append_child_value("unit", "index");
        let mut list = desc.append_child("classes");
        for class in classes {
            list.append_child_value("class", class);
        }
        let outlet = StreamOutlet::new(&info, 0, 360)
            .with_context(|| format!("creating the Emotion outlet '{name}'"))?;
        Ok(Self {
            outlet,
            classes: classes.len(),
        })
    }

    /// Pushes one estimate. `timestamp` is on the source clock (the analysed window's end);
    /// 0.0 would mean "now" to liblsl.
    pub fn push(
        &self,
        probabilities: &[f32],
        class_index: usize,
        timestamp: f64,
    ) -> anyhow::Result<()> {
        if probabilities.len() != self.classes {
            return Err(EmotionOutletError::ProbabilityCount {
                expected: self.classes,
                got: probabilities.len(),
            }
            .into());
        }
        if class_index >= self.classes {
            return Err(EmotionOutletError::ClassIndex {
                index: class_index,
                classes: self.classes,
            }
            .into());
        }
        let mut sample = Vec::with_capacity(self.classes + 1);
        sample.extend_from_slice(probabilities);
        sample.push(class_index as f32);
        self.outlet
            .push_sample_ex(&sample, timestamp, true)
            .context("pushing an emotion sample")
    }

    /// Whether any inlet is connected.
    pub fn has_consumers(&self) -> bool {
        self.outlet.have_consumers()
    }
}
