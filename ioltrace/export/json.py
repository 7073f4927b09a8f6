"""JSON documents of latency per key: the one schema every --format json uses.

key_dict() turns one key's aggregated data (a recording.Series; a live Group
through recording.from_group) into a dict; document() wraps a Selection.
Numbers that do not exist (percentiles of an empty histogram) are null, as
JSON has no NaN. LinesWriter writes the live commands' --json: one KEY per
key per interval. Knows nothing of terminals.

Schema "ioltrace-report/1" (docs/FORMATS.md, "JSON (`--format json`)"):

    {"schema": "ioltrace-report/1",
     "sources": [path, ...],           # recordings read
     "by": kind,                       # process, thread, comm, cgroup, cgroup-v1, disk
     "seconds": float,                 # recorded time
     "window_seconds": float | null,   # --interval
     "kernel_counters": {name: int},   # diagnostic counters, summed
     "keys": [KEY, ...]}
    KEY = {"kind", "key", "name", "disk", "op", "layer": str,
           "seconds": float, "ios", "bytes", "errors": int, "errnos": {NAME: int},
           "iops", "bytes_per_s": float,
           "latency": {stage: LATENCY},  # stage: queue, device, total, latency, ...
           "windows": [WINDOW, ...],     # only with --interval
           "workload": str}              # cgroup kinds only: unit, container or pod the path names, or ""
    LATENCY = {"count": int, "unit": "ns" | "bytes" | "requests",   # of every figure below
               "mean_ns": float, "mean_exact": bool,
               "stddev_ns", "p50_ns", "p90_ns", "p99_ns", "p99.9_ns": float,
               "min_bucket_low_ns": float,      # every sample >= this (its bucket's low bound)
               "max_bucket_high_ns": float | null,  # every sample < this; null: overflow bucket
               "buckets": [[low_ns, high_ns | null, count], ...]}   # non-empty buckets
    WINDOW = {"start_s", "end_s", "seconds": float,    # from the recording's start
              "ios": int, "iops", "bytes_per_s": float,
              "latency": {stage: LATENCY without "buckets"}}

`compare --format json` is "ioltrace-compare/1": {"schema", "method",
"runs_method", "a": report document, "b": report document, "comparisons":
[{"kind", "key", "name", "disk", "op", "layer", "stage", "in": "both"|"a"|"b",
"tests": [{"stat": "p50"|"p99"|"dist", "a_ns", "b_ns", "ratio", "low",
"high", "p", "significant"}], "runs": null | {stat: {"a": SPREAD, "b":
SPREAD, "p", "smallest_p"}}}]}, SPREAD = {"n", "min", "max", "mean", "sd_pct"}.
"""

import json
import math
import os
import sys

from .. import cgnames, hist, layers, layout, stats
from ..errors import BadInput
from ..recording import Series, stages_of
from ..fmt import spell

SCHEMA = "ioltrace-report/1"
CGROUP_KINDS = ("cgroup", "cgroup-v1")
COMPARE_SCHEMA = "ioltrace-compare/1"


def _num(v):
    """JSON has no nan or infinity: an undefined figure (no samples, a ratio
    over zero) is null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def latency_dict(series, stage, seconds, buckets=True):
    d = stats.describe(series, stage, seconds)
    # "unit": what the *_ns figures and bucket bounds count: ns for times;
    # bytes (size) and requests (depth) for the stages that are not times.
    out = {"count": d["count"], "unit": layers.unit_of(stage).name, "mean_ns": _num(d["mean"]),
           "mean_exact": d["mean_exact"]}
    for k in ("stddev",) + tuple(f"p{p:g}" for p in hist.PERCENTILES):
        out[f"{k}_ns"] = _num(d[k])
    # Bucket bounds, named so: the smallest sample is >= min_bucket_low_ns,
    # the largest < max_bucket_high_ns (null: the overflow bucket).
    out["min_bucket_low_ns"] = _num(d["min_low"])
    out["max_bucket_high_ns"] = _num(d["max_high"])
    if buckets:
        counts = series.hists.get(stage, hist.empty())
        out["buckets"] = [[int(layout.BUCKET_LOW[i]),
                           None if math.isinf(layout.BUCKET_HIGH[i]) else int(layout.BUCKET_HIGH[i]),
                           int(counts[i])] for i in counts.nonzero()[0]]
    return out


def key_dict(series, seconds, stages=(), window=None, window_seconds=None):
    """One key (a Series) as a KEY dict; stages: which to include (all if empty)."""
    c = series.counters
    ios = stats.ios_of(series)
    secs = max(seconds, 1e-9)
    gid = series.id
    out = {"kind": gid.kind, "key": gid.key, "name": gid.name, "disk": gid.disk, "op": gid.op,
           "layer": series.layer, "seconds": seconds, "ios": ios, "bytes": c.get("bytes", 0),
           "errors": c.get("errors", 0),
           "errnos": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("errno:")},
           "iops": ios / secs, "bytes_per_s": c.get("bytes", 0) / secs,
           "latency": {s: latency_dict(series, s, seconds) for s in stages_of(series, wanted=stages)}}
    if gid.kind in CGROUP_KINDS:
        out["workload"] = cgnames.name_of(gid.name)
    if window is not None:
        out["windows"] = []
        for w, (wc, wh) in sorted(series.windows.items()):
            part = Series(gid, series.layer, wc, wh, {})
            wsecs = (window_seconds or {}).get(w, window)
            out["windows"].append({
                "start_s": w * window, "end_s": (w + 1) * window, "seconds": wsecs,
                "ios": stats.ios_of(part), "iops": stats.ios_of(part) / max(wsecs, 1e-9),
                "bytes_per_s": wc.get("bytes", 0) / max(wsecs, 1e-9),
                "latency": {s: latency_dict(part, s, wsecs, buckets=False) for s in stages_of(part, wanted=stages)}})
    return out


def document(sel, stages=()):
    """A whole Selection (recording.aggregate) as the schema's top-level dict."""
    return {"schema": SCHEMA, "sources": list(sel.paths), "by": sel.by, "seconds": sel.seconds,
            "window_seconds": sel.window, "kernel_counters": dict(sorted(sel.counters.items())),
            "keys": [key_dict(s, sel.seconds, stages, sel.window, sel.window_seconds) for s in sel.series]}


