#!/usr/bin/env python3
"""Idle cost of the daemon: CPU per second with no EEG stream and no consumers, per thread.

Starts `affectd run` with a config whose stream never appears (LSL output, metrics and the marker
reader on, as by default; JSON lines off), lets it settle, then reads every thread's CPU time
(/proc/PID/task/TID/schedstat, nanoseconds) at the start and end of the measurement and prints
a per-thread table (ms of CPU per second of wall time) and the total.

    python3 bench/idle_cpu.py --binary target/release/affectd --seconds 20

Exit status 1 when the total exceeds --max-ms-per-s (default: no limit).
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def threads(pid):
    """{tid: (name, cpu_ns)} of the live threads of pid."""
    out = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"{base}/{tid}/schedstat") as f:
                cpu = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[tid] = (name, cpu)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "affectd"))
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after start before measuring")
    ap.add_argument("--max-ms-per-s", type=float, default=None)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="affectd-idle-")
    cfg = os.path.join(work, "affectd.toml")
    tag = f"affectd-idle-{os.getpid()}"
    with open(cfg, "w") as f:
        f.write(f"""
[lsl]
api_config = "{REPO}/config/lsl_api.cfg"
[stream]
name = "{tag}-absent"
[model]
path = "{REPO}/models/affectd-int8.onnx"
[outputs.lsl]
name = "{tag}-emotion"
source_id = "{tag}-emotion"
[outputs.jsonl]
enabled = false
[metrics]
listen = "127.0.0.1:{free_port()}"
""")
    env = dict(os.environ, ORT_DISABLE_TELEMETRY="1")
    log = open(os.path.join(work, "stderr.log"), "w")
    proc = subprocess.Popen([args.binary, "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        time.sleep(args.settle)
        if proc.poll() is not None:
            sys.exit(f"affectd exited with {proc.returncode}; see {log.name}")
        t0, a = time.monotonic(), threads(proc.pid)
        time.sleep(args.seconds)
        t1, b = time.monotonic(), threads(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    wall = t1 - t0
    per_name = defaultdict(lambda: [0, 0.0])
    for tid, (name, cpu) in b.items():
        before = a.get(tid, (name, 0))[1]
        per_name[name][0] += 1
        per_name[name][1] += (cpu - before) / 1e6 / wall
    total = sum(v[1] for v in per_name.values())
    print(f"idle CPU over {wall:.1f} s, {len(b)} threads ({args.binary})")
    print("| thread (comm) | threads | CPU ms/s |")
    print("|---|---|---|")
    for name, (n, ms) in sorted(per_name.items(), key=lambda kv: -kv[1][1]):
        print(f"| {name} | {n} | {ms:.3f} |")
    print(f"| **total** | {len(b)} | **{total:.3f}** |")
    if args.max_ms_per_s is not None and total > args.max_ms_per_s:
        print(f"idle CPU {total:.3f} ms/s > {args.max_ms_per_s} ms/s", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
