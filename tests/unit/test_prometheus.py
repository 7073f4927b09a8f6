"""The Prometheus exposition (export/prometheus.py) and the pieces of
`ioltrace serve` that need no root (serve.py): buckets against numpy ground
truth from raw samples (block and syscall layers), label escaping, series
capping, counters that never go down, format negotiation, the HTTP server on
loopback, the textfile, and command-line errors. `promtool check metrics` (Debian package prometheus)
lints a synthetic exposition; it skips without promtool, and fails under
CI=true."""

import errno
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ioltrace import cli, hist, layout, loader, maps, serve
from ioltrace.errors import BadInput
from ioltrace.export import prometheus as P
from ioltrace.records import Key, Snapshot, SysKey, SysTotals, Totals

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SDA, NVME = 8 << 20, 259 << 20
R, W = layout.OPS.index("read"), layout.OPS.index("write")
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")   # what Prometheus 2.x sends


class FakeResolver:
    def __init__(self, cgroups=None):
        self.cgroups = dict(cgroups or {})

    def disk_name(self, dev):
        return {SDA: "sda", NVME: "nvme0n1"}.get(dev, f"{dev >> 20}:{dev & 0xFFFFF}")

    def cgroup_path(self, cgid):
        return self.cgroups.get(cgid, f"cgroup:{cgid}")


# -- a tiny reader of the exposition, independent of the writer ----------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
# Only the three escapes the format has, and no raw newline inside a value.
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
UNESCAPE = {"n": "\n", "\\": "\\", '"': '"'}


def parse(body):
    """bytes -> {(name, frozenset(labels.items())): float}, checking that every
    line is a comment or a well-formed sample."""
    text = body.decode("utf-8")         # strict: the exposition must be UTF-8
    assert text.endswith("\n")
    out = {}
    for line in text.split("\n")[:-1]:
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"bad sample line {line!r}"
        name, raw, value = m.groups()
        labels = {}
        pos = 0
        while raw and pos < len(raw):
            lm = LABEL.match(raw, pos)
            assert lm, f"bad labels {raw!r} at {pos}"
            labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: UNESCAPE[e.group(1)], lm.group(2))
            pos = lm.end()
        key = (name, frozenset(labels.items()))
        assert key not in out, f"duplicate series {line!r}"
        out[key] = float(value)
    return out


def series(parsed, name, **match):
    return {dict(k[1]).get("le"): v for k, v in parsed.items()
            if k[0] == name and all(dict(k[1]).get(a) == b for a, b in match.items())}


def value(parsed, name, **labels):
    hits = [v for k, v in parsed.items() if k[0] == name and dict(k[1]) == labels]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


# -- snapshots built from raw samples ------------------------------------------

def make_snapshot(entries, counters=None):
    """entries: [(Key, comm, queue_samples, device_samples, {errno: n})]."""
    totals, hists, errors = {}, {}, {}
    for key, comm, q, d, errs in entries:
        q, d = np.asarray(q, dtype=np.int64), np.asarray(d, dtype=np.int64)
        totals[key] = Totals(len(d), 4096 * (len(d) - sum(errs.values())), sum(errs.values()),
                             int(q.sum()), int(d.sum()), comm)
        if len(q):
            hists[(key, layout.STAGE_QUEUE)] = hist.from_samples(q)
        if len(d):
            hists[(key, layout.STAGE_DEVICE)] = hist.from_samples(d)
        for e, n in errs.items():
            errors[(key, e)] = n
    return Snapshot(0, totals, hists, errors, dict(counters or dict.fromkeys(layout.COUNTERS, 0)))


