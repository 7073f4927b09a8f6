"""hist.py's statistics against numpy on the raw samples they came from."""

import math

import numpy as np
import pytest

from ioltrace import hist, layout

REL = 1 / 64  # the bucket midpoint's promised accuracy


def _lognormal(rng, n):
    return rng.lognormal(math.log(100e3), 1.0, n)


def _bimodal(rng, n):
    return np.where(rng.random(n) < 0.7, rng.normal(20e3, 3e3, n), rng.normal(5e6, 1e6, n))


def _uniform(rng, n):
    return rng.uniform(1e3, 1e9, n)


DISTS = {"lognormal": _lognormal, "bimodal": _bimodal, "uniform": _uniform}
SIZES = (1, 2, 10, 1000, 100_000)


def samples(dist, n, seed=0):
    rng = np.random.default_rng([seed, n, list(DISTS).index(dist)])
    return np.maximum(DISTS[dist](rng, n), 1).astype(np.int64)


def nearest_rank(x, p):
    return float(np.sort(x)[math.ceil(p / 100 * len(x)) - 1])


def close(got, want, rel):
    return abs(got - want) <= rel * abs(want)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dist", DISTS)
def test_percentiles_within_bucket_accuracy(dist, n):
    x = samples(dist, n)
    counts = hist.from_samples(x)
    for p in hist.PERCENTILES:
        got, want = hist.percentile(counts, p), nearest_rank(x, p)
        assert close(got, want, REL), (p, got, want)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dist", DISTS)
def test_summary_against_numpy(dist, n):
    x = samples(dist, n)
    counts = hist.from_samples(x)
    s = hist.summary(counts, exact_sum_ns=int(x.sum()))
    assert s["count"] == n
    assert s["mean"] == np.mean(x)
    approx = hist.summary(counts)
    assert close(approx["mean"], np.mean(x), 0.02)
    if n >= 1000:
        assert close(s["stddev"], np.std(x), 0.03)
    assert close(s["min"], x.min(), REL) and close(s["max"], x.max(), REL)
    for p in hist.PERCENTILES:
        assert s[f"p{p:g}"] == hist.percentile(counts, p)


def test_small_values_are_exact():
    x = np.arange(64)
    counts = hist.from_samples(x)
    assert counts[:64].tolist() == [1] * 64
    s = hist.summary(counts)
    assert (s["min"], s["max"], s["p50"]) == (0, 63, nearest_rank(x, 50))
    # Exact buckets: the statistics are the population ones (ddof=0), exactly.
    assert math.isclose(s["mean"], np.mean(x), rel_tol=1e-12)
    assert math.isclose(s["stddev"], np.std(x), rel_tol=1e-12)


def test_empty_histogram_is_nan():
    s = hist.summary(hist.empty())
    assert s["count"] == 0
    assert all(math.isnan(v) for k, v in s.items() if k != "count")
    assert math.isnan(hist.percentile(hist.empty(), 50))
    assert hist.coarse_rows(hist.empty(), 1e3) == []


@pytest.mark.parametrize("unit_ns", (1, 1e3, 1e6))
@pytest.mark.parametrize("dist", DISTS)
def test_coarse_rows(dist, unit_ns):
    x = samples(dist, 1000)
    rows = hist.coarse_rows(hist.from_samples(x), unit_ns)
    assert sum(c for _, _, c in rows) == len(x)
    assert rows[0][:2] == (0, 1)
    for r, (low, high, _) in enumerate(rows[1:], start=1):
        assert (low, high + 1) == (2**r, 2 ** (r + 1))
    # The last row holds the largest sample (within the bucket accuracy).
    top = x.max() / unit_ns
    assert rows[-1][0] <= top * (1 + REL) and top * (1 - REL) < rows[-1][1] + 1
    assert rows[-1][2] > 0


@pytest.mark.parametrize("dist", DISTS)
def test_merge_is_sum(dist):
    a, b = samples(dist, 1000, seed=1), samples(dist, 777, seed=2)
    merged = hist.from_samples(a) + hist.from_samples(b)
    assert merged.dtype == np.uint64 and merged.shape == (layout.NBUCKETS,)
    assert np.array_equal(merged, hist.from_samples(np.concatenate([a, b])))
    assert int(merged.sum()) == len(a) + len(b)


def test_from_samples_against_numpy_histogram():
    x = samples("uniform", 10_000)
    edges = np.append(layout.BUCKET_LOW, 2.0**64)
    want, _ = np.histogram(x, bins=edges)
    assert np.array_equal(hist.from_samples(x), want)
