//! JSON lines output: one object per window, to stdout or appended to a file.
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::Serialize;

/// One emotion estimate, as written to the JSON lines sink.
#[derive(Debug, Clone, Serialize)]
pub struct EmotionRecord<'a> {
    /// Window end on the source's LSL clock (seconds).
    pub timestamp: f64,
    pub class: &'a str,
    pub class_index: usize,
    /// Smoothed probabilities, in class order.
    pub probabilities: &'a [f32],
    pub classes: &'a [String],
    /// Model identity (sha256 prefix) that produced the estimate.
    pub model: &'a str,
    /// Sample timestamp of the window end to output, on the LSL clock (milliseconds).
    pub latency_ms: f64,
}

pub struct JsonlSink {
    out: Box<dyn Write + Send>,
}

impl JsonlSink {
    /// `"-"` is standard output; anything else is a file, created if needed and appended to.
    pub fn open(target: &Path) -> io::Result<Self> {
        let out: Box<dyn Write + Send> = if target == Path::new("-") {
            Box::new(io::stdout())
        } else {
            let file = OpenOptions::new().create(true).append(true).open(target)?;
            Box::new(BufWriter::new(file))
        };
        Ok(Self { out })
    }

    pub fn from_writer(out: Box<dyn Write + Send>) -> Self {
        Self { out }
    }

    /// Writes one line and flushes it, so a reader tailing the file sees each window at once.
    pub fn write(&mut self, record: &EmotionRecord) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_one_parseable_object_per_line() {
        let buf = Shared::default();
        let mut sink = JsonlSink::from_writer(Box::new(buf.clone()));
        let classes: Vec<String> = crate::CLASSES.iter().map(|c| c.to_string()).collect();
        for i in 0..2 {
            sink.write(&EmotionRecord {
                timestamp: 10.0 + i as f64,
                class: "positive",
                class_index: 2,
                probabilities: &[0.1, 0.2, 0.7],
                classes: &classes,
                model: "abc",
                latency_ms: 1.5,
            })
            .unwrap();
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["timestamp"], 11.0);
        assert_eq!(lines[0]["class"], "positive");
        assert_eq!(lines[0]["probabilities"][2].as_f64().unwrap() as f32, 0.7);
    }
}
