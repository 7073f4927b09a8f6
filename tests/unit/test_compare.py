"""ioltrace compare: the tests on bucket counts find a 2x shift of the median
and not a resampled copy of the same data, hold their false-positive rate,
are reproducible; keys on one side only are listed; --runs figures match
numpy on the per-run figures."""

import json
import math

import numpy as np
import pytest

from ioltrace import cli, hist, recording, stats
from ioltrace.export import json as jexport
from ioltrace.fmt import ns as fmt_ns

from .recfiles import T0, group, one_file, samples, write


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def by_stat(tests):
    return {t.stat: t for t in tests}


@pytest.mark.parametrize("n", [200, 5000, 200_000])
def test_median_twice_as_long_is_significant(n):
    a = samples(1, n, 40_000)
    b = samples(2, n, 80_000)
    t = by_stat(stats.two_sample(hist.from_samples(a), hist.from_samples(b)))
    assert t["p50"].significant and t["p50"].p < 0.01
    assert t["p50"].ratio == pytest.approx(np.median(b) / np.median(a), rel=0.05)
    assert t["p50"].low <= 2.0 <= t["p50"].high or n >= 200_000  # tight intervals may exclude 2 by bucketing
    assert t["p50"].low > 1.5 and t["dist"].significant
    assert t["p99"].significant or n < 1000  # 2 samples above p99 at n=200: the tail is noise


@pytest.mark.parametrize("seed", range(3))
def test_resampled_copy_is_not_significant(seed):
    a = samples(10 + seed, 20_000, 40_000)
    b = np.random.default_rng(100 + seed).choice(a, len(a), replace=True)
    tests = stats.two_sample(hist.from_samples(a), hist.from_samples(b))
    assert [t.stat for t in tests] == ["p50", "p99", "dist"]
    assert not any(t.significant for t in tests), tests
    t = by_stat(tests)
    assert t["p50"].low <= 1.0 <= t["p50"].high and t["p99"].low <= 1.0 <= t["p99"].high


def test_false_positive_rate_is_held():
    """Same distribution, many seeds: about 5% significant, not more."""
    hits = 0
    trials = 40
    for seed in range(trials):
        a, b = samples(1000 + seed, 400), samples(5000 + seed, 600)
        tests = stats.two_sample(hist.from_samples(a), hist.from_samples(b), resamples=500)
        hits += by_stat(tests)["p50"].significant
    assert hits <= 6  # P(>6 of 40 | rate 0.05) < 1.5%


def test_queue_times_of_zero_do_not_break_the_tests():
    a = np.zeros(1000, dtype=np.int64)
    b = np.concatenate([np.zeros(500, dtype=np.int64), samples(3, 500, 1000)])
    t = by_stat(stats.two_sample(hist.from_samples(a), hist.from_samples(b)))
    assert t["p50"].a == 0 and math.isnan(t["p50"].ratio) and t["p99"].significant and t["dist"].significant
    assert stats.two_sample(hist.empty(), hist.from_samples(b)) == []


def test_compare_command_2x_and_copy(tmp_path, capsys):
    base = samples(20, 10_000, 30_000)
    a = one_file(tmp_path / "a.csv", base)
    b = one_file(tmp_path / "b.csv", base * 2, key="200")  # another pid, same command
    c = one_file(tmp_path / "c.csv", np.random.default_rng(5).choice(base, len(base)), key="300")
    rc, out, err = run(capsys, "compare", a, b, "--stage", "device")
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[:2] == [f"A: {a}", f"B: {b}"]
    assert "fio  disk loop0  read  device time" in out or "fio  read  device time" in out
    p50 = next(line for line in lines if line.strip().startswith("p50"))
    assert p50.split()[3] == "+100.0%" and p50.endswith("<0.001 *")
    assert any(line.strip().startswith("=> B slower: p50 x2.00") for line in lines)
    assert "method: p: permutation test on the bucket counts" in out
    assert max(len(line) for line in lines) <= 80
    rc, out, _ = run(capsys, "compare", a, c, "--stage", "device")
    assert rc == 0 and "=> no significant difference" in out
    assert not any(line.endswith(" *") for line in out.splitlines())
    # Reproducible: a fixed seed.
    assert run(capsys, "compare", a, c, "--stage", "device")[1] == out


