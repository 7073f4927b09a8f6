"""Recordings built from known samples, in the real format (export.csv.CsvWriter),
for the tests of report, compare and plot. Not a test module itself."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ioltrace import hist
from ioltrace.export import csv as rec
from ioltrace.records import Group, GroupId

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


def samples(seed, n, median_ns=50_000, sigma=0.6):
    """Lognormal latencies in ns, like a device's."""
    return np.random.default_rng(seed).lognormal(np.log(median_ns), sigma, n).astype(np.int64) + 1


def group(key, name, device, queue=None, disk="loop0", op="read", kind="process", size=4096):
    """A Group of block-layer samples: device (and queue) times in ns, total = queue + device."""
    queue = np.zeros_like(device) if queue is None else queue
    hists = {"queue": hist.from_samples(queue), "device": hist.from_samples(device),
             "total": hist.from_samples(queue + device)}
    return Group(GroupId(kind, key, name, disk, op), len(device), size * len(device), 0,
                 int(queue.sum()), int(device.sum()), hists, {})


def write(path, intervals, counters=None):
    """intervals: [(groups, start_ts, end_ts), ...] or [(groups, start, end, extra_rows)]."""
    w = rec.CsvWriter(str(path))
    try:
        for iv in intervals:
            groups, a, b = iv[:3]
            w.write_interval(groups, a, b, counters, extra_rows=iv[3] if len(iv) > 3 else ())
    finally:
        w.close()
    return str(path)


def one_file(path, device, key="100", name="fio", seconds=10, queue=None):
    """A recording of these samples spread evenly over `seconds` one-second intervals."""
    parts = np.array_split(np.arange(len(device)), seconds)
    return write(path, [([group(key, name, device[idx], None if queue is None else queue[idx])], T0 + i, T0 + i + 1)
                        for i, idx in enumerate(parts)])


def ioltrace(*args, block_bcc=True, block=(), env=None):
    """`python -m ioltrace ARGS` in a subprocess, with bcc (and `block`) unimportable."""
    shim = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in (("bcc",) if block_bcc else ()) + tuple(block))
    code = shim + ("from ioltrace.cli import main\nrc = main(sys.argv[1:])\n"
                   "assert 'ioltrace.loader' not in sys.modules, 'loader imported'\nsys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **(env or {})))
