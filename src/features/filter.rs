//! Causal IIR preprocessing: filter design (notch, Butterworth band-pass) and a multichannel
//! cascade of second-order sections with streaming state.
//!
//! The designs reproduce scipy: [`iirnotch`] = `scipy.signal.iirnotch(f0, Q, fs)`, and
//! [`butter_bandpass_sos`] = `scipy.signal.butter(4, [lo, hi], 'bandpass', fs=fs, output='sos')`
//! (analog Butterworth prototype, low-pass to band-pass transform, bilinear transform with
//! pre-warped edges, then scipy's `zpk2sos` 'nearest' pairing and section order, gain in the
//! first section). Filtering is direct form II transposed per section, like `sosfilt`/`lfilter`.
use realfft::num_complex::Complex64;

/// One second-order section in scipy's sos row layout: [b0, b1, b2, 1, a1, a2].
pub type Sos = [f64; 6];

/// Order of the band-pass Butterworth prototype.
pub const BANDPASS_ORDER: usize = 4;
/// Quality factor of the notch.
pub const NOTCH_Q: f64 = 30.0;

/// Second-order IIR notch at `f0_hz` (scipy.signal.iirnotch), as one section.
pub fn iirnotch(f0_hz: f64, q: f64, fs_hz: f64) -> Sos {
    let w0 = 2.0 * f0_hz / fs_hz;
    let bw = w0 / q * std::f64::consts::PI;
    let w0 = w0 * std::f64::consts::PI;
    // scipy: gb = 1/sqrt(2), beta = sqrt(1 - gb^2)/gb * tan(bw/2) = tan(bw/2).
    let gb = std::f64::consts::FRAC_1_SQRT_2;
    let beta = ((1.0 - gb * gb).sqrt() / gb) * (bw / 2.0).tan();
    let gain = 1.0 / (1.0 + beta);
    [
        gain,
        -2.0 * w0.cos() * gain,
        gain,
        1.0,
        -2.0 * gain * w0.cos(),
        2.0 * gain - 1.0,
    ]
}

/// Digital Butterworth band-pass of order [`BANDPASS_ORDER`] as second-order sections.
/// Requires 0 < low < high < fs/2 (checked by the caller's config validation).
pub fn butter_bandpass_sos(low_hz: f64, high_hz: f64, fs_hz: f64) -> Vec<Sos> {
    let n = BANDPASS_ORDER;
    // Analog prototype (scipy buttap): poles -exp(j*pi*m/(2n)), m = -n+1, -n+3, ..., n-1.
    let proto: Vec<Complex64> = (0..n)
        .map(|i| {
            let m = -(n as f64) + 1.0 + 2.0 * i as f64;
            -Complex64::new(0.0, std::f64::consts::PI * m / (2.0 * n as f64)).exp()
        })
        .collect();
    // scipy normalises to fs = 2 and pre-warps: w = 2 * fs * tan(pi * Wn / fs).
    let warp = |f: f64| 4.0 * (std::f64::consts::PI * (2.0 * f / fs_hz) / 2.0).tan();
    let (wl, wh) = (warp(low_hz), warp(high_hz));
    let bw = wh - wl;
    let wo2 = wl * wh;
    // lp2bp_zpk: each prototype pole splits in two; n zeros at the origin; gain bw^n.
    let scaled: Vec<Complex64> = proto.iter().map(|p| p * (bw / 2.0)).collect();
    let mut poles: Vec<Complex64> = scaled.iter().map(|p| p + (p * p - wo2).sqrt()).collect();
    poles.extend(scaled.iter().map(|p| p - (p * p - wo2).sqrt()));
    // bilinear_zpk with fs = 2 (fs2 = 4): s-plane zeros at 0 map to +1, the n missing zeros
    // go to -1; gain k * prod(fs2 - z) / prod(fs2 - p).
    let fs2: f64 = 4.0;
    let mut gain = Complex64::new(bw.powi(n as i32) * fs2.powi(n as i32), 0.0);
    for p in &poles {
        gain /= fs2 - p;
    }
    let poles_z: Vec<Complex64> = poles.iter().map(|p| (fs2 + p) / (fs2 - p)).collect();
    let mut zeros_z: Vec<f64> = vec![-1.0; n];
    zeros_z.extend(std::iter::repeat_n(1.0, n));
    zpk2sos_nearest(zeros_z, &poles_z, gain.re)
}

