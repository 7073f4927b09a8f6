"""ioltrace report: figures of recordings built from known samples against
numpy on the raw samples; merging files equals recording once; regrouping,
filters, time windows, the syscall layer and format 1 files."""

import csv
import io
import json
import math

import numpy as np
import pytest

from ioltrace import cli, hist, recording, stats
from ioltrace.export import csv as rec
from ioltrace.export import json as jexport
from ioltrace.records import CsvRow

from .recfiles import T0, group, one_file, samples, write

BOUND = 1 / 64  # a bucket midpoint is within 1/64 of any sample in the bucket
PCTS = (50, 90, 99, 99.9)


def nearest_rank(x, p):
    return float(np.percentile(x, p, method="inverted_cdf"))


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def check_figures(d, raw, seconds, size=4096):
    assert d["count"] == d["ios"] == len(raw)
    assert d["bytes"] == size * len(raw)
    assert d["iops"] == pytest.approx(len(raw) / seconds)
    assert d["bytes_per_s"] == pytest.approx(size * len(raw) / seconds)
    assert d["mean_exact"] and d["mean"] == pytest.approx(raw.mean(), rel=1e-12)
    for p in PCTS:
        assert abs(d[f"p{p:g}"] - nearest_rank(raw, p)) <= BOUND * nearest_rank(raw, p), p
    assert abs(d["min"] - raw.min()) <= BOUND * raw.min()
    assert abs(d["max"] - raw.max()) <= BOUND * raw.max()
    # Moving every sample by at most 1/64 of itself moves the std dev by at
    # most 1/64 of the root mean square.
    assert abs(d["stddev"] - raw.std()) <= BOUND * math.sqrt((raw.astype(float) ** 2).mean())


@pytest.mark.parametrize("median,sigma", [(50_000, 0.6), (800, 1.5), (3_000_000, 0.2)])
def test_figures_match_numpy_on_raw_samples(tmp_path, median, sigma):
    device = samples(1, 20_000, median, sigma)
    queue = samples(2, 20_000, 2_000, 1.0)
    path = one_file(tmp_path / "r.csv", device, seconds=8, queue=queue)
    sel = recording.read([path])
    assert sel.seconds == pytest.approx(8.0)
    [s] = sel.series
    for stage, raw in (("device", device), ("queue", queue), ("total", queue + device)):
        check_figures(stats.describe(s, stage, sel.seconds), raw, 8.0)


def test_json_output_holds_the_same_figures(tmp_path, capsys):
    device = samples(3, 5000)
    path = one_file(tmp_path / "r.csv", device, seconds=5)
    rc, out, err = run(capsys, "report", path, "--format", "json", "--stage", "device")
    assert rc == 0 and err == ""
    doc = json.loads(out)
    assert doc["schema"] == jexport.SCHEMA and doc["by"] == "process" and doc["seconds"] == pytest.approx(5)
    [key] = doc["keys"]
    assert (key["kind"], key["key"], key["name"], key["op"], key["layer"]) == ("process", "100", "fio", "read", "block")
    assert list(key["latency"]) == ["device"] and "windows" not in key
    lat = key["latency"]["device"]
    d = {"count": lat["count"], "ios": key["ios"], "bytes": key["bytes"], "iops": key["iops"],
         "bytes_per_s": key["bytes_per_s"], "mean": lat["mean_ns"], "mean_exact": lat["mean_exact"],
         "stddev": lat["stddev_ns"], "min": lat["min_bucket_low_ns"], "max": lat["max_bucket_high_ns"],
         **{f"p{p:g}": lat[f"p{p:g}_ns"] for p in PCTS}}
    check_figures(d, device, 5.0)
    # Bounds, as named: no sample below the low one, none at or above the high one.
    assert lat["min_bucket_low_ns"] <= device.min() and device.max() < lat["max_bucket_high_ns"]
    # The buckets are the histogram itself: they rebuild the raw samples' counts.
    counts = hist.empty()
    for low, high, n in lat["buckets"]:
        counts[recording._bucket(str(low), "inf" if high is None else str(high))] += n
    assert np.array_equal(counts, hist.from_samples(device))


