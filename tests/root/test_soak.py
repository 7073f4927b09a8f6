"""Long runs do not drift, the 2-minute version of benchmarks/soak.py (CI).

`ioltrace top -b --disk LOOP --csv FILE 1` for 2 minutes while two
rate-limited fio jobs (4k randrw, two cgroup v2 children) run on a loop
device; RSS and the kernel maps' entry counts sampled every 10 s. Ground
truth that is not ioltrace's own: /proc/PID/status and `bpftool map dump`.

Bounds, from measurements on the 2-CPU development VM (benchmarks/RESULTS.md,
section soak, and 2-minute runs of this test):

- RSS: ~155 MiB (bcc and LLVM); over the second minute of 2-minute runs it
  grew by 68 KiB (44 KiB over the second half of a 30-s run), and from
  minute 1 to 11 of a 30-minute run by ~0.2 MiB. The leak this test is for,
  keeping one Snapshot per 1-s interval, costs at least its histograms:
  4 fio keys (2 processes x read, write) x 2 stages x 1025 buckets x 8
  bytes = 64 KiB a second before any Python overhead, i.e. >3.75 MiB over
  the second minute. RSS_GROWTH_MAX_KIB = 2 MiB is 30x the noise and about
  half of that.
- stats and errs: the set of (process, cgroup, disk, op) keys does not
  change under a steady load (the disk filter keeps other I/O out), so
  their entry counts must be exactly the same over the second half.
- hist: an entry is a (key, stage, fine bucket) cell, made the first time a
  latency falls in that bucket, so rare tail buckets keep appearing for a
  while (measured: +14% and +28% over the second minute of two runs, the
  second beside another soak; +0.4% a minute after ten minutes). So the
  test checks what "same keys, same entries" means for it: the entries are
  exactly the distinct (key, stage, bucket) cells the CSV recorded (up to
  the few hit between the last sample and the stop, or before the first
  interval), and at most keys x stages x buckets. A loose bound on growth
  (HIST_GROWTH_MAX: doubling in the second minute) catches gross leaks even
  if the CSV missed them too.
"""

import glob
import os
import subprocess
import sys

import pytest

from ioltrace import layout

from ..support import soak
from .conftest import cgroup2_root, need, need_tool

MINUTES = 2
IOPS_PER_JOB = 1000
RSS_GROWTH_MAX_KIB = 2048
HIST_GROWTH_MAX = 1.0
CELL_SLACK = 0.02  # of the entries: cells hit after the last sample or before the first interval


@pytest.fixture(scope="module")
def soaked():
    for tool in ("fio", "bpftool", "losetup"):
        need_tool(tool)
    need(None if cgroup2_root() else "no cgroup v2 mount")
    res = soak.soak(MINUTES, IOPS_PER_JOB, interval=1.0, log=lambda msg: print(msg, file=sys.stderr))
    print(soak.summarize(res), file=sys.stderr)
    return res


def test_ran_cleanly_and_left_nothing(soaked):
    assert soaked["rc"] == 0, soaked["stderr"][-2000:]
    assert "Traceback" not in soaked["stderr"]
    ours = f"{soak.B.SHM_PREFIX}{os.getpid()}-"
    losetup = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert ours not in losetup and not glob.glob(ours + "*")
    for cg in soaked["cgroups"]:
        assert not os.path.exists(cg)
    assert not os.path.exists(soaked["csv_path"])
    # fio really ran at the rate asked for (the load was steady).
    for got in soaked["fio"]:
        assert got is not None and sum(got) > 0.8 * IOPS_PER_JOB, soaked["fio"]


def test_csv_parseable_and_intervals_contiguous(soaked):
    c = soaked["csv"]
    assert c["parse_error"] is None
    assert c["gaps"] == [] and c["overlaps"] == [] and c["order"] == []
    # One interval a second, plus the short final one at SIGINT.
    assert abs(c["intervals"] - MINUTES * 60) <= 3, c["intervals"]
    assert max(c["lengths"]) < 1.5
    # Two fio jobs at IOPS_PER_JOB for most of the run; all of it recorded.
    assert c["ios"] > 0.8 * 2 * IOPS_PER_JOB * MINUTES * 60, c["ios"]


def test_rss_flat_after_warm_up(soaked):
    f = soak.summarize(soaked)
    assert f["rss_half_range_kib"] < RSS_GROWTH_MAX_KIB, f
    assert f["rss_half_growth_kib"] < RSS_GROWTH_MAX_KIB, f


def test_kernel_maps_do_not_grow_after_warm_up(soaked):
    samples = soaked["samples"]
    half = [s for s in samples if s["t"] >= samples[-1]["t"] / 2]
    assert len(half) >= 5
    # Same keys, same entries.
    for name in ("stats", "errs"):
        assert len({s[name] for s in half}) == 1, [s[name] for s in half]
    stats_keys = half[-1]["stats"]
    assert 0 < stats_keys < 64, stats_keys     # a handful of fio processes x ops (+ seeded "other" keys)
    h0, h1 = half[0]["hist"], half[-1]["hist"]
    assert h1 <= stats_keys * 2 * layout.NBUCKETS
    assert h1 - h0 <= HIST_GROWTH_MAX * h0, [s["hist"] for s in samples]
    cells = soaked["csv"]["cells"]
    assert abs(h1 - cells) <= max(10, CELL_SLACK * h1), (h1, cells)