/// scipy's zpk2sos with pairing='nearest' for real zeros and complex-conjugate pole pairs (all
/// a band-pass of even order produces): the pole nearest the unit circle goes to the LAST
/// section with the two real zeros nearest to it, and so on; the gain goes into section 0.
fn zpk2sos_nearest(mut zeros: Vec<f64>, poles: &[Complex64], gain: f64) -> Vec<Sos> {
    // scipy's _cplxreal keeps one pole of each pair (positive imaginary part), sorted by real
    // part, then by |imag|.
    let tol = 100.0 * f64::EPSILON;
    let mut upper: Vec<Complex64> = poles
        .iter()
        .filter(|p| p.im > tol * p.norm())
        .copied()
        .collect();
    upper.sort_by(|a, b| {
        a.re.total_cmp(&b.re)
            .then(a.im.abs().total_cmp(&b.im.abs()))
    });
    zeros.sort_by(f64::total_cmp);
    let sections = upper.len();
    let mut sos = vec![[0.0; 6]; sections];
    for si in (0..sections).rev() {
        let worst = (0..upper.len())
            .min_by(|&a, &b| {
                let d = |p: Complex64| (1.0 - p.norm()).abs();
                d(upper[a]).total_cmp(&d(upper[b]))
            })
            .expect("one pole per remaining section");
        let p = upper.remove(worst);
        let mut take_nearest_zero = || {
            let i = (0..zeros.len())
                .min_by(|&a, &b| {
                    let d = |z: f64| (Complex64::new(z, 0.0) - p).norm();
                    d(zeros[a]).total_cmp(&d(zeros[b]))
                })
                .expect("two zeros per section");
            zeros.remove(i)
        };
        let (z1, z2) = (take_nearest_zero(), take_nearest_zero());
        sos[si] = [1.0, -(z1 + z2), z1 * z2, 1.0, -2.0 * p.re, p.norm_sqr()];
    }
    for b in &mut sos[0][..3] {
        *b *= gain;
    }
    sos
}

/// Channels filtered together in one group (4 f64 = one AVX register).
const LANES: usize = 4;

/// A cascade of sections applied to many channels at once. Channels are grouped by [`LANES`];
/// a group's state for all sections is contiguous ([group][section][lane]) and its samples stay
/// in registers through the whole cascade, so the loops vectorise across the lanes.
#[derive(Debug, Clone)]
pub struct SosBank {
    sections: Vec<Sos>,
    channels: usize,
    z1: Vec<[f64; LANES]>,
    z2: Vec<[f64; LANES]>,
    /// The CPU has AVX (checked once).
    avx: bool,
}

impl SosBank {
    pub fn new(sections: Vec<Sos>, channels: usize) -> Self {
        let len = sections.len() * channels.div_ceil(LANES);
        Self {
            sections,
            channels,
            z1: vec![[0.0; LANES]; len],
            z2: vec![[0.0; LANES]; len],
            avx: cpu_has_avx(),
        }
    }

    /// Filter one multichannel sample in place (x.len() == channels).
    pub fn process(&mut self, x: &mut [f64]) {
        debug_assert_eq!(x.len(), self.channels);
        #[cfg(target_arch = "x86_64")]
        if self.avx {
            // SAFETY: `avx` is only true when the CPU reported AVX support at construction.
            unsafe { self.process_avx(x) };
            return;
        }
        self.process_portable(x);
    }