def comparison_dict(c):
    """One stats.Comparison: which sides have the key, the tests, the runs."""
    gid = c.id
    return {"kind": gid.kind, "key": gid.key, "name": gid.name, "disk": gid.disk, "op": gid.op, "layer": c.layer,
            "stage": c.stage, "in": "both" if c.a and c.b else ("a" if c.a else "b"),
            "tests": [{"stat": t.stat, "a_ns": _num(t.a), "b_ns": _num(t.b), "ratio": _num(t.ratio),
                       "low": _num(t.low), "high": None if math.isinf(t.high) else _num(t.high), "p": t.p,
                       "significant": t.significant} for t in c.tests],
            "runs": None if c.runs is None else {
                k: {"a": {f: _num(v) for f, v in sa.items()}, "b": {f: _num(v) for f, v in sb.items()},
                    "p": _num(p), "smallest_p": _num(smallest)} for k, (sa, sb, p, smallest) in c.runs.items()}}


def compare_document(comparisons, sel_a, sel_b, stages=()):
    """`compare --format json`: both sides in the report schema, then the comparisons."""
    return {"schema": COMPARE_SCHEMA, "method": stats.METHOD, "runs_method": stats.RUNS_METHOD,
            "a": document(sel_a, stages), "b": document(sel_b, stages),
            "comparisons": [comparison_dict(c) for c in comparisons]}


def dumps(doc):
    return json.dumps(doc, allow_nan=False) + "\n"


# -- JSON lines (--json on hist, top, run) ---------------------------------------

def interval_lines(series, start_ts, end_ts, counters=None):
    """One interval as JSON lines: a KEY object (key_dict, every stage
    recorded, no windows) per Series with interval_start and interval_end
    (ISO 8601 UTC, as in CSV recordings) in front, then one line of kind
    "kernel" with the interval's diagnostic counters."""
    from .csv import iso

    a, b = iso(start_ts), iso(end_ts)
    seconds = max(end_ts - start_ts, 0.0)
    out = []
    for s in series:
        d = {"interval_start": a, "interval_end": b}
        d.update(key_dict(s, seconds))
        for f in ("key", "name", "disk", "workload") if "workload" in d else ("key", "name", "disk"):
            d[f] = spell(d[f])
        out.append(json.dumps(d, allow_nan=False, separators=(",", ":")))
    out.append(json.dumps({"interval_start": a, "interval_end": b, "kind": "kernel", "seconds": seconds,
                           "kernel_counters": {k: int(v) for k, v in sorted((counters or {}).items())}},
                          allow_nan=False, separators=(",", ":")))
    return "\n".join(out) + "\n"


class LinesWriter:
    """--json FILE: JSON lines, one interval per write() of whole lines (a
    crash leaves the file readable up to the last complete interval); "-"
    is stdout. The file is created (and checked writable) at construction,
    before any tracing starts."""

    def __init__(self, path):
        self.path = path
        self.fd = None
        self.stdout = path == "-"
        if self.stdout:
            return
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o664)
        except OSError as e:
            raise BadInput(f"--json {path}", e.strerror.lower(), "choose a writable path, or - for stdout") from None

    def write_interval(self, series, start_ts, end_ts, counters=None):
        text = interval_lines(series, start_ts, end_ts, counters)
        if self.stdout:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        data = text.encode("ascii")    # json.dumps escapes everything else
        while data:
            data = data[os.write(self.fd, data):]

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
