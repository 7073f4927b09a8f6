"""The size and depth stages without root: their declaration, the
Prometheus families built from raw samples (numpy counts of "at most le"
as ground truth), recordings (format 3, sum rows, old formats still read),
and the text of hist and report."""

import numpy as np
import pytest

from ioltrace import cli, fmt, group, hist, layers, layout, recording, stats
from ioltrace.export import csv as rec
from ioltrace.export import json as jexp
from ioltrace.export import prometheus as P
from ioltrace.records import Key, Snapshot, Totals
from ioltrace.views import hist as hview

from .test_prometheus import FakeResolver, parse, series, value

SDA = 8 << 20
R, W = layout.OPS.index("read"), layout.OPS.index("write")
SIZE, DEPTH = layout.STAGES.index("size"), layout.STAGES.index("depth")


def snapshot(entries):
    """entries: [(Key, comm, sizes, depths)]: one request per size (and
    depth), device time 1 us each."""
    totals, hists = {}, {}
    for key, comm, sizes, depths in entries:
        sizes, depths = np.asarray(sizes, dtype=np.int64), np.asarray(depths, dtype=np.int64)
        n = len(sizes)
        totals[key] = Totals(n, int(sizes.sum()), 0, 0, 1000 * n, comm, int(sizes.sum()), int(depths.sum()))
        hists[(key, layout.STAGE_DEVICE)] = hist.from_samples([1000] * n)
        hists[(key, SIZE)] = hist.from_samples(sizes)
        hists[(key, DEPTH)] = hist.from_samples(depths)
    return Snapshot(1, totals, hists, {}, dict.fromkeys(layout.COUNTERS, 0))


