"""Grouping by two keys (--by cgroup,disk, process,op, disk,op): parsing and
its one-line refusals, top's rows and DISK/OP column, hist titles, CSV
round trips (new recordings and old ones reported by a pair), report's
JSON, and the Prometheus labels of serve --by. The sums are checked against
the samples the Groups and Snapshots were built from."""

import csv
import io
import json

import numpy as np
import pytest

from ioltrace import bykeys, cli, group, hist, layout, recording
from ioltrace.export import csv as rec
from ioltrace.export import prometheus as P
from ioltrace.records import Group, GroupId, Key
from ioltrace.views import hist as hview
from ioltrace.views import report as rview
from ioltrace.views import top as tview

from .recfiles import T0, group as rgroup, ioltrace, samples, write
from .test_prometheus import NVME, SDA, FakeResolver, make_snapshot, parse, raw_samples, value

R, W = layout.OPS.index("read"), layout.OPS.index("write")


# -- parsing -------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("cgroup", ("cgroup", None)),
    ("cgroup,disk", ("cgroup", "disk")),
    ("disk,cgroup", ("cgroup", "disk")),      # owner first, whatever the order typed
    (" process , op ", ("process", "op")),
    ("disk,op", ("disk", "op")),
    ("op,disk", ("disk", "op")),
    ("thread,disk", ("thread", "disk")),
    ("cgroup-v1,op", ("cgroup-v1", "op")),
])
def test_parse(text, want):
    by = bykeys.parse(text, group.KINDS)
    assert tuple(by) == want
    assert bykeys.of(by.text) == by


