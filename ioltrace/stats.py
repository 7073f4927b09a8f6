"""Statistics of recorded latency: per-key figures and A/B tests on bucket counts.

describe() gives the figures of one key and stage (rates, exact mean where
the kernel's sum is recorded, the rest from the fine buckets). two_sample()
tests whether two histograms differ, and across_runs() whether two groups
of repeated runs do. Everything is numpy with a fixed seed, so the same
recordings always give the same p-values. Knows nothing of files or output.

The method, for histograms A and B (bucket counts of nA and nB samples):
- p-value: a permutation test on the bucket counts. Under "A and B are one
  distribution" the pooled samples are split at random into nA and nB
  (a multivariate hypergeometric draw of the pooled counts; above 10^9
  samples a multinomial draw from the pooled proportions, the same thing at
  that size). Statistics: |log ratio| of p50 and of p99, and the KS
  distance of the two bucketed distributions. p = (1 + #splits at least as
  extreme) / (1 + splits). Ties from bucketing only make it conservative.
- interval: a bootstrap of the ratio B/A of each percentile, each side
  resampled as a multinomial of its own counts; 95% percentile interval.
Bucket widths (1/32 of an octave) limit what can be told apart to ~3%.
"""

import math
from itertools import combinations
from typing import NamedTuple

import numpy as np

from . import hist, layers, layout
from .recording import exact_sum, match_id, stages_of

SEED = 0
RESAMPLES = 2000     # splits and bootstrap draws; smallest p is 1/2001
ALPHA = 0.05
TESTED = ("p50", "p99")
METHOD = (f"p: permutation test on the bucket counts ({RESAMPLES} random splits of the pooled samples, "
          f"seed {SEED}), statistic |log ratio| for p50 and p99, KS distance for dist; B/A: ratio with 95% "
          f"bootstrap interval ({RESAMPLES} multinomial resamples of each side); *: significant, p < {ALPHA:g}; "
          "buckets resolve ~3%")
RUNS_METHOD = ("p: exact permutation test over runs (every split of the runs into two groups, or "
               f"{RESAMPLES} random ones), statistic the difference of group means; *: p < {ALPHA:g}. "
               "pooled samples: each group's runs merged and tested as one recording:")


class Test(NamedTuple):
    """One statistic compared between A and B (two_sample)."""

    stat: str         # "p50", "p99" or "dist" (KS distance)
    a: float
    b: float
    ratio: float      # b / a; for dist, the KS distance
    low: float        # 95% bootstrap interval of the ratio (nan for dist)
    high: float
    p: float
    significant: bool


def ios_of(series):
    """I/Os (or calls) of a Series: its ios counter, else its largest histogram."""
    if "ios" in series.counters:
        return series.counters["ios"]
    return max((int(h.sum()) for h in series.hists.values()), default=0)


def describe(series, stage, seconds):
    """Figures of one Series and stage: ios, bytes, errors, iops,
    bytes_per_s, then count (samples in the histogram), mean (exact when the
    kernel's sum covers exactly these samples: mean_exact), stddev, min, max
    and percentiles, all ns (nan when empty)."""
    counts = series.hists.get(stage)
    s = hist.summary(counts if counts is not None else hist.empty(), low=layers.unit_of(stage).whole)
    c = series.counters
    ios = ios_of(series)
    total = exact_sum(c, stage)
    exact = total is not None and ios == s["count"] and ios > 0
    if exact:
        s["mean"] = total / ios
    secs = max(seconds, 1e-9)
    return {"ios": ios, "bytes": c.get("bytes", 0), "errors": c.get("errors", 0), "iops": ios / secs,
            "bytes_per_s": c.get("bytes", 0) / secs, **s, "mean_exact": exact}


def _percentiles(counts, mids, p):
    """hist.percentile for each row of a (draws x buckets) matrix."""
    rank = np.maximum(1, np.ceil(p / 100.0 * counts.sum(axis=1)))
    idx = (np.cumsum(counts, axis=1) < rank[:, None]).sum(axis=1)
    return mids[np.minimum(idx, len(mids) - 1)]


def _ks(a, b):
    """KS distance between the rows of two count matrices."""
    fa = np.cumsum(a, axis=1) / a.sum(axis=1, keepdims=True)
    fb = np.cumsum(b, axis=1) / b.sum(axis=1, keepdims=True)
    return np.abs(fa - fb).max(axis=1)


def _null_splits(pooled, na, rng, draws):
    if pooled.sum() < 10**9:
        a = rng.multivariate_hypergeometric(pooled, na, size=draws, method="marginals")
    else:
        a = rng.multinomial(na, pooled / pooled.sum(), size=draws)
    return a, pooled[None, :] - a


def _interval(values):
    v = np.sort(values)
    return float(v[int(0.025 * (len(v) - 1))]), float(v[int(math.ceil(0.975 * (len(v) - 1)))])