def test_two_recordings_merge_like_one(tmp_path, capsys):
    a, b = samples(4, 3000), samples(5, 5000, 90_000)
    qa, qb = samples(6, 3000, 1000), samples(7, 5000, 1000)
    # Runs one after the other, [T0, T0+5) and [T0+5, T0+12), with two keys.
    write(tmp_path / "1.csv", [([group("100", "fio", a[:1000], qa[:1000]), group("7", "dd", b[:10], qb[:10])], T0, T0 + 2),
                               ([group("100", "fio", a[1000:], qa[1000:])], T0 + 2, T0 + 5)])
    write(tmp_path / "2.csv", [([group("100", "fio", b, qb), group("7", "dd", a[:10], qa[:10])], T0 + 5, T0 + 12)])
    write(tmp_path / "once.csv", [([group("100", "fio", np.concatenate([a, b]), np.concatenate([qa, qb])),
                                    group("7", "dd", np.concatenate([b[:10], a[:10]]), np.concatenate([qb[:10], qa[:10]]))],
                                   T0, T0 + 12)])
    both = recording.read([tmp_path / "1.csv", tmp_path / "2.csv"])
    once = recording.read([tmp_path / "once.csv"])
    assert both.seconds == once.seconds == pytest.approx(12)
    assert [s.id for s in both.series] == [s.id for s in once.series]
    for x, y in zip(both.series, once.series):
        assert x.counters == y.counters
        assert x.hists.keys() == y.hists.keys()
        assert all(np.array_equal(x.hists[k], y.hists[k]) for k in x.hists)
    outs = []
    for files in ([tmp_path / "1.csv", tmp_path / "2.csv"], [tmp_path / "once.csv"]):
        rc, out, _ = run(capsys, "report", *files, "--format", "json")
        doc = json.loads(out)
        del doc["sources"]
        outs.append(doc)
    assert outs[0] == outs[1]
    # Table output too, but for the file names in its first line.
    tables = [run(capsys, "report", *f)[1].split("\n", 1)[1] for f in
              ([tmp_path / "1.csv", tmp_path / "2.csv"], [tmp_path / "once.csv"])]
    assert tables[0] == tables[1]


def test_separate_runs_add_their_time_overlapping_ones_do_not(tmp_path):
    d = samples(8, 100)
    write(tmp_path / "a.csv", [([group("1", "x", d)], T0, T0 + 10)])
    write(tmp_path / "b.csv", [([group("1", "x", d)], T0 + 100, T0 + 105)])
    write(tmp_path / "c.csv", [([group("1", "x", d)], T0 + 5, T0 + 12)])
    assert recording.read([tmp_path / "a.csv", tmp_path / "b.csv"]).seconds == pytest.approx(15)
    assert recording.read([tmp_path / "a.csv", tmp_path / "c.csv"]).seconds == pytest.approx(12)


def test_windows_show_the_shift_in_time(tmp_path, capsys):
    fast, slow = samples(9, 6000, 20_000), samples(10, 6000, 80_000)
    parts = np.array_split(fast, 3) + np.array_split(slow, 3)
    path = write(tmp_path / "r.csv", [([group("100", "fio", p)], T0 + i, T0 + i + 1) for i, p in enumerate(parts)])
    sel = recording.read([path], recording.Filters(stages=("device",)), window=3)
    [s] = sel.series
    assert sorted(s.windows) == [0, 1] and sel.window_seconds == {0: 3.0, 1: 3.0}
    for w, raw in ((0, fast), (1, slow)):
        counters, hists = s.windows[w]
        d = stats.describe(recording.Series(s.id, s.layer, counters, hists, {}), "device", 3.0)
        check_figures(d, raw, 3.0)
    rc, out, _ = run(capsys, "report", path, "--interval", "3", "--stage", "device")
    assert rc == 0
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.strip().startswith("window"))
    assert lines[i + 1].split()[:3] == ["0-3s", "6000", "2000.0"]
    assert lines[i + 2].split()[:3] == ["3-6s", "6000", "2000.0"]
    doc = json.loads(run(capsys, "report", path, "--interval", "3", "--format", "json")[1])
    assert [w["start_s"] for w in doc["keys"][0]["windows"]] == [0, 3]
    assert doc["keys"][0]["windows"][1]["latency"]["device"]["p50_ns"] == pytest.approx(
        nearest_rank(slow, 50), rel=BOUND)
    # Windows join whole intervals only.
    rc, _, err = run(capsys, "report", path, "--interval", "0.5")
    assert rc == 2 and "shorter than the recorded intervals" in err


