"""export/csv.py: recordings written by CsvWriter, read back with Python's csv
module (ground truth) and with export.csv.read; counts checked against the raw samples."""

import csv
import errno
import os
import stat
from collections import Counter
from datetime import datetime

import numpy as np
import pytest

from ioltrace import hist, layout
from ioltrace.errors import BadInput
from ioltrace.export import csv as rec
from ioltrace.records import CsvRow, Group, GroupId

T0, T1, T2 = 1_700_000_000.25, 1_700_000_001.25, 1_700_000_002.5
NAMES = ["plain", "with, comma", 'with "quotes"', "with\nnewline", "  spaces  ", "ünïcödé", ""]
COUNTER_FIELDS = {"ios": "ios", "bytes": "bytes", "errors": "errors",
                  "queue_sum_ns": "queue_ns", "device_sum_ns": "device_ns"}


def make_group(key, name, seed, n=500, errnos=None):
    rng = np.random.default_rng(seed)
    q = rng.integers(1, 10**6, n)
    d = rng.lognormal(12, 1.5, n).astype(np.int64)
    errnos = {errno.ENOSPC: 2, errno.EIO: 1} if errnos is None else errnos
    gid = GroupId("process", key, name, "nvme0n1", "write")
    g = Group(gid, n, 4096 * n, sum(errnos.values()), int(q.sum()), int(d.sum()),
              {"queue": hist.from_samples(q), "device": hist.from_samples(d)}, errnos)
    return g, {"queue": q, "device": d}


def groups(seed=0):
    out = [make_group(str(100 + i), name, seed + i) for i, name in enumerate(NAMES)]
    return [g for g, _ in out], {g.id.key: s for g, s in out}


def read_with_csv_module(path):
    with open(path, newline="", encoding="utf-8") as f:
        first = f.readline()
        assert first.startswith("#")
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def write(path, intervals):
    w = rec.CsvWriter(str(path))
    try:
        for gs, a, b, counters in intervals:
            w.write_interval(gs, a, b, counters)
    finally:
        w.close()


def test_one_interval(tmp_path):
    gs, raw = groups()
    counters = {"dropped": 3, "unmatched": 0}
    path = tmp_path / "r.csv"
    write(path, [(gs, T0, T1, counters)])
    header, rows = read_with_csv_module(path)
    assert header == list(CsvRow._fields)
    assert all(len(r) == len(header) for r in rows)
    assert {(datetime.fromisoformat(r["interval_start"]).timestamp(),
             datetime.fromisoformat(r["interval_end"]).timestamp()) for r in rows} == {(T0, T1)}
    by_key = {g.id.key: g for g in gs}
    for key, g in by_key.items():
        mine = [r for r in rows if r["key_kind"] == "process" and r["key"] == key]
        assert {(r["name"], r["disk"], r["op"]) for r in mine} == {(g.id.name, "nvme0n1", "write")}
        for stage, x in raw[key].items():
            buckets = [r for r in mine if r["stage"] == stage]
            assert sum(int(r["count"]) for r in buckets) == len(x) == g.ios
            for r in buckets:  # each row holds exactly the samples inside its bounds
                lo, hi = int(r["bucket_low_ns"]), float(r["bucket_high_ns"])
                assert int(r["count"]) == int(((x >= lo) & (x < hi)).sum())
        singles = {r["stage"]: r for r in mine if r["stage"] not in raw[key]}
        assert set(singles) == set(COUNTER_FIELDS) | {"errno:ENOSPC", "errno:EIO"}
        assert errno.errorcode[28] == "ENOSPC"
        assert int(singles["errno:ENOSPC"]["count"]) == 2 and int(singles["errno:EIO"]["count"]) == 1
        for stage, field in COUNTER_FIELDS.items():
            assert int(singles[stage]["count"]) == getattr(g, field)
            assert singles[stage]["bucket_low_ns"] == singles[stage]["bucket_high_ns"] == ""
    kernel = {r["key"]: int(r["count"]) for r in rows if r["key_kind"] == "kernel"}
    assert kernel == counters
    # The module's own reader sees the same rows, count as int.
    back = rec.read(path)
    assert [r._asdict() for r in back] == [dict(r, count=int(r["count"])) for r in rows]
    assert {r.name for r in back if r.key_kind == "process"} == set(NAMES)


