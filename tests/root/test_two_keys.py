"""Grouping by two keys on a real kernel: two cgroups each write known bytes
with direct I/O to two private loop devices (four cells of different
sizes). `hist --by cgroup,disk --csv` and `serve --by cgroup,disk` each give
four cells whose bytes equal dd's own count and the kernel's per-cgroup,
per-device counter: the v2 io.stat of the cgroup where the io controller
is enabled (the guest), else the v1 blkio.throttle.io_service_bytes of a
v1 group the writer also joins (this hybrid host, where a bio is charged to
v1 blkio; the count needs a throttle rule, so one too high to bind is set:
tests/support/blkio.py).
`top -b --by process,disk` shows one row per disk for a process that wrote
to both, and its recording has each disk's bytes."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from ..support import blkio
from .conftest import REPO, Loop, attach_loop, cgroup2_root, need, remove_cgroup, room, sh, wait_until

MIB = 1 << 20
# MiB written per (cgroup, loop device): four different sizes, so a cell
# counted under the wrong cgroup or disk cannot pass.
CELLS = {(0, 0): 4, (0, 1): 6, (1, 0): 8, (1, 1): 10}


@pytest.fixture
def two_loops():
    """Two fresh loop devices with direct I/O over files in /dev/shm."""
    made = []
    try:
        for _ in range(2):
            backing = f"/dev/shm/ioltrace-test-{os.getpid()}-{time.monotonic_ns()}.img"
            with open(backing, "wb") as f:
                f.truncate(64 << 20)
            made.append([None, backing])
            made[-1][0] = attach_loop(backing)
        yield [Loop(path, backing) for path, backing in made]
    finally:
        for path, backing in made:
            if path:
                subprocess.run(["losetup", "-d", path], capture_output=True)
            os.unlink(backing)


def wait_idle(loop):
    wait_until(f"{loop.name} to have nothing in flight",
               lambda: open(f"/sys/block/{loop.name}/inflight").read().split() == ["0", "0"], 60, every=0.05)


class Truth:
    """Where each cgroup's kernel-counted write bytes per device are read:
    v2 io.stat (wbytes) with the io controller, else the v1 blkio
    throttle count (Write)."""

    def __init__(self, v2_root, loops):
        self.v1_groups = []
        self.devs = [open(f"/sys/block/{loop.name}/dev").read().strip() for loop in loops]
        ctrl = open(f"{v2_root}/cgroup.controllers").read().split()
        if "io" in ctrl:
            self.kind = "v2 io.stat"
            with open(f"{v2_root}/cgroup.subtree_control", "w") as f:
                f.write("+io")
            return
        need(blkio.missing() and f"neither a cgroup v2 io controller nor {blkio.missing()}")
        self.kind = f"v1 {blkio.STAT}"

    def add_group(self, n):
        """The v1 group that goes with cgroup n (None under v2)."""
        if self.kind.startswith("v2"):
            return None
        g = f"{blkio.V1_ROOT}/ioltrace-test-{os.getpid()}-2key-{n}"
        os.mkdir(g)
        self.v1_groups.append(g)
        for dev in self.devs:
            blkio.watch(g, dev)
        return g

    def write_bytes(self, cg, v1, dev):
        if v1 is None:
            for line in open(f"{cg.path}/io.stat"):
                f = line.split()
                if f and f[0] == dev:
                    return int(dict(x.split("=", 1) for x in f[1:] if "=" in x).get("wbytes", 0))
            return 0
        return blkio.service_bytes(v1, dev, "Write")

    def close(self):
        for g in self.v1_groups:
            remove_cgroup(g)


def dd(cg, v1, loop, mib):
    """dd in cgroup cg (and v1 group v1): mib MiB, 1 MiB direct writes; the bytes dd says it wrote."""
    join = f'echo $$ > "{cg.path}/cgroup.procs"' + (f' && echo $$ > "{v1}/cgroup.procs"' if v1 else "")
    p = subprocess.run(["sh", "-c", f'{join} && exec "$@"', "sh", "dd", "if=/dev/zero", f"of={loop.path}",
                        f"bs={MIB}", f"count={mib}", "oflag=direct"], capture_output=True, text=True,
                       timeout=room(300))
    assert p.returncode == 0, p.stderr
    return int(re.search(r"^(\d+) bytes", p.stderr, re.M).group(1))


def csv_cells(path, kind):
    """A recording read with the csv module alone: {(key or name, disk): bytes} of `kind` rows."""
    with open(path, newline="") as f:
        first = f.readline()
        out = {}
        for r in csv.DictReader(f):
            if r["key_kind"] == kind and r["stage"] == "bytes":
                cell = (r["name"] if kind == "cgroup" else r["key"], r["disk"])
                out[cell] = out.get(cell, 0) + int(r["count"])
    return first, out


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LABELS = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port, family):
    """{frozenset(labels): value} of one family's samples, parsed here."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=room(60)) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(family + "{"):
            labels, value = line[len(family) + 1:].rsplit("} ", 1)
            out[frozenset(LABELS.findall(labels))] = float(value)
    return out, text