def raw_samples(rng, n=2000):
    edges = np.array(P.EDGES_NS, dtype=np.int64)
    return np.concatenate([
        rng.lognormal(11, 2.5, n).astype(np.int64),         # ~60 us, very wide
        rng.integers(0, 1 << 37, n // 4),                   # up to twice the overflow edge
        edges, edges - 1, edges + 1,                        # on and beside every edge
        [0, 1, 31, 32, (1 << 36) - 1, 1 << 36, 1 << 40],
    ])


# -- buckets ---------------------------------------------------------------------

def test_edges_are_fine_bucket_boundaries_powers_of_two_from_1us_to_68s():
    assert P.EDGES_NS == tuple(1 << e for e in range(10, 37))
    assert len(P.LE_VALUES) == 28 and P.LE_VALUES[-1] == "+Inf"
    assert P.LE_VALUES[0] == "1.024e-06" and P.LE_VALUES[10] == "0.001048576"
    assert P.LE_VALUES[-2] == "68.719476736"
    low = set(layout.BUCKET_LOW.astype(np.int64).tolist())
    assert all(e in low for e in P.EDGES_NS)
    # The last finite edge is where the kernel's overflow bucket starts.
    assert layout.BUCKET_LOW[layout.OVERFLOW_BUCKET] == P.EDGES_NS[-1]
    for le, ns in zip(P.LE_VALUES, P.EDGES_NS):
        assert float(le) == ns / 1e9


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cumulative_buckets_equal_numpy_counts_below_each_edge(seed):
    samples = raw_samples(np.random.default_rng(seed))
    got = P.cumulative(hist.from_samples(samples))
    want = [int((samples < e).sum()) for e in P.EDGES_NS] + [len(samples)]
    assert got.tolist() == want
    assert got.dtype == np.uint64


def test_exported_histograms_are_sums_of_kernel_counts_over_keys():
    rng = np.random.default_rng(7)
    res = FakeResolver({5: "/db"})
    entries, q_all, d_all = [], [], []
    for pid in (100, 101, 102):
        q, d = raw_samples(rng, 300), raw_samples(rng, 300)
        entries.append((Key(5, pid, 0, SDA, W), "w", q, d, {}))
        q_all.append(q)
        d_all.append(d)
    parsed = parse(P.Exporter(res).render(make_snapshot(entries)))
    for stage, samples in (("queue", np.concatenate(q_all)), ("device", np.concatenate(d_all))):
        want = [int((samples < e).sum()) for e in P.EDGES_NS] + [len(samples)]
        for name, labels in (("ioltrace_block_latency_seconds", {"device": "sda"}),
                             ("ioltrace_cgroup_block_latency_seconds", {"cgroup": "/db", "device": "sda"})):
            b = series(parsed, name + "_bucket", op="write", stage=stage, **labels)
            assert [b[le] for le in P.LE_VALUES] == want
            assert value(parsed, name + "_count", op="write", stage=stage, **labels) == len(samples)
            # _sum is the kernel's exact nanosecond sum, in seconds.
            assert value(parsed, name + "_sum", op="write", stage=stage, **labels) == \
                pytest.approx(int(samples.sum()) / 1e9, rel=1e-12)


def test_total_stage_sum_is_queue_plus_device():
    key = Key(5, 100, 0, SDA, R)
    snap = make_snapshot([(key, "r", [10, 20], [1000, 3000], {})])
    snap.hists[(key, layout.STAGE_TOTAL)] = hist.from_samples([1010, 3020])
    parsed = parse(P.Exporter(FakeResolver(), stages=("queue", "device", "total")).render(snap))
    assert value(parsed, "ioltrace_block_latency_seconds_sum", device="sda", op="read", stage="total") == 4.03e-06
    assert value(parsed, "ioltrace_block_latency_seconds_count", device="sda", op="read", stage="total") == 2


def test_counters_errors_kernel_events_and_build_info():
    counters = dict.fromkeys(layout.COUNTERS, 0)
    counters["dropped"] = 3
    snap = make_snapshot([(Key(5, 100, 0, SDA, W), "dd", [1], [5000] * 10, {errno.ENOSPC: 2, errno.EIO: 1})],
                         counters)
    info = {"version": "9.9", "start_tracepoint": "block_io_start", "headers": "running"}
    parsed = parse(P.Exporter(FakeResolver({5: "/db"}), info=info).render(snap))
    assert value(parsed, "ioltrace_block_ios_total", device="sda", op="write") == 10
    assert value(parsed, "ioltrace_block_bytes_total", device="sda", op="write") == 7 * 4096
    assert value(parsed, "ioltrace_cgroup_block_errors_total", cgroup="/db", device="sda", op="write",
                 errno="ENOSPC") == 2
    assert value(parsed, "ioltrace_block_errors_total", device="sda", op="write", errno="EIO") == 1
    for name in layout.COUNTERS:
        assert value(parsed, "ioltrace_kernel_events_total", event=name) == (3 if name == "dropped" else 0)
    assert value(parsed, "ioltrace_build_info", **info) == 1
    # No per-process series unless asked for.
    assert not any(k[0].startswith("ioltrace_process_") for k in parsed)


def test_seeded_catch_all_keys_stay_hidden_until_used():
    other = [(Key(0, layout.OTHER_TGID, 0, 0, op), "", [], [], {}) for op in range(len(layout.OPS))]
    parsed = parse(P.Exporter(FakeResolver()).render(make_snapshot(other)))
    assert not any(k[0].startswith("ioltrace_block_ios") for k in parsed)
    used = make_snapshot([(Key(0, layout.OTHER_TGID, 0, 0, W), "", [5], [7, 9], {})])
    parsed = parse(P.Exporter(FakeResolver()).render(used))
    assert value(parsed, "ioltrace_cgroup_block_ios_total", cgroup="other", workload="other", device="other", op="other") == 2


# -- escaping ----------------------------------------------------------------------

ODD_CGROUPS = {
    1: '/with "quotes"',
    2: "/back\\slash\\",
    3: "/new\nline",
    4: "/tab\tand\rcr",
    5: "/ünïcødé/日本語/🚀",
    6: os.fsdecode(b"/bad\xff\xfebytes"),    # os.scandir's spelling of a non-UTF-8 name
    7: "/{braces},=comma",
}
SHOWN = {**ODD_CGROUPS, 6: "/bad\\xff\\xfebytes"}
ODD_COMMS = {
    201: (maps.comm_text(b'q"uo\\te\n\xff\x00junk'), 'q"uo\\te\n\\xff'),
    202: (maps.comm_text("kworker/u8:2é".encode()), "kworker/u8:2é"),
    203: (maps.comm_text(b"\xc3"), "\\xc3"),    # a UTF-8 sequence cut by the 15-byte limit
}


def odd_snapshot():
    entries = [(Key(cg, 100 + cg, 0, SDA, W), "x", [1], [9], {}) for cg in ODD_CGROUPS]
    entries += [(Key(1, pid, 0, NVME, R), comm, [1], [9], {}) for pid, (comm, _) in ODD_COMMS.items()]
    return make_snapshot(entries)


@pytest.mark.parametrize("fmt", [P.TEXT, P.OPENMETRICS])
def test_odd_cgroup_paths_and_comms_round_trip(fmt):
    body = P.Exporter(FakeResolver(ODD_CGROUPS), per_process=True).render(odd_snapshot(), fmt)
    parsed = parse(body)
    for cg, shown in SHOWN.items():
        assert value(parsed, "ioltrace_cgroup_block_ios_total", cgroup=shown, device="sda", op="write") == 1
    for pid, (_, shown) in ODD_COMMS.items():
        assert value(parsed, "ioltrace_process_block_ios_total", pid=str(pid), comm=shown, device="nvme0n1",
                     op="read") == 1


@pytest.mark.parametrize("raw,want", [
    ('a"b', 'a\\"b'), ("a\\b", "a\\\\b"), ("a\nb", "a\\nb"), ("日本", "日本"), ("\r\t", "\r\t"),
    (os.fsdecode(b"\xff"), "\\\\xff"), ("\ud800", "\\\\ud800"), ("", ""),
])
def test_escape_table(raw, want):
    assert P.escape(raw) == want
    P.escape(raw).encode("utf-8")


# -- capping -------------------------------------------------------------------------

def cgroup_snapshot(sizes):
    """{cgid: number of 4 KiB writes} -> Snapshot, one process per cgroup."""
    return make_snapshot([(Key(cg, 1000 + cg, 0, SDA, W), "w", [1] * n, [5000] * n, {}) for cg, n in sizes.items()])


def test_max_series_keeps_the_biggest_and_folds_the_rest_into_other():
    res = FakeResolver({cg: f"/cg{cg}" for cg in range(1, 10)})
    ex = P.Exporter(res, max_series=3)
    sizes = {1: 10, 2: 60, 3: 30, 4: 50, 5: 20, 6: 40}
    parsed = parse(ex.render(cgroup_snapshot(sizes)))
    kept = {dict(k[1])["cgroup"]: v for k, v in parsed.items() if k[0] == "ioltrace_cgroup_block_ios_total"}
    assert kept == {"/cg2": 60, "/cg4": 50, "/cg6": 40, "other": 30 + 20 + 10}
    assert value(parsed, "ioltrace_folded_label_sets", level="cgroup") == 3
    assert value(parsed, "ioltrace_folded_label_sets", level="disk") == 0
    other = series(parsed, "ioltrace_cgroup_block_latency_seconds_bucket", cgroup="other", stage="device")
    assert other["+Inf"] == 60
    # A newcomer, however big, joins "other": series never change hands.
    sizes.update({7: 500, 1: 11})
    parsed = parse(ex.render(cgroup_snapshot(sizes)))
    kept = {dict(k[1])["cgroup"]: v for k, v in parsed.items() if k[0] == "ioltrace_cgroup_block_ios_total"}
    assert kept == {"/cg2": 60, "/cg4": 50, "/cg6": 40, "other": 30 + 20 + 11 + 500}
    assert value(parsed, "ioltrace_folded_label_sets", level="cgroup") == 4
    # The per-disk level is under its cap and unaffected.
    assert value(parsed, "ioltrace_block_ios_total", device="sda", op="write") == sum(sizes.values())


def test_max_series_per_process():
    entries = [(Key(1, pid, 0, SDA, W), f"p{pid}", [1] * pid, [9] * pid, {}) for pid in range(1, 8)]
    parsed = parse(P.Exporter(FakeResolver(), per_process=True, max_series=2).render(make_snapshot(entries)))
    pids = {dict(k[1])["pid"]: v for k, v in parsed.items() if k[0] == "ioltrace_process_block_ios_total"}
    assert pids == {"7": 7, "6": 6, "other": 15}
    assert value(parsed, "ioltrace_process_block_ios_total", pid="other", comm="other", device="other",
                 op="other") == 15
    assert value(parsed, "ioltrace_folded_label_sets", level="process") == 5


# -- counters never go down ---------------------------------------------------------

def cumulative_kinds(parsed):
    """Every series whose value must never decrease (all but gauges)."""
    return {k: v for k, v in parsed.items() if not k[0].startswith(("ioltrace_folded", "ioltrace_build"))}


def family_totals(parsed):
    """Sum over all series of a family (per le and stage): what sum() in
    PromQL sees, which must not drop when a series is folded away."""
    out = {}
    for (name, labels), v in cumulative_kinds(parsed).items():
        lab = dict(labels)
        k = (name, lab.get("le"), lab.get("stage"), lab.get("errno"), lab.get("event"))
        out[k] = out.get(k, 0) + v
    return out


def assert_no_decrease(before, after, levels_that_keep_series=("ioltrace_block_", "ioltrace_cgroup_block_")):
    for k, v in cumulative_kinds(before).items():
        if k in after:
            assert after[k] >= v, (k, v, after[k])
        elif k[0].startswith(levels_that_keep_series):
            pytest.fail(f"series {k} disappeared")
    fa = family_totals(after)
    for k, v in family_totals(before).items():
        assert fa.get(k, 0) >= v, (k, v, fa.get(k))


def test_a_process_leaving_the_maps_keeps_its_counts():
    res = FakeResolver({5: "/db"})
    ex = P.Exporter(res, per_process=True)
    a = (Key(5, 100, 0, SDA, W), "gone", [1] * 4, [5000] * 4, {errno.EIO: 1})
    b = Key(5, 200, 0, SDA, W)
    first = parse(ex.render(make_snapshot([a, (b, "stays", [1] * 2, [7000] * 2, {})])))
    # pid 100 exited and its kernel entries were removed; pid 200 did more.
    second = parse(ex.render(make_snapshot([(b, "stays", [1] * 3, [7000] * 3, {})])))
    assert_no_decrease(first, second)
    assert value(second, "ioltrace_cgroup_block_ios_total", cgroup="/db", device="sda", op="write") == 4 + 3
    assert value(second, "ioltrace_cgroup_block_errors_total", cgroup="/db", device="sda", op="write",
                 errno="EIO") == 1
    assert series(second, "ioltrace_block_latency_seconds_bucket", device="sda", op="write", stage="device")[
        "+Inf"] == 7
    # Per process: the exited one is folded into "other", with all of its counts.
    assert ("ioltrace_process_block_ios_total",
            frozenset({"pid": "100", "comm": "gone", "device": "sda", "op": "write"}.items())) not in second
    assert value(second, "ioltrace_process_block_ios_total", pid="other", comm="other", device="other",
                 op="other") == 4
    assert value(second, "ioltrace_process_block_ios_total", pid="200", comm="stays", device="sda", op="write") == 3
    assert value(second, "ioltrace_folded_label_sets", level="process") == 1
    # It stays there, scrape after scrape.
    third = parse(ex.render(make_snapshot([(b, "stays", [1] * 3, [7000] * 3, {})])))
    assert third == second


def test_a_key_restarting_from_lower_counts_does_not_go_down():
    ex = P.Exporter(FakeResolver())
    k = Key(5, 100, 0, SDA, W)
    first = parse(ex.render(make_snapshot([(k, "x", [1] * 5, [9] * 5, {})])))
    second = parse(ex.render(make_snapshot([(k, "x", [1] * 2, [9] * 2, {})])))
    assert_no_decrease(first, second)
    assert value(second, "ioltrace_block_ios_total", device="sda", op="write") == 7


def test_a_folded_process_is_counted_once_under_exited():
    """fold.Folder moves an exited process's counts to its cgroup's exited
    key; the exporter must not also keep them as a process that left."""
    from ioltrace import fold

    res = FakeResolver({5: "/db"})
    ex = P.Exporter(res, per_process=True)
    a, b = Key(5, 100, 0, SDA, W), Key(5, 200, 0, SDA, W)
    kernel = make_snapshot([(a, "gone", [1] * 4, [5000] * 4, {}), (b, "stays", [1] * 2, [7000] * 2, {})])
    alive = {100, 200}
    folder = fold.Folder(0.0, alive=lambda t: t in alive, clock=lambda: 0.0)

    def take(tgids):
        part = {k: t for k, t in kernel.totals.items() if k.tgid in tgids}
        return kernel._replace(totals=part, hists={c: v for c, v in kernel.hists.items() if c[0].tgid in tgids},
                               errors={})

    first = parse(ex.render(folder.apply(kernel, take)))
    alive.discard(100)
    kernel = make_snapshot([(a, "gone", [1] * 4, [5000] * 4, {}), (b, "stays", [1] * 3, [7000] * 3, {})])
    second = parse(ex.render(folder.apply(kernel, take)))
    assert_no_decrease(first, second)
    assert value(second, "ioltrace_cgroup_block_ios_total", cgroup="/db", device="sda", op="write") == 4 + 3
    assert value(second, "ioltrace_process_block_ios_total", pid="exited", comm=layout.EXITED_COMM, device="sda",
                 op="write") == 4
    assert series(second, "ioltrace_block_latency_seconds_bucket", device="sda", op="write", stage="device")[
        "+Inf"] == 7


@pytest.mark.parametrize("seed", range(5))
def test_random_churn_never_decreases_any_counter(seed):
    """Keys appear, grow, leave the maps and come back, under a small cap."""
    rng = np.random.default_rng(seed)
    res = FakeResolver({cg: f"/cg{cg}" for cg in range(6)})
    ex = P.Exporter(res, per_process=True, max_series=3)
    state = {}      # Key -> [n_samples]
    prev = None
    for step in range(25):
        for _ in range(rng.integers(1, 4)):
            k = Key(int(rng.integers(0, 6)), int(rng.integers(1, 12)), 0, [SDA, NVME][rng.integers(0, 2)],
                    int(rng.integers(0, 2)))
            state[k] = state.get(k, 0) + int(rng.integers(1, 20))
        for k in list(state):
            if rng.random() < 0.1:
                del state[k]        # left the kernel maps (process gone, map pruned)
        entries = [(k, f"c{k.tgid}", np.full(n, 100 + k.tgid), np.full(n, 5000 * (1 + k.cgid)),
                    {errno.EIO: 1} if n > 10 else {}) for k, n in state.items()]
        parsed = parse(ex.render(make_snapshot(entries)))
        if prev is not None:
            assert_no_decrease(prev, parsed)
        prev = parsed


# -- formats ---------------------------------------------------------------------------

@pytest.mark.parametrize("accept,fmt", [
    (PROMETHEUS_ACCEPT, P.OPENMETRICS),
    ("application/openmetrics-text; version=1.0.0", P.OPENMETRICS),
    ("application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5", P.OPENMETRICS),
    ("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.1", P.TEXT),
    ("application/openmetrics-text;q=0", P.TEXT),
    ("application/openmetrics-text;q=nan", P.TEXT),
    ("text/plain", P.TEXT),
    ("*/*", P.TEXT),
    ("", P.TEXT),
    (None, P.TEXT),
    ("application/json", P.TEXT),
])
def test_negotiation(accept, fmt):
    assert P.negotiate(accept) == fmt


def test_openmetrics_and_text_carry_the_same_samples():
    snap = odd_snapshot()
    text = P.Exporter(FakeResolver(ODD_CGROUPS), per_process=True).render(snap, P.TEXT)
    om = P.Exporter(FakeResolver(ODD_CGROUPS), per_process=True).render(snap, P.OPENMETRICS)
    assert parse(text) == parse(om)
    assert om.endswith(b"\n# EOF\n") and b"# EOF" not in text
    assert b"# TYPE ioltrace_block_bytes counter\n# UNIT ioltrace_block_bytes bytes\n" in om
    assert b"# TYPE ioltrace_block_bytes_total counter\n" in text and b"# UNIT" not in text
    assert b"# TYPE ioltrace_build info\n" in om and b"# TYPE ioltrace_build_info gauge\n" in text
    # Counter families: "x_total" in the text format, "x" in OpenMetrics;
    # their samples are "x_total" in both.
    text_counters = re.findall(rb"^# TYPE (\S+) counter$", text, re.M)
    om_counters = re.findall(rb"^# TYPE (\S+) counter$", om, re.M)
    assert text_counters and all(n.endswith(b"_total") for n in text_counters)
    assert [n + b"_total" for n in om_counters] == text_counters
    for name, _ in parse(om):
        if any(name.startswith(c.decode()) for c in om_counters):
            assert name.endswith("_total")


def need(reason):
    if reason:
        if IN_CI:
            pytest.fail(f"cannot run in CI: {reason}")
        pytest.skip(reason)


def test_promtool_accepts_a_synthetic_exposition(tmp_path):
    need(None if shutil.which("promtool") else "promtool is not installed (Debian package prometheus)")
    counters = dict.fromkeys(layout.COUNTERS, 1)
    snap = odd_snapshot()
    snap.errors[(Key(1, 101, 0, SDA, W), errno.ENOSPC)] = 1
    body = P.Exporter(FakeResolver(ODD_CGROUPS), per_process=True, max_series=4,
                      info={"version": "0.1.0", "start_tracepoint": "block_io_start", "headers": "running"}
                      ).render(snap._replace(counters=counters))
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()


# -- serve: addresses, HTTP, textfile, command line -----------------------------------

@pytest.mark.parametrize("text,want", [
    ("127.0.0.1:9435", ("127.0.0.1", 9435)),
    ("localhost:80", ("127.0.0.1", 80)),
    ("0.0.0.0:9435", ("0.0.0.0", 9435)),
    ("[::1]:9435", ("::1", 9435)),
    ("[::]:1", ("::", 1)),
    ("none", None),
    ("NONE", None),
])
def test_listen_addresses(text, want):
    assert serve.parse_listen(text) == want


@pytest.mark.parametrize("text", [":9435", "9435", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                                  "127.0.0.1:-1", "127.0.0.1:http", "example.com:9435", "999.0.0.1:9435",
                                  "::1:9435", "[127.0.0.1]:9435", "[::1]", "1.2.3.4:9435\n"])
def test_bad_listen_addresses(text):
    with pytest.raises(BadInput):
        serve.parse_listen(text)


@pytest.fixture
def http_server():
    calls = []

    def render(fmt):
        calls.append(fmt)
        if len(calls) == 3:
            raise RuntimeError("map read failed")
        return f"body {fmt}\n".encode()

    reports = []
    srv = serve.bind(("127.0.0.1", 0), render, reports.append)
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", calls, reports
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(5)


def get(url, accept=None, method="GET"):
    req = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_http_metrics_healthz_404_and_failures(http_server):
    base, calls, reports = http_server
    assert get(base + "/metrics", PROMETHEUS_ACCEPT) == (200, P.CONTENT_TYPES[P.OPENMETRICS], b"body openmetrics\n")
    assert get(base + "/metrics?x=1") == (200, P.CONTENT_TYPES[P.TEXT], b"body text\n")
    code, _, body = get(base + "/metrics")
    assert code == 500 and b"scrape failed" in body
    assert reports and "map read failed" in reports[0]
    assert get(base + "/metrics", method="HEAD") == (200, P.CONTENT_TYPES[P.TEXT], b"")
    assert get(base + "/healthz")[::2] == (200, b"ok\n")
    assert get(base + "/")[0] == 404
    assert get(base + "/metricsx")[0] == 404
    assert calls == [P.OPENMETRICS, P.TEXT, P.TEXT, P.TEXT]


def test_textfile_is_replaced_atomically_and_leaves_no_temp(tmp_path):
    path = tmp_path / "ioltrace.prom"
    old = os.umask(0o077)
    try:
        tf = serve.Textfile(str(path))
        assert tf.write(b"a 1\n") and tf.write(b"a 2\n")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"a 2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644     # node_exporter runs as another user
    assert [p.name for p in tmp_path.iterdir()] == ["ioltrace.prom"]
    assert not tf.tmp.endswith(".prom")
    tf.cleanup()
    assert tf.writes == 2


def test_textfile_write_failure_is_reported_and_retried(tmp_path, capsys):
    tf = serve.Textfile(str(tmp_path / "m.prom"))
    os.mkdir(tf.path)       # rename onto a directory fails
    assert not tf.write(b"a 1\n") and not tf.write(b"a 1\n")
    assert capsys.readouterr().err.count("cannot write") == 1
    assert not os.path.exists(tf.tmp)
    os.rmdir(tf.path)
    assert tf.write(b"a 1\n")


@pytest.fixture
def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture(autouse=False)
def no_tracing(monkeypatch):
    def tracer(*a, **kw):
        pytest.fail("tracing started: validation let a bad command line through")
    monkeypatch.setattr(loader, "Tracer", tracer)


@pytest.mark.parametrize("argv,expect", [
    (["serve", "--listen", ":9435"], "explicit address"),
    (["serve", "--listen", "127.0.0.1:0"], "port"),
    (["serve", "--listen", "example.com:9435"], "not an IP address"),
    (["serve", "--listen", "none"], "nothing to serve"),
    (["serve", "--textfile", "/nonexistent-dir/x.prom"], "no such directory"),
    (["serve", "--textfile", "{tmp}"], "is a directory"),
    (["serve", "--max-series", "0"], "positive"),
    (["serve", "--interval", "0"], "between"),
    (["serve", "--listen", "127.0.0.1:{busy}"], "address already in use"),
    (["serve", "--disk", "nosuchdisk"], "nosuchdisk"),
    (["serve", "--layer", "disk"], "invalid choice"),
    (["serve", "--layer", "syscall", "--syscalls", "pwrite,fsync"], "unknown syscall 'pwrite'"),
])
def test_serve_command_line_errors(argv, expect, tmp_path, busy_port, no_tracing, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{busy}", str(busy_port)) for a in argv]
    assert cli.main(argv) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and "Traceback" not in cap.err
    lines = cap.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ioltrace:") and expect in lines[0], cap.err
    assert list(tmp_path.iterdir()) == []


def test_serve_help_fits_80_columns(capsys):
    assert cli.main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and max(len(line) for line in out.splitlines()) <= 80


def test_docs_list_the_exported_edges():
    page = (Path(__file__).resolve().parents[2] / "docs" / "PROMETHEUS.md").read_text()
    m = re.search(r"27 edges and `\+Inf`:\n\n```\n(.*?)```", page, re.S)
    assert m and m.group(1).split() == list(P.LE_VALUES)


def test_scraper_serialises_and_refuses_after_close():
    class FakeTracer:
        calls = 0

        def snapshot(self):
            FakeTracer.calls += 1
            return make_snapshot([(Key(5, 100, 0, SDA, W), "dd", [1], [9], {})])

    sc = serve.Scraper(FakeTracer(), P.Exporter(FakeResolver()))
    assert b"ioltrace_block_ios_total" in sc.render(P.TEXT)
    assert sc.render(P.OPENMETRICS).endswith(b"# EOF\n") and sc.scrapes == 2
    sc.close()
    with pytest.raises(RuntimeError):
        sc.render(P.TEXT)
    assert FakeTracer.calls == 2


def test_an_exporter_that_scraped_before_says_what_a_fresh_one_says():
    """Text reused for idle label sets never hides a change."""
    rng = np.random.default_rng(11)
    res = FakeResolver({5: "/db", 6: "/web"})
    keys = [Key(5, 100, 0, SDA, W), Key(6, 200, 0, NVME, R), Key(6, 201, 0, SDA, W)]
    samples = {k: (list(rng.integers(0, 5000, 5)), list(rng.integers(1000, 10 ** 7, 5))) for k in keys}
    ex = P.Exporter(res, per_process=True)
    for step in range(6):
        k = keys[step % len(keys)]
        q, d = samples[k]
        q.append(int(rng.integers(0, 5000)))
        d.append(int(rng.integers(1000, 10 ** 7)))
        snap = make_snapshot([(k, "c", *samples[k], {}) for k in keys])
        for fmt in (P.TEXT, P.OPENMETRICS):
            assert ex.render(snap, fmt) == P.Exporter(res, per_process=True).render(snap, fmt)


# -- the syscall layer -----------------------------------------------------------------

PW, FSYNC = layout.SYSCALLS.index("pwrite64"), layout.SYSCALLS.index("fsync")
BOTH = ("block", "syscall")


def make_sys_snapshot(entries, block=()):
    """entries: [(SysKey, comm, latency_samples, bytes, {errno: n})], one call
    per sample; block: make_snapshot entries of the block layer."""
    snap = make_snapshot(list(block))
    totals, hists, errors = {}, {}, {}
    for key, comm, lat, nbytes, errs in entries:
        lat = np.asarray(lat, dtype=np.int64)
        totals[key] = SysTotals(len(lat), nbytes, sum(errs.values()), int(lat.sum()), comm)
        if len(lat):
            hists[key] = hist.from_samples(lat)
        for e, n in errs.items():
            errors[(key, e)] = n
    counters = dict(snap.counters, **dict.fromkeys(layout.SC_COUNTERS, 0))
    return snap._replace(counters=counters, sys_totals=totals, sys_hists=hists, sys_errors=errors)


def test_syscall_histograms_calls_bytes_errors_per_cgroup_and_process():
    rng = np.random.default_rng(3)
    res = FakeResolver({5: "/db", 6: '/we"b'})
    a, b = raw_samples(rng, 300), raw_samples(rng, 300)
    f = raw_samples(rng, 50)
    odd_comm = maps.comm_text(b'p"w\n\xff')
    snap = make_sys_snapshot([
        (SysKey(5, 100, 0, PW), "pg", a, 8192 * len(a), {}),
        (SysKey(5, 101, 0, PW), odd_comm, b, 4096 * (len(b) - 3), {errno.EINVAL: 3}),
        (SysKey(6, 200, 0, FSYNC), "web", f, 0, {errno.EIO: 2}),
    ])
    parsed = parse(P.Exporter(res, per_process=True, layers=BOTH).render(snap))
    both = np.concatenate([a, b])
    for name, labels, samples in (
            ("ioltrace_cgroup_syscall", {"cgroup": "/db", "syscall": "pwrite64"}, both),
            ("ioltrace_cgroup_syscall", {"cgroup": '/we"b', "syscall": "fsync"}, f),
            ("ioltrace_process_syscall", {"pid": "101", "comm": 'p"w\n\\xff', "syscall": "pwrite64"}, b)):
        want = [int((samples < e).sum()) for e in P.EDGES_NS] + [len(samples)]
        buckets = series(parsed, name + "_latency_seconds_bucket", **labels)
        assert [buckets[le] for le in P.LE_VALUES] == want
        # One histogram per label set: no stage label.
        assert value(parsed, name + "_latency_seconds_count", **labels) == len(samples)
        assert value(parsed, name + "_latency_seconds_sum", **labels) == \
            pytest.approx(int(samples.sum()) / 1e9, rel=1e-12)
        assert value(parsed, name + "_calls_total", **labels) == len(samples)
    assert value(parsed, "ioltrace_cgroup_syscall_bytes_total", cgroup="/db", syscall="pwrite64") == \
        8192 * len(a) + 4096 * (len(b) - 3)
    assert value(parsed, "ioltrace_cgroup_syscall_errors_total", cgroup="/db", syscall="pwrite64",
                 errno="EINVAL") == 3
    assert value(parsed, "ioltrace_process_syscall_errors_total", pid="200", comm="web", syscall="fsync",
                 errno="EIO") == 2
    assert not any("stage" in dict(k[1]) for k in parsed if "_syscall_" in k[0])
    for name in layout.SC_COUNTERS:
        assert value(parsed, "ioltrace_kernel_events_total", event=name) == 0
    for level in ("disk", "cgroup", "process", "cgroup_syscall", "process_syscall"):
        assert value(parsed, "ioltrace_folded_label_sets", level=level) == 0


def test_syscall_families_only_with_the_syscall_layer():
    snap = make_sys_snapshot([(SysKey(5, 100, 0, PW), "pg", [9, 10], 2, {})],
                             block=[(Key(5, 100, 0, SDA, W), "pg", [1], [9], {})])
    block_only = parse(P.Exporter(FakeResolver()).render(snap))
    assert not any("_syscall_" in k[0] for k in block_only)
    sys_only = parse(P.Exporter(FakeResolver(), per_process=True, layers=("syscall",)).render(snap))
    assert not any(k[0].startswith(("ioltrace_block_", "ioltrace_cgroup_block_", "ioltrace_process_block_"))
                   for k in sys_only)
    assert value(sys_only, "ioltrace_cgroup_syscall_calls_total", cgroup="cgroup:5", syscall="pwrite64") == 2
    assert {dict(k[1])["level"] for k in sys_only if k[0] == "ioltrace_folded_label_sets"} == \
        {"cgroup_syscall", "process_syscall"}


def test_syscall_max_series_folds_into_other():
    res = FakeResolver({cg: f"/cg{cg}" for cg in range(1, 6)})
    entries = [(SysKey(cg, 100 + cg, 0, PW), "w", [1000] * (10 * cg), 512 * 10 * cg, {}) for cg in range(1, 6)]
    parsed = parse(P.Exporter(res, max_series=2, layers=BOTH).render(make_sys_snapshot(entries)))
    kept = {dict(k[1])["cgroup"]: v for k, v in parsed.items() if k[0] == "ioltrace_cgroup_syscall_calls_total"}
    assert kept == {"/cg5": 50, "/cg4": 40, "other": 30 + 20 + 10}
    assert value(parsed, "ioltrace_cgroup_syscall_latency_seconds_count", cgroup="other", workload="other", syscall="other") == 60
    assert value(parsed, "ioltrace_folded_label_sets", level="cgroup_syscall") == 3


@pytest.mark.parametrize("seed", range(4))
def test_syscall_churn_never_decreases_any_counter(seed):
    """Syscall keys (and block keys beside them) appear, grow, leave the maps
    and restart lower, under a small cap."""
    rng = np.random.default_rng(100 + seed)
    res = FakeResolver({cg: f"/cg{cg}" for cg in range(5)})
    ex = P.Exporter(res, per_process=True, max_series=3, layers=BOTH)
    sys_state, blk_state = {}, {}
    prev = None
    for step in range(25):
        for _ in range(rng.integers(1, 4)):
            k = SysKey(int(rng.integers(0, 5)), int(rng.integers(1, 10)), 0, int(rng.choice([PW, FSYNC])))
            sys_state[k] = sys_state.get(k, 0) + int(rng.integers(1, 20))
            b = Key(k.cgid, k.tgid, 0, SDA, W)
            blk_state[b] = blk_state.get(b, 0) + int(rng.integers(1, 5))
        for state in (sys_state, blk_state):
            for k in list(state):
                if rng.random() < 0.1:
                    del state[k]
        entries = [(k, f"c{k.tgid}", np.full(n, 2000 * (1 + k.cgid)), 4096 * n,
                    {errno.EIO: 1} if n > 10 else {}) for k, n in sys_state.items()]
        block = [(k, f"c{k.tgid}", np.full(n, 10), np.full(n, 5000), {}) for k, n in blk_state.items()]
        parsed = parse(ex.render(make_sys_snapshot(entries, block)))
        if prev is not None:
            assert_no_decrease(prev, parsed, ("ioltrace_block_", "ioltrace_cgroup_block_",
                                              "ioltrace_cgroup_syscall_"))
        prev = parsed


@pytest.mark.parametrize("fmt", [P.TEXT, P.OPENMETRICS])
def test_syscall_names_and_odd_cgroups_in_both_formats(fmt):
    entries = [(SysKey(cg, 300 + cg, 0, PW), "x", [5], 1, {}) for cg in ODD_CGROUPS]
    body = P.Exporter(FakeResolver(ODD_CGROUPS), layers=("syscall",)).render(make_sys_snapshot(entries), fmt)
    parsed = parse(body)
    for cg, shown in SHOWN.items():
        assert value(parsed, "ioltrace_cgroup_syscall_calls_total", cgroup=shown, syscall="pwrite64") == 1
    text = P.Exporter(FakeResolver(ODD_CGROUPS), layers=("syscall",)).render(make_sys_snapshot(entries), P.TEXT)
    assert parse(text) == parsed


def test_promtool_accepts_both_layers(tmp_path):
    need(None if shutil.which("promtool") else "promtool is not installed (Debian package prometheus)")
    snap = make_sys_snapshot([(SysKey(1, 201, 0, PW), 'q"\\n', [100, 5000], 10, {errno.EINVAL: 1}),
                              (SysKey(2, 202, 0, FSYNC), "f", [10 ** 6], 0, {})],
                             block=[(Key(1, 201, 0, SDA, W), "w", [1], [9], {})])
    body = P.Exporter(FakeResolver(ODD_CGROUPS), per_process=True, max_series=1, layers=BOTH,
                      info={"version": "0.1.0", "start_tracepoint": "none", "headers": "running",
                            "layers": "block,syscall"}).render(snap)
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()


def test_disk_label_is_device_as_node_exporter_and_cgroups_carry_their_workload():
    # node_exporter's node_disk_* families label the disk `device`; a join
    # on (device) needs the same name here.
    cid = "3f4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233445566aabb"
    res = FakeResolver({5: f"/system.slice/docker-{cid}.scope", 6: "/db"})
    snap = make_snapshot([(Key(5, 100, 0, SDA, W), "dd", [1], [5000] * 3, {}),
                          (Key(6, 101, 0, SDA, W), "dd", [1], [5000] * 2, {})])
    parsed = parse(P.Exporter(res).render(snap))
    assert value(parsed, "ioltrace_block_ios_total", device="sda", op="write") == 5
    assert value(parsed, "ioltrace_cgroup_block_ios_total", cgroup=f"/system.slice/docker-{cid}.scope",
                 workload="docker:3f4a5b6c7d8e", device="sda", op="write") == 3
    # A path that names no unit or container gets no workload label.
    assert value(parsed, "ioltrace_cgroup_block_ios_total", cgroup="/db", device="sda", op="write") == 2
    assert not any(dict(k[1]).get("disk") for k in parsed)
