#!/usr/bin/env python3
"""Dump an XDF file as JSON through pyxdf, the reference reader the tests compare against.

Usage: pyxdf_dump.py FILE [--no-sync] [--no-reset-handling] [--dejitter]

Defaults match affectd's reader: clock synchronisation on, clock-reset handling on, no
dejittering (pyxdf's own default dejitters; affectd keeps the recorded timestamps).
Output (stdout): {"file_header": {...}, "streams": [{id, name, type, channel_count,
nominal_srate, channel_format, source_id, channel_labels, time_series (rows of samples),
time_stamps, clock_times, clock_values, clock_segments, effective_srate, footer}]}.
Floats are written as repr strings, so they round-trip exactly whatever the JSON parser.
"""
import json
import sys

import numpy as np
import pyxdf


def first(d, key, default=None):
    v = d.get(key)
    if isinstance(v, list) and v:
        return v[0]
    return default


def labels(info):
    desc = first(info, "desc")
    if not isinstance(desc, dict):
        return []
    channels = first(desc, "channels")
    if not isinstance(channels, dict):
        return []
    out = []
    for ch in channels.get("channel", []):
        out.append(first(ch, "label", "") if isinstance(ch, dict) else "")
    return out


def main():
    args = sys.argv[1:]
    path = args[0]
    streams, header = pyxdf.load_xdf(
        path,
        synchronize_clocks="--no-sync" not in args,
        handle_clock_resets="--no-reset-handling" not in args,
        dejitter_timestamps="--dejitter" in args,
    )
    out = {"file_header": header, "streams": []}
    for s in streams:
        info = s["info"]
        ts = s["time_series"]
        if isinstance(ts, np.ndarray):
            series = [[repr(float(v)) for v in row] for row in ts]
        else:
            series = [[str(v) for v in row] for row in ts]
        footer = s.get("footer", {}).get("info") if isinstance(s.get("footer"), dict) else None
        out["streams"].append(
            {
                "id": int(info["stream_id"]),
                "name": first(info, "name"),
                "type": first(info, "type"),
                "channel_count": int(first(info, "channel_count")),
                "nominal_srate": repr(float(first(info, "nominal_srate"))),
                "channel_format": first(info, "channel_format"),
                "source_id": first(info, "source_id"),
                "channel_labels": labels(info),
                "time_series": series,
                "time_stamps": [repr(float(t)) for t in s["time_stamps"]],
                "clock_times": [repr(float(t)) for t in s["clock_times"]],
                "clock_values": [repr(float(v)) for v in s["clock_values"]],
                "clock_segments": [list(map(int, seg)) for seg in info["clock_segments"]],
                "effective_srate": repr(float(info["effective_srate"])),
                "footer": footer,
            }
        )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