def test_carriage_return_in_name_round_trips(tmp_path):
    g, _ = make_group("7", "bad\rname", 1)
    write(tmp_path / "r.csv", [([g], T0, T1, None)])
    assert {r.name for r in rec.read(tmp_path / "r.csv")} == {"bad\rname"}


def test_two_intervals_sum_to_both_sample_sets(tmp_path):
    gs1, raw1 = groups(seed=0)
    gs2, raw2 = groups(seed=100)
    path = tmp_path / "r.csv"
    write(path, [(gs1, T0, T1, {"dropped": 1}), (gs2, T1, T2, {"dropped": 2})])
    _, rows = read_with_csv_module(path)
    starts = [datetime.fromisoformat(r["interval_start"]).timestamp() for r in rows]
    assert starts == sorted(starts) and set(starts) == {T0, T1}
    sums = {}
    for r in rows:
        if r["bucket_low_ns"]:
            arr = sums.setdefault((r["key"], r["stage"]), hist.empty())
            arr[layout.bucket_of(int(r["bucket_low_ns"]))] += int(r["count"])
    assert {k for k, _ in sums} == set(raw1)
    for (key, stage), got in sums.items():
        both = np.concatenate([raw1[key][stage], raw2[key][stage]])
        assert np.array_equal(got, hist.from_samples(both))
        assert int(got.sum()) == len(both)
    assert sum(int(r["count"]) for r in rows if r["key"] == "dropped") == 3
    for t, gs in ((T0, gs1), (T1, gs2)):
        ios = {r["key"]: int(r["count"]) for r, s in zip(rows, starts) if s == t and r["stage"] == "ios"}
        assert ios == {g.id.key: g.ios for g in gs}


def test_file_not_world_writable_with_umask_0(tmp_path):
    old = os.umask(0)
    try:
        write(tmp_path / "r.csv", [([], T0, T1, None)])
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "r.csv").st_mode)
    assert not mode & stat.S_IWOTH, oct(mode)


@pytest.mark.parametrize("where", ["directory", "missing_parent"])
def test_writer_on_unwritable_path(tmp_path, where):
    target = tmp_path / "adir" if where == "directory" else tmp_path / "nope" / "x.csv"
    if where == "directory":
        target.mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(BadInput) as e:
        rec.CsvWriter(str(target))
    msg = str(e.value)
    assert "\n" not in msg and str(target) in msg
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def _valid(tmp_path):
    gs, _ = groups()
    p = tmp_path / "ok.csv"
    write(p, [(gs[:2], T0, T1, {"dropped": 123})])
    return p.read_bytes()


def _last_line_no(data):
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


BAD = {
    # name -> (bytes of the file from a valid recording, line the error must name)
    "empty": lambda ok: (b"", 1),
    "not_ioltrace": lambda ok: (b"a,b,c\n1,2,3\n", 1),
    "layout": lambda ok: (ok.replace(b"sub_bits=%d" % layout.SUB_BITS, b"sub_bits=4", 1), 1),
    "header": lambda ok: (ok.replace(b"count\r\n", b"n\r\n", 1), 2),
    "no_header": lambda ok: (ok.split(b"\n", 1)[0] + b"\n", 2),
    "count_not_int": lambda ok: (ok[:-2] + b"x\n", _last_line_no(ok)),
}


@pytest.mark.parametrize("case", BAD)
def test_read_rejects_with_file_and_line(tmp_path, case):
    data, line = BAD[case](_valid(tmp_path))
    p = tmp_path / "bad.csv"
    p.write_bytes(data)
    with pytest.raises(BadInput) as e:
        rec.read(p)
    msg = str(e.value)
    assert f"{p}:{line}:" in msg, msg
    assert "\n" not in msg


def test_read_missing_file(tmp_path):
    p = tmp_path / "missing.csv"
    with pytest.raises(BadInput) as e:
        rec.read(p)
    assert str(p) in str(e.value) and os.strerror(errno.ENOENT).lower() in str(e.value)


def test_read_never_trusts_a_row_cut_inside_count(tmp_path):
    ok = _valid(tmp_path)
    last = ok[:-2].rsplit(b"\n", 1)[1]  # rows end with RFC 4180's \r\n
    assert last.endswith(b",123")
    p = tmp_path / "cut.csv"
    p.write_bytes(ok[:-3])  # the line end and the last digit of the count
    rows = rec.read(p)
    # "12" looks like a count; the row and its whole interval are left out.
    cut_interval = last.decode().split(",")[:2]
    assert rows.cut and all([r.interval_start, r.interval_end] != cut_interval for r in rows)
