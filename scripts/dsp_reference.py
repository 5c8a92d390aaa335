#!/usr/bin/env python3
"""Reference values for the Rust feature extractor (src/features), computed with scipy.

Writes tests/data/dsp_reference.json. Run from the repository root:

    .venv/bin/python scripts/dsp_reference.py

The test signal is not stored: it is the closed formula `test_signal` below, which the Rust
tests reproduce exactly (same terms, same order). Stored per sample rate:
  - iirnotch(50 Hz, Q=30) (b, a) and butter(4, [1, 50], 'bandpass', output='sos') coefficients,
  - the notch output (lfilter), the band-pass output (sosfilt) and the chain notch -> band-pass,
  - band powers and DE of the LAST window (1 s) of the chain output and of the raw signal:
    periodogram(window='hann', detrend='constant', scaling='density'), band power = sum of the
    PSD over bins with low <= f < high times df, DE = 0.5 * ln(2 pi e P).
"""
import json
import pathlib
import sys

import numpy as np
import scipy
from scipy import signal

BANDS = [[1.0, 4.0], [4.0, 8.0], [8.0, 14.0], [14.0, 31.0], [31.0, 50.0]]
NOTCH_HZ, NOTCH_Q = 50.0, 30.0
BANDPASS_HZ = [1.0, 50.0]
WINDOW_S = 1.0
DURATION_S = {200: 3.0, 1000: 2.0}


def test_signal(fs: float, n: int) -> np.ndarray:
    """Sum of sinusoids (alpha, line noise, delta, beta, gamma, slow drift) plus a DC offset."""
    t = np.arange(n, dtype=np.float64) / fs
    two_pi = 2.0 * np.pi
    return (
        10.0 * np.sin(two_pi * 10.0 * t)
        + 5.0 * np.sin(two_pi * 50.0 * t + 0.5)
        + 3.0 * np.sin(two_pi * 2.5 * t + 1.0)
        + 2.0 * np.sin(two_pi * 23.0 * t + 2.0)
        + 1.0 * np.sin(two_pi * 40.0 * t + 0.7)
        + 1.5 * np.sin(two_pi * 0.3 * t)
        + 4.0
    )


def band_powers(x: np.ndarray, fs: float):
    f, pxx = signal.periodogram(x, fs, window="hann", detrend="constant", scaling="density")
    df = f[1] - f[0]
    powers = [float(pxx[(f >= lo) & (f < hi)].sum() * df) for lo, hi in BANDS]
    de = [0.5 * float(np.log(2.0 * np.pi * np.e * p)) for p in powers]
    return powers, de


def rounded(a) -> list:
    return [float(f"{v:.12g}") for v in np.asarray(a, dtype=np.float64).ravel()]


def main() -> int:
    out = {
        "scipy_version": scipy.__version__,
        "bands_hz": BANDS,
        "notch_hz": NOTCH_HZ,
        "notch_q": NOTCH_Q,
        "bandpass_hz": BANDPASS_HZ,
        "window_s": WINDOW_S,
        "rates": [],
    }
    for fs, dur in DURATION_S.items():
        n = int(round(fs * dur))
        x = test_signal(float(fs), n)
        b, a = signal.iirnotch(NOTCH_HZ, NOTCH_Q, fs=fs)
        sos = signal.butter(4, BANDPASS_HZ, btype="bandpass", fs=fs, output="sos")
        notched = signal.lfilter(b, a, x)
        bandpassed = signal.sosfilt(sos, x)
        chain = signal.sosfilt(sos, notched)
        w = int(round(WINDOW_S * fs))
        p_chain, de_chain = band_powers(chain[-w:], float(fs))
        p_raw, de_raw = band_powers(x[-w:], float(fs))
        out["rates"].append(
            {
                "fs": float(fs),
                "n": n,
                "notch_b": rounded(b),
                "notch_a": rounded(a),
                "sos": [rounded(s) for s in sos],
                "notched": rounded(notched),
                "bandpassed": rounded(bandpassed),
                "chain": rounded(chain),
                "last_window_chain_power": p_chain,
                "last_window_chain_de": de_chain,
                "last_window_raw_power": p_raw,
                "last_window_raw_de": de_raw,
            }
        )
    path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "dsp_reference.json"
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
