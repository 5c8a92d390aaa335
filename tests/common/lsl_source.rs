//! Test helpers shared by the daemon-process tests that drive their own EEG source: a simulated
//! 62-channel outlet pushed at any pace, the daemon's RSS, a child that is killed on drop.
//! Included with `#[path]` (not part of `common`, so tests that do not need it do not carry it).
#![allow(dead_code)]

use std::process::Child;
use std::time::{Duration, Instant};

use affectd::simulate::{synth_session, SimConfig};
use lsl::ExPushable;

/// Resident set size of process `pid`, MB.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// A child process killed (and reaped) when dropped, so a failing test leaves no daemon behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A 62-channel EEG outlet whose samples carry timestamps at exactly the nominal spacing,
/// whatever the pace they are pushed at (as `affectd replay --fast` does).
pub struct Source {
    outlet: lsl::StreamOutlet,
    data: Vec<f32>,
    channels: usize,
    rate: f64,
    pub next: u64,
    t0: f64,
}

impl Source {
    pub fn new(sim: &SimConfig) -> Source {
        let session = synth_session(sim, 20.0).unwrap();
        let channels = session.channels.len();
        let mut info = lsl::StreamInfo::new(
            &sim.stream_name,
            "EEG",
            channels as u32,
            sim.sample_rate_hz,
            lsl::ChannelFormat::Float32,
            &sim.source_id,
        )
        .unwrap();
        let mut chans = info.desc().append_child("channels");
        for label in &session.channels {
            let mut c = chans.append_child("channel");
            c.append_child_value("label", label);
            c.append_child_value("unit", "microvolts");
            c.append_child_value("type", "EEG");
        }
        Source {
            outlet: lsl::StreamOutlet::new(&info, 0, 60).unwrap(),
            data: session.data,
            channels,
            rate: sim.sample_rate_hz,
            next: 0,
            t0: lsl::local_clock(),
        }
    }

    /// Pushes `n` samples (their timestamps continue the sequence).
    pub fn push(&mut self, n: u64) {
        let total = (self.data.len() / self.channels) as u64;
        for k in 0..n {
            let i = (self.next % total) as usize;
            let sample = &self.data[i * self.channels..(i + 1) * self.channels];
            let ts = self.t0 + self.next as f64 / self.rate;
            self.outlet
                .push_sample_ex(&sample.to_vec(), ts, k == n - 1)
                .unwrap();
            self.next += 1;
        }
    }

    /// Pushes in real time (from the current sequence position) for `d`.
    pub fn real_time(&mut self, d: Duration) {
        let start = Instant::now();
        let base = self.next;
        while start.elapsed() < d {
            let due = base + (start.elapsed().as_secs_f64() * self.rate) as u64;
            if due > self.next {
                self.push(due - self.next);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
