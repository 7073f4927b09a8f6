"""The typed request path (raw tracepoints, struct request at BTF offsets)
against the classic tracepoint path and the kernel's own counters.

Ground truth comes from outside ioltrace: /sys/block/loopN/stat deltas, the
v1 blkio.throttle.io_service_bytes of two groups (tests/support/blkio.py), and the v2 io.stat of a
cgroup whose buffered writes the flusher writes back."""

import json
import os
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from ..support import blkio
from .conftest import REPO, Ioltrace, Loop, cgroup2_root, need, need_tool, remove_cgroup, sh, unseen_of


def disk_stat(loop):
    """(ios, bytes) per op from /sys/block/NAME/stat (Documentation/block/stat.rst)."""
    f = [int(x) for x in open(f"/sys/block/{loop.name}/stat").read().split()]
    out = {"read": (f[0], f[2] * 512), "write": (f[4], f[6] * 512)}
    if len(f) >= 17:
        out["flush"] = (f[15], 0)   # flush ios, field 16 of stat.rst (5.5+)
    return out


def wait_idle(loop, timeout=60):
    """Until the disk has nothing in flight (its own inflight file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if open(f"/sys/block/{loop.name}/inflight").read().split() == ["0", "0"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"{loop.name} still busy after {timeout}s")


def rows(path):
    """JSON lines -> ({(kind key, op): [ios, bytes]}, summed kernel counters)."""
    by, counters = defaultdict(lambda: [0, 0]), defaultdict(int)
    for line in open(path):
        d = json.loads(line)
        if d["kind"] == "kernel":
            for k, v in d["kernel_counters"].items():
                counters[k] += v
            continue
        if d.get("layer", "block") != "block":
            continue
        cell = by[(d["name"] if d["kind"] in ("cgroup", "cgroup-v1") else d["key"], d["op"])]
        cell[0] += d["ios"]
        cell[1] += d["bytes"]
    return dict(by), dict(counters)


def by_op(table):
    out = defaultdict(lambda: [0, 0])
    for (_, op), (ios, nbytes) in table.items():
        out[op][0] += ios
        out[op][1] += nbytes
    return out


class SlowStart(Ioltrace):
    """Ioltrace with room for a slow compile (bcc under software emulation
    takes ~25 s in the test guest): 10x that for the banner."""

    def _wait_banner(self, timeout=300):
        super()._wait_banner(timeout)


def start(tmp_path, name, *args, env=None):
    path = tmp_path / f"{name}.jsonl"
    saved = dict(os.environ)
    try:
        os.environ.update(env or {})
        t = SlowStart(["hist", "--json", str(path), *[str(a) for a in args]])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return t, path


@pytest.fixture
def tracers():
    running = []
    yield running
    for t in running:
        t.kill()


def workload(loop, cg_a, cg_b, tmp_path):
    """Direct writes in A, direct reads in B, fio QD16 reads, and buffered
    writes written back by sync: every kind of request the tests compare."""
    need_tool("fio")
    for argv in (cg_a.wrap(["dd", "if=/dev/zero", f"of={loop.path}", "bs=4k", "count=300", "oflag=direct"]),
                 cg_b.wrap(["dd", f"if={loop.path}", "of=/dev/null", "bs=64k", "count=50", "iflag=direct"]),
                 ["fio", "--name=qd16", f"--filename={loop.path}", "--rw=randread", "--bs=4k", "--iodepth=16",
                  "--ioengine=libaio", "--direct=1", "--size=32M", "--io_size=8M", "--output-format=json",
                  f"--output={tmp_path / 'fio.json'}"],
                 ["dd", "if=/dev/zero", f"of={loop.path}", "bs=64k", "count=64", "seek=1024", "conv=fsync"]):
        subprocess.run(argv, check=True, capture_output=True, timeout=300)
    wait_idle(loop)


def test_raw_and_classic_agree_per_pid_cgroup_and_disk_with_the_disk_stat(loopdev, make_cgroup, tracers, tmp_path):
    """Four tracers at once (raw and classic, by process and by cgroup) see
    the same workload: each (key, op) has the same ios and bytes on both
    paths, and per op they equal the disk's own stat delta, or differ by
    exactly what the visible counters show."""
    cg_a, cg_b = make_cgroup("a"), make_cgroup("b")
    paths = {}
    for probes in ("raw", "classic"):
        for by in ("process", "cgroup"):
            t, p = start(tmp_path, f"{probes}-{by}", "--probes", probes, "--by", by, "--disk", loopdev.name, "-v")
            assert f"probe path: {'raw' if probes == 'raw' else 'classic'}" in t.banner
            tracers.append(t)
            paths[(probes, by)] = p
    time.sleep(0.3)     # the banner comes just before the first snapshot
    wait_idle(loopdev)
    s0 = disk_stat(loopdev)
    workload(loopdev, cg_a, cg_b, tmp_path)
    s1 = disk_stat(loopdev)
    for t in tracers:
        assert t.stop() == 0, t.err
    device = {op: (s1[op][0] - s0[op][0], s1[op][1] - s0[op][1]) for op in s1}
    assert device["write"][0] >= 300 + 64 * 64 * 1024 // (512 * 1024)

    got = {k: rows(p) for k, p in paths.items()}
    for by in ("process", "cgroup"):
        (raw, raw_counters), (classic, classic_counters) = got[("raw", by)], got[("classic", by)]
        # The raw path keys requests by pointer: nothing is unmatched or
        # dropped; a request collides only with itself, reused after a
        # completion the kernel did not run our program for (rare:
        # docs/RELIABILITY.md), as its stale slot does at stop.
        assert not any(raw_counters.get(k) for k in ("unmatched", "dropped")), (by, raw_counters, device)
        # The classic path pairs by (dev, sector): a flush (sector 0) and a
        # read of sector 0 in flight together collide; a bio merged at the
        # front of a request moves its sector, so its issue finds no start
        # (issue_no_start: charged to the issuing kblockd worker) and its old
        # slot stays behind (in_flight_at_stop). Each such request moves
        # between two rows; equal unless those counters say so.
        pairing = sum(classic_counters.get(k, 0)
                      for k in ("collision", "unmatched", "dropped", "issue_no_start", "in_flight_at_stop"))
        moved = sum(abs(raw.get(c, [0, 0])[0] - classic.get(c, [0, 0])[0]) for c in set(raw) | set(classic))
        assert moved <= 2 * pairing, (by, sorted(raw.items()), sorted(classic.items()), classic_counters)
    for (probes, by), (table, counters) in got.items():
        seen = by_op(table)
        visible = unseen_of(counters)
        for op in ("read", "write"):
            ios, nbytes = device[op]
            assert ios - visible <= seen[op][0] <= ios, (probes, by, op, seen[op], device[op], counters)
            if probes == "raw" and not visible:
                assert seen[op] == [ios, nbytes], (probes, by, op, seen[op], device[op])
        if probes == "raw" and "flush" in device and not visible:
            assert seen["flush"][0] == device["flush"][0], (by, seen["flush"], device["flush"])
    # Per cgroup: dd's 300 writes of 4 KiB under A, 50 reads of 64 KiB under B.
    table, counters = got[("raw", "cgroup")]
    visible = unseen_of(counters)
    for cg, op, n, size in ((cg_a, "write", 300, 4096), (cg_b, "read", 50, 65536)):
        ios, nbytes = table[(cg.rel, op)]
        assert n - visible <= ios <= n and nbytes == ios * size, (cg.rel, op, table[(cg.rel, op)], counters)


def test_without_btf_auto_falls_back_to_classic_with_one_line(loopdev, tracers, tmp_path):
    t, path = start(tmp_path, "nobtf", "--disk", loopdev.name, "--by", "process", "-v",
                    env={"IOLTRACE_BTF": str(tmp_path / "no-such-btf")})
    tracers.append(t)
    lines = [l for l in t.banner.splitlines() if l.startswith("probe path:")]
    assert len(lines) == 1 and "classic" in lines[0] and "no-such-btf" in lines[0], t.banner
    time.sleep(0.3)
    subprocess.run(["dd", "if=/dev/zero", f"of={loopdev.path}", "bs=4k", "count=100", "oflag=direct"],
                   check=True, capture_output=True)
    wait_idle(loopdev)
    assert t.stop() == 0
    table, counters = rows(path)
    assert by_op(table)["write"] == [100, 100 * 4096], (table, counters)


def test_forcing_raw_without_btf_is_one_line(tmp_path):
    env = dict(os.environ, IOLTRACE_BTF=str(tmp_path / "no-such-btf"))
    p = subprocess.run([sys.executable, "-m", "ioltrace", "hist", "--probes", "raw", "1", "1"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "--probes classic" in p.stderr, p.stderr


def test_cgroup_v1_names_groups_of_exited_processes_as_the_kernel_counts_them(loopdev, tracers, tmp_path):
    """Two dd in two v1 blkio groups exit before the interval ends: each
    group's bytes under --by cgroup-v1 equal its blkio.throttle.io_service_bytes
    (the request path names the charged group; the processes are gone)."""
    need(blkio.missing())
    root = blkio.V1_ROOT
    dev = sh("cat", f"/sys/block/{loopdev.name}/dev")
    groups = []
    try:
        for n in range(2):
            g = f"{root}/ioltrace-test-{os.getpid()}-v1-{n}"
            os.mkdir(g)
            groups.append(g)
            blkio.watch(g, dev)
        t, path = start(tmp_path, "v1", "--by", "cgroup-v1", "--disk", loopdev.name, "--probes", "raw",
                        "--keep-exited", "0")
        tracers.append(t)
        time.sleep(0.3)
        before = [blkio.service_bytes(g, dev, "Read") for g in groups]
        procs = [subprocess.Popen(["sh", "-c", f'echo $$ > "{g}/cgroup.procs" && exec dd if={loopdev.path} '
                                   f'of=/dev/null bs=1M count=24 skip={24 * n} iflag=direct'],
                                  stderr=subprocess.PIPE) for n, g in enumerate(groups)]
        for p in procs:
            assert p.wait(timeout=300) == 0
        wait_idle(loopdev)
        after = [blkio.service_bytes(g, dev, "Read") for g in groups]
        assert t.stop() == 0, t.err
        table, counters = rows(path)
        for g, b0, b1 in zip(groups, before, after):
            name = g[len(root):]
            assert b1 - b0 == 24 << 20
            assert table.get((name, "read"), [0, 0])[1] == b1 - b0, (name, table, counters)
        assert not any(k[0] == "?" for k in table), table
    finally:
        for g in groups:
            remove_cgroup(g)


def _v2_io_ready(root):
    ctrl = open(f"{root}/cgroup.controllers").read().split()
    return None if {"io", "memory"} <= set(ctrl) else "cgroup v2 without the io and memory controllers"


def _wbytes(cg_path, dev):
    """wbytes of one device in a v2 io.stat; a device line may come without
    it (6.1 prints a bare "7:0" line for a group with nothing counted yet)."""
    for line in open(f"{cg_path}/io.stat"):
        f = line.split()
        if f and f[0] == dev:
            return int(dict(x.split("=", 1) for x in f[1:] if "=" in x).get("wbytes", 0))
    return 0


def _io_stats(root):
    """Every v2 io.stat under root, for an assertion message."""
    return {d[len(root):] or "/": open(os.path.join(d, "io.stat")).read()
            for d, _, files in os.walk(root) if "io.stat" in files}


@pytest.mark.guest_only
@pytest.mark.parametrize("probes", ["raw", "classic"])
def test_writeback_lands_on_the_cgroup_that_dirtied_the_pages(loopdev, make_cgroup, tracers, tmp_path, probes):
    """Buffered dd in cgroup A to a new file on an ext4 on the disk, then
    sync from outside A: the flusher writes A's pages. Raw path: A's write
    bytes equal the wbytes delta of A's io.stat for this disk, and no other
    cgroup is charged for more than metadata. Classic path (documented, not
    a goal): the tracepoint knows only the task that issued the request, so
    the bytes land on the flusher's cgroup and A gets what dd wrote in its
    own context (nothing, on the kernels tried).

    A new file, not the block device itself: the kernel binds an inode to
    one cgroup's writeback the first time it is dirtied or synced, and the
    loop device's inode outlives the test (an earlier fsync from the root
    cgroup binds it there, and io.stat then charges root, not A)."""
    root = cgroup2_root()
    need(_v2_io_ready(root) if root else "no cgroup v2 mount")
    need_tool("mkfs.ext4")
    with open(f"{root}/cgroup.subtree_control", "w") as f:
        f.write("+io +memory")
    cg = make_cgroup("wb")
    dev = sh("cat", f"/sys/block/{loopdev.name}/dev")
    # Inode tables and journal written now, not by ext4lazyinit during the test.
    sh("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", loopdev.path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sh("mount", "-o", "noinit_itable", loopdev.path, str(mnt))
    try:
        t, path = start(tmp_path, f"wb-{probes}", "--by", "cgroup", "--disk", loopdev.name, "--probes", probes)
        tracers.append(t)
        time.sleep(0.3)
        wait_idle(loopdev)
        w0 = _wbytes(cg.path, dev)
        subprocess.run(cg.wrap(["dd", "if=/dev/zero", f"of={mnt / 'dirty'}", "bs=1M", "count=32"]),
                       check=True, capture_output=True, timeout=300)
        subprocess.run(["sync"], check=True, timeout=300)
        wait_idle(loopdev)
        w1 = _wbytes(cg.path, dev)
        stats = _io_stats(root)
        assert t.stop() == 0, t.err
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    table, counters = rows(path)
    mine = table.get((cg.rel, "write"), [0, 0])[1]
    others = sum(v[1] for (name, op), v in table.items() if op == "write" and name != cg.rel)
    assert w1 - w0 >= 32 << 20, (dev, w0, w1, stats, table)
    if probes == "raw":
        assert mine == w1 - w0, (table, w1 - w0, counters)
        assert others <= (w1 - w0) // 100, table   # only metadata, if any, elsewhere
    else:
        assert mine < w1 - w0 and mine + others >= w1 - w0, (table, w1 - w0)


@pytest.fixture
def freezable_loop(tmp_path):
    """A loop device over a file on ext4 (itself on a loop device in
    /dev/shm), in buffered mode: while the ext4 is frozen (fsfreeze) the
    loop worker cannot write, so write requests stay in flight as long as
    the test wants."""
    need_tool("fsfreeze")
    need_tool("mkfs.ext4")
    backing = f"/dev/shm/ioltrace-test-{os.getpid()}-{time.monotonic_ns()}-fs.img"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    made = []
    try:
        with open(backing, "wb") as f:
            f.truncate(96 << 20)
        outer = sh("losetup", "-f", "--show", backing)
        made.append(("losetup", "-d", outer))
        sh("mkfs.ext4", "-q", outer)
        sh("mount", outer, str(mnt))
        made.append(("umount", str(mnt)))
        inner_file = mnt / "disk.img"
        sh("dd", "if=/dev/zero", f"of={inner_file}", "bs=1M", "count=32", "status=none")
        inner = sh("losetup", "-f", "--show", "--direct-io=off", str(inner_file))
        made.append(("losetup", "-d", inner))
        yield Loop(inner, str(inner_file)), mnt
    finally:
        subprocess.run(["fsfreeze", "-u", str(mnt)], capture_output=True)
        for cmd in reversed(made):
            subprocess.run(cmd, capture_output=True)
        os.unlink(backing)


def _wait_for(cond, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class _Writers:
    def __init__(self, procs):
        self.procs = procs

    def wait(self, timeout):
        return max(p.wait(timeout=timeout) for p in self.procs)


def _frozen_writes(loop, mnt, n):
    """n dd processes, each writing one 4 KiB block with O_DIRECT to a loop
    device whose backing fs is frozen: returns once each sleeps in
    uninterruptible wait for its request (state D), which it enters only
    after submit_bio() made the request. /sys/block/NAME/inflight is no
    help here: on 6.18 it shows only the request the loop worker holds."""
    sh("fsfreeze", "-f", str(mnt))
    procs = [subprocess.Popen(["dd", "if=/dev/zero", f"of={loop.path}", "bs=4k", "count=1", f"seek={64 * i}",
                               "oflag=direct", "status=none"]) for i in range(n)]

    def state(pid):
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return "?"
    _wait_for(lambda: all(state(p.pid) == "D" for p in procs), f"{n} writers waiting on held requests")
    return _Writers(procs)


@pytest.mark.parametrize("probes", ["raw", "classic"])
def test_requests_in_flight_when_tracing_starts_and_stops_are_shown(freezable_loop, tracers, tmp_path, probes):
    """Write requests held in flight (frozen backing fs) while tracing starts
    and while it stops. Nothing completes while the fs is frozen, so the
    disk's stat read just before the stop is its count at the stop:
    ioltrace's writes + unmatched (requests issued before tracing started)
    equal the disk's completed writes between start and stop, and
    in_flight_at_stop equals the requests the disk still held at the stop
    (it completes and counts them later)."""
    need_tool("fio")
    loop, mnt = freezable_loop
    s0 = disk_stat(loop)["write"][0]
    first = _frozen_writes(loop, mnt, 8)
    t, path = start(tmp_path, f"bounds-{probes}", "--by", "process", "--disk", loop.name, "--probes", probes)
    tracers.append(t)
    sh("fsfreeze", "-u", str(mnt))
    assert first.wait(timeout=300) == 0
    subprocess.run(["dd", "if=/dev/zero", f"of={loop.path}", "bs=4k", "count=100", "oflag=direct"],
                   check=True, capture_output=True, timeout=300)
    wait_idle(loop)
    second = _frozen_writes(loop, mnt, 8)
    s_stop = disk_stat(loop)["write"][0]
    assert t.stop() == 0, t.err
    assert disk_stat(loop)["write"][0] == s_stop     # frozen: nothing completed meanwhile
    sh("fsfreeze", "-u", str(mnt))
    assert second.wait(timeout=300) == 0
    wait_idle(loop)
    s_end = disk_stat(loop)["write"][0]
    table, counters = rows(path)
    counted = by_op(table)["write"][0]
    # The writers' requests the disk had taken before tracing started
    # complete unmatched; those only queued at the start are issued and
    # counted (issue_no_start). dd's 8 + 100 writes, as the disk saw them:
    assert counted + counters["unmatched"] == s_stop - s0 == 108, (counted, counters, s_stop - s0)
    assert counters["in_flight_at_stop"] == s_end - s_stop == 8, (counters, s_end - s_stop)


def test_a_process_that_execs_is_one_row_whose_bytes_equal_the_disk(loopdev, tmp_path):
    """`run -- bash -c "read ... < LOOP; exec dd ..."`: one pid, two names
    (bash reads the disk, then becomes dd and writes): the run report shows
    one row for it, and its bytes per op (CSV) equal the disk's own delta."""
    from ioltrace.export import csv as rec

    csv_path = tmp_path / "run.csv"
    # No readahead: bash's read is then one synchronous request, done before
    # it execs; an asynchronous readahead window could still be in flight
    # when the command exits and the run stops counting.
    with open(f"/sys/block/{loopdev.name}/queue/read_ahead_kb", "w") as f:
        f.write("0")
    wait_idle(loopdev)
    s0 = disk_stat(loopdev)
    script = (f"read -r -n 1 x < {loopdev.path}; "
              f"exec dd if=/dev/zero of={loopdev.path} bs=64k count=64 oflag=direct status=none")
    p = subprocess.run([sys.executable, "-m", "ioltrace", "run", "--disk", loopdev.name, "--csv", str(csv_path),
                        "--", "bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    wait_idle(loopdev)
    s1 = disk_stat(loopdev)
    table = p.stdout.split("Block I/O of", 1)[1].split("total ", 1)[0]
    rows = [l.split() for l in table.splitlines() if l.strip() and l.split()[0].isdigit()]
    assert len(rows) == 1, p.stdout                     # one pid, one row
    assert "dd" in rows[0][1], rows
    got, ios, kernel = defaultdict(int), defaultdict(int), defaultdict(int)
    for r in rec.read(csv_path):
        if r.key_kind == "kernel" and r.stage == "counter":
            kernel[r.key] += r.count
        elif r.stage == "bytes" and r.disk == loopdev.name:
            got[r.op] += r.count
        elif r.stage == "ios" and r.disk == loopdev.name:
            ios[r.op] += r.count
    assert got["write"] == s1["write"][1] - s0["write"][1] == 64 * 65536, (got, s0, s1)
    # Every read the disk completed is counted, or shown by the collision
    # counter (a request whose completion was not seen before its slot was
    # taken again: each is one 4 KiB read of bash's here).
    dev_ios, dev_bytes = s1["read"][0] - s0["read"][0], s1["read"][1] - s0["read"][1]
    assert dev_ios > 0 and ios["read"] + kernel["collision"] == dev_ios, (ios, kernel, s0, s1)
    assert dev_bytes - got["read"] == 4096 * kernel["collision"], (got, kernel, s0, s1, p.stdout)


def test_offsets_and_flag_bits_read_from_btf_equal_bpftools():
    """The pure-Python BTF reader against bpftool's raw dump of the running
    kernel's BTF (bpftool's raw dump, unlike its C dump, keeps 1-byte enums'
    layout): every struct member offset and req_flag_bits value the typed
    path passes to the compiler."""
    import re

    from ioltrace import probepath

    need_tool("bpftool")
    found, problems = probepath.find_offsets()
    assert not problems, problems
    dump = sh("bpftool", "btf", "dump", "file", probepath.btf_path())
    for name, enumerator in probepath.ENUMERATORS.items():
        [value] = re.findall(rf"^\s+'{enumerator}' val=(\d+)$", dump, re.M)
        assert found[name] == int(value), (enumerator, found[name], value)
    # Struct members: "[id] STRUCT 'name' size=N vlen=M" then "'member' type_id=T bits_offset=B".
    structs, compared = {}, 0
    for m in re.finditer(r"^\[\d+\] (?:STRUCT|UNION) '([^']*)' size=\d+ vlen=\d+\n((?:\s+'.*\n)*)", dump, re.M):
        structs.setdefault(m.group(1), m.group(2))
    for name, (struct_name, member, _size) in probepath.OFFSETS.items():
        first = member.split(".")[0]
        body = structs[struct_name]
        hit = re.search(rf"^\s+'{re.escape(first)}' type_id=\d+ bits_offset=(\d+)", body, re.M)
        if hit is None:   # inside an anonymous member: bpftool names it ''
            continue
        if "." in member:   # blkcg.css.cgroup: css at 0, cgroup at 0 of css
            assert int(hit.group(1)) // 8 <= found[name]
            continue
        assert int(hit.group(1)) // 8 == found[name], (struct_name, member, hit.group(1), found[name])
        compared += 1
    assert compared >= len(probepath.OFFSETS) // 2, compared