@pytest.mark.parametrize("text, says", [
    ("disk,disk", "names disk twice"),
    ("op,op", "names op twice"),
    ("nope", "unknown key 'nope'"),
    ("cgroup,nvme0n1", "unknown key 'nvme0n1'"),
    ("cgroup,process", "both say who did the I/O"),
    ("cgroup,disk,op", "at most two"),
    ("op", "op is a second key only"),
    ("cgroup,", "empty key"),
    ("comm,disk", "unknown key 'comm'"),      # comm is an offline key only
])
def test_parse_refuses(text, says):
    with pytest.raises(bykeys.Invalid) as e:
        bykeys.parse(text, group.KINDS)
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("argv, says", [
    (["hist", "--by", "disk,disk"], "names disk twice"),
    (["top", "--by", "cgroup,disk,op"], "at most two"),
    (["hist", "--by", "pid,disk"], "unknown key 'pid'"),
    (["serve", "--by", "thread,disk"], "unknown key 'thread'"),
    (["hist", "--layer", "syscall", "--by", "process,disk"], "the syscall layer knows processes and cgroups, not disks"),
    (["top", "--layer", "both", "--by", "cgroup,disk"], "not disks"),
    (["serve", "--by", "cgroup,disk", "--per-process", "--listen", "none", "--textfile", "x.prom"],
     "--by exports one grouping only"),
    (["report", "x.csv", "--by", "cgroup,cgroup"], "names cgroup twice"),
])
def test_cli_refuses_with_one_line(argv, says, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith("ioltrace: "), err
    assert says in err


def test_syscall_layer_pairs_with_op():
    """The syscall layer has no disk, but op (the syscall) pairs."""
    from ioltrace.commands import common, hist as hcmd

    assert common.chosen_layers(hcmd.Options(layer="syscall", by="cgroup,op")) == ("syscall",)


# -- top ---------------------------------------------------------------------

def _group(key, name, disk, op, n, kind="process", seed=0):
    d = samples(seed, n)
    return Group(GroupId(kind, key, name, disk, op), n, 4096 * n, 0, 0, int(d.sum()),
                 {"device": hist.from_samples(d)}, {})


def test_top_rows_per_key_and_disk():
    groups = [_group("100", "dd", "loop1", "write", 10), _group("100", "dd", "loop1", "read", 5, seed=1),
              _group("100", "dd", "loop2", "write", 7, seed=2), _group("200", "fio", "loop1", "write", 3, seed=3)]
    rows = tview.rows(groups, 1.0, second="disk")
    got = {(r.key, r.second): (r.read_bps, r.write_bps, r.iops) for r in rows}
    assert got == {("100", "loop1"): (5 * 4096, 10 * 4096, 15), ("100", "loop2"): (0, 7 * 4096, 7),
                   ("200", "loop1"): (0, 3 * 4096, 3)}
    # One key's latency is its disk's alone, not the merge of both disks.
    r = next(r for r in rows if (r.key, r.second) == ("100", "loop2"))
    assert r.d_p50 == hist.percentile(hist.from_samples(samples(2, 7)), 50)
    lines = tview.table_lines(tview.sort_rows(rows, "bytes"), width=80, second="disk")
    assert lines[0].split()[:3] == ["ID", "NAME", "DISK"]
    assert lines[1].split()[:3] == ["100", "dd", "loop1"]
    assert all(len(line) <= 80 for line in lines)
    # Without a pair, the same groups are one row per key, no DISK column.
    single = tview.rows(groups, 1.0)
    assert sorted(r.key for r in single) == ["100", "200"]
    assert "DISK" not in tview.table_lines(single)[0]


def test_top_idle_rows_keep_their_second_key():
    state = tview.TopState("bytes", second="op")
    state.update(tview.rows([_group("7", "/a", "*", "read", 4, kind="cgroup"),
                             _group("7", "/a", "*", "write", 2, kind="cgroup")], 1.0, second="op"), [])
    state.update(tview.rows([_group("7", "/a", "*", "write", 1, kind="cgroup")], 1.0, second="op"), [])
    assert sorted((r.key, r.second, r.iops) for r in state.rows) == [("7", "read", 0.0), ("7", "write", 1.0)]
    assert "OP" in tview.batch_lines(state, with_controls=False)[0].split()


# -- hist titles ------------------------------------------------------------

def test_hist_titles_name_both_keys():
    g = _group("7", "/app", "loop3", "*", 4, kind="cgroup")
    assert hview.title(g, "total") == "cgroup /app  disk loop3  total time"
    g = _group("loop3", "loop3", "loop3", "read", 4, kind="disk")
    assert hview.title(g, "device") == "disk loop3  read  device time"
    g = _group("100", "dd", "*", "write", 4)
    assert hview.title(g, "queue") == "PID 100 (dd)  write  queue time"


# -- recordings ---------------------------------------------------------------

def _cells():
    """cgroup x disk x op cells of known samples: {(cgid, disk, op): device samples}."""
    out = {}
    for i, (cg, disk, op) in enumerate([("7", "loop1", "write"), ("7", "loop1", "read"), ("7", "loop2", "write"),
                                        ("8", "loop1", "write"), ("8", "loop2", "write"), ("8", "loop2", "flush")]):
        out[(cg, disk, op)] = samples(10 + i, 20 + 5 * i)
    return out


def _recording(path, by=None):
    cells = _cells()
    w = rec.CsvWriter(str(path), by=by)
    try:
        # Two intervals of the same cells, each with half of every cell's samples.
        for i in (0, 1):
            w.write_interval([rgroup(cg, f"/cg{cg}", d[i::2], disk=disk, op=op, kind="cgroup")
                              for (cg, disk, op), d in cells.items()], T0 + i, T0 + i + 1)
    finally:
        w.close()
    return str(path)


def _want(key_of):
    want = {}
    for cell, d in _cells().items():
        k = key_of(*cell)
        want.setdefault(k, []).append(d)
    return {k: np.concatenate(v) for k, v in want.items()}


@pytest.mark.parametrize("by, key_of", [
    ("cgroup,disk", lambda cg, disk, op: (cg, disk, "*")),
    ("cgroup,op", lambda cg, disk, op: (cg, "*", op)),
    ("disk,op", lambda cg, disk, op: (disk, disk, op)),
])
def test_csv_round_trip_by_pair(tmp_path, by, key_of):
    """A recording made with a pair keeps its first key's rows (every disk
    and op in their columns) and says the pair in its first line, which
    report then groups by; the format version is unchanged."""
    path = _recording(tmp_path / "pair.csv", by=by if not by.startswith("disk") else "cgroup," + by.split(",")[1])
    first = open(path).readline()
    assert first.startswith(f"{rec.MAGIC} {rec.FORMAT_VERSION} ") and " by=cgroup," in first
    sel = recording.read([path], recording.Filters(by=by))
    assert sel.by == by
    want = _want(key_of)
    got = {(s.id.key, s.id.disk, s.id.op): s for s in sel.series}
    assert set(got) == set(want)
    for k, d in want.items():
        s = got[k]
        assert np.array_equal(s.hists["device"], hist.from_samples(d))
        assert s.counters["bytes"] == 4096 * len(d)
        assert s.counters["device_sum_ns"] == int(d.sum())


def test_recorded_pair_is_the_default_grouping(tmp_path):
    path = _recording(tmp_path / "pair.csv", by="cgroup,disk")
    sel = recording.read([path])
    assert sel.by == "cgroup,disk"
    assert {(s.id.key, s.id.disk, s.id.op) for s in sel.series} == set(_want(lambda cg, disk, op: (cg, disk, "*")))
    # Another --by still reads it, as a recording of its first key.
    sel = recording.read([path], recording.Filters(by="cgroup"))
    assert {(s.id.key, s.id.disk, s.id.op) for s in sel.series} == set(_want(lambda cg, disk, op: (cg, "*", op)))


def test_old_recordings_report_by_a_pair(tmp_path):
    """A recording without a by= field (every one before pairs) reads as
    before, and reports by any pair of its kind."""
    path = _recording(tmp_path / "old.csv")
    assert "by=" not in open(path).readline()
    assert recording.read([path]).by == "cgroup"
    sel = recording.read([path], recording.Filters(by="cgroup,disk"))
    want = _want(lambda cg, disk, op: (cg, disk, "*"))
    assert {(s.id.key, s.id.disk, s.id.op): s.counters["bytes"] for s in sel.series} == \
        {k: 4096 * len(d) for k, d in want.items()}
    # Format 1 (no layer column) too.
    v1 = tmp_path / "v1.csv"
    lines = open(path, newline="").read().split("\r\n")
    head = lines[0].replace(f"# ioltrace-csv {rec.FORMAT_VERSION}", "# ioltrace-csv 1").split("\n")
    cols = head[1].split(",")
    at = cols.index("layer")
    body = [",".join(c for i, c in enumerate(line.split(",")) if i != at) for line in lines[1:] if line]
    v1.write_text(head[0] + "\n" + ",".join(c for c in cols if c != "layer") + "\r\n" + "\r\n".join(body) + "\r\n")
    sel1 = recording.read([str(v1)], recording.Filters(by="cgroup,disk"))
    assert {(s.id.key, s.id.disk, s.id.op): s.counters["bytes"] for s in sel1.series} == \
        {k: 4096 * len(d) for k, d in want.items()}


def test_pair_a_recording_cannot_give_is_refused(tmp_path):
    path = write(tmp_path / "disk.csv", [([rgroup("loop1", "loop1", samples(1, 50), kind="disk", disk="loop1")],
                                          T0, T0 + 1)])
    r = ioltrace("report", path, "--by", "cgroup,disk")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "was recorded by disk, which gives only disk" in r.stderr


def test_report_text_and_json_by_pair(tmp_path):
    path = _recording(tmp_path / "pair.csv", by="cgroup,disk")
    r = ioltrace("report", path, "--stage", "device")
    assert r.returncode == 0, r.stderr
    assert "by cgroup,disk" in r.stdout.splitlines()[0]
    assert "cgroup /cg7  disk loop1  device time" in r.stdout
    assert "disks merged" not in r.stdout
    r = ioltrace("report", path, "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["by"] == "cgroup,disk"
    keys = {(k["kind"], k["key"], k["disk"], k["op"]): k["bytes"] for k in doc["keys"]}
    want = _want(lambda cg, disk, op: ("cgroup", cg, disk, "*"))
    assert keys == {k: 4096 * len(d) for k, d in want.items()}


def test_report_csv_has_both_keys_in_their_columns(tmp_path):
    path = _recording(tmp_path / "pair.csv", by="cgroup,disk")
    sel = recording.read([path])
    text = rview.csv_text(sel, ("device",))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(r["kind"], r["key"], r["disk"], r["op"]) for r in rows} == \
        {("cgroup", cg, disk, op) for cg, disk, op in _want(lambda cg, disk, op: (cg, disk, "*"))}


# -- Prometheus (serve --by) -----------------------------------------------

def test_serve_by_cgroup_disk_has_two_labels_summed_over_ops():
    rng = np.random.default_rng(3)
    res = FakeResolver({5: "/db", 6: "/web"})
    entries, want = [], {}
    for cg, pid, dev, op in [(5, 100, SDA, W), (5, 100, SDA, R), (5, 101, NVME, W), (6, 200, SDA, W)]:
        q, d = raw_samples(rng, 100), raw_samples(rng, 100)
        entries.append((Key(cg, pid, pid, dev, op), "w", q, d, {}))
        cell = ("/db" if cg == 5 else "/web", "sda" if dev == SDA else "nvme0n1")
        want.setdefault(cell, []).append(d)
    exp = P.Exporter(res, by=bykeys.By("cgroup", "disk"))
    parsed = parse(exp.render(make_snapshot(entries)))
    names = {k[0] for k in parsed}
    assert not any(n.startswith(("ioltrace_block_", "ioltrace_process_block_")) for n in names)
    for (cg, disk), ds in want.items():
        d = np.concatenate(ds)
        assert value(parsed, "ioltrace_cgroup_block_bytes_total", cgroup=cg, device=disk) == 4096 * len(d)
        assert value(parsed, "ioltrace_cgroup_block_latency_seconds_count", cgroup=cg, device=disk,
                     stage="device") == len(d)
    # No op label anywhere on the cgroup families: two labels, summed over ops.
    assert not any("op" in dict(k[1]) for k in parsed if k[0].startswith("ioltrace_cgroup_block_"))
    assert value(parsed, "ioltrace_folded_label_sets", level="cgroup") == 0


def test_serve_by_level_labels():
    from ioltrace import layers

    def labels(decl, text):
        lv = P.by_level(decl, bykeys.of(text))
        return lv and (lv.prefix, lv.labels)

    assert labels(layers.BLOCK, "process,disk") == ("ioltrace_process_block", ("pid", "comm", "device"))
    assert labels(layers.BLOCK, "disk,op") == ("ioltrace_block", ("device", "op"))
    assert labels(layers.BLOCK, "cgroup") == ("ioltrace_cgroup_block", ("cgroup", "workload"))
    assert labels(layers.SYSCALL, "cgroup,op") == ("ioltrace_cgroup_syscall", ("cgroup", "workload", "syscall"))
    assert labels(layers.SYSCALL, "disk") is None


def test_compare_matches_processes_by_comm_and_the_recorded_second_key(tmp_path):
    """Two runs of a process,disk recording: pids differ, so compare pairs
    them by command name and disk, each disk's cell with its own."""
    paths = []
    for run, pid in (("a", "100"), ("b", "200")):
        groups = [rgroup(pid, "fio", samples(1 if disk == "loop1" else 2, 200), disk=disk, op="write")
                  for disk in ("loop1", "loop2")]
        w = rec.CsvWriter(str(tmp_path / f"{run}.csv"), by="process,disk")
        w.write_interval(groups, T0, T0 + 1)
        w.close()
        paths.append(str(tmp_path / f"{run}.csv"))
    r = ioltrace("compare", *paths, "--stage", "device", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    cells = {(c["kind"], c["name"], c["disk"], c["op"], c["in"]) for c in doc["comparisons"]}
    assert cells == {("comm", "fio", "loop1", "*", "both"), ("comm", "fio", "loop2", "*", "both")}
