//! The lock-free hand-over of samples from the acquisition thread to one consumer: two SPSC rings
//! (interleaved data, one timestamp per sample) and a doorbell channel.
//!
//! Ordering: the producer pushes a chunk's data before its timestamps, so a timestamp visible to
//! the consumer always has its data visible too; the consumer reads as many whole samples as there
//! are timestamps.
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// The acquisition thread's end.
pub(crate) struct SampleWriter {
    data: HeapProd<f32>,
    timestamps: HeapProd<f64>,
    channels: usize,
    doorbell: Sender<()>,
}

/// The consumer's end of one connection's ring. A new connection comes with a new reader; once
/// the acquisition thread has moved on, [`SampleReader::is_live`] turns false.
pub struct SampleReader {
    data: HeapCons<f32>,
    timestamps: HeapCons<f64>,
    channels: usize,
    doorbell: Receiver<()>,
}

/// A ring holding `capacity_samples` samples of `channels` channels.
pub(crate) fn sample_ring(
    channels: usize,
    capacity_samples: usize,
) -> (SampleWriter, SampleReader) {
    let capacity_samples = capacity_samples.max(1);
    let (data_p, data_c) = HeapRb::<f32>::new(capacity_samples * channels).split();
    let (ts_p, ts_c) = HeapRb::<f64>::new(capacity_samples).split();
    let (bell_tx, bell_rx) = crossbeam_channel::bounded(1);
    (
        SampleWriter {
            data: data_p,
            timestamps: ts_p,
            channels,
            doorbell: bell_tx,
        },
        SampleReader {
            data: data_c,
            timestamps: ts_c,
            channels,
            doorbell: bell_rx,
        },
    )
}

impl SampleWriter {
    /// Pushes as many whole samples as fit and rings the doorbell; returns the number of samples
    /// that did NOT fit (dropped, newest first, because the consumer fell behind).
    pub(crate) fn push(&mut self, data: &[f32], timestamps: &[f64]) -> usize {
        let n = timestamps.len();
        debug_assert_eq!(data.len(), n * self.channels);
        let fit = n
            .min(self.timestamps.vacant_len())
            .min(self.data.vacant_len() / self.channels);
        if fit > 0 {
            self.data.push_slice(&data[..fit * self.channels]);
            self.timestamps.push_slice(&timestamps[..fit]);
            // Full = a wake-up is already pending, which is all the consumer needs.
            let _ = self.doorbell.try_send(());
        }
        n - fit
    }
}

impl SampleReader {
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Whole samples ready to read.
    pub fn available(&self) -> usize {
        self.timestamps.occupied_len()
    }

    /// False once the acquisition thread dropped this ring's writer (stream lost and reconnected
    /// with a new reader, or acquisition stopped). Remaining samples can still be read.
    pub fn is_live(&self) -> bool {
        self.timestamps.write_is_held()
    }

    /// Copies up to `min(timestamps.len(), data.len() / channels)` samples, interleaved
    /// [sample][channel], and returns how many.
    pub fn read(&mut self, data: &mut [f32], timestamps: &mut [f64]) -> usize {
        let n = self
            .available()
            .min(timestamps.len())
            .min(data.len() / self.channels);
        if n == 0 {
            return 0;
        }
        let got_ts = self.timestamps.pop_slice(&mut timestamps[..n]);
        let got_data = self.data.pop_slice(&mut data[..n * self.channels]);
        debug_assert_eq!((got_ts, got_data), (n, n * self.channels));
        n
    }

    /// Blocks until samples are available or `timeout` passes; true if samples are available.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.available() > 0 {
                return true;
            }
            match self.doorbell.recv_deadline(deadline) {
                // A ring may be stale (rung for data already read): look again.
                Ok(()) => continue,
                // Timed out, or the writer is gone (no more wake-ups will come).
                Err(_) => return self.available() > 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_samples_in_order_and_reports_overflow() {
        let (mut w, mut r) = sample_ring(2, 3);
        assert_eq!(w.push(&[1.0, 2.0, 3.0, 4.0], &[0.1, 0.2]), 0);
        // Only one more sample fits.
        assert_eq!(w.push(&[5.0, 6.0, 7.0, 8.0], &[0.3, 0.4]), 1);
        let mut data = [0.0f32; 8];
        let mut ts = [0.0f64; 4];
        assert_eq!(r.read(&mut data, &mut ts), 3);
        assert_eq!(&data[..6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&ts[..3], &[0.1, 0.2, 0.3]);
        assert_eq!(r.read(&mut data, &mut ts), 0);
    }

    #[test]
    fn read_is_limited_by_the_smaller_buffer() {
        let (mut w, mut r) = sample_ring(3, 10);
        w.push(&[0.0; 12], &[1.0, 2.0, 3.0, 4.0]);
        let mut data = [0.0f32; 7]; // room for 2 whole samples
        let mut ts = [0.0f64; 4];
        assert_eq!(r.read(&mut data, &mut ts), 2);
        assert_eq!(r.available(), 2);
    }

    #[test]
    fn wait_wakes_on_push_and_times_out_without() {
        let (mut w, r) = sample_ring(1, 10);
        let t = Instant::now();
        assert!(!r.wait(Duration::from_millis(30)));
        assert!(t.elapsed() >= Duration::from_millis(30));
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.push(&[1.0], &[1.0]);
            w
        });
        assert!(r.wait(Duration::from_secs(5)));
        let w = h.join().unwrap();
        assert!(r.is_live());
        drop(w);
        assert!(!r.is_live());
        // Data pushed before the writer went away is still readable.
        assert!(r.wait(Duration::from_millis(1)));
    }
}