def two_sample(a_counts, b_counts, resamples=RESAMPLES, seed=SEED):
    """Tests (TESTED percentiles, then dist) between two histograms; [] if
    either is empty."""
    a_counts = np.asarray(a_counts, dtype=np.int64)
    b_counts = np.asarray(b_counts, dtype=np.int64)
    na, nb = int(a_counts.sum()), int(b_counts.sum())
    if na == 0 or nb == 0:
        return []
    nz = np.nonzero(a_counts + b_counts)[0]
    a, b = a_counts[nz], b_counts[nz]
    mids = layout.BUCKET_MID[nz]
    rng = np.random.default_rng(seed)
    null_a, null_b = _null_splits(a + b, na, rng, resamples)
    boot_a = rng.multinomial(na, a / na, size=resamples)
    boot_b = rng.multinomial(nb, b / nb, size=resamples)
    out = []
    for name in TESTED:
        p = float(name[1:])
        qa, qb = _percentiles(a[None, :], mids, p)[0], _percentiles(b[None, :], mids, p)[0]
        observed = abs(math.log((qb + 1) / (qa + 1)))  # +1 ns: queue times can be 0
        null = np.abs(np.log((_percentiles(null_b, mids, p) + 1) / (_percentiles(null_a, mids, p) + 1)))
        pval = (1 + int((null >= observed - 1e-12).sum())) / (1 + resamples)
        ba = _percentiles(boot_a, mids, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(ba > 0, _percentiles(boot_b, mids, p) / np.where(ba > 0, ba, 1), np.inf)
        low, high = _interval(ratios)
        out.append(Test(name, qa, qb, qb / qa if qa > 0 else math.nan, low, high, pval, pval < ALPHA))
    d = float(_ks(a[None, :], b[None, :])[0])
    pval = (1 + int((_ks(null_a, null_b) >= d - 1e-12).sum())) / (1 + resamples)
    out.append(Test("dist", math.nan, math.nan, d, math.nan, math.nan, pval, pval < ALPHA))
    return out


def spread(values):
    """Across-run figures of one statistic, as the seeds' bench_iter: min,
    max, mean and std dev as a percentage of the mean (sample std dev)."""
    v = np.array([x for x in values if not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return {"n": 0, "min": math.nan, "max": math.nan, "mean": math.nan, "sd_pct": math.nan}
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    mean = float(v.mean())
    return {"n": len(v), "min": float(v.min()), "max": float(v.max()), "mean": mean,
            "sd_pct": 100.0 * sd / mean if mean else math.nan}


def across_runs(a_values, b_values, resamples=RESAMPLES, seed=SEED):
    """p-value of the difference of group means of a per-run statistic:
    exact permutation over every split of the runs (random splits when
    there are more than `resamples`). Also returns the smallest p this many
    runs can give. nan when a group has no values."""
    a = [x for x in a_values if not math.isnan(x)]
    b = [x for x in b_values if not math.isnan(x)]
    if not a or not b:
        return math.nan, math.nan
    pooled = np.array(a + b, dtype=float)
    n, k = len(pooled), len(a)
    observed = abs(np.mean(a) - np.mean(b))
    total = math.comb(n, k)
    if total <= resamples:
        splits = np.zeros((total, n), dtype=bool)
        for i, idx in enumerate(combinations(range(n), k)):
            splits[i, list(idx)] = True
        smallest = (2.0 if 2 * k == n else 1.0) / total  # equal groups: each split has a mirror
    else:
        rng = np.random.default_rng(seed)
        splits = np.zeros((resamples, n), dtype=bool)
        for row in splits:
            row[rng.choice(n, k, replace=False)] = True
        smallest = 1.0 / (resamples + 1)
    ma = (splits * pooled).sum(axis=1) / k
    mb = (~splits * pooled).sum(axis=1) / (n - k)
    # Tolerance: float sums of the same runs in another order must count as ties.
    extreme = int((np.abs(ma - mb) >= observed - 1e-9 * max(1.0, observed)).sum())
    if total <= resamples:
        return extreme / total, smallest
    return (1 + extreme) / (1 + resamples), smallest


RUN_STATS = ("iops", "bytes_per_s", "mean", "stddev", "p50", "p90", "p99", "p99.9")


class Comparison(NamedTuple):
    """One key and stage of A against B (compare)."""

    id: object        # records.GroupId of whichever side has it
    layer: str
    stage: str
    a: dict           # describe() of A's merged data; None: key not in A
    b: dict
    tests: list       # two_sample() Tests; [] when a side is missing or empty
    runs: dict        # with repeated runs: stat -> (spread A, spread B, p, smallest p); else None


def compare(pairs, stages, seconds_a, seconds_b, runs_a=None, runs_b=None):
    """Comparisons of recording.pair() output. runs_a/runs_b: per run, a
    (match_id -> Series, seconds) tuple, for the across-run figures."""
    out = []
    for a, b in pairs:
        some = a if a is not None else b
        for stage in stages_of(a, b, wanted=stages):
            da = describe(a, stage, seconds_a) if a is not None and stage in a.hists else None
            db = describe(b, stage, seconds_b) if b is not None and stage in b.hists else None
            tests = two_sample(a.hists[stage], b.hists[stage]) if da and db else []
            runs = None
            if runs_a is not None:
                mid = match_id(some)

                def per_run(runs):
                    vals = {k: [] for k in RUN_STATS}
                    for by_id, secs in runs:
                        s = by_id.get(mid)
                        if s is not None and stage in s.hists:
                            d = describe(s, stage, secs)
                            for k in RUN_STATS:
                                vals[k].append(d[k])
                    return vals

                va, vb = per_run(runs_a), per_run(runs_b)
                runs = {k: (spread(va[k]), spread(vb[k]), *across_runs(va[k], vb[k])) for k in RUN_STATS}
            out.append(Comparison(some.id, some.layer, stage, da, db, tests, runs))
    return out
