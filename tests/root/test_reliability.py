"""When the system is in trouble: device errors, an overloaded in-flight map,
signals and kill -9. Ground truth: dd's and fio's own reports, the programs
bpftool lists, and whether a recording still parses."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from ioltrace.export import csv as rec

from ..support.bench import prog_ids_of
from .conftest import START_TIMEOUT_S, Ioltrace, attach_loop, kernel_counters, need_tool, room, sh, wait_until

IOLTRACE = [sys.executable, "-m", "ioltrace"]


@pytest.fixture
def failing_loop(tmp_path):
    """A loop device whose writes fail with ENOSPC past 8 MiB: a 64 MiB file
    on an 8 MiB tmpfs."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", str(mnt))
    path = None
    try:
        with open(mnt / "img", "wb") as f:
            f.truncate(64 << 20)
        path = attach_loop(str(mnt / "img"))
        yield path
    finally:
        if path:
            subprocess.run(["losetup", "-d", path], capture_output=True)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_device_errors_are_counted_by_errno_and_good_bytes_add_up(failing_loop, ioltrace, make_cgroup, tmp_path):
    name = os.path.basename(failing_loop)
    cg = make_cgroup("enospc")
    csv_path = tmp_path / "err.csv"
    t = ioltrace("hist", "--by", "process", "--disk", name, "--csv", csv_path)
    dd = subprocess.Popen(cg.wrap(["dd", "if=/dev/zero", f"of={failing_loop}", "bs=65536", "count=300",
                                   "oflag=direct"]), stderr=subprocess.PIPE, text=True)
    _, err = dd.communicate(timeout=room(300))
    assert dd.returncode != 0 and ("No space left on device" in err or "Input/output error" in err), err
    written = int(re.search(r"^(\d+) bytes", err, re.M).group(1))
    assert t.stop() == 0
    rows = [r for r in rec.read(csv_path) if r.key == str(dd.pid)]
    total = {stage: sum(r.count for r in rows if r.stage == stage) for stage in ("bytes", "errors")}
    by_errno = {r.stage: r.count for r in rows if r.stage.startswith("errno:")}
    assert total["bytes"] == written
    # ENOSPC from a direct-I/O loop device; a loop device through the page
    # cache (tmpfs without O_DIRECT, Linux < 6.6) fails the write with EIO.
    assert set(by_errno) <= {"errno:ENOSPC", "errno:EIO"} and by_errno, by_errno
    assert total["errors"] == sum(by_errno.values()) >= 1
    assert re.search(r"errors (ENOSPC|EIO)=", t.out)

    # The same in top (per cgroup and per disk).
    for by, key in (("cgroup", cg.rel), ("disk", name)):
        top = Ioltrace(["top", "-b", "-n", "2", "--by", by, "--disk", name, "--width", "140"])
        try:  # attached; then fail more writes
            subprocess.run(cg.wrap(["dd", "if=/dev/zero", f"of={failing_loop}", "bs=65536", "count=10",
                                    "seek=200", "oflag=direct"]), capture_output=True, timeout=room(120))
            top.proc.wait(timeout=room(120))
        finally:
            top.kill()
        out = top.out
        # The interval with the failed writes shows an ERR column and count.
        found = []
        for table in out.split("ioltrace top - ")[1:]:
            lines = table.splitlines()
            header = next(l for l in lines if "READ/s" in l)
            rows = [l for l in lines if key in l.split()]
            if "IOERR" in header and rows:
                found.append(int(rows[0].split()[header.split().index("IOERR")]))
        assert found and max(found) >= 1, out


def fio_jobs(dev, jobs, depth, seconds):
    # Disjoint regions and fio's random map: no two I/Os in flight to one
    # sector, so (dev, sector) keys never collide.
    return ["fio", "--name=load", f"--filename={dev}", "--rw=randread", "--bs=4k", "--direct=1",
            "--ioengine=io_uring", f"--iodepth={depth}", f"--numjobs={jobs}", "--size=48M",
            "--offset_increment=48M", "--time_based", f"--runtime={seconds}", "--thread", "--invalidate=0",
            "--group_reporting", "--output-format=json"]