    /// The cascade with explicit AVX (4 f64 lanes = one channel group per register). Same
    /// operations in the same order as [`cascade`] and no FMA, so results are bit-identical to
    /// the portable path (a test checks it).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    unsafe fn process_avx(&mut self, x: &mut [f64]) {
        use std::arch::x86_64::*;
        let n_sec = self.sections.len();
        for g in 0..self.channels.div_ceil(LANES) {
            let base = g * LANES;
            let len = (self.channels - base).min(LANES);
            let mut buf = [0.0f64; LANES];
            buf[..len].copy_from_slice(&x[base..base + len]);
            let mut v = _mm256_loadu_pd(buf.as_ptr());
            for s in 0..n_sec {
                let [b0, b1, b2, _, a1, a2] = self.sections[s];
                // Each state entry is a [f64; 4]: 4 valid, writable lanes for the loads/stores.
                let z1p = self.z1[g * n_sec + s].as_mut_ptr();
                let z2p = self.z2[g * n_sec + s].as_mut_ptr();
                let (z1, z2) = (_mm256_loadu_pd(z1p), _mm256_loadu_pd(z2p));
                let y = _mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(b0), v), z1);
                let b1x = _mm256_mul_pd(_mm256_set1_pd(b1), v);
                let a1y = _mm256_mul_pd(_mm256_set1_pd(a1), y);
                _mm256_storeu_pd(z1p, _mm256_add_pd(_mm256_sub_pd(b1x, a1y), z2));
                let b2x = _mm256_mul_pd(_mm256_set1_pd(b2), v);
                let a2y = _mm256_mul_pd(_mm256_set1_pd(a2), y);
                _mm256_storeu_pd(z2p, _mm256_sub_pd(b2x, a2y));
                v = y;
            }
            _mm256_storeu_pd(buf.as_mut_ptr(), v);
            x[base..base + len].copy_from_slice(&buf[..len]);
        }
    }

    fn process_portable(&mut self, x: &mut [f64]) {
        let n_sec = self.sections.len();
        if n_sec == 0 {
            return;
        }
        let mut groups = x.chunks_exact_mut(LANES);
        let mut state = self
            .z1
            .chunks_exact_mut(n_sec)
            .zip(self.z2.chunks_exact_mut(n_sec));
        for (xs, (z1, z2)) in (&mut groups).zip(&mut state) {
            let mut v = [0.0; LANES];
            v.copy_from_slice(xs);
            cascade(&self.sections, z1, z2, &mut v);
            xs.copy_from_slice(&v);
        }
        let rest = groups.into_remainder();
        if let Some((z1, z2)) = state.next().filter(|_| !rest.is_empty()) {
            // Last, partial group: unused lanes carry zeros (their state stays zero).
            let mut v = [0.0; LANES];
            v[..rest.len()].copy_from_slice(rest);
            cascade(&self.sections, z1, z2, &mut v);
            rest.copy_from_slice(&v[..rest.len()]);
        }
    }

    /// Zero one channel's state (after a non-finite sample).
    pub fn reset_channel(&mut self, ch: usize) {
        let n_sec = self.sections.len();
        let (group, lane) = (ch / LANES, ch % LANES);
        for i in group * n_sec..(group + 1) * n_sec {
            self.z1[i][lane] = 0.0;
            self.z2[i][lane] = 0.0;
        }
    }

    /// Zero all state.
    pub fn reset(&mut self) {
        self.z1.fill([0.0; LANES]);
        self.z2.fill([0.0; LANES]);
    }

    pub fn sections(&self) -> &[Sos] {
        &self.sections
    }
}

/// Direct form II transposed through all sections for one group of lanes.
fn cascade(
    sections: &[Sos],
    z1: &mut [[f64; LANES]],
    z2: &mut [[f64; LANES]],
    v: &mut [f64; LANES],
) {
    for ((sec, z1), z2) in sections.iter().zip(z1).zip(z2) {
        let [b0, b1, b2, _, a1, a2] = *sec;
        for l in 0..LANES {
            let xi = v[l];
            let y = b0 * xi + z1[l];
            z1[l] = b1 * xi - a1 * y + z2[l];
            z2[l] = b2 * xi - a2 * y;
            v[l] = y;
        }
    }
}

