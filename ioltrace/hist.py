"""Histogram arithmetic on the fine log-linear buckets of layout.py.

Pure numpy: merge, delta, percentiles and summary statistics of bucket
counts, plus the coarse power-of-two rows the terminal view draws. It knows
nothing of keys, maps or output formats.
"""

import math

import numpy as np

from . import layout

PERCENTILES = (50, 90, 99, 99.9)


def empty():
    return np.zeros(layout.NBUCKETS, dtype=np.uint64)


def from_samples(ns_values):
    """Counts for raw samples in nanoseconds (tests and offline use)."""
    return np.bincount(layout.buckets_of(ns_values), minlength=layout.NBUCKETS).astype(np.uint64)


def _points(low):
    """What a bucket stands for: its midpoint (times), or its low bound for
    whole counts (layers.Unit.whole: a request of 4096 bytes is 4096, and
    the only sector multiple of its bucket below 16 KiB)."""
    return layout.BUCKET_LOW if low else layout.BUCKET_MID


def percentile(counts, p, low=False):
    """Nearest-rank percentile, reported as the bucket midpoint (ns), or its
    low bound with low=True.

    Within 1/64 of the true sample value for any bucket above 32 ns.
    Returns nan for an empty histogram.
    """
    total = int(counts.sum())
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * total))
    idx = int(np.searchsorted(np.cumsum(counts, dtype=np.uint64), rank))
    return float(_points(low)[idx])


def slowest_threshold(counts, pct, min_samples=100):
    """The low bound (ns) of the highest bucket at and above which lie at
    least `pct` percent of the samples: a threshold that keeps the slowest
    pct% (a little more, by the share of that bucket below the exact cut).
    None while there are fewer than min_samples, or 100/pct, samples."""
    total = int(counts.sum())
    if total == 0 or total < max(min_samples, math.ceil(100.0 / pct)):
        return None
    above = np.cumsum(counts[::-1], dtype=np.uint64)[::-1]     # samples in bucket b and above
    need = math.ceil(pct / 100.0 * total)
    idx = int(np.flatnonzero(above >= need)[-1])
    return int(layout.BUCKET_LOW[idx])


def summary(counts, exact_sum_ns=None, low=False):
    """count, mean, stddev, min, max and PERCENTILES of a histogram (ns).

    mean uses the kernel's exact sum when given; the rest use midpoints.
    min_low and max_high are what the buckets prove: every sample is at
    least min_low and below max_high (inf for the overflow bucket); min and
    max are the midpoints of those buckets, no sample's true value.
    low: buckets stand for their low bounds (whole counts: sizes, depths).
    """
    n = int(counts.sum())
    out = {"count": n}
    if n == 0:
        for k in ("mean", "stddev", "min", "max", "min_low", "max_high") + tuple(f"p{p:g}" for p in PERCENTILES):
            out[k] = math.nan
        return out
    nz = np.nonzero(counts)[0]
    mids = _points(low)[nz]
    w = counts[nz].astype(np.float64)
    mean_mid = float((mids * w).sum() / n)
    out["mean"] = float(exact_sum_ns) / n if exact_sum_ns is not None else mean_mid
    out["stddev"] = float(math.sqrt(max(0.0, (w * (mids - mean_mid) ** 2).sum() / n)))
    out["min"] = float(mids[0])
    out["max"] = float(mids[-1])
    out["min_low"] = float(layout.BUCKET_LOW[nz[0]])
    out["max_high"] = float(layout.BUCKET_HIGH[nz[-1]])
    for p in PERCENTILES:
        out[f"p{p:g}"] = percentile(counts, p, low)
    return out


def coarse_rows(counts, unit_ns):
    """Power-of-two rows in `unit_ns` units for drawing, like biolatency.

    Row 0 holds values below 2 units, row r >= 1 values in [2^r, 2^(r+1)).
    Each fine bucket goes to the row of its midpoint. Returns (low, high,
    count) tuples in whole units, from row 0 to the last non-empty row.
    """
    nz = np.nonzero(counts)[0]
    if len(nz) == 0:
        return []
    units = layout.BUCKET_MID[nz] / unit_ns
    rows = np.floor(np.log2(np.maximum(units, 2.0))).astype(int)
    rows[units < 2] = 0
    agg = np.zeros(int(rows.max()) + 1, dtype=np.uint64)
    np.add.at(agg, rows, counts[nz])
    return [
        (0 if r == 0 else 1 << r, (1 << (r + 1)) - 1, int(c)) for r, c in enumerate(agg)
    ]


def whole_rows(counts):
    """Power-of-two rows of whole counts (bytes, requests), like bitesize:
    0 alone, then [1, 1], [2, 3], [4, 7] ... Each fine bucket goes to the
    row of its low bound, exact where buckets are one value wide (below 64)
    and for sizes in whole sectors. Returns (low, high, count) tuples from
    the first non-empty row to the last (sizes start in the thousands)."""
    nz = np.nonzero(counts)[0]
    if len(nz) == 0:
        return []
    lows = layout.BUCKET_LOW[nz].astype(np.uint64)
    rows = np.array([int(v).bit_length() for v in lows], dtype=int)
    agg = np.zeros(int(rows.max()) + 1, dtype=np.uint64)
    np.add.at(agg, rows, counts[nz])
    first = int(rows.min())
    return [(0 if r == 0 else 1 << (r - 1), 0 if r == 0 else (1 << r) - 1, int(agg[r])) for r in range(first, len(agg))]