def test_cgroup_disk_cells_equal_the_kernels_per_cgroup_device_bytes(two_loops, make_cgroup, ioltrace, tmp_path):
    root = cgroup2_root()
    need(None if root else "no cgroup v2 mount")
    truth = Truth(root, two_loops)
    try:
        cgs = [make_cgroup("2key") for _ in range(2)]
        v1s = [truth.add_group(n) for n in range(2)]
        devs = [sh("cat", f"/sys/block/{loop.name}/dev") for loop in two_loops]
        rec = tmp_path / "cells.csv"
        h = ioltrace("hist", "--by", "cgroup,disk", "--stage", "device", "--csv", rec)
        port = free_port()
        s = ioltrace("serve", "--by", "cgroup,disk", "--listen", f"127.0.0.1:{port}", "--user", "root")
        for loop in two_loops:
            wait_idle(loop)
        before = {(c, d): truth.write_bytes(cgs[c], v1s[c], devs[d]) for c, d in CELLS}
        wrote = {(c, d): dd(cgs[c], v1s[c], two_loops[d], mib) for (c, d), mib in CELLS.items()}
        for loop in two_loops:
            wait_idle(loop)
        kernel = {cell: truth.write_bytes(cgs[cell[0]], v1s[cell[0]], devs[cell[1]]) - before[cell] for cell in CELLS}
        want = {(cgs[c].rel, two_loops[d].name): mib * MIB for (c, d), mib in CELLS.items()}
        print(f"ground truth: {truth.kind}: {kernel}")
        assert {(cgs[c].rel, two_loops[d].name): b for (c, d), b in wrote.items()} == want
        assert {(cgs[c].rel, two_loops[d].name): b for (c, d), b in kernel.items()} == want, truth.kind

        # serve: two labels per series (cgroup and device; no op, no workload
        # for a path that names none), each cell's bytes. dd's own start-up
        # may read from the root disk in its cgroup (a cold page cache): the
        # cells compared are those on the test's two disks.
        disks = {loop.name for loop in two_loops}
        seen = {}

        def served():
            got, seen["text"] = scrape(port, "ioltrace_cgroup_block_bytes_total")
            mine = seen["mine"] = {k: v for k, v in got.items()
                                   if dict(k).get("cgroup") in {cg.rel for cg in cgs} and dict(k).get("device") in disks}
            return mine if len(mine) == len(want) and all(v > 0 for v in mine.values()) else None
        try:
            mine = wait_until("serve to show the four cells", served, 60, every=0.2)
        except AssertionError:
            cells = [line for line in seen.get("text", "").splitlines() if line.startswith("ioltrace_cgroup_block_b")]
            raise AssertionError(f"serve's cells: {seen.get('mine')}; its cgroup byte series: {cells}; "
                                 f"serve's stderr: {s.stderr.text()}") from None
        assert {frozenset(dict(k)) for k in mine} == {frozenset({"cgroup", "device"})}, mine
        assert {(dict(k)["cgroup"], dict(k)["device"]): v for k, v in mine.items()} == want
        _, text = scrape(port, "ioltrace_cgroup_block_bytes_total")
        assert not re.search(r"^ioltrace_(process_)?block_", text, re.M)   # only the chosen level
        if shutil.which("promtool"):
            p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True,
                               timeout=room(600))
            assert p.returncode == 0, p.stdout + p.stderr
        assert s.stop() == 0, s.err

        # hist: the recording, read with the csv module; and hist's own text.
        assert h.stop() == 0, h.err
        first, cells = csv_cells(rec, "cgroup")
        assert first.startswith("# ioltrace-csv ") and "by=cgroup,disk" in first
        assert {k: v for k, v in cells.items() if k[0] in {cg.rel for cg in cgs} and k[1] in disks} == want
        for (cg, disk) in want:
            assert f"cgroup {cg}  disk {disk}  device time" in h.out, h.out
        # report groups the recording by the pair it was made with.
        p = subprocess.run([sys.executable, "-m", "ioltrace", "report", str(rec), "--format", "json"], cwd=REPO,
                           capture_output=True, text=True, timeout=room(120))
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        assert doc["by"] == "cgroup,disk"
        got = {(k["name"], k["disk"]): k["bytes"] for k in doc["keys"]
               if k["name"] in {cg.rel for cg in cgs} and k["disk"] in disks}
        assert got == want
        assert {k["op"] for k in doc["keys"]} == {"*"}
    finally:
        truth.close()


