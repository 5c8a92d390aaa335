//! Timestamp post-processing, ported from pyxdf 1.17 (`_clock_sync`, `_detect_clock_resets`,
//! `_robust_fit`, `_jitter_removal`, `_detect_corrupted_clock_offset`) so that both readers give
//! the same timestamps for the same file.

use super::read::ReadOptions;

/// Adds the fitted clock offset to every timestamp; returns the clock segments (inclusive
/// sample index ranges, one per clock fit). Streams without samples or without clock offsets
/// are left alone (no segments), as in pyxdf.
pub(super) fn synchronize(
    stamps: &mut [f64],
    times: &[f64],
    values: &[f64],
    opts: &ReadOptions,
    stream_id: u32,
) -> Vec<(usize, usize)> {
    if stamps.is_empty() || times.is_empty() {
        return Vec::new();
    }
    let ranges = if opts.handle_clock_resets && times.len() > 1 {
        detect_clock_resets(times, values, opts)
    } else {
        vec![(0, times.len() - 1)]
    };
    let coefs: Vec<(f64, f64)> = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                return (values[a], 0.0);
            }
            let w = opts.winsor_threshold;
            let t: Vec<f64> = times[a..=b].iter().map(|x| x / w).collect();
            let y: Vec<f64> = values[a..=b].iter().map(|x| x / w).collect();
            match robust_fit(&t, &y) {
                Some((c0, c1)) => (c0 * w, c1),
                None => {
                    tracing::warn!(
                        "stream {stream_id}: clock offsets {a}..={b} cannot be used for synchronization"
                    );
                    (0.0, 0.0)
                }
            }
        })
        .collect();
    let mut segments = Vec::new();
    if ranges.len() == 1 {
        let (c0, c1) = coefs[0];
        for t in stamps.iter_mut() {
            *t += c0 + c1 * *t;
        }
        segments.push((0, stamps.len() - 1));
        return segments;
    }
    // Several clock segments: samples are assigned in order (timestamps assumed increasing
    // within a segment); a segment ends at the first stamp closer to the next segment's first
    // clock time than to this segment's last one.
    let mut ts_start = 0usize;
    for (&(c0, c1), &(_, end)) in coefs.iter().zip(&ranges) {
        let stop = end + 1;
        let ts_stop = if stop < times.len() {
            let current_end_t = times[end];
            let next_start_t = times[stop];
            let first_far = stamps[ts_start..]
                .iter()
                .position(|&t| (t - current_end_t).abs() >= (t - next_start_t).abs());
            match first_far {
                None => stamps.len(),
                Some(k) => ts_start + k,
            }
        } else {
            stamps.len()
        };
        if ts_start == ts_stop {
            tracing::warn!(
                "stream {stream_id}: no samples in clock segment ending at offset {end}"
            );
            continue;
        }
        segments.push((ts_start, ts_stop - 1));
        for t in &mut stamps[ts_start..ts_stop] {
            *t += c0 + c1 * *t;
        }
        ts_start = ts_stop;
    }
    segments
}

/// Clock segments (inclusive ranges of clock offset indices) between detected resets: a reset
/// is a decreasing collection time, or a jump that is an outlier both in collection-time
/// interval and in offset value.
fn detect_clock_resets(times: &[f64], values: &[f64], opts: &ReadOptions) -> Vec<(usize, usize)> {
    let time_diff: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let value_diff: Vec<f64> = values.windows(2).map(|w| w[1] - w[0]).collect();
    let time_glitch = glitches(
        &time_diff,
        opts.clock_reset_threshold_stds,
        opts.clock_reset_threshold_seconds,
    );
    let value_glitch = glitches(
        &value_diff,
        opts.clock_reset_threshold_offset_stds,
        opts.clock_reset_threshold_offset_seconds,
    );
    let resets: Vec<bool> = (0..time_diff.len())
        .map(|i| time_diff[i] < 0.0 || (time_glitch[i] && value_glitch[i]))
        .collect();
    segments_between(&resets)
}

/// Inclusive index ranges of the elements separated by `breaks` (break i lies between i, i+1).
fn segments_between(breaks: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in breaks.iter().enumerate() {
        if b {
            out.push((start, i));
            start = i + 1;
        }
    }
    out.push((start, breaks.len()));
    out
}

fn glitches(diff: &[f64], thresh_stds: f64, thresh_secs: f64) -> Vec<bool> {
    let med = median(diff);
    let shifted: Vec<f64> = diff.iter().map(|d| d - med).collect();
    let abs: Vec<f64> = shifted.iter().map(|d| d.abs()).collect();
    let mad = median(&abs) + f64::EPSILON;
    shifted
        .iter()
        .map(|&s| (s / mad).abs() > thresh_stds && s.abs() > thresh_secs)
        .collect()
}

