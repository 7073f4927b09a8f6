"""group.by_key on a hand-built Snapshot: sums per key kind, checked against
sums of the raw totals and histograms of the concatenated raw samples."""

import errno

import numpy as np
import pytest

from ioltrace import group, hist, layout
from ioltrace.records import Key, Snapshot, Totals

SDA, NVME = 8 << 20, 259 << 20
W, R = layout.OPS.index("write"), layout.OPS.index("read")


class FakeResolver:
    disks = {SDA: "sda", NVME: "nvme0n1"}
    cgroups = {7: "/app", 8: "/db"}
    v1 = {100: "/v1/app", 200: "/v1/app", 1000: "/v1/db"}
    live = {100: "dd-live", 200: "fio-live"}  # 1000 has exited: fallback to the kernel's comm

    def disk_name(self, dev):
        return self.disks.get(dev, f"{dev >> 20}:{dev & 0xFFFFF}")

    def comm(self, pid, fallback=""):
        return self.live.get(pid, fallback)

    def cgroup_path(self, cgid):
        return self.cgroups.get(cgid, f"cgroup:{cgid}")

    def cgroup_v1(self, pid):
        return self.v1.get(pid)


# name -> (Key, kernel comm, errno counts)
KEYS = {
    "a": (Key(7, 100, 101, SDA, W), "dd", {errno.EIO: 1}),
    "b": (Key(7, 100, 102, NVME, W), "dd", {}),
    "c": (Key(7, 200, 201, SDA, R), "fio", {errno.EIO: 2, errno.ENOSPC: 1}),
    "d": (Key(8, 1000, 1001, NVME, W), "postgres", {}),
    "o": (Key(0, layout.OTHER_TGID, 0, 0, W), "", {errno.ENOSPC: 3}),
}


def _raw():
    rng = np.random.default_rng(7)
    raw = {}
    for i, name in enumerate(KEYS):
        n = 50 + 10 * i
        q, d = rng.integers(100, 10**5, n), rng.integers(10**4, 10**7, n)
        errs = sum(KEYS[name][2].values())
        raw[name] = dict(n=n, q=q, d=d, bytes=4096 * (n - errs), errors=errs)
    return raw


RAW = _raw()


def snapshot():
    totals, hists, errors = {}, {}, {}
    for name, (key, comm, errs) in KEYS.items():
        r = RAW[name]
        totals[key] = Totals(r["n"], r["bytes"], r["errors"], int(r["q"].sum()), int(r["d"].sum()), comm)
        hists[(key, layout.STAGE_QUEUE)] = hist.from_samples(r["q"])
        hists[(key, layout.STAGE_DEVICE)] = hist.from_samples(r["d"])
        errors.update({(key, e): n for e, n in errs.items()})
    return Snapshot(0, totals, hists, errors, dict.fromkeys(layout.COUNTERS, 0))


