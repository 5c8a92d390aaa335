#!/usr/bin/env python3
"""Writes raw-format test fixtures with independent libraries, and dumps those libraries' own
reads of them (tests/formats.rs runs this at test time from the test venv).

    raw_fixtures.py IN_DIR OUT_DIR

IN_DIR holds signal.json ({"channels", "sample_rate_hz", "stimuli": [[start_s, end_s, label]],
"trials": [[start_s, end_s, label]]})
and signal.f32 (float32 little-endian, interleaved [sample][channel], microvolts). OUT_DIR gets:

  rec.edf            EDF+C (pyedflib), microvolts, stimulus_start:/stimulus_end: annotations
  rec.bdf            BDF+C (pyedflib), millivolts, one annotation per stimulus: its label with
                     its duration
  seed/1_20260101.mat  SEED Preprocessed_EEG layout (scipy.io.savemat, compressed): one
                     float64 array sim_eeg<N> [channels, samples] per trial
  seed/label.mat     'label' [1, N] in -1/0/1
  reads.json         what pyedflib and scipy.io.loadmat read back: header fields, annotations,
                     array names and shapes; values in <file>.f64 (float64, channel-major)
"""
import json
import os
import sys

import numpy as np
import pyedflib
import scipy.io

SEED_LABEL = {"negative": -1, "neutral": 0, "positive": 1}


def write_edf(path, file_type, data, channels, fs, dimension, scale, annotations):
    """data [samples, channels] in microvolts; written as `dimension` (= microvolts x scale)."""
    bdf = file_type == pyedflib.FILETYPE_BDFPLUS
    digital = 8388607 if bdf else 32767
    values = np.ascontiguousarray(data.T, dtype=np.float64) * scale
    limit = float(np.ceil(np.abs(values).max() * 1.05 / scale)) * scale
    writer = pyedflib.EdfWriter(path, len(channels), file_type=file_type)
    writer.setSignalHeaders([
        {
            "label": label,
            "dimension": dimension,
            "sample_frequency": fs,
            "physical_max": limit,
            "physical_min": -limit,
            "digital_max": digital,
            "digital_min": -digital - 1,
            "transducer": "simulated",
            "prefilter": "",
        }
        for label in channels
    ])
    writer.writeSamples(list(values))
    for onset, duration, text in annotations:
        writer.writeAnnotation(onset, duration, text)
    writer.close()


def read_edf(path):
    reader = pyedflib.EdfReader(path)
    n = reader.signals_in_file
    onsets, durations, texts = reader.readAnnotations()
    info = {
        "labels": reader.getSignalLabels(),
        "dimensions": [reader.getPhysicalDimension(i) for i in range(n)],
        "sample_rates": [float(reader.getSampleFrequency(i)) for i in range(n)],
        "samples": [int(x) for x in reader.getNSamples()],
        # repr strings: exact through JSON
        "annotations": [[repr(float(o)), repr(float(d)), str(t)]
                        for o, d, t in zip(onsets, durations, texts)],
    }
    values = np.stack([reader.readSignal(i) for i in range(n)])
    reader.close()
    values.astype("<f8").tofile(path + ".f64")
    return info


def main():
    src, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(src, "signal.json")) as f:
        meta = json.load(f)
    channels, fs = meta["channels"], meta["sample_rate_hz"]
    data = np.fromfile(os.path.join(src, "signal.f32"), dtype="<f4").reshape(-1, len(channels))
    stimuli = meta["stimuli"]
    os.makedirs(os.path.join(out, "seed"), exist_ok=True)
    reads = {}

    markers = []
    for start, end, label in stimuli:
        markers.append((start, -1, "stimulus_start:" + label))
        markers.append((end, -1, "stimulus_end:" + label))
    edf = os.path.join(out, "rec.edf")
    write_edf(edf, pyedflib.FILETYPE_EDFPLUS, data, channels, fs, "uV", 1.0, markers)
    reads["rec.edf"] = read_edf(edf)

    durations = [(start, end - start, label) for start, end, label in stimuli]
    bdf = os.path.join(out, "rec.bdf")
    write_edf(bdf, pyedflib.FILETYPE_BDFPLUS, data, channels, fs, "mV", 1e-3, durations)
    reads["rec.bdf"] = read_edf(bdf)

    trials = {}
    for k, (start, end, _) in enumerate(meta["trials"]):
        a, b = int(round(start * fs)), int(round(end * fs))
        trials["sim_eeg%d" % (k + 1)] = data[a:b].T.astype(np.float64)
    mat = os.path.join(out, "seed", "1_20260101.mat")
    scipy.io.savemat(mat, trials, do_compression=True)
    labels = np.array([[SEED_LABEL[label] for _, _, label in meta["trials"]]], dtype=np.float64)
    scipy.io.savemat(os.path.join(out, "seed", "label.mat"), {"label": labels})
    loaded = scipy.io.loadmat(mat)
    names = sorted((k for k in loaded if not k.startswith("__")), key=lambda k: int(k[7:]))
    with open(mat + ".f64", "wb") as f:
        for name in names:
            loaded[name].astype("<f8").tofile(f)  # C order: channel-major
    reads["seed/1_20260101.mat"] = {
        "arrays": [[name, list(loaded[name].shape)] for name in names],
        "label": [int(v) for v in scipy.io.loadmat(os.path.join(out, "seed", "label.mat"))["label"].ravel()],
    }
    with open(os.path.join(out, "reads.json"), "w") as f:
        json.dump(reads, f)


if __name__ == "__main__":
    main()
