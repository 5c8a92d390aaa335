"""CPU per hop and end-to-end latency: affectd vs the Python pipeline, same stream, same model.

For each sample rate: starts `affectd simulate` (62 channels, SEED montage), then runs
`affectd run` on it and, after it, bench/python_baseline.py on the same stream, each for
--seconds. CPU time is the child's user+system time from wait4 (the simulator is a separate
process and not counted). affectd's latency figures come from its JSON lines (window end sample
timestamp to output push, LSL clock). Prints a Markdown table.

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


def run_child(cmd, env, stdout):
    proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed with status {status}")
    return usage.ru_utime + usage.ru_stime


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
            cfg.write_text(
                (ROOT / "config" / "affectd.toml").read_text()
                + f"\n# bench overrides\n"
            )
            sim = subprocess.Popen(
                [BIN, "simulate", "--config", cfg, "--name", name, "--sample-rate", str(rate)],
                env=env, stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
            out = pathlib.Path(tmp) / "out.jsonl"
            with open(out, "w") as f:
                rust_cpu = run_child(
                    [BIN, "run", "--config", cfg, "--stream-name", name, "--model", args.model,
                     "--no-metrics", "--duration", str(args.seconds)], env, f)
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
        rust_per_hop = 1e3 * rust_cpu / max(len(lines), 1)
        rows.append((rate, len(lines), rust_per_hop, py_res["hops"], py_res["cpu_per_hop_ms"],
                     statistics.median(lat) if lat else float("nan"),
                     lat[int(0.99 * (len(lat) - 1))] if lat else float("nan")))
    print("| rate Hz | affectd hops | affectd CPU ms/hop | Python hops | Python CPU ms/hop | ratio | affectd latency p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for rate, n, r, pn, p, p50, p99 in rows:
        print(f"| {rate:.0f} | {n} | {r:.3f} | {pn} | {p:.3f} | {p / r:.1f}x | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
