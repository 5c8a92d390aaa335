"""CPU per hop and end-to-end latency: affectd vs the Python pipeline, same stream, same model.

For each sample rate: starts `affectd simulate` (62 channels, SEED montage), then runs
`affectd run` on it and, after it, bench/python_baseline.py on the same stream. Both are
measured in steady state, start-up excluded: affectd's user+system CPU time from /proc over
--seconds after a 5 s warm-up, divided by the JSON lines it wrote meanwhile; the Python pipeline
counts process CPU time from its first pull. The simulator is a separate process, not counted.
affectd's latency figures come from its JSON lines (window-end sample timestamp to output push,
LSL clock; this includes the simulator's own push timing). Prints a Markdown table.

    .venv/bin/python bench/compare_cpu.py --seconds 30
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "affectd"


WARM_UP_S = 5.0


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steady_state(cmd, env, out, seconds):
    """CPU seconds and lines written by `cmd` over `seconds`, after a warm-up."""
    with open(out, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.DEVNULL)
        time.sleep(WARM_UP_S)
        cpu0, lines0 = cpu_seconds(proc.pid), len(out.read_text().splitlines())
        time.sleep(seconds)
        cpu1, lines1 = cpu_seconds(proc.pid), len(out.read_text().splitlines())
        proc.terminate()
        if proc.wait(timeout=10) != 0:
            sys.exit(f"{cmd[0]} failed")
    return cpu1 - cpu0, lines1 - lines0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rates", default="200,1000")
    ap.add_argument("--model", default=str(ROOT / "models" / "affectd-int8.onnx"))
    args = ap.parse_args()
    env = dict(os.environ, LSLAPICFG=str(ROOT / "config" / "lsl_api.cfg"))
    rows = []
    for rate in [float(r) for r in args.rates.split(",")]:
        name = f"affectd-bench-{int(rate)}"
        with tempfile.TemporaryDirectory() as tmp:
            cfg = pathlib.Path(tmp) / "bench.toml"
            cfg.write_text((ROOT / "config" / "affectd.toml").read_text())
            sim = subprocess.Popen(
                [BIN, "simulate", "--config", cfg, "--name", name, "--sample-rate", str(rate)],
                env=env, stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
            out = pathlib.Path(tmp) / "out.jsonl"
            rust_cpu, rust_hops = steady_state(
                [BIN, "run", "--config", cfg, "--stream-name", name, "--model", args.model,
                 "--no-metrics"], env, out, args.seconds)
            lines = [json.loads(l) for l in out.read_text().splitlines() if l.startswith("{")]
            lat = sorted(l["latency_ms"] for l in lines)
            py = subprocess.run(
                [sys.executable, ROOT / "bench" / "python_baseline.py", "--model", args.model,
                 "--stream", name, "--seconds", str(args.seconds)],
                env=env, capture_output=True, text=True, check=True,
            )
            py_res = json.loads(py.stdout.strip().splitlines()[-1])
            sim.terminate()
            sim.wait()
        rust_per_hop = 1e3 * rust_cpu / max(rust_hops, 1)
        rows.append((rate, rust_hops, rust_per_hop, py_res["hops"], py_res["cpu_per_hop_ms"],
                     statistics.median(lat) if lat else float("nan"),
                     lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
                     py_res["compute_per_hop_ms"]))
    print("Whole process, steady state (LSL I/O included):")
    print("| rate Hz | affectd hops | affectd CPU ms/hop | Python hops | Python CPU ms/hop | ratio | affectd latency p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for rate, n, r, pn, p, p50, p99, _ in rows:
        print(f"| {rate:.0f} | {n} | {r:.3f} | {pn} | {p:.3f} | {p / r:.1f}x | {p50:.2f} | {p99:.2f} |")
    print()
    print("Python processing alone (filter + Welch + DE + grid + onnxruntime), ms CPU per hop;")
    print("set it beside `cargo bench --bench hop` (affectd's features + inference per hop):")
    for rate, *_, compute in rows:
        print(f"| {rate:.0f} | {compute:.3f} |")


if __name__ == "__main__":
    main()