def test_regroup_by_disk_and_comm(tmp_path, capsys):
    x, y, z = samples(11, 1000), samples(12, 2000), samples(13, 500)
    path = write(tmp_path / "r.csv", [([group("100", "fio", x, disk="sda"), group("101", "fio", y, disk="sdb"),
                                        group("7", "dd", z, disk="sda")], T0, T0 + 1)])
    by_disk = recording.read([path], recording.Filters(by="disk"))
    got = {s.id.key: int(s.hists["device"].sum()) for s in by_disk.series}
    assert got == {"sda": 1500, "sdb": 2000}
    sda = next(s for s in by_disk.series if s.id.key == "sda")
    assert np.array_equal(sda.hists["device"], hist.from_samples(np.concatenate([x, z])))
    by_comm = recording.read([path], recording.Filters(by="comm"))
    assert {s.id.key: s.counters["ios"] for s in by_comm.series} == {"fio": 3000, "dd": 500}
    # Not derivable: one line, exit 2.
    rc, out, err = run(capsys, "report", path, "--by", "cgroup")
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert "--by cgroup" in err and "recorded by process" in err


def test_filters(tmp_path, capsys):
    x, y = samples(14, 1000), samples(15, 700)
    path = write(tmp_path / "r.csv", [([group("100", "fio", x, op="read"), group("100", "fio", y, op="write"),
                                        group("7", "dd", y, disk="sdb", op="write")], T0, T0 + 1)])
    sel = recording.read([path], recording.Filters(ops=("write",), stages=("device",), keys=("fio",)))
    [s] = sel.series
    assert s.id.op == "write" and list(s.hists) == ["device"] and s.counters["ios"] == 700
    sel = recording.read([path], recording.Filters(disk="sdb"))
    assert [s.id.key for s in sel.series] == ["7"] and sel.series[0].id.disk == "sdb"
    sel = recording.read([path], recording.Filters(keys=("100",), layer="block"))
    assert {s.id.op for s in sel.series} == {"read", "write"}
    for argv, what in ((["--op", "discard"], "--op discard"), (["--stage", "latency"], "--stage latency"),
                       (["--key", "nginx"], "--key nginx"), (["--disk", "sdz"], "--disk sdz"),
                       (["--layer", "syscall"], "--layer syscall")):
        rc, out, err = run(capsys, "report", path, *argv)
        assert rc == 2 and out == "" and err.startswith(f"ioltrace: {what}: not in the recordings")
        assert err.count("\n") == 1


def syscall_rows(a, b, key, name, op, lat, errnos):
    """Syscall-layer rows as the syscall layer writes them: disk "*", op the
    syscall, stage "latency", counters ios, bytes, errors, latency_sum_ns, errno:NAME."""
    base = (rec.iso(a), rec.iso(b), "process", key, name, "*", op, "syscall")
    rows = [CsvRow(*base, "ios", "", "", len(lat)), CsvRow(*base, "bytes", "", "", 512 * len(lat)),
            CsvRow(*base, "errors", "", "", sum(errnos.values())),
            CsvRow(*base, "latency_sum_ns", "", "", int(lat.sum()))]
    rows += [CsvRow(*base, f"errno:{e}", "", "", n) for e, n in errnos.items()]
    for row in rec.rows([group(key, name, lat)], a, b):
        if row.stage == "device":
            rows.append(row._replace(disk="*", op=op, layer="syscall", stage="latency"))
    return rows


