//! Comparison with scipy: tests/data/dsp_reference.json, written by scripts/dsp_reference.py.
use std::f64::consts::PI;

use serde_json::Value;

use super::filter::{butter_bandpass_sos, iirnotch, SosBank, NOTCH_Q};
use super::spectrum::{differential_entropy, Periodogram};
use super::*;

const REFERENCE: &str = include_str!("../../tests/data/dsp_reference.json");

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The script's test_signal, term by term in the same order.
fn test_signal(fs: f64, n: usize) -> Vec<f64> {
    let two_pi = 2.0 * PI;
    (0..n)
        .map(|i| {
            let t = i as f64 / fs;
            10.0 * (two_pi * 10.0 * t).sin()
                + 5.0 * (two_pi * 50.0 * t + 0.5).sin()
                + 3.0 * (two_pi * 2.5 * t + 1.0).sin()
                + 2.0 * (two_pi * 23.0 * t + 2.0).sin()
                + 1.0 * (two_pi * 40.0 * t + 0.7).sin()
                + 1.5 * (two_pi * 0.3 * t).sin()
                + 4.0
        })
        .collect()
}

fn filter(sections: Vec<filter::Sos>, x: &[f64]) -> Vec<f64> {
    let mut bank = SosBank::new(sections, 1);
    x.iter()
        .map(|&v| {
            let mut s = [v];
            bank.process(&mut s);
            s[0]
        })
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], rel: f64, abs: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= abs + rel * w.abs(),
            "{what}[{i}]: {g} vs scipy {w}"
        );
    }
}

fn rates() -> Vec<Value> {
    let v: Value = serde_json::from_str(REFERENCE).unwrap();
    v["rates"].as_array().unwrap().clone()
}

/// Coefficients: the json holds 12 significant digits, so 1e-11 relative (+1e-15 absolute for
/// the notch's b1 at fs 200, which is cos(pi/2) ~ 1e-16).
#[test]
fn filter_coefficients_match_scipy() {
    for r in rates() {
        let fs = r["fs"].as_f64().unwrap();
        let notch = iirnotch(50.0, NOTCH_Q, fs);
        let mut ba = floats(&r["notch_b"]);
        ba.extend(floats(&r["notch_a"]));
        assert_close(&notch, &ba, 1e-11, 1e-15, &format!("iirnotch fs {fs}"));
        let sos = butter_bandpass_sos(1.0, 50.0, fs);
        let want = r["sos"].as_array().unwrap();
        assert_eq!(sos.len(), want.len());
        for (s, w) in sos.iter().zip(want) {
            assert_close(s, &floats(w), 1e-11, 1e-15, &format!("butter sos fs {fs}"));
        }
    }
}

/// Filter outputs (signal amplitude ~25): 1e-9 absolute covers the 12-digit rounding.
#[test]
fn filter_outputs_match_scipy() {
    for r in rates() {
        let fs = r["fs"].as_f64().unwrap();
        let n = r["n"].as_u64().unwrap() as usize;
        let x = test_signal(fs, n);
        let notch = iirnotch(50.0, NOTCH_Q, fs);
        let bp = butter_bandpass_sos(1.0, 50.0, fs);
        let notched = filter(vec![notch], &x);
        assert_close(&notched, &floats(&r["notched"]), 1e-10, 1e-9, "lfilter");
        let bandpassed = filter(bp.clone(), &x);
        assert_close(
            &bandpassed,
            &floats(&r["bandpassed"]),
            1e-10,
            1e-9,
            "sosfilt",
        );
        let mut chain = vec![notch];
        chain.extend(bp);
        let chained = filter(chain, &x);
        assert_close(&chained, &floats(&r["chain"]), 1e-10, 1e-9, "chain");
    }
}

/// Periodogram band powers of the last 1 s: f32 FFT, so 1e-5 relative; DE 1e-5 absolute.
#[test]
fn band_powers_match_scipy_periodogram() {
    for r in rates() {
        let fs = r["fs"].as_f64().unwrap();
        let w = fs as usize;
        let chain = floats(&r["chain"]);
        let raw = test_signal(fs, r["n"].as_u64().unwrap() as usize);
        for (x, key) in [(&raw, "raw"), (&chain, "chain")] {
            let last: Vec<f32> = x[x.len() - w..].iter().map(|&v| v as f32).collect();
            let mut pg = Periodogram::new(w, fs, &DEFAULT_BANDS_HZ);
            let mut powers = [0.0; BANDS];
            // Split as a ring buffer would hand it over.
            pg.band_powers(&last[..w / 3], &last[w / 3..], &mut powers);
            let want = floats(&r[format!("last_window_{key}_power").as_str()]);
            assert_close(&powers, &want, 1e-5, 0.0, &format!("{key} power fs {fs}"));
            let de: Vec<f64> = powers.iter().map(|&p| differential_entropy(p)).collect();
            let want = floats(&r[format!("last_window_{key}_de").as_str()]);
            assert_close(&de, &want, 0.0, 1e-5, &format!("{key} DE fs {fs}"));
        }
    }
}

/// The whole extractor (f32 samples in) against scipy's f64 chain + periodogram: 1e-4 DE.
#[test]
fn extractor_last_window_matches_scipy() {
    for r in rates() {
        let fs = r["fs"].as_f64().unwrap();
        let n = r["n"].as_u64().unwrap() as usize;
        let x: Vec<f32> = test_signal(fs, n).iter().map(|&v| v as f32).collect();
        let ts: Vec<f64> = (0..n).map(|i| i as f64 / fs).collect();
        let cfg = FeatureConfig {
            sample_rate_hz: fs,
            ..FeatureConfig::default()
        };
        let grid = GridMap::from_labels(&["Cz"]).unwrap();
        let out = extract_all(&cfg, &grid, &x, &ts).unwrap();
        let Some(WindowOutcome::Ready(last)) = out.last() else {
            panic!("no last window")
        };
        assert_eq!(last.end_timestamp, ts[n - 1]);
        let de: Vec<f64> = last.de.iter().map(|&v| f64::from(v)).collect();
        assert_close(
            &de,
            &floats(&r["last_window_chain_de"]),
            0.0,
            1e-4,
            "extractor DE",
        );
        let cz = cells_for_labels(&["Cz"]).unwrap()[0];
        for b in 0..BANDS {
            assert_eq!(last.grid[b * GRID_CELLS + cz], last.de[b]);
        }
    }
}