WRITER = """
import mmap, os, sys
buf = mmap.mmap(-1, 1 << 20)     # page-aligned, as O_DIRECT needs
buf.write(b"x" * len(buf))
for path, mib in zip(sys.argv[1::2], sys.argv[2::2]):
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    for _ in range(int(mib)):
        assert os.write(fd, buf) == len(buf)
    os.close(fd)
print(os.getpid(), flush=True)
"""


def test_top_by_process_disk_has_a_row_per_disk(two_loops, ioltrace, tmp_path):
    """One process writes 3 MiB to the first disk and 9 MiB to the second:
    top's summary has exactly two rows for it, one per disk, the bigger
    first (sorted by bytes); its recording has each disk's bytes. The
    writer runs under a comm of its own (a link to python named so), which
    top filters on, so other I/O on the machine cannot push its rows out
    of the summary's top 20. Python's own start-up may read from the root
    disk under that comm (a cold page cache): rows on other disks are
    left out of the comparison."""
    comm = "iolt2key"
    exe = tmp_path / comm
    exe.symlink_to(os.path.realpath(sys.executable))
    rec = tmp_path / "top.csv"
    t = ioltrace("top", "-b", "--by", "process,disk", "--comm", comm, "--keep-exited", "forever", "--csv", rec,
                 "--width", "100", "0.5")
    a, b = two_loops
    p = subprocess.run([str(exe), "-c", WRITER, a.path, "3", b.path, "9"], capture_output=True, text=True,
                       timeout=room(300))
    assert p.returncode == 0, p.stderr
    pid = p.stdout.strip()
    for loop in two_loops:
        wait_idle(loop)
    assert t.stop() == 0, t.err
    summary = t.out[t.out.rindex("Summary of"):].splitlines()
    head = next(line for line in summary if line.split()[:1] == ["ID"])
    assert head.split()[:3] == ["ID", "NAME", "DISK"], head
    loops = {a.name, b.name}
    rows = [line.split() for line in summary[summary.index(head) + 1:] if len(line.split()) > 2]
    mine = [r for r in rows if r[:1] == [pid] and r[2] in loops]
    assert [r[2] for r in mine] == [b.name, a.name], summary
    assert all(r[1] == comm for r in mine), mine
    assert len([line for line in summary if line.split()[:1] == ["ID"]]) == 1
    assert [r for r in rows if r[2] in loops] == mine, summary   # nothing but the writer's two rows on the loops
    _, cells = csv_cells(rec, "process")
    assert {k: v for k, v in cells.items() if k[0] == pid and k[1] in loops} == \
        {(pid, a.name): 3 * MIB, (pid, b.name): 9 * MIB}
