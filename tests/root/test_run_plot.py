"""`run --csv` records intervals, so the heatmap of a run has a column per
second: checked on the PNG against the seconds the command ran, with the
bytes dd wrote as the ground truth for the recording's sums."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ioltrace.export import csv as rec

REPO = Path(__file__).resolve().parents[2]


def alike(a, b):
    """Two pixel columns of the mesh (painted or not, per row) belong to one
    window: they differ in a few rows at most, where the white p50/p99 lines
    cross (on a loaded machine latency jumps from one window to the next,
    and the lines cross steeply, a few more rows each column), far fewer
    than two windows of different requests differ by."""
    return (a != b).sum() <= max(4, 0.2 * max(a.sum(), b.sum()))


def test_heatmap_of_a_run_recording_has_a_column_per_second(loopdev, tmp_path):
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    csv_path, png = tmp_path / "run.csv", tmp_path / "run.png"
    # Four rounds a second apart, each with its own request size: four seconds that differ.
    script = "; ".join(f"dd if=/dev/zero of={loopdev.path} bs={4096 << i} count=64 seek={i * 64} oflag=direct "
                       "2>/dev/null; sleep 1" for i in range(4))
    p = subprocess.run([sys.executable, "-m", "ioltrace", "run", "--csv", str(csv_path), "--", "sh", "-c", script],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    rows = rec.read(csv_path)
    intervals = {(r.interval_start, r.interval_end) for r in rows}
    assert len(intervals) >= 4, sorted(intervals)
    written = sum(r.count for r in rows if r.stage == "bytes" and r.op == "write" and r.disk == loopdev.name)
    assert written == sum(64 * (4096 << i) for i in range(4))

    q = subprocess.run([sys.executable, "-m", "ioltrace", "plot", str(csv_path), "-o", str(png), "--heatmap",
                        "--stage", "device", "--by", "comm", "--key", "dd", "--size", "1000x400"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert q.returncode == 0, q.stderr
    import matplotlib.image

    img = matplotlib.image.imread(png)[..., :3]
    # Which rows of each pixel column are painted by the mesh: viridis is
    # coloured, unlike the white page, black text, grey frame and white
    # p50/p99 lines. The colour bar (coloured top to bottom) is left out.
    coloured = (img.max(axis=2) - img.min(axis=2)) > 0.15
    share = coloured.mean(axis=0)
    cols = [x for x in range(img.shape[1]) if 0 < share[x] < 0.5]
    # Runs of columns painted alike (a window's column), at least 20 pixels wide.
    runs, start = [], cols[0]
    for a, b in zip(cols, cols[1:] + [None]):
        if b is None or b != a + 1 or not alike(coloured[:, a], coloured[:, b]):
            runs.append(a + 1 - start)
            start = b
    assert sum(1 for w in runs if w >= 20) >= 3, runs