OTHER = ("other", "0:0", "write")
CASES = [
    # kind, by_key options, {(key, disk, op): raw keys summed there}
    ("process", {}, {("100", "sda", "write"): "a", ("100", "nvme0n1", "write"): "b", ("200", "sda", "read"): "c",
                     ("1000", "nvme0n1", "write"): "d", OTHER: "o"}),
    ("process", {"split_disk": False}, {("100", "*", "write"): "ab", ("200", "*", "read"): "c",
                                       ("1000", "*", "write"): "d", ("other", "*", "write"): "o"}),
    ("process", {"split_disk": False, "split_op": False}, {("100", "*", "*"): "ab", ("200", "*", "*"): "c",
                                                          ("1000", "*", "*"): "d", ("other", "*", "*"): "o"}),
    ("thread", {}, {("101", "sda", "write"): "a", ("102", "nvme0n1", "write"): "b", ("201", "sda", "read"): "c",
                    ("1001", "nvme0n1", "write"): "d", OTHER: "o"}),
    ("cgroup", {}, {("7", "sda", "write"): "a", ("7", "nvme0n1", "write"): "b", ("7", "sda", "read"): "c",
                    ("8", "nvme0n1", "write"): "d", OTHER: "o"}),
    ("cgroup", {"split_disk": False, "split_op": False}, {("7", "*", "*"): "abc", ("8", "*", "*"): "d",
                                                         ("other", "*", "*"): "o"}),
    ("cgroup-v1", {"split_disk": False}, {("/v1/app", "*", "write"): "ab", ("/v1/app", "*", "read"): "c",
                                          ("/v1/db", "*", "write"): "d", ("other", "*", "write"): "o"}),
    ("disk", {}, {("sda", "sda", "write"): "a", ("sda", "sda", "read"): "c", ("nvme0n1", "nvme0n1", "write"): "bd",
                  OTHER: "o"}),
    # A disk view splits by disk whatever split_disk says.
    ("disk", {"split_disk": False, "split_op": False}, {("sda", "sda", "*"): "ac", ("nvme0n1", "nvme0n1", "*"): "bd",
                                                       ("other", "0:0", "*"): "o"}),
    ("cgroup", {"ops": {"write"}, "split_disk": False}, {("7", "*", "write"): "ab", ("8", "*", "write"): "d",
                                                        ("other", "*", "write"): "o"}),
    ("process", {"ops": {"read", "flush"}}, {("200", "sda", "read"): "c"}),
    ("disk", {"ops": set()}, {}),
    # Two keys (--by cgroup,disk): exactly those apart, whatever the split flags.
    ("cgroup,disk", {"split_disk": False, "split_op": False}, {
        ("7", "sda", "*"): "ac", ("7", "nvme0n1", "*"): "b", ("8", "nvme0n1", "*"): "d", ("other", "0:0", "*"): "o"}),
    ("process,op", {"split_disk": False, "split_op": False}, {
        ("100", "*", "write"): "ab", ("200", "*", "read"): "c", ("1000", "*", "write"): "d",
        ("other", "*", "write"): "o"}),
    ("disk,op", {"split_disk": False, "split_op": False}, {
        ("sda", "sda", "write"): "a", ("sda", "sda", "read"): "c", ("nvme0n1", "nvme0n1", "write"): "bd", OTHER: "o"}),
    # A command may split more than the pair (top keeps ops apart for READ/s and WRITE/s).
    ("cgroup,disk", {"split_disk": False, "split_op": True}, {
        ("7", "sda", "write"): "a", ("7", "nvme0n1", "write"): "b", ("7", "sda", "read"): "c",
        ("8", "nvme0n1", "write"): "d", OTHER: "o"}),
]


@pytest.mark.parametrize("kind, kw, want", CASES)
def test_by_key_sums(kind, kw, want):
    assert kind.split(",")[0] in group.KINDS
    groups = group.by_key(snapshot(), kind, FakeResolver(), **kw)
    kind = kind.split(",")[0]
    got = {(g.id.key, g.id.disk, g.id.op): g for g in groups}
    assert set(got) == set(want)
    assert len(groups) == len(got)
    for cell, names in want.items():
        g, raws = got[cell], [RAW[n] for n in names]
        assert g.id.kind == kind
        assert (g.ios, g.bytes, g.errors) == tuple(sum(r[f] for r in raws) for f in ("n", "bytes", "errors"))
        assert (g.queue_ns, g.device_ns) == (sum(int(r["q"].sum()) for r in raws), sum(int(r["d"].sum()) for r in raws))
        assert set(g.hists) == {"queue", "device"}
        assert np.array_equal(g.hists["queue"], hist.from_samples(np.concatenate([r["q"] for r in raws])))
        assert np.array_equal(g.hists["device"], hist.from_samples(np.concatenate([r["d"] for r in raws])))
        errs = {}
        for n in names:
            for e, c in KEYS[n][2].items():
                errs[e] = errs.get(e, 0) + c
        assert g.errnos == errs
        assert sum(g.errnos.values()) == g.errors


def test_names_and_order():
    groups = group.by_key(snapshot(), "process", FakeResolver(), split_disk=False, split_op=False)
    assert [(g.id.key, g.id.name) for g in groups] == [
        ("100", "dd-live"), ("200", "fio-live"), ("1000", "postgres"), ("other", "other (stats map full)")]
    threads = group.by_key(snapshot(), "thread", FakeResolver())
    assert {g.id.key: g.id.name for g in threads}["1001"] == "postgres"
    cg = group.by_key(snapshot(), "cgroup", FakeResolver(), split_disk=False, split_op=False)
    assert [g.id.name for g in cg] == ["/app", "/db", "other (stats map full)"]


def test_snapshot_is_not_modified():
    s = snapshot()
    before = {c: a.copy() for c, a in s.hists.items()}
    group.by_key(s, "cgroup", FakeResolver(), split_disk=False, split_op=False)
    assert all(np.array_equal(s.hists[c], a) for c, a in before.items())
