"""Many headsets per machine: how many affectd daemons one machine serves.

For each N: one publisher process (pylsl) puts N simulated 32-channel 256 Hz EEG streams on
LSL (10-20 labels, microvolts, chunks of 8 samples pushed when their last sample is due, so a
window's last sample is never older than its push); N `affectd run` daemons, one per stream,
each with its own config, metrics port and JSON-lines file (the way affectd@NAME instances
run). After a warm-up, over --seconds it counts per daemon the outputs written (expected: one
per hop), samples and windows dropped (from /metrics), and the end-to-end latency of every
output (JSON `latency_ms`: last sample of the window to output push, LSL clock). N passes when
no daemon dropped a sample or a window, every daemon wrote >= 95 % of its hops, and the p99
latency over all outputs is <= 20 ms. Prints a Markdown table and the largest passing N.

    cargo build --release
    .venv/bin/python bench/fleet.py --counts 8,16,32,48,64 --seconds 30
"""
import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
WARM_UP_S = 10.0
RATE = 256.0
CHUNK = 8
HOP_S = 0.25
CAP_32 = ["Fp1", "Fp2", "AF3", "AF4", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6",
          "T7", "C3", "Cz", "C4", "T8", "CP5", "CP1", "CP2", "CP6", "P7", "P3", "Pz", "P4", "P8",
          "PO3", "PO4", "O1", "Oz", "O2"]

PUBLISHER = r"""
import sys, time, numpy as np, pylsl
n, rate, chunk = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
labels = sys.argv[4].split(",")
outlets = []
for i in range(n):
    info = pylsl.StreamInfo(f"fleet-{i}", "EEG", len(labels), rate, "float32", f"fleet-{i}")
    chans = info.desc().append_child("channels")
    for l in labels:
        c = chans.append_child("channel")
        c.append_child_value("label", l); c.append_child_value("unit", "microvolts")
        c.append_child_value("type", "EEG")
    outlets.append(pylsl.StreamOutlet(info, chunk))
rng = np.random.default_rng(0)
noise = (20.0 * rng.standard_normal((4096, len(labels)))).astype(np.float32)
print("ready", flush=True)
t0, k, late = pylsl.local_clock(), 0, []
while True:
    due = t0 + (k + 1) * chunk / rate          # when this chunk's last sample is due
    wait = due - pylsl.local_clock()
    if wait > 0:
        time.sleep(wait)
    now = pylsl.local_clock()
    late.append(now - due)
    block = noise[(k * chunk) % 4096:(k * chunk) % 4096 + chunk]
    stamps = [due - (chunk - 1 - j) / rate for j in range(chunk)]
    for o in outlets:
        o.push_chunk(block, stamps)
    k += 1
    if k % int(rate / chunk * 5) == 0:
        print(f"late_ms {1e3 * sorted(late)[int(0.99 * (len(late) - 1))]:.3f}", flush=True)
        late = []
"""


def metric(port, name):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return float("nan")
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_fleet(binary, n, seconds, base_port, model, tmp):
    env = dict(os.environ, LSLAPICFG=str(ROOT / "config" / "lsl_api.cfg"))
    pub = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(n), str(RATE), str(CHUNK),
                            ",".join(CAP_32)], env=env, stdout=subprocess.PIPE, text=True)
    assert pub.stdout.readline().strip() == "ready"
    base = (ROOT / "config" / "affectd.toml").read_text()
    daemons = []
    for i in range(n):
        cfg = tmp / f"fleet-{i}.toml"
        out = tmp / f"fleet-{i}.jsonl"
        text = (base.replace('path = "../models/affectd-int8.onnx"', f'path = "{model}"')
                .replace('listen = "127.0.0.1:9464"', f'listen = "127.0.0.1:{base_port + i}"')
                .replace('name = "affectd-emotion"', f'name = "fleet-emotion-{i}"')
                .replace('source_id = "affectd-emotion"', f'source_id = "fleet-emotion-{i}"')
                .replace('path = "-"', f'path = "{out}"')
                .replace('watch = true', 'watch = false')
                .replace('level = "info"', 'level = "warn"'))
        cfg.write_text(text)
        proc = subprocess.Popen([binary, "run", "--config", cfg, "--stream-name", f"fleet-{i}"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemons.append((proc, base_port + i, out))
    time.sleep(WARM_UP_S + n * 0.1)
    start = [(metric(p, "affectd_samples_dropped_total"), metric(p, "affectd_windows_dropped_total"),
              len(o.read_text().splitlines()) if o.exists() else 0, cpu_seconds(d.pid))
             for d, p, o in daemons]
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    lat, worst_share, dropped_s, dropped_w, cpu = [], 1.0, 0.0, 0.0, 0.0
    for (d, p, o), (s0, w0, l0, c0) in zip(daemons, start):
        dropped_s += metric(p, "affectd_samples_dropped_total") - s0
        dropped_w += metric(p, "affectd_windows_dropped_total") - w0
        cpu += cpu_seconds(d.pid) - c0
        lines = o.read_text().splitlines()[l0:] if o.exists() else []
        lat += [json.loads(l)["latency_ms"] for l in lines if l.startswith("{")]
        worst_share = min(worst_share, len(lines) * HOP_S / elapsed)
    for d, _, _ in daemons:
        d.terminate()
    for d, _, _ in daemons:
        d.wait(timeout=20)
    pub.terminate()
    pub_late = [float(l.split()[1]) for l in pub.stdout.read().splitlines() if l.startswith("late_ms")]
    pub.wait()
    lat.sort()
    p99 = lat[int(0.99 * (len(lat) - 1))] if lat else float("nan")
    ok = dropped_s == 0 and dropped_w == 0 and worst_share >= 0.95 and p99 <= 20.0
    return dict(n=n, ok=ok, p50=statistics.median(lat) if lat else float("nan"), p99=p99,
                dropped_samples=dropped_s, dropped_windows=dropped_w, worst_share=worst_share,
                cpu_share=cpu / elapsed, pub_late_p99=max(pub_late) if pub_late else float("nan"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="8,16,32,48,64")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--base-port", type=int, default=19500)
    ap.add_argument("--model", default=str(ROOT / "models" / "affectd-int8.onnx"))
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "affectd"))
    args = ap.parse_args()
    if not pathlib.Path(args.binary).exists():
        sys.exit(f"no affectd binary at {args.binary}: cargo build --release")
    rows = []
    for n in [int(c) for c in args.counts.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(run_fleet(args.binary, n, args.seconds, args.base_port, args.model, pathlib.Path(tmp)))
        print(rows[-1], file=sys.stderr, flush=True)
    print("| N daemons | pass | latency p50 ms | p99 ms | samples dropped | windows dropped | "
          "least outputs/hops | daemons' CPU (cores) | publisher lateness p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {'yes' if r['ok'] else 'no'} | {r['p50']:.2f} | {r['p99']:.2f} | "
              f"{r['dropped_samples']:.0f} | {r['dropped_windows']:.0f} | {r['worst_share']:.2f} | "
              f"{r['cpu_share']:.2f} | {r['pub_late_p99']:.2f} |")
    passing = [r["n"] for r in rows if r["ok"]]
    print(f"\nlargest N served: {max(passing) if passing else 'none'}")


if __name__ == "__main__":
    main()