def test_syscall_layer_reports_generically(tmp_path, capsys):
    blk, lat = samples(16, 1000), samples(17, 3000, 4000)
    path = write(tmp_path / "r.csv", [([group("100", "fio", blk)], T0, T0 + 2,
                                       syscall_rows(T0, T0 + 2, "100", "fio", "pread64", lat, {"EAGAIN": 3}))])
    sel = recording.read([path], recording.Filters(layer="syscall"))
    [s] = sel.series
    assert (s.id.op, s.id.disk, s.layer, list(s.hists)) == ("pread64", "*", "syscall", ["latency"])
    d = stats.describe(s, "latency", sel.seconds)
    check_figures(d, lat, 2.0, size=512)
    rc, out, err = run(capsys, "report", path, "--op", "pread64")
    assert rc == 0, err
    assert "pread64" in out and "errors EAGAIN=3" in out
    assert "count 3000  calls/s 1500.0" in out
    # Both layers, side by side, by default.
    doc = json.loads(run(capsys, "report", path, "--format", "json")[1])
    assert sorted((k["layer"], k["op"], *k["latency"]) for k in doc["keys"]) == [
        ("block", "read", "queue", "device", "total"), ("syscall", "pread64", "latency")]
    sc = next(k for k in doc["keys"] if k["layer"] == "syscall")
    assert sc["errnos"] == {"EAGAIN": 3} and sc["latency"]["latency"]["mean_exact"]


def test_format_1_recording_is_read_as_block(tmp_path, capsys):
    d = samples(18, 2000)
    v2 = write(tmp_path / "v2.csv", [([group("100", "fio", d)], T0, T0 + 4)])
    with open(v2, newline="") as f:
        rows = list(csv.reader(f.readlines()[1:]))
    layer = rows[0].index("layer")
    v1 = tmp_path / "v1.csv"
    with open(v1, "w", newline="") as f:
        f.write(rec.PREAMBLE.replace(f"{rec.MAGIC} {rec.FORMAT_VERSION} ", f"{rec.MAGIC} 1 "))
        csv.writer(f, lineterminator="\r\n").writerows([r[:layer] + r[layer + 1:] for r in rows])
    docs = [json.loads(run(capsys, "report", p, "--format", "json")[1]) for p in (v1, v2)]
    for doc in docs:
        del doc["sources"]
    assert docs[0] == docs[1] and docs[0]["keys"][0]["layer"] == "block"


def test_csv_format(tmp_path, capsys):
    d = samples(19, 4000)
    path = one_file(tmp_path / "r.csv", d, seconds=4)
    rc, out, _ = run(capsys, "report", path, "--format", "csv", "--stage", "device", "--interval", "2")
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert rc == 0 and [r["window_start_s"] for r in rows] == ["", "0", "2"]
    whole = rows[0]
    assert (whole["key"], whole["stage"], int(whole["ios"]), int(whole["count"])) == ("100", "device", 4000, 4000)
    assert float(whole["mean_ns"]) == pytest.approx(d.mean(), abs=0.05)
    assert float(whole["p99_ns"]) == pytest.approx(nearest_rank(d, 99), rel=BOUND)


def test_kernel_counters_footer(tmp_path, capsys):
    path = write(tmp_path / "r.csv", [([group("1", "x", samples(20, 10))], T0, T0 + 1)],
                 counters={"unmatched": 2, "issue_no_start": 5, "dropped": 0})
    out = run(capsys, "report", path)[1]
    assert out.splitlines()[-1] == "kernel counters: unmatched=2"


def test_live_group_as_json_key():
    d = samples(21, 300)
    g = group("100", "fio", d)
    key = jexport.key_dict(recording.from_group(g), 1.0, ("device",))
    assert (key["key"], key["disk"], key["ios"]) == ("100", "loop0", 300)
    assert key["latency"]["device"]["mean_ns"] == pytest.approx(d.mean())