def test_declaration():
    assert layers.BLOCK.optional == ("size", "depth") == layout.SIZE_DEPTH_STAGES
    assert layers.unit_of("size") is layers.SIZE and layers.unit_of("depth") is layers.DEPTH
    assert layers.unit_of("device") is layers.LATENCY and layers.unit_of("latency") is layers.LATENCY
    assert [layers.sum_name(s) for s in ("queue", "latency", "size", "depth")] == \
        ["queue_sum_ns", "latency_sum_ns", "size_sum_bytes", "depth_sum_requests"]
    # Every exported edge of every unit is a fine-bucket boundary.
    for unit in (layers.LATENCY, layers.SIZE, layers.DEPTH):
        assert all(layout.BUCKET_LOW[layout.bucket_of(e)] == e for e in unit.edges)
    assert P.SCALES["bytes"].le[:4] == ("0", "1023", "2047", "4095") and P.SCALES["bytes"].le[-2] == str(2**32 - 1)
    assert P.SCALES["requests"].le[:5] == ("0", "1", "3", "7", "15")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_prometheus_families_count_at_most_each_le(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.choice([0, 512, 4096, 8192, 12288, 65536, 69632, 1 << 20, (1 << 20) + 4096], 500)
    depths = rng.integers(0, 200, 500)
    key = Key(5, 100, 0, SDA, W)
    exp = P.Exporter(FakeResolver(), stages=("queue", "device", "size", "depth"))
    text = exp.render(snapshot([(key, "fio", sizes, depths)]))
    parsed = parse(text)
    for family, samples in (("ioltrace_block_request_size_bytes", sizes),
                            ("ioltrace_block_inflight_depth", depths)):
        got = series(parsed, family + "_bucket", device="sda", op="write")
        want = {le: float((samples <= float(le)).sum()) if le != "+Inf" else float(len(samples))
                for le in got}
        assert got == want, family
        assert value(parsed, family + "_sum", device="sda", op="write") == samples.sum()
        assert value(parsed, family + "_count", device="sda", op="write") == len(samples)
        # Its own family: no stage label on it, and not in the latency family.
        assert not any(k[0] == family + "_bucket" and "stage" in dict(k[1]) for k in parsed)
    stages = {dict(k[1]).get("stage") for k in parsed if k[0] == "ioltrace_block_latency_seconds_count"}
    assert stages == {"queue", "device"}
    assert b"# TYPE ioltrace_block_request_size_bytes histogram" in text
    om = exp.render(snapshot([(key, "fio", sizes, depths)]), P.OPENMETRICS).decode()
    assert "# UNIT ioltrace_block_request_size_bytes bytes" in om
    assert "# UNIT ioltrace_block_inflight_depth" not in om


def test_prometheus_without_the_stages_has_no_families():
    key = Key(5, 100, 0, SDA, R)
    text = P.Exporter(FakeResolver()).render(snapshot([(key, "dd", [4096] * 3, [0] * 3)])).decode()
    assert "request_size" not in text and "inflight_depth" not in text


def groups_of(snap, kind="disk"):
    class Res(FakeResolver):
        def comm(self, pid, comms):
            return comms

        def pid_exists(self, pid):
            return True

    return group.by_key(snap, kind, Res())


def test_recording_round_trip_and_old_versions(tmp_path):
    key = Key(5, 100, 0, SDA, W)
    g = groups_of(snapshot([(key, "fio", [4096] * 7 + [65536] * 3, [0, 1, 2, 3, 4, 5, 6, 7, 7, 7])]))
    path = tmp_path / "r.csv"
    w = rec.CsvWriter(str(path))
    w.write_interval(g, 1000.0, 1001.0)
    w.close()
    assert open(path).readline().startswith(f"{rec.MAGIC} 3 ")
    rows = rec.read(str(path))
    stages = [r.stage for r in rows if not r.bucket_low_ns]
    assert stages == ["ios", "bytes", "errors", "queue_sum_ns", "device_sum_ns", "size_sum_bytes",
                      "depth_sum_requests"]
    sel = recording.read([str(path)])
    (s,) = sel.series
    assert {int(layout.BUCKET_LOW[i]): int(c) for i, c in enumerate(s.hists["size"]) if c} == {4096: 7, 65536: 3}
    d = stats.describe(s, "depth", 1.0)
    assert d["mean_exact"] and d["mean"] == 4.2 and d["p50"] == 4 and d["max_high"] == 8
    d = stats.describe(s, "size", 1.0)
    assert d["mean"] == (7 * 4096 + 3 * 65536) / 10 and d["p50"] == 4096 and d["p99"] == 65536
    # The JSON says what its figures count.
    k = jexp.key_dict(s, 1.0)
    assert (k["latency"]["size"]["unit"], k["latency"]["depth"]["unit"], k["latency"]["device"]["unit"]) == \
        ("bytes", "requests", "ns")
    # Version 2 (no size or depth) is read as before.
    v2 = tmp_path / "v2.csv"
    v2.write_text(open(path).read().replace(f"{rec.MAGIC} 3 ", f"{rec.MAGIC} 2 ", 1))
    assert len(rec.read(str(v2))) == len(rows)


def test_sum_rows_only_when_recorded(tmp_path):
    key = Key(5, 100, 0, SDA, W)
    snap = snapshot([(key, "dd", [4096] * 2, [0, 0])])
    snap = snap._replace(hists={c: a for c, a in snap.hists.items() if c[1] == layout.STAGE_DEVICE},
                         totals={k: t._replace(size_sum=0, depth_sum=0) for k, t in snap.totals.items()})
    names = [r.stage for r in rec.rows(groups_of(snap), 0, 1)]
    assert "size_sum_bytes" not in names and "depth_sum_requests" not in names and "device_sum_ns" in names


def test_hist_and_report_text():
    key = Key(5, 100, 0, SDA, R)
    g = groups_of(snapshot([(key, "fio", [0] + [4096] * 9, [0] * 5 + [1, 3, 3, 7, 7])]))
    text = "\n".join(hview.render(g, ["size", "depth"], 1.0))
    assert "disk sda  read  request size" in text and "disk sda  read  in flight at issue" in text
    assert "           bytes : count" in text
    assert "        0 -> 0        : 1 " in text and "     4096 -> 8191     : 9 " in text
    assert "        1 -> 1        : 1 " in text and "        4 -> 7        : 2 " in text
    assert "min 0  max 7  p50 0" in text        # whole counts below 64 are exact
    assert "mean 3.6K" in text                  # 9 x 4096 / 10, from the exact sum
    assert "mean 2.10" in text
    assert hist.whole_rows(hist.from_samples([65536])) == [(65536, 131071, 1)]
    assert fmt.value(4096, "bytes") == "4.0K" and fmt.value(3.0, "requests") == "3" and fmt.value(1500, "ns") == "1.50us"


def test_cli_refuses_size_depth_without_the_block_layer(capsys):
    for argv in (["hist", "--layer", "syscall", "--size-depth"], ["hist", "--layer", "syscall", "--stage", "size"],
                 ["top", "--layer", "syscall", "--size-depth"]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "block layer" in err, err


def test_compare_speaks_of_sizes_not_times():
    from ioltrace.views.compare import verdict

    t = stats.Test("p50", 4096.0, 65536.0, 16.0, 15.0, 17.0, 0.0005, True)
    assert verdict([t], "size").startswith("=> B larger: p50 x16.00")
    assert verdict([t], "device").startswith("=> B slower")


def _size_depth_recording(path, seconds=6):
    w = rec.CsvWriter(str(path))
    rng = np.random.default_rng(7)
    for i in range(seconds):
        sizes = rng.choice([4096, 8192, 65536, 131072], 400)
        depths = rng.integers(0, 16, 400)
        w.write_interval(groups_of(snapshot([(Key(5, 100, 0, SDA, W), "fio", sizes, depths)])),
                         1000.0 + i, 1001.0 + i)
    w.close()
    return str(path)


def test_report_and_plot_of_size_and_depth(tmp_path, capsys):
    path = _size_depth_recording(tmp_path / "r.csv")
    assert cli.main(["report", path, "--stage", "size", "--stage", "depth"]) == 0
    out = capsys.readouterr().out
    assert "write  request size" in out and "write  in flight at issue" in out
    assert "65536 -> 131071" in out and "p50 " in out and "us" not in out.split("request size", 1)[1]
    assert cli.main(["report", path, "--stage", "depth", "--format", "json"]) == 0
    assert '"unit": "requests"' in capsys.readouterr().out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    for extra in ((), ("--heatmap", "--interval", "2")):
        png = tmp_path / "p.png"
        assert cli.main(["plot", path, "-o", str(png), "--stage", "size", "--stage", "depth", *extra]) == 0, \
            capsys.readouterr().err
        assert png.stat().st_size > 1000