@pytest.mark.parametrize("inflight", [None, 2])
def test_overload_counts_equal_fio_minus_dropped(loopdev, tmp_path, inflight):
    need_tool("fio")
    # ioltrace counts requests, fio counts its I/Os: with merges off, one each.
    with open(f"/sys/block/{loopdev.name}/queue/nomerges", "w") as f:
        f.write("2")
    csv_path = tmp_path / "load.csv"
    env = dict(os.environ)
    if inflight:
        env["IOLTRACE_INFLIGHT_ENTRIES"] = str(inflight)
    t = Ioltrace(["hist", "--by", "disk", "--disk", loopdev.name, "--csv", str(csv_path)], env=env)
    try:
        fio = subprocess.run(fio_jobs(loopdev.path, 4, 64, 4), capture_output=True, text=True, timeout=room(300))
        assert fio.returncode == 0, fio.stderr
        # fio reaps every completion before it exits: nothing is in flight.
        assert t.stop() == 0, t.err
    finally:
        t.kill()
    out = t.out
    fio_ios = json.loads(fio.stdout)["jobs"][0]["read"]["total_ios"]
    rows = rec.read(csv_path)
    counted = sum(r.count for r in rows if r.stage == "ios" and r.key_kind == "disk")
    kernel = kernel_counters(rows)
    print(f"inflight={inflight}: fio {fio_ios}, counted {counted}, kernel {kernel}")
    # Every I/O ioltrace did not count shows in a counter (docs/RELIABILITY.md):
    # ios counted = completed requests - unmatched - missed_complete, where
    # unmatched holds the completions whose slot was gone (dropped, or
    # issued before the probes attached) and missed_complete those the
    # kernel did not run our program for (another BPF program was running on
    # that CPU). On the classic path a stale slot a later request to that
    # sector replaces shows as collision; on this kernel about 0.1% of
    # io_uring requests on a loop device complete without a block_rq_complete
    # at their sector (bpftrace sees the same), hence the 1% bound there.
    # dropped says why a slot was lost, not how many completions: with two
    # slots and four submitters, two CPUs can evict the same issued request
    # at once and both count it (one CI run: dropped 128,521 for 125,454
    # unmatched), so it bounds the loss from above.
    lost = fio_ios - counted
    assert lost >= 0
    slack = max(2 + kernel["collision"], 0.01 * fio_ios)
    assert abs(lost - kernel["unmatched"] - kernel["missed_complete"]) <= slack, (lost, kernel)
    if inflight is None:
        # unmatched: completions of requests issued before the probes attached
        assert kernel["dropped"] == 0 and kernel["unmatched"] <= max(2, fio_ios // 10000)
        assert lost <= 0.01 * fio_ios
    else:
        assert lost <= kernel["dropped"] + kernel["missed_complete"] + slack
        assert kernel["dropped"] > 0.5 * lost
        assert f"dropped={kernel['dropped']}" in out  # the footer shows it


def stop_group(proc):
    """Kill a shell loop and the dd it is running (killing the shell alone
    leaves the dd writing on)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _progs():
    progs = json.loads(sh("bpftool", "-j", "prog", "show"))
    # Raw tracepoint programs (the typed request path) are named
    # raw_tracepoint__block_* or, by bcc at times, by the bare tracepoint.
    return {p["id"] for p in progs if p.get("name", "").startswith(
        ("tracepoint__bl", "tracepoint_bloc", "sc_e", "raw_tracepoint_", "block_io_start", "block_rq_"))}


def _still_loaded(ours, timeout=60):
    """Which of `ours` are still loaded; the kernel frees programs shortly
    after their last fd closes."""
    deadline = time.monotonic() + room(timeout)
    while _progs() & ours and time.monotonic() < deadline:
        time.sleep(0.1)
    return _progs() & ours


@pytest.mark.parametrize("command", ["hist", "top", "run"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_leave_complete_files_and_no_probes(loopdev, tmp_path, command, sig):
    need_tool("bpftool")
    csv_path = tmp_path / "sig.csv"
    writer = subprocess.Popen(["sh", "-c", f"while :; do dd if=/dev/zero of={loopdev.path} bs=4096 count=2000 "
                               "oflag=direct 2>/dev/null; done"], start_new_session=True)
    args = {"hist": ["hist", "0.2", "--disk", loopdev.name],
            "top": ["top", "-b", "0.2", "--disk", loopdev.name],
            "run": ["run", "--", "sh", "-c", f"while :; do dd if=/dev/zero of={loopdev.path} bs=4096 count=100 "
                    "oflag=direct 2>/dev/null; done"]}[command]
    argv = args[:1] + ["--csv", str(csv_path)] + args[1:]
    t = None
    try:
        if command == "run":
            # run starts its command once the probes are attached (no banner
            # without --verbose); a dd of the command that has ended did its
            # writes while traced.
            t = Ioltrace(argv, wait=False)
            procs = f"/sys/fs/cgroup/unified/ioltrace-run-{t.proc.pid}/cgroup.procs"
            first = wait_until("a dd in the run's cgroup", lambda: _dd_in(procs), timeout=START_TIMEOUT_S)
            wait_until("that dd to end", lambda: not set(first) & set(_dd_in(procs)), timeout=120)
        else:
            t = Ioltrace(argv)
            # The writer's I/O while traced: the device's own count of writes.
            since = _writes(loopdev)
            wait_until("writes while traced", lambda: _writes(loopdev) >= since + 100, timeout=120)
        ours = _progs() & prog_ids_of(t.proc.pid)  # this ioltrace's (other tracers may come and go)
        assert ours
        t.stop(sig)
    finally:
        stop_group(writer)
        if t is not None:
            t.kill()
    p, err = t.proc, t.err
    assert "Traceback" not in err
    # run passes the signal to the command and returns its status.
    assert p.returncode == (128 + sig if command == "run" else 0), err
    rows = rec.read(csv_path)  # complete: the reader rejects a cut last row
    assert sum(r.count for r in rows if r.stage == "bytes" and r.disk == loopdev.name) > 0
    assert _still_loaded(ours) == set()
    if command == "run":
        assert not os.path.exists(f"/sys/fs/cgroup/unified/ioltrace-run-{p.pid}")


def _writes(loop):
    """Writes the device completed (/sys/block/NAME/stat, field 5)."""
    with open(f"/sys/block/{loop.name}/stat") as f:
        return int(f.read().split()[4])


def _dd_in(procs):
    """Pids of dd in a cgroup.procs file."""
    pids = []
    try:
        with open(procs) as f:
            candidates = f.read().split()
    except FileNotFoundError:
        return []
    for pid in candidates:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "dd":
                    pids.append(pid)
        except FileNotFoundError:
            pass
    return pids


def _intervals_written(path):
    """Distinct intervals among the complete rows of a recording being written."""
    try:
        with open(path, newline="") as f:
            text = f.read()
    except FileNotFoundError:
        return 0
    lines = text.split("\r\n")[:-1]      # the last piece may be a row still being written
    return len({tuple(line.split(",", 2)[:2]) for line in lines[1:] if not line.startswith("#")})


def test_kill_9_leaves_a_readable_recording(loopdev, tmp_path):
    csv_path = tmp_path / "k9.csv"
    writer = subprocess.Popen(["sh", "-c", f"while :; do dd if=/dev/zero of={loopdev.path} bs=4096 count=2000 "
                               "oflag=direct 2>/dev/null; done"], start_new_session=True)
    t = None
    try:
        t = Ioltrace(["hist", "--csv", str(csv_path), "--by", "process", "--disk", loopdev.name, "0.1"])
        wait_until("five intervals in the recording", lambda: _intervals_written(csv_path) >= 5, timeout=60)
        t.kill()
    finally:
        stop_group(writer)
        if t is not None:
            t.kill()
    rows = rec.read(csv_path)
    intervals = {(r.interval_start, r.interval_end) for r in rows}
    assert len(intervals) >= 5
    assert sum(r.count for r in rows if r.stage == "bytes") > 0


# Each process writes 4 KiB (one page: one request, never split) with
# O_DIRECT at these offsets, past the 8 MiB the full tmpfs holds, and reports
# the errno of every write that failed.
FAILING_WRITER = r"""
import json, mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
errnos = []
for off in map(int, sys.argv[2:]):
    try:
        os.pwrite(fd, buf, off)
    except OSError as e:
        errnos.append(e.errno)
print(json.dumps(errnos))
"""


@pytest.mark.parametrize("layer,probes", [("block", "raw"), ("block", "classic"), ("syscall", None)])
def test_a_full_errno_map_counts_every_error_it_could_not_hold(failing_loop, make_cgroup, tmp_path, layer,
                                                               probes):
    """The errno map of one entry (IOLTRACE_ERRS_ENTRIES=1) holds the errors
    of one (process, errno) key; the other processes' errors are counted by
    errs_full. Ground truth: the errnos the writers themselves got."""
    name = os.path.basename(failing_loop)
    # Fill the tmpfs first, untraced: from then on every write past 8 MiB fails.
    subprocess.run(["dd", "if=/dev/zero", f"of={failing_loop}", "bs=1M", "count=16", "oflag=direct"],
                   capture_output=True, timeout=room(120))
    cg = make_cgroup("errsfull")
    csv_path = tmp_path / "errs.csv"
    env = dict(os.environ, IOLTRACE_ERRS_ENTRIES="1")
    if layer == "block":
        args = ["--disk", name, "--probes", probes]
        full = "errs_full"
    else:
        args = ["--layer", "syscall", "--syscalls", "pwrite64", "--cgroup", cg.rel]
        full = "syscall_errs_full"
    t = Ioltrace(["hist", "--by", "process", *args, "--csv", str(csv_path)], env=env)
    try:
        seen = []
        for n in range(5):
            offsets = [(32 << 20) + ((n * 3 + i) << 16) for i in range(3)]
            p = subprocess.run(cg.wrap([sys.executable, "-c", FAILING_WRITER, failing_loop, *map(str, offsets)]),
                               capture_output=True, text=True, timeout=room(120))
            assert p.returncode == 0, p.stderr
            seen += json.loads(p.stdout)
        assert t.stop() == 0, t.err
    finally:
        t.kill()
    # ENOSPC from a direct-I/O loop device, EIO through the page cache.
    assert len(seen) == 15 and set(seen) <= {28, 5}, seen
    rows = [r for r in rec.read(csv_path) if r.layer == layer]
    by_errno = sum(r.count for r in rows if r.stage.startswith("errno:"))
    errors = sum(r.count for r in rows if r.stage == "errors")
    kernel = kernel_counters(rec.read(csv_path))
    assert errors == len(seen), (errors, kernel)
    assert kernel[full] > 0 and by_errno + kernel[full] == len(seen), (by_errno, kernel)
    assert f"{full}={kernel[full]}" in t.out    # the footer shows it
