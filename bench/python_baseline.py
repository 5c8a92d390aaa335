"""The pipeline a user would otherwise write in Python, for the CPU comparison in BENCHMARKS.md.

pylsl inlet -> scipy causal notch + band-pass (sosfilt with state) -> Welch PSD per channel over
the same 1 s window every 0.25 s hop -> band power -> differential entropy -> 9x9 grid ->
normalisation from the model's contract -> onnxruntime (same int8 model, one thread).

Prints one JSON object: hops processed, process CPU seconds (user + system) from the first pull,
and the CPU seconds spent in the processing alone (filtering, Welch, DE, grid, onnxruntime; not
the LSL pulls), so both can be set beside affectd's figures.

    python bench/python_baseline.py --model models/affectd-int8.onnx --stream affectd-bench --seconds 30
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort
import pylsl
from scipy import signal

BANDS = [(1, 4), (4, 8), (8, 14), (14, 31), (31, 50)]
SEED_GRID = [
    "- - - FP1 FPZ FP2 - - -", "- - - AF3 - AF4 - - -",
    "F7 F5 F3 F1 FZ F2 F4 F6 F8", "FT7 FC5 FC3 FC1 FCZ FC2 FC4 FC6 FT8",
    "T7 C5 C3 C1 CZ C2 C4 C6 T8", "TP7 CP5 CP3 CP1 CPZ CP2 CP4 CP6 TP8",
    "P7 P5 P3 P1 PZ P2 P4 P6 P8", "- PO7 PO5 PO3 POZ PO4 PO6 PO8 -", "- - CB1 O1 OZ O2 CB2 - -",
]
CELL = {lab: r * 9 + c for r, row in enumerate(SEED_GRID) for c, lab in enumerate(row.split()) if lab != "-"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--stream", required=True, help="LSL stream name to read")
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    contract = json.loads(sess.get_modelmeta().custom_metadata_map["affectd.contract"])
    mean = np.asarray(contract["norm_mean"], np.float32).reshape(5, 81)
    std = np.asarray(contract["norm_std"], np.float32).reshape(5, 81)
    input_name = contract["input_name"]

    info = pylsl.resolve_byprop("name", args.stream, timeout=10.0)[0]
    inlet = pylsl.StreamInlet(info, max_chunklen=64)
    fs = info.nominal_srate()
    desc = inlet.info().desc().child("channels").child("channel")
    labels = []
    while desc.name() == "channel":
        labels.append(desc.child_value("label").upper())
        desc = desc.next_sibling()
    cells = np.array([CELL.get(l, -1) for l in labels])
    filled = np.zeros(81, bool)
    filled[cells[cells >= 0]] = True

    n_ch = info.channel_count()
    win, hop = int(fs * contract["window_s"]), int(fs * contract["hop_s"])
    b, a = signal.iirnotch(50.0, 30.0, fs)
    sos = np.vstack([signal.tf2sos(b, a), signal.butter(4, [1.0, 50.0 if fs > 100 else 0.45 * fs], "bandpass", fs=fs, output="sos")])
    zi = np.zeros((sos.shape[0], 2, n_ch))
    buf = np.zeros((0, n_ch))
    since_hop, hops, compute = 0, 0, 0.0
    cpu0, t_end = time.process_time(), time.monotonic() + args.seconds
    while time.monotonic() < t_end:
        chunk, ts = inlet.pull_chunk(timeout=0.1)
        if not ts:
            continue
        c0 = time.process_time()
        x, zi = signal.sosfilt(sos, np.asarray(chunk), axis=0, zi=zi)
        buf = np.concatenate([buf, x])[-win:]
        since_hop += len(ts)
        while since_hop >= hop and len(buf) >= win:
            since_hop -= hop
            f, psd = signal.welch(buf, fs=fs, window="hann", nperseg=win, axis=0)
            df = f[1] - f[0]
            de = np.stack([0.5 * np.log(2 * np.pi * np.e * psd[(f >= lo) & (f < hi)].sum(0) * df) for lo, hi in BANDS])
            grid = np.zeros((5, 81), np.float32)
            for band in range(5):
                np.add.at(grid[band], cells[cells >= 0], de[band, cells >= 0])
            grid = np.where(filled, (grid - mean) / std, 0.0).astype(np.float32)
            logits = sess.run(None, {input_name: grid.reshape(1, 5, 9, 9)})[0]
            e = np.exp(logits - logits.max())
            _probabilities = e / e.sum()
            hops += 1
        compute += time.process_time() - c0
    cpu = time.process_time() - cpu0
    print(json.dumps({
        "hops": hops,
        "cpu_s": cpu,
        "cpu_per_hop_ms": 1e3 * cpu / max(hops, 1),
        "compute_per_hop_ms": 1e3 * compute / max(hops, 1),
    }))


if __name__ == "__main__":
    main()