fn cpu_has_avx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// |H(e^jw)| of a cascade at frequency f.
    fn gain_at(sections: &[Sos], f: f64, fs: f64) -> f64 {
        let z = Complex64::new(0.0, 2.0 * PI * f / fs).exp();
        let zi = z.inv();
        sections
            .iter()
            .map(|s| {
                let num = s[0] + s[1] * zi + s[2] * zi * zi;
                let den = s[3] + s[4] * zi + s[5] * zi * zi;
                (num / den).norm()
            })
            .product()
    }

    #[test]
    fn bandpass_response_is_butterworth() {
        for fs in [128.0, 200.0, 250.0, 1000.0] {
            let sos = butter_bandpass_sos(1.0, 50.0, fs);
            assert_eq!(sos.len(), BANDPASS_ORDER);
            // -3 dB at both edges, ~unity in the middle, zeros at DC and Nyquist.
            for edge in [1.0, 50.0] {
                let g = gain_at(&sos, edge, fs);
                assert!((g - 0.5f64.sqrt()).abs() < 1e-9, "fs {fs} edge {edge}: {g}");
            }
            let mid = (1.0f64 * 50.0).sqrt();
            assert!((gain_at(&sos, mid, fs) - 1.0).abs() < 1e-9);
            assert!(gain_at(&sos, 0.0, fs) < 1e-12);
            // Every section is stable.
            assert!(sos.iter().all(|s| s[5] < 1.0 && s[5] > 0.0));
        }
    }

    #[test]
    fn notch_response() {
        let fs = 200.0;
        let n = iirnotch(50.0, NOTCH_Q, fs);
        assert!(gain_at(&[n], 50.0, fs) < 1e-12);
        assert!((gain_at(&[n], 10.0, fs) - 1.0).abs() < 1e-3);
        // -3 dB bandwidth f0/Q around f0.
        let half = 50.0 / NOTCH_Q / 2.0;
        let g = gain_at(&[n], 50.0 + half, fs);
        assert!((g - 0.5f64.sqrt()).abs() < 0.01, "{g}");
    }

    #[test]
    fn bank_filters_channels_independently_and_resets() {
        let sos = butter_bandpass_sos(1.0, 40.0, 200.0);
        let mut bank = SosBank::new(sos.clone(), 2);
        let mut single = SosBank::new(sos, 1);
        for i in 0..300 {
            let v = (i as f64 * 0.37).sin();
            let mut x = [v, 0.0];
            let mut y = [v];
            bank.process(&mut x);
            single.process(&mut y);
            assert_eq!(x[0], y[0]);
            assert_eq!(x[1], 0.0);
        }
        bank.reset_channel(0);
        let mut x = [0.0, 0.0];
        bank.process(&mut x);
        assert_eq!(x, [0.0, 0.0]);
    }

    #[test]
    fn reset_channel_touches_only_that_channel() {
        let channels = 7;
        let input = |i: usize, c: usize| ((i * (c + 3)) as f64 * 0.1).sin();
        let sample = |i: usize| -> Vec<f64> { (0..channels).map(|c| input(i, c)).collect() };
        let mut bank = SosBank::new(butter_bandpass_sos(1.0, 40.0, 200.0), channels);
        let mut reference = bank.clone();
        for i in 0..100 {
            bank.process(&mut sample(i));
            reference.process(&mut sample(i));
        }
        bank.reset_channel(5);
        // Channel 5 restarts from rest like a fresh filter; the others carry on unchanged.
        let mut fresh = SosBank::new(butter_bandpass_sos(1.0, 40.0, 200.0), 1);
        for i in 100..150 {
            let (mut a, mut b, mut f) = (sample(i), sample(i), [input(i, 5)]);
            bank.process(&mut a);
            reference.process(&mut b);
            fresh.process(&mut f);
            for c in (0..channels).filter(|c| *c != 5) {
                assert_eq!(a[c], b[c]);
            }
            assert_eq!(a[5], f[0]);
        }
    }

    #[test]
    fn empty_cascade_passes_samples_through() {
        let mut bank = SosBank::new(Vec::new(), 3);
        let mut x = [1.0, -2.0, 3.5];
        bank.process(&mut x);
        assert_eq!(x, [1.0, -2.0, 3.5]);
    }

    #[test]
    fn vector_path_is_bit_identical_to_portable_path() {
        let channels = 62;
        let mut fast = SosBank::new(butter_bandpass_sos(1.0, 50.0, 1000.0), channels);
        let mut portable = fast.clone();
        portable.avx = false;
        for i in 0..2000 {
            let mut a: Vec<f64> = (0..channels)
                .map(|c| ((i * 31 + c * 7) as f64 * 0.013).sin() * 50.0)
                .collect();
            let mut b = a.clone();
            fast.process(&mut a);
            portable.process(&mut b);
            assert_eq!(a, b);
        }
    }
}
