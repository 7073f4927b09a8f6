"""Odd names reach every output safely.

Comms and cgroup paths with spaces, quotes, commas, backslashes, newlines and
carriage returns, tabs, bidi and zero-width characters, wide (CJK, emoji)
characters, non-UTF-8 bytes and 255-byte lengths go through one hand-built
Snapshot into: the hist and top tables (one line per row, printable, within
the width), CSV recordings (back through Python's csv reader and
export.csv.read), JSON (json.loads of live --json lines and of `report
--format json`) and the Prometheus exposition (label escaping, read back by
an independent parser, and `promtool check metrics` when installed; under
CI=true promtool must be there).

Non-UTF-8 bytes arrive two ways: the kernel's comm is bytes, which
maps.comm_text turns into text with \\xNN escapes; a cgroup directory name
comes from os.scandir as a str holding lone surrogates (os.fsdecode). The
project's spelling of an undecodable byte in output is \\xNN
(maps.comm_text, export.json._clean, export.prometheus.escape); `spelled`
below is that rule.
"""

import csv
import errno
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from ioltrace import cli, group, hist, layout, maps, recording
from ioltrace.export import csv as rec
from ioltrace.export import json as jexport
from ioltrace.export import prometheus as P
from ioltrace.records import Key, Snapshot, Totals
from ioltrace import fmt
from ioltrace.views import hist as hview
from ioltrace.views import top as tview

from .test_prometheus import parse as parse_exposition  # the one exposition reader

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SDA = 8 << 20
R, W = layout.OPS.index("read"), layout.OPS.index("write")
T0 = 1_700_000_000.5

# pid -> comm as the kernel hands it over (bytes, NUL-padded to 16 in the map).
RAW_COMMS = {
    101: b"plain",
    102: b"with space",
    103: b'q"uote',
    104: b"it's",
    105: b"a,b,c",
    106: b"new\nline",
    107: b"cr\rx\r\n",
    108: b"tab\tx",
    109: b"back\\slash\\",
    110: b"\xff\xfe\x80bad",             # not UTF-8
    111: b"caf\xc3\xa9",                 # UTF-8
    112: "日本語".encode(),               # wide
    113: b"x" * 15,                      # the kernel's longest comm
    114: b"c" * 255,                     # longer than any kernel comm: views must cope anyway
    115: "é".encode() * 127 + b"\xff",   # 255 bytes, the last one undecodable
    116: b"",                            # empty (exited before the name was read)
    117: b"=}{,\"\\\n",
}
COMMS = {pid: maps.comm_text(raw.ljust(16, b"\0") if len(raw) < 16 else raw) for pid, raw in RAW_COMMS.items()}

# cgroup id -> path as the resolver returns it (os.fsdecode for non-UTF-8 names).
CGROUPS = {
    201: "/with space",
    202: '/q"uote',
    203: "/it's",
    204: "/a,b,c",
    205: "/new\nline",
    206: "/cr\rlf\r\n",
    207: "/tab\tand\vvt",
    208: "/back\\slash\\",
    209: os.fsdecode(b"/bad\xff\xfebytes"),
    210: "/ünïcødé/日本語/🚀",
    211: "/" + "a" * 255,                                  # NAME_MAX
    212: "/" + "日" * 85,                                  # 255 bytes, 170 columns
    213: os.fsdecode(b"/" + b"\xff" * 255),                # 255 undecodable bytes
    214: "/x/" + "b" * 255 + "/" + "c" * 255,
    215: "/bidi\u202eoverride\u200bzero-width",
    216: "/{braces}=comma,",
}


