"""--json on hist, top and run (export/json.py LinesWriter, commands/common.py):
every line parses with json.loads and is the report schema's KEY for one
key and interval; odd names round-trip; each interval is one write() of
whole lines; the file is checked before tracing; the same interval written
as CSV and read back as a report gives the same KEY dicts; with --json -
stdout holds nothing but JSON lines (a fake tracer stands in for the kernel)."""

import argparse
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from ioltrace import cli, hist, layout, loader, maps, recording
from ioltrace.commands import common, top
from ioltrace.errors import BadInput
from ioltrace.export import csv as rec
from ioltrace.export import json as jexport
from ioltrace.records import Group, GroupId, Key, Snapshot, SysKey, SysTotals, Totals

NO_DIR = "/nonexistent-dir"
T0, T1 = 1_700_000_000.0, 1_700_000_002.5
SDA = 8 << 20
W = layout.OPS.index("write")
PW = layout.SYSCALLS.index("pwrite64")


def block_group(name, key="100", ios=10):
    q, d = hist.from_samples(np.arange(ios) * 10 + 5), hist.from_samples(np.arange(ios) * 1000 + 7000)
    return Group(GroupId("process", key, name, "sda", "write"), ios, 4096 * (ios - 1), 1, 45 * ios,
                 7000 * ios + 1000 * ios * (ios - 1) // 2, {"queue": q, "device": d}, {5: 1})


def sys_group(name, key="100", calls=4):
    lat = hist.from_samples(np.full(calls, 3000))
    return Group(GroupId("process", key, name, "*", "pwrite64"), calls, 512 * calls, 0, 0, 0,
                 {"latency": lat}, {}, {"latency": 3000 * calls})


def lines_of(text):
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def test_a_line_per_key_with_the_report_schema_and_a_kernel_line():
    groups = [(block_group("dd"), "block"), (block_group("fio", "101", 3), "block"), (sys_group("dd"), "syscall")]
    series = [recording.from_group(g, layer) for g, layer in groups]
    counters = dict.fromkeys(layout.COUNTERS, 0)
    counters["dropped"] = 2
    text = jexport.interval_lines(series, T0, T1, counters)
    lines = lines_of(text)
    assert len(lines) == len(groups) + 1
    for d, s in zip(lines, series):
        want = jexport.key_dict(s, T1 - T0)
        assert d.pop("interval_start") == rec.iso(T0) and d.pop("interval_end") == rec.iso(T1)
        assert d == json.loads(json.dumps(want))
        assert "windows" not in d
    dd, fio, sc = lines[:3]
    assert (dd["ios"], dd["bytes"], dd["errors"], dd["errnos"]) == (10, 9 * 4096, 1, {"EIO": 1})
    assert dd["latency"]["device"]["mean_exact"] and dd["latency"]["device"]["count"] == 10
    assert sum(c for _, _, c in dd["latency"]["queue"]["buckets"]) == 10
    assert (sc["layer"], sc["op"], sc["disk"], sc["ios"], sc["bytes"]) == ("syscall", "pwrite64", "*", 4, 2048)
    assert sc["latency"]["latency"]["mean_ns"] == 3000 and sc["seconds"] == 2.5
    assert lines[-1] == {"interval_start": rec.iso(T0), "interval_end": rec.iso(T1), "kind": "kernel",
                         "seconds": 2.5, "kernel_counters": counters}
    assert text.isascii()


ODD = [
    'with "quotes"', "back\\slash\\", "new\nline", "tab\tand\rcr", "ünïcødé 日本 🚀", "{braces},=comma",
    maps.comm_text(b"q\xff\xfe\x00junk"),       # a comm: non-UTF-8 bytes already read as \xNN
]


@pytest.mark.parametrize("name", ODD)
def test_odd_names_round_trip(name):
    text = jexport.interval_lines([recording.from_group(block_group(name))], T0, T1)
    assert text.count("\n") == 2 and text.isascii()
    assert lines_of(text)[0]["name"] == name


@pytest.mark.parametrize("raw,shown", [
    (os.fsdecode(b"/bad\xff\xfebytes"), "/bad\\xff\\xfebytes"),    # a cgroup directory that is not UTF-8
    ("/lone\ud800", "/lone\\ud800"),
])
def test_names_that_are_not_unicode_become_escapes(raw, shown):
    g = block_group(raw)
    g = g._replace(id=GroupId("cgroup-v1", raw, raw, "sda", "write"))
    d = lines_of(jexport.interval_lines([recording.from_group(g)], T0, T1))[0]
    assert d["name"] == d["key"] == shown
    json.dumps(d).encode("utf-8")


def test_each_interval_is_one_write_of_whole_lines(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    w = jexport.LinesWriter(str(path))
    assert path.exists() and path.read_bytes() == b""     # made before any interval
    writes = []
    real = os.write

    def counting(fd, data):
        if fd == w.fd:
            writes.append(bytes(data))
        return real(fd, data)

    monkeypatch.setattr(os, "write", counting)
    for i in range(3):
        w.write_interval([recording.from_group(block_group(f"p{j}", str(j))) for j in range(5)], T0 + i, T0 + i + 1)
    w.close()
    assert len(writes) == 3 and all(x.endswith(b"\n") and x.count(b"\n") == 6 for x in writes)
    lines = lines_of(path.read_text())
    assert len(lines) == 18 and [d["kind"] for d in lines].count("kernel") == 3


@pytest.mark.parametrize("path", [f"{NO_DIR}/x.jsonl", "{dir}"])
def test_bad_path_is_bad_input(path, tmp_path):
    path = path.replace("{dir}", str(tmp_path))
    with pytest.raises(BadInput) as e:
        jexport.LinesWriter(path)
    assert f"--json {path}" in str(e.value)


# -- the command line --------------------------------------------------------------

@pytest.fixture
def no_tracing(monkeypatch):
    def tracer(*a, **kw):
        pytest.fail("tracing started: validation let a bad command line through")
    monkeypatch.setattr(loader, "Tracer", tracer)


@pytest.mark.parametrize("argv", [
    ["hist", "--json", "{bad}"],
    ["hist", "--json", "{dir}"],
    ["hist", "--csv", "{dir}/ok.csv", "--json", "{bad}"],
    ["top", "-b", "--csv", "{dir}/ok.csv", "--json", "{bad}"],
    ["run", "--csv", "{dir}/ok.csv", "--json", "{bad}", "--", "true"],
])
def test_unwritable_json_is_one_line_and_leaves_no_file(argv, tmp_path, capsys, no_tracing):
    d = tmp_path / "d"
    d.mkdir()
    argv = [a.replace("{bad}", f"{NO_DIR}/x.jsonl").replace("{dir}", str(d)) for a in argv]
    assert cli.main(argv) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and "Traceback" not in cap.err
    lines = cap.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ioltrace: --json "), cap.err
    assert list(d.iterdir()) == [] and not os.path.exists(NO_DIR)


def test_help_mentions_json():
    parser = cli.build_parser()
    for cmd in ("hist", "top", "run"):
        args = parser.parse_args([cmd, "--json", "-"] + (["--", "true"] if cmd == "run" else []))
        assert args.json == "-"


# -- JSON and CSV of the same interval agree ---------------------------------------

class FakeResolver:
    def disk_name(self, dev):
        return {SDA: "sda"}.get(dev, f"{dev >> 20}:{dev & 0xFFFFF}")

    def comm(self, pid, fallback=""):
        return fallback

    def cgroup_path(self, cgid):
        return f"/cg{cgid}"

    def cgroup_v1(self, pid, controller="blkio"):
        return None


def fake_delta():
    """A Snapshot delta with two processes' block I/O and one's pwrite64 calls."""
    totals, hists, errors = {}, {}, {}
    for pid, comm, n in ((100, 'd"d\n', 10), (101, "fio", 30)):
        k = Key(5, pid, 0, SDA, W)
        q, d = np.arange(n) * 7 + 3, np.arange(n) * 900 + 5000
        totals[k] = Totals(n, 4096 * n, 0, int(q.sum()), int(d.sum()), comm)
        hists[(k, layout.STAGE_QUEUE)] = hist.from_samples(q)
        hists[(k, layout.STAGE_DEVICE)] = hist.from_samples(d)
    sk = SysKey(5, 100, 0, PW)
    lat = np.arange(6) * 100 + 2000
    counters = dict.fromkeys(layout.COUNTERS + layout.SC_COUNTERS, 0)
    return Snapshot(0, totals, hists, errors, counters, {sk: SysTotals(6, 6 * 512, 1, int(lat.sum()), 'd"d\n')},
                    {sk: hist.from_samples(lat)}, {(sk, 22): 1})


def test_json_lines_equal_the_report_of_the_same_csv_interval(tmp_path):
    args = top.Options(by="process", op=None, layer="both", syscalls=layout.DEFAULT_SYSCALLS)
    delta, res = fake_delta(), FakeResolver()
    csv_path, json_path = tmp_path / "a.csv", tmp_path / "a.jsonl"
    cw, jw = rec.CsvWriter(str(csv_path)), jexport.LinesWriter(str(json_path))
    common.write_csv(cw, delta, args, res, T0, T1)
    common.write_json(jw, delta, args, res, T0, T1)
    cw.close()
    jw.close()
    # A report splits disks only when asked to (--disk); JSON lines, like
    # CSV rows, always do.
    report = {}
    for f in (recording.Filters(layer="block", disk="sda"), recording.Filters(layer="syscall")):
        sel = recording.read([str(csv_path)], f)
        report.update({(s.id.key, s.id.disk, s.id.op, s.layer): json.loads(json.dumps(jexport.key_dict(s, sel.seconds)))
                       for s in sel.series})
    lines = lines_of(json_path.read_text())
    got = {}
    for d in lines[:-1]:
        del d["interval_start"], d["interval_end"]
        got[(d["key"], d["disk"], d["op"], d["layer"])] = d
    assert got == report and len(got) == 3
    assert lines[-1]["kernel_counters"] == sel.counters


@pytest.mark.parametrize("layer", ["block", "syscall", "both"])
def test_csv_kernel_rows_carry_the_layer_that_counts_them(tmp_path, layer):
    """A counter row's layer is the layer whose program counts it, whatever
    --layer chose; the syscall layer alone records no block row."""
    args = top.Options(by="process", op=None, layer=layer, syscalls=layout.DEFAULT_SYSCALLS)
    delta = fake_delta()
    traced = layout.COUNTERS * (layer != "syscall") + layout.SC_COUNTERS * (layer != "block")
    delta = delta._replace(counters={n: i + 1 for i, n in enumerate(traced)})
    path = tmp_path / "k.csv"
    w = rec.CsvWriter(str(path))
    common.write_csv(w, delta, args, FakeResolver(), T0, T1)
    w.close()
    kernel = {r.key: r.layer for r in rec.read(path) if r.key_kind == "kernel"}
    assert kernel == {n: "syscall" if n in layout.SC_COUNTERS else "block" for n in traced}
    assert {r.layer for r in rec.read(path)} == {"block", "syscall"} if layer == "both" else {layer}


# -- --json - on a fake tracer: stdout is JSON only ---------------------------------

class FakeTracer:
    """Snapshots that grow by one 4 KiB write of pid 4194305 per call: above
    PID_MAX_LIMIT (2^22), so no process of the machine renames it."""

    start_tp = "block_io_start"
    headers = SimpleNamespace(kind="fake", detail="fake")
    compile_s = 0.0

    def __init__(self, opts, verbose=False, layers=("block",), syscalls=None, keep_exited=None, on_fold=()):
        self.n = 0

    def describe(self):
        return "probes: fake"

    def snapshot(self):
        self.n += 1
        k = Key(5, 4_194_305, 0, SDA, W)
        d = np.full(self.n, 5000)
        return Snapshot(self.n, {k: Totals(self.n, 4096 * self.n, 0, self.n, int(d.sum()), "fake")},
                        {(k, layout.STAGE_DEVICE): hist.from_samples(d),
                         (k, layout.STAGE_QUEUE): hist.from_samples(np.ones(self.n))},
                        {}, dict.fromkeys(layout.COUNTERS, 0))

    def close(self):
        pass


@pytest.mark.parametrize("argv", [
    ["hist", "--by", "process", "--json", "-", "0.05", "3"],
    ["top", "--json", "-", "-n", "3", "0.05"],
])
def test_json_to_stdout_prints_nothing_else(argv, monkeypatch, capfd):
    monkeypatch.setattr(loader, "Tracer", FakeTracer)
    assert cli.main(argv) == 0
    out, _ = capfd.readouterr()
    lines = lines_of(out)
    assert [d["kind"] for d in lines] == ["process", "kernel"] * 3
    assert [d["ios"] for d in lines[::2]] == [1, 1, 1]
    assert all(d["name"] == "fake" and d["bytes"] == 4096 for d in lines[::2])