def test_keys_on_one_side_are_listed(tmp_path, capsys):
    x = samples(30, 1000)
    a = write(tmp_path / "a.csv", [([group("1", "fio", x), group("2", "dd", x)], T0, T0 + 1)])
    b = write(tmp_path / "b.csv", [([group("3", "fio", x), group("4", "tar", x)], T0, T0 + 1)])
    rc, out, _ = run(capsys, "compare", a, b, "--stage", "device")
    assert rc == 0
    titles = [line for line in out.splitlines() if line.endswith("device time") or "[only in" in line]
    assert titles == ["dd  read  device time  [only in A]", "fio  read  device time", "tar  read  device time  [only in B]"]
    dd = out[out.index("dd  read"):out.index("fio  read")]
    assert "p50" in dd and " - " in dd.split("p50")[1].splitlines()[0] + " "
    doc = json.loads(run(capsys, "compare", a, b, "--format", "json", "--stage", "device")[1])
    assert doc["schema"] == jexport.COMPARE_SCHEMA
    assert [(c["key"], c["in"], len(c["tests"])) for c in doc["comparisons"]] == [
        ("dd", "a", 0), ("fio", "both", 3), ("tar", "b", 0)]
    assert doc["a"]["schema"] == jexport.SCHEMA and doc["a"]["by"] == "comm"
    # --by process matches pids, which differ between runs.
    rc, out, _ = run(capsys, "compare", a, b, "--by", "process", "--stage", "device")
    assert out.count("[only in A]") == 2 and out.count("[only in B]") == 2


def test_cgroups_match_by_path(tmp_path, capsys):
    x = samples(31, 500)
    a = write(tmp_path / "a.csv", [([group("111", "/db", x, kind="cgroup")], T0, T0 + 1)])
    b = write(tmp_path / "b.csv", [([group("222", "/db", x * 3, kind="cgroup")], T0, T0 + 1)])
    rc, out, _ = run(capsys, "compare", a, b, "--stage", "device")
    assert "[only in" not in out and "=> B slower" in out


def test_runs(tmp_path, capsys):
    runs = {"a": [samples(40 + i, 3000, 30_000 * (1 + 0.02 * i)) for i in range(3)],
            "b": [samples(50 + i, 3000, 60_000 * (1 + 0.02 * i)) for i in range(4)]}
    paths = {side: [one_file(tmp_path / f"{side}{i}.csv", x, key=str(100 + i), seconds=5)
                    for i, x in enumerate(xs)] for side, xs in runs.items()}
    rc, out, err = run(capsys, "compare", "--runs", ",".join(paths["a"]), "--runs", ",".join(paths["b"]),
                       "--stage", "device")
    assert rc == 0 and err == ""
    assert out.startswith(f"A: 3 runs: {paths['a'][0]}")
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.strip().startswith("p50"))
    per_run = {side: [stats.describe(recording.read([p]).series[0], "device", 5.0)["p50"] for p in ps]
               for side, ps in paths.items()}
    for line, side in ((lines[i], "a"), (lines[i + 1], "b")):
        v = np.array(per_run[side])
        cells = line.split()
        cells = cells[1:] if cells[0] == "p50" else cells
        assert cells[:5] == [side.upper(), fmt_ns(v.mean()), fmt_ns(v.min()), fmt_ns(v.max()),
                             f"{100 * v.std(ddof=1) / v.mean():.1f}%"]
    # 3 + 4 runs: 35 splits; A's runs all faster, so only the observed split is that extreme.
    assert lines[i + 1].endswith("0.029 *")
    assert "pooled samples: p50 x2." in out and "method: p: exact permutation test over runs" in out
    # 3 + 3 runs can never reach 0.05; the output says so.
    rc, out, _ = run(capsys, "compare", "--runs", ",".join(paths["a"]), "--runs", ",".join(paths["b"][:3]),
                     "--stage", "device")
    assert "3 and 3 runs give p >= 0.10 at best" in out


def test_across_runs_exact_p():
    p, smallest = stats.across_runs([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])
    assert (p, smallest) == (pytest.approx(0.1), pytest.approx(0.1))
    p, _ = stats.across_runs([1.0, 2.0, 3.0], [1.5, 2.5, 2.0])
    assert p == 1.0
    s = stats.spread([10.0, 12.0, 14.0])
    assert s == {"n": 3, "min": 10.0, "max": 14.0, "mean": 12.0, "sd_pct": pytest.approx(100 * 2 / 12)}


def test_verdict_names_each_direction():
    from ioltrace.views.compare import verdict

    T = stats.Test
    assert verdict([T("p50", 10.0, 9.0, 0.9, 0.88, 0.92, 0.0005, True), T("p99", 100.0, 250.0, 2.5, 2.2, 2.8, 0.0005, True),
                    T("dist", math.nan, math.nan, 0.3, math.nan, math.nan, 0.0005, True)]) == \
        "=> B differs: p50 x0.90 (p<0.001) faster, p99 x2.50 (p<0.001) slower, significant"
    assert verdict([T("p50", 0.0, 900.0, math.nan, math.inf, math.inf, 0.0005, True),
                    T("p99", 5.0, 5.0, 1.0, 1.0, 1.0, 1.0, False),
                    T("dist", math.nan, math.nan, 0.5, math.nan, math.nan, 0.0005, True)]) == \
        "=> B slower: p50 0ns -> 900ns (p<0.001), significant"