def spelled(text):
    """The project's text for a name: undecodable bytes (lone surrogates from
    os.fsdecode) as \\xNN, like maps.comm_text."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def has_surrogates(text):
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def printable(text):
    """What the tables show: unprintable characters as '?' (fmt.truncate)."""
    return "".join(c if c.isprintable() else "?" for c in text)


class FakeResolver:
    def disk_name(self, dev):
        return "sda"

    def cgroup_path(self, cgid):
        return CGROUPS.get(cgid, f"cgroup:{cgid}")

    def comm(self, pid, fallback=""):
        return fallback     # the process is gone: the kernel's comm is what is left

    def cgroup_v1(self, pid):
        return None


def snapshot():
    """One key per comm (cgroup 1, reads) and one per cgroup (pid 1000+, writes)."""
    rng = np.random.default_rng(7)
    totals, hists, errors = {}, {}, {}
    keys = [(Key(1, pid, pid, SDA, R), comm) for pid, comm in COMMS.items()]
    keys += [(Key(cg, 1000 + cg, 1000 + cg, SDA, W), "w") for cg in CGROUPS]
    for i, (key, comm) in enumerate(keys):
        q = rng.integers(100, 10_000, 5 + i)
        d = rng.lognormal(11, 1, 5 + i).astype(np.int64) + 1
        errs = 1 if i % 5 == 0 else 0
        totals[key] = Totals(len(d), 4096 * (len(d) - errs), errs, int(q.sum()), int(d.sum()), comm)
        hists[(key, layout.STAGE_QUEUE)] = hist.from_samples(q)
        hists[(key, layout.STAGE_DEVICE)] = hist.from_samples(d)
        if errs:
            errors[(key, errno.ENOSPC)] = errs
    return Snapshot(0, totals, hists, errors, dict.fromkeys(layout.COUNTERS, 0))


def groups(kind):
    return group.by_key(snapshot(), kind, FakeResolver())


def names_of(kind):
    """key -> name the groups carry (before any output)."""
    if kind in ("process", "thread"):
        return {**COMMS, **{1000 + cg: "w" for cg in CGROUPS}}
    return {1: "cgroup:1", **CGROUPS}


KINDS = ("process", "thread", "cgroup")


# ---------------------------------------------------------------- tables

def check_lines(lines, width=None):
    for line in lines:
        assert "\n" not in line and "\r" not in line, repr(line)
        assert all(c.isprintable() for c in line), repr(line)
        line.encode("utf-8")        # stdout is strict UTF-8
        if width is not None:
            assert fmt.columns(line) <= width, (fmt.columns(line), width, line)


@pytest.mark.parametrize("kind", KINDS)
def test_hist_view_one_title_line_per_histogram(kind):
    gs = groups(kind)
    lines = hview.render(gs, ["queue", "device"], 1.0)
    check_lines(lines)
    titles = [line for line in lines if line.endswith(" time")]
    assert len(titles) == 2 * len(gs)
    check_lines(titles, 80)
    names = names_of(kind)
    for g, (tq, td) in zip(gs, zip(titles[::2], titles[1::2])):
        shown = printable(names[int(g.id.key)])
        # The title keeps the end of the name (where cgroup names differ).
        tail = shown[-8:]
        assert tail in tq and tail in td, (shown, tq)
        assert tq.endswith("queue time") and td.endswith("device time")
        if kind == "process":
            assert tq.startswith(f"PID {g.id.key} (")


def top_rows(kind):
    gs = group.by_key(snapshot(), kind, FakeResolver(), split_disk=False)
    controls = (lambda key, name: "weight 100") if kind == "cgroup" else None
    return tview.rows(gs, 1.0, controls), controls is not None


@pytest.mark.parametrize("width", [80, 100, 132, 400])
@pytest.mark.parametrize("kind", KINDS)
def test_top_table_one_line_per_row_within_width(kind, width):
    rows, with_controls = top_rows(kind)
    lines = tview.table_lines(rows, width=width, with_controls=with_controls)
    assert len(lines) == len(rows) + 1
    check_lines(lines, width)
    names = names_of(kind)
    for r, line in zip(rows, lines[1:]):
        shown = printable(names[int(r.key)])
        name_cell = fmt.truncate(shown, 10 if width <= 80 else 30)
        # The end of the name is on its row; wide names may lose a column to the ellipsis.
        assert name_cell[-4:] in line or not shown, (shown, line)
        if not with_controls:
            assert line.split()[0] == r.key


@pytest.mark.parametrize("width", [40, 60])
@pytest.mark.parametrize("kind", ["process", "cgroup"])
def test_top_table_narrow_width(kind, width):
    """--width below the fixed columns (about 70): lines are cut at `width`.
    ASCII names here; wide ones below."""
    rows, with_controls = top_rows(kind)
    ascii_rows = [r for r in rows if r.name.isascii()]
    lines = tview.table_lines(ascii_rows, width=width, with_controls=with_controls)
    assert len(lines) == len(ascii_rows) + 1
    check_lines(lines, width)


@pytest.mark.parametrize("width", [40, 60])
def test_top_table_narrow_width_wide_names(width):
    rows, _ = top_rows("cgroup")
    wide = [r for r in rows if fmt.columns(r.name) != len(r.name)]
    assert wide
    check_lines(tview.table_lines(wide, width=width, with_controls=True), width)


def test_top_header_lines_are_single_lines():
    rows, _ = top_rows("process")
    check_lines(tview.header_lines(rows, {"dropped": 1}, "12:00:00", 1.0, "process", "bytes"), 80)


# ---------------------------------------------------------------- CSV

def write_csv(path, kind, intervals=2):
    w = rec.CsvWriter(str(path))
    try:
        for i in range(intervals):
            w.write_interval(groups(kind), T0 + i, T0 + i + 1, {"dropped": 0})
    finally:
        w.close()
    return str(path)


def csv_module_rows(path):
    with open(path, newline="", encoding="utf-8") as f:     # strict: the file must be UTF-8
        assert f.readline().startswith(rec.MAGIC)
        rows = list(csv.reader(f))
    header = rows[0]
    assert header == rec.HEADER
    for r in rows[1:]:
        assert len(r) == len(header), r
    return [dict(zip(header, r)) for r in rows[1:]]


def plain_names(kind):
    return {k: v for k, v in names_of(kind).items() if not has_surrogates(v)}


@pytest.mark.parametrize("kind", KINDS)
def test_csv_round_trip_through_csv_module_and_reader(kind, tmp_path):
    path = write_csv(tmp_path / "odd.csv", kind)
    by_csv = csv_module_rows(path)
    by_reader = rec.read(path)
    assert len(by_csv) == len(by_reader)
    got_csv = {int(r["key"]): r["name"] for r in by_csv if r["key_kind"] == kind}
    got_reader = {int(r.key): r.name for r in by_reader if r.key_kind == kind}
    names = names_of(kind)
    assert set(got_csv) == set(got_reader) == set(names)
    for k, name in plain_names(kind).items():
        assert got_csv[k] == name, (k, name, got_csv[k])
        assert got_reader[k] == name
    # Every row of every key is there, in both intervals: counts add up.
    ios = {}
    for r in by_reader:
        if r.key_kind == kind and r.stage == "ios":
            ios[int(r.key)] = ios.get(int(r.key), 0) + r.count
    for g in groups(kind):
        assert ios[int(g.id.key)] == 2 * g.ios


@pytest.mark.parametrize("kind", KINDS)
def test_csv_rows_survive_report(kind, tmp_path, capsys):
    """`report --format json` of the recording: names exactly as the reader gave them."""
    path = write_csv(tmp_path / "odd.csv", kind)
    from_reader = {int(r.key): r.name for r in rec.read(path) if r.key_kind == kind}
    assert cli.main(["report", path, "--format", "json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    got = {int(k["key"]): k["name"] for k in doc["keys"]}
    assert got == from_reader


def test_csv_spells_undecodable_bytes_like_the_other_outputs(tmp_path):
    path = write_csv(tmp_path / "odd.csv", "cgroup")
    got = {int(r.key): r.name for r in rec.read(path) if r.key_kind == "cgroup"}
    for k, name in CGROUPS.items():
        if has_surrogates(name):
            assert got[k] == spelled(name), (got[k], spelled(name))


def test_csv_with_undecodable_bytes_is_still_a_valid_recording(tmp_path):
    path = write_csv(tmp_path / "odd.csv", "cgroup")
    csv_module_rows(path)           # strict UTF-8, every row complete
    got = {int(r.key): r.name for r in rec.read(path) if r.key_kind == "cgroup"}
    for k, name in CGROUPS.items():
        if has_surrogates(name):
            assert not has_surrogates(got[k]) and "\\" in got[k]


# ---------------------------------------------------------------- JSON

@pytest.mark.parametrize("kind", KINDS)
def test_json_lines_round_trip(kind):
    series = [recording.from_group(g) for g in groups(kind)]
    text = jexport.interval_lines(series, T0, T0 + 1, {"dropped": 0})
    text.encode("ascii")            # LinesWriter writes it as ASCII
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == len(series) + 2     # one line per key, one kernel line
    docs = [json.loads(line) for line in lines[:-1]]
    names = names_of(kind)
    got = {int(d["key"]): d["name"] for d in docs if d.get("kind") == kind}
    assert set(got) == set(names)
    for k, name in names.items():
        assert got[k] == spelled(name), (k, got[k])
    assert docs[-1]["kind"] == "kernel"


def test_json_document_round_trip(tmp_path):
    path = write_csv(tmp_path / "odd.csv", "process")
    sel = recording.aggregate([recording.load(path)], recording.Filters())
    doc = json.loads(jexport.dumps(jexport.document(sel)))
    got = {int(k["key"]): k["name"] for k in doc["keys"]}
    assert got == {k: spelled(v) for k, v in names_of("process").items()}


# ---------------------------------------------------------------- Prometheus

def ios_by(parsed, metric, label):
    return {dict(k[1])[label]: v for k, v in parsed.items() if k[0] == metric}


def exposition(fmt_, snap=None, resolver=None):
    return P.Exporter(resolver or FakeResolver(), per_process=True).render(snap or snapshot(), fmt_)


@pytest.mark.parametrize("fmt_", [P.TEXT, P.OPENMETRICS])
def test_prometheus_labels_round_trip(fmt_):
    parsed = parse_exposition(exposition(fmt_))
    cg = ios_by(parsed, "ioltrace_cgroup_block_ios_total", "cgroup")
    snap = snapshot()
    for cgid, path in CGROUPS.items():
        want = snap.totals[Key(cgid, 1000 + cgid, 1000 + cgid, SDA, W)].ios
        assert cg[spelled(path)] == want, path
    procs = {(dict(k[1])["pid"], dict(k[1])["comm"]): v for k, v in parsed.items()
             if k[0] == "ioltrace_process_block_ios_total"}
    for pid, comm in COMMS.items():
        assert procs[(str(pid), spelled(comm))] == snap.totals[Key(1, pid, pid, SDA, R)].ios


def need_promtool():
    if shutil.which("promtool"):
        return
    if IN_CI:
        pytest.fail("promtool is not installed (Debian package prometheus); CI must have it")
    pytest.skip("promtool is not installed (Debian package prometheus)")


def test_promtool_accepts_odd_names():
    need_promtool()
    p = subprocess.run(["promtool", "check", "metrics"], input=exposition(P.TEXT), capture_output=True, timeout=60)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()


@pytest.mark.parametrize("fmt_", [P.TEXT, P.OPENMETRICS])
def test_prometheus_names_that_spell_alike_are_one_series(fmt_):
    """A cgroup named with byte 0xff and one whose name holds the four
    characters \\xff have the same text in every output: one series, holding
    both cgroups' counts (never the same series twice)."""
    class Twins(FakeResolver):
        def cgroup_path(self, cgid):
            return {1: os.fsdecode(b"/dup\xff"), 2: "/dup\\xff"}[cgid]
    snap = snapshot()
    keys = [Key(1, 500, 500, SDA, W), Key(2, 501, 501, SDA, W)]
    totals = {k: Totals(1, 4096, 0, 1, 9, "x") for k in keys}
    hists = {(k, layout.STAGE_DEVICE): hist.from_samples(np.array([9])) for k in keys}
    got = parse_exposition(exposition(fmt_, snap._replace(totals=totals, hists=hists, errors={}), Twins()))
    assert ios_by(got, "ioltrace_cgroup_block_ios_total", "cgroup") == {"/dup\\xff": 2}