/// numpy's median (mean of the two middle values for even lengths).
fn median(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Huber-loss linear regression y ~ x0 + x1 * t by ADMM (pyxdf's `_robust_fit`, rho = 1,
/// 1000 iterations). None when the normal equations are singular (all t equal).
fn robust_fit(t: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    const RHO: f64 = 1.0;
    let offset = t.iter().copied().fold(f64::INFINITY, f64::min);
    let a1: Vec<f64> = t.iter().map(|x| x - offset).collect();
    let n = t.len() as f64;
    // A^T A = [[n, s1], [s1, s2]]
    let s1: f64 = a1.iter().sum();
    let s2: f64 = a1.iter().map(|x| x * x).sum();
    // Cholesky of a 2x2 matrix: fails exactly when it is not positive definite.
    let l11 = n.sqrt();
    let l21 = s1 / l11;
    let l22sq = s2 - l21 * l21;
    // Also catches NaN.
    if l22sq.is_nan() || l22sq <= 0.0 {
        return None;
    }
    let l22 = l22sq.sqrt();
    let solve = |b0: f64, b1: f64| {
        // L z = b, then L^T x = z
        let z0 = b0 / l11;
        let z1 = (b1 - l21 * z0) / l22;
        let x1 = z1 / l22;
        let x0 = (z0 - l21 * x1) / l11;
        (x0, x1)
    };
    let aty0: f64 = y.iter().sum();
    let aty1: f64 = a1.iter().zip(y).map(|(a, b)| a * b).sum();
    let m = y.len();
    let mut z = vec![0.0; m];
    let mut u = vec![0.0; m];
    let mut x = (0.0, 0.0);
    for _ in 0..1000 {
        let (mut b0, mut b1) = (aty0, aty1);
        for i in 0..m {
            let r = z[i] - u[i];
            b0 += r;
            b1 += a1[i] * r;
        }
        x = solve(b0, b1);
        for i in 0..m {
            let d = x.0 + x.1 * a1[i] - y[i] + u[i];
            let d_inv = if d != 0.0 { 1.0 / d } else { 0.0 };
            let tmp = (1.0 - (1.0 + 1.0 / RHO) * d_inv.abs()).max(0.0);
            z[i] = RHO / (1.0 + RHO) * d + 1.0 / (1.0 + RHO) * tmp * d;
            u[i] = d - z[i];
        }
    }
    Some((x.0 - x.1 * offset, x.1))
}

/// pyxdf's `_detect_corrupted_clock_offset`: is the last clock offset an outlier in interval
/// (> 10x the median) or in value (robust z-score > 10)?
pub(super) fn last_clock_offset_is_outlier(times: &[f64], values: &[f64]) -> bool {
    if times.len() < 3 {
        return false;
    }
    let intervals: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let median_interval = median(&intervals[..intervals.len() - 1]);
    let last_interval = intervals[intervals.len() - 1].abs();
    let time_ratio = if median_interval > 0.0 {
        last_interval / median_interval
    } else if last_interval > 0.0 {
        f64::INFINITY
    } else {
        1.0
    };
    let head = &values[..values.len() - 1];
    let med = median(head);
    let mad = median(&head.iter().map(|v| (v - med).abs()).collect::<Vec<_>>());
    let z = if mad > f64::EPSILON {
        (values[values.len() - 1] - med).abs() / (1.4826 * mad)
    } else {
        0.0
    };
    time_ratio > 10.0 || z > 10.0
}

/// pyxdf's `_jitter_removal` for one stream: per segment between breaks (gaps longer than
/// max(threshold seconds, threshold samples / srate)), replace the stamps by their least-squares
/// line over the sample index. Returns the effective sampling rate (0 if irregular).
pub(super) fn dejitter(stamps: &mut [f64], srate: f64, opts: &ReadOptions) -> f64 {
    let n = stamps.len();
    if n == 0 || srate == 0.0 {
        return 0.0;
    }
    let tdiff = 1.0 / srate;
    let limit = opts
        .jitter_break_threshold_seconds
        .max(opts.jitter_break_threshold_samples * tdiff);
    let breaks: Vec<bool> = stamps
        .windows(2)
        .map(|w| (w[1] - w[0]).abs() > limit)
        .collect();
    let segments = segments_between(&breaks);
    for &(a, b) in &segments {
        let k = (b - a + 1) as f64;
        let mean_i = (a + b) as f64 / 2.0;
        let mean_t = stamps[a..=b].iter().sum::<f64>() / k;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (i, &t) in (a..=b).zip(&stamps[a..=b]) {
            let di = i as f64 - mean_i;
            sxy += di * (t - mean_t);
            sxx += di * di;
        }
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let icpt = mean_t - slope * mean_i;
        for (i, t) in stamps.iter_mut().enumerate().take(b + 1).skip(a) {
            *t = icpt + slope * i as f64;
        }
    }
    let (mut count, mut duration) = (0.0, 0.0);
    for &(a, b) in &segments {
        count += (b - a) as f64;
        duration += stamps[b] - stamps[a];
    }
    if count > 0.0 {
        count / duration
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_fit_matches_pyxdf() {
        let t: Vec<f64> = (0..20).map(|i| i as f64 * 5.0).collect();
        let mut y: Vec<f64> = t.iter().map(|t| 0.25 + 0.001 * t).collect();
        y[7] += 50.0;
        let (c0, c1) = robust_fit(&t, &y).unwrap();
        // pyxdf.pyxdf._robust_fit(np.column_stack([ones, t]), y) on the same data.
        assert!((c0 - 0.34112709832134375).abs() < 1e-12, "{c0}");
        assert!((c1 - 0.0002006394884092647).abs() < 1e-15, "{c1}");
        assert!(robust_fit(&[3.0, 3.0], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn median_matches_numpy() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn segments_split_at_breaks() {
        assert_eq!(
            segments_between(&[false, true, false]),
            vec![(0, 1), (2, 3)]
        );
        assert_eq!(segments_between(&[]), vec![(0, 0)]);
    }
}
