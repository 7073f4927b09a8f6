"""`ioltrace snoop` on a real kernel, both probe paths, against the disk's
own counters and fio's.

Ground truth: /sys/block/loopN/stat deltas (requests the device completed,
per op) and fio's JSON (requests it issued, per op and size). A private
loop device sees only the test's I/O; fio's psync jobs keep one request in
flight each, so the block layer merges nothing and every request is one
that fio issued (4 KiB reads, 1 MiB writes: below the loop device's 1280 KiB
max_sectors_kb, so none is split)."""

import csv
import json
import os
import signal
import subprocess
import time
from collections import Counter

import pytest

from ioltrace import layout
from ioltrace.export import snoop as export

from .conftest import need_tool, room, unseen_of

READ_BS, WRITE_BS = 4096, 1 << 20


def device_ios(loop):
    """Completed requests per op from /sys/block/NAME/stat (Documentation/block/stat.rst):
    reads, writes, discards (field 12, 4.18+) and flushes (field 16, 5.5+)."""
    f = [int(x) for x in open(f"/sys/block/{loop.name}/stat").read().split()]
    return {"read": f[0], "write": f[4], "discard": f[11] if len(f) > 11 else 0,
            "flush": f[15] if len(f) > 15 else 0}


def delta(a, b):
    return {k: b[k] - a[k] for k in a}


def wait_idle(loop, timeout=60):
    deadline = time.monotonic() + room(timeout)
    while time.monotonic() < deadline:
        if open(f"/sys/block/{loop.name}/inflight").read().split() == ["0", "0"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"{loop.name} still busy after {room(timeout)} s")


def fio(loop, tmp_path, reads=1024, writes=16, name="mix"):
    """4 KiB random reads and 1 MiB random writes, direct, one request in
    flight per job; fio's JSON: {op: total_ios}."""
    need_tool("fio")
    out = tmp_path / f"{name}.json"
    argv = ["fio", "--output-format=json", f"--output={out}", f"--filename={loop.path}", "--direct=1",
            "--ioengine=psync"]
    if reads:
        argv += ["--name=reads", "--rw=randread", f"--bs={READ_BS}", "--offset=0", "--size=64M",
                 f"--io_size={reads * READ_BS}"]
    if writes:
        argv += ["--name=writes", "--rw=randwrite", f"--bs={WRITE_BS}", "--offset=128M", "--size=64M",
                 f"--io_size={writes * WRITE_BS}"]
    subprocess.run(argv, check=True, capture_output=True, timeout=room(300))
    jobs = json.loads(out.read_text())["jobs"]
    return {op: sum(j[op]["total_ios"] for j in jobs) for op in ("read", "write")}


def counters_line(line):
    """'# counters snoop_lost=0 missed_complete=3' -> {name: int}."""
    assert line.startswith("# counters "), line
    return {k: int(v) for k, v in (p.split("=") for p in line.split()[2:])}


def csv_rows(lines):
    """The rows of a snoop CSV file's lines, as dicts: between the first line
    and the closing "#" lines (the histogram, the counters)."""
    return list(csv.DictReader(line for line in lines[1:] if not line.startswith("#")))


def missed(counters):
    """Completions the kernel did not run the program for (conftest.UNSEEN),
    on any disk: up to this many of the device's requests may be neither
    shown nor counted lost. 0 on a quiet machine; the assertions are exact
    then."""
    return unseen_of(counters)


def printed(text):
    """(rows, snoop_lost) of snoop's stdout: the lines between the header
    and the summary, each as a dict of the columns a test checks."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("TIME(s)"))
    end = next(i for i, line in enumerate(lines) if " shown; snoop_lost=" in line)
    rows = []
    for line in lines[head + 1:end]:
        f = line.split()
        # The right-hand columns: comm may hold spaces, nothing after it does.
        pid, cgroup, disk, rwbs, sector, nbytes, que, dev, tot = f[-9:]
        rows.append({"pid": int(pid), "disk": disk, "rwbs": rwbs, "sector": int(sector), "bytes": int(nbytes),
                     "total_ms": float(tot)})
    lost = int(lines[end].split("snoop_lost=")[1].split()[0])
    return rows, lost


def start_snoop(ioltrace, loop, probes, *args):
    t = ioltrace("snoop", "--disk", loop.name, "--probes", probes, "-v", *args)
    assert f"probe path: {probes}" in t.banner, t.banner
    return t


@pytest.mark.parametrize("probes", ["raw", "classic"])
def test_every_completed_request_is_a_row(ioltrace, loopdev, tmp_path, probes):
    """Threshold 0: a row per request the device completed, with fio's
    sizes, its op letter, and the same rows in --csv and --json."""
    csv_path, json_path = tmp_path / "snoop.csv", tmp_path / "snoop.jsonl"
    t = start_snoop(ioltrace, loopdev, probes, "--csv", csv_path, "--json", json_path)
    wait_idle(loopdev)
    s0 = device_ios(loopdev)
    issued = fio(loopdev, tmp_path)
    wait_idle(loopdev)
    dev = delta(s0, device_ios(loopdev))
    assert t.stop() == 0, t.err
    rows, lost = printed(t.out)

    assert dev["read"] == issued["read"] == 1024 and dev["write"] >= issued["write"] == 16, (dev, issued)
    with open(csv_path, newline="") as f:
        lines = f.read().splitlines()
    counters = counters_line(lines[-1])
    assert lost == counters["snoop_lost"] == 0
    assert sum(dev.values()) - missed(counters) <= len(rows) <= sum(dev.values()), (len(rows), dev, counters)
    assert {r["disk"] for r in rows} == {loopdev.name}
    by_letter = {}
    for r in rows:
        by_letter.setdefault(r["rwbs"][:1], []).append(r)
    if not missed(counters):
        assert len(by_letter.get("R", [])) == dev["read"] and len(by_letter.get("W", [])) == dev["write"], \
            {k: len(v) for k, v in by_letter.items()}
    assert {r["bytes"] for r in by_letter["R"]} == {READ_BS}
    # A write's parts: whole pages, covering exactly the 1 MiB blocks fio wrote.
    assert all(r["bytes"] % 4096 == 0 and 0 < r["bytes"] <= WRITE_BS for r in by_letter["W"])
    blocks = {}
    for r in by_letter["W"]:
        blocks[r["sector"] * 512 // WRITE_BS] = blocks.get(r["sector"] * 512 // WRITE_BS, 0) + r["bytes"]
    assert all(128 <= b < 192 for b in blocks)
    if not missed(counters):
        assert sum(r["bytes"] for r in by_letter["W"]) == issued["write"] * WRITE_BS
        assert set(blocks.values()) == {WRITE_BS}
    # Reads in the first 64 MiB, aligned to their size.
    assert all(r["sector"] * 512 < 64 << 20 and r["sector"] % 8 == 0 for r in by_letter["R"])

    assert lines[0].startswith("# ioltrace-snoop-csv 1")
    recorded = csv_rows(lines)
    assert [(int(r["pid"]), r["rwbs"], int(r["sector"]), int(r["bytes"])) for r in recorded] == \
        [(r["pid"], r["rwbs"], r["sector"], r["bytes"]) for r in rows]
    assert all(r["op"] == ("read" if r["rwbs"].startswith("R") else "write") for r in recorded)
    assert all(int(r["total_ns"]) == int(r["queue_ns"]) + int(r["device_ns"]) for r in recorded)
    docs = [json.loads(line) for line in json_path.read_text().splitlines()]
    assert [d["sector"] for d in docs if d["type"] == "request"] == [r["sector"] for r in rows]
    assert docs[-1] == {"type": "counters", "counters": counters}


@pytest.mark.parametrize("probes", ["raw", "classic"])
def test_each_rows_total_is_in_its_bucket_of_the_histogram(ioltrace, loopdev, tmp_path, probes):
    """Threshold 0 over fio's mix: the kernel's total-time histogram that
    ends --json and --csv counts the requests the device completed, and for
    every bucket (layout's log-linear ones, 32 to a power of two, so every
    log2 bucket too) the rows whose total_ns lies in it are as many as it
    counts. A row's total from other timestamps than the histogram's
    (issue -> completion, or another clock read) lands in other buckets."""
    csv_path, json_path = tmp_path / "h.csv", tmp_path / "h.jsonl"
    t = start_snoop(ioltrace, loopdev, probes, "--csv", csv_path, "--json", json_path)
    wait_idle(loopdev)
    s0 = device_ios(loopdev)
    fio(loopdev, tmp_path, reads=1024, writes=16, name="hist")
    wait_idle(loopdev)
    dev = delta(s0, device_ios(loopdev))
    assert t.stop() == 0, t.err
    docs = [json.loads(line) for line in json_path.read_text().splitlines()]
    rows = [d for d in docs if d["type"] == "request"]
    [h] = [d for d in docs if d["type"] == "histogram"]
    counters = docs[-1]["counters"]
    assert counters["snoop_lost"] == 0

    completed = sum(dev.values())
    assert dev["read"] == 1024 and dev["write"] >= 16, dev
    assert completed - missed(counters) <= len(rows) <= completed, (len(rows), dev, counters)
    assert completed - missed(counters) <= h["count"] <= completed, (h["count"], dev, counters)
    assert h["stage"] == "total" and h["unit"] == "ns"
    assert sum(n for _, _, n in h["buckets"]) == h["count"]

    per_bucket = {}
    for r in rows:
        assert r["total_ns"] == r["queue_ns"] + r["device_ns"], r
        into = [(lo, hi) for lo, hi, _ in h["buckets"] if lo <= r["total_ns"] < (hi or float("inf"))]
        assert len(into) == 1, (r, into)    # a row outside every counted bucket fails here
        per_bucket[into[0]] = per_bucket.get(into[0], 0) + 1
        # The kernel's iolt_bucket() as ioltrace mirrors it puts the row where the bounds do.
        assert layout.BUCKET_LOW[layout.bucket_of(r["total_ns"])] == into[0][0], r
    assert per_bucket == {(lo, hi): n for lo, hi, n in h["buckets"]}
    assert len(per_bucket) > 10, per_bucket          # a spread of times, not one bucket
    assert export.read_csv_histogram(csv_path) == [tuple(b) for b in h["buckets"]]
    assert f"total time (kernel histogram) of all {h['count']} requests: " in t.out, t.out


@pytest.mark.parametrize("probes", ["raw", "classic"])
def test_a_threshold_above_every_request_prints_none(ioltrace, loopdev, tmp_path, probes):
    t = start_snoop(ioltrace, loopdev, probes, "--min-latency", "10s")
    wait_idle(loopdev)
    s0 = device_ios(loopdev)
    fio(loopdev, tmp_path, reads=256, writes=4)
    wait_idle(loopdev)
    dev = delta(s0, device_ios(loopdev))
    assert t.stop() == 0, t.err
    rows, lost = printed(t.out)
    assert dev["read"] == 256 and dev["write"] >= 4, dev
    assert rows == [] and lost == 0
    assert "0 requests at or above 10s shown; snoop_lost=0\n" in t.out


@pytest.mark.parametrize("probes", ["raw", "classic"])
def test_a_burst_into_a_tiny_buffer_is_counted_lost(ioltrace, loopdev, tmp_path, probes):
    """One page of ring buffer (~42 events) and a reader held stopped while
    2048 requests complete: the buffer fills, the rest are counted as
    snoop_lost, and rows + lost is the device's count."""
    csv_path = tmp_path / "burst.csv"
    t = start_snoop(ioltrace, loopdev, probes, "--buffer-pages", "1", "--csv", csv_path)
    wait_idle(loopdev)
    s0 = device_ios(loopdev)
    os.kill(t.proc.pid, signal.SIGSTOP)
    try:
        fio(loopdev, tmp_path, reads=2048, writes=0, name="burst")
        wait_idle(loopdev)
    finally:
        os.kill(t.proc.pid, signal.SIGCONT)
    dev = delta(s0, device_ios(loopdev))
    assert t.stop() == 0, t.err
    rows, lost = printed(t.out)
    assert dev["read"] == 2048, dev
    lines = csv_path.read_text().splitlines()
    counters = counters_line(lines[-1])
    assert counters["snoop_lost"] == lost and len(csv_rows(lines)) == len(rows), (counters, lost, len(rows),
                                                                                 len(csv_rows(lines)), t.err[-500:])
    assert lost > 0 and len(rows) > 0, (len(rows), lost)
    assert sum(dev.values()) - missed(counters) <= len(rows) + lost <= sum(dev.values()), (len(rows), lost, dev)


def test_duration_ends_the_run_with_the_summary(ioltrace, loopdev):
    t = ioltrace("snoop", "--disk", loopdev.name, "--duration", "0.5")
    t.proc.wait(room(60))
    t.out = t.stdout.join(room(30))
    assert t.proc.returncode == 0
    assert "\n0 requests shown; snoop_lost=0\n" in t.out, t.out


def test_ctrl_c_leaves_a_complete_csv(ioltrace, loopdev, tmp_path):
    """The CSV appears only complete, under its name, when the run ends."""
    path = tmp_path / "run.csv"
    t = ioltrace("snoop", "--disk", loopdev.name, "--csv", path)
    assert not path.exists()
    assert t.stop() == 0, t.err
    assert counters_line(path.read_text().splitlines()[-1])["snoop_lost"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["run.csv"]


@pytest.mark.parametrize("probes", ["raw", "classic"])
def test_slowest_pct_shows_a_few_slow_ones(ioltrace, loopdev, tmp_path, probes):
    """--slowest-pct 5 over 3 s of fio reads: the threshold is learned once
    100 requests were seen, then about 5% of the requests pass (the disk's
    own count is the whole)."""
    t = start_snoop(ioltrace, loopdev, probes, "--slowest-pct", "5")
    wait_idle(loopdev)
    s0 = device_ios(loopdev)
    need_tool("fio")
    subprocess.run(["fio", "--name=r", f"--filename={loopdev.path}", "--direct=1", "--rw=randread", "--bs=4k",
                    "--ioengine=libaio", "--iodepth=8", "--size=64M", "--io_size=256M", "--runtime=3",
                    "--time_based", "--output=/dev/null"], check=True, capture_output=True, timeout=room(300))
    wait_idle(loopdev)
    dev = delta(s0, device_ios(loopdev))
    assert t.stop() == 0, t.err
    rows, lost = printed(t.out)
    summary = next(line for line in t.out.splitlines() if " shown; snoop_lost=" in line)
    assert summary.startswith(f"{len(rows)} requests in the slowest 5% (threshold "), summary
    assert dev["read"] >= 200      # fewer than 100 leave nothing learned (an emulated guest is slow)
    # Learning starts from nothing shown; a threshold learned early from few
    # requests, and the bucket at the cut, let a few more pass.
    assert 0 < len(rows) + lost <= 0.15 * dev["read"], (len(rows), lost, dev)


def test_syscall_layer_shows_each_call(ioltrace, loopdev, make_cgroup, tmp_path):
    """--layer syscall in a cgroup of its own: dd's reads and writes of 4 KiB,
    as many as dd says it copied; --min-latency 10s shows none of them."""
    cg = make_cgroup("sc")
    csv_path = tmp_path / "sc.csv"
    t = ioltrace("snoop", "--layer", "syscall", "--cgroup", cg.rel, "--csv", csv_path)
    slow = ioltrace("snoop", "--layer", "syscall", "--cgroup", cg.rel, "--min-latency", "10s")
    dd = subprocess.run(cg.wrap(["dd", f"if={loopdev.path}", "of=/dev/null", "bs=4k", "count=300", "iflag=direct"]),
                        check=True, capture_output=True, text=True, timeout=room(60))
    records = [int(line.split("+")[0]) for line in dd.stderr.splitlines() if "records" in line]
    assert records == [300, 300], dd.stderr
    assert t.stop() == 0 and slow.stop() == 0, t.err + slow.err
    rows, counters = [], {}
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "# ioltrace-snoop-csv 1 layer=syscall"
    counters = dict(p.split("=") for p in lines[-1].split()[2:])
    rows = list(csv.DictReader(lines[1:-1]))
    assert counters["syscall_snoop_lost"] == "0"
    assert {r["comm"] for r in rows} == {"dd"}
    full = [(r["syscall"], int(r["bytes"])) for r in rows if int(r["bytes"]) == 4096]
    assert full.count(("read", 4096)) == records[0] and full.count(("write", 4096)) == records[1]
    assert all(int(r["latency_ns"]) > 0 for r in rows)
    assert "\n0 syscalls at or above 10s shown; syscall_snoop_lost=0\n" in slow.out, slow.out


def test_raw_rwbs_is_the_kernels(ioltrace, loopdev, tmp_path):
    """The raw path builds rwbs from cmd_flags and the flag bits the BTF
    gives; the classic path copies the string the kernel's blk_fill_rwbs()
    wrote into the tracepoint record. Both at once on one workload (fio's
    mix, then dd's writes with O_DSYNC, whose flushes the flush machinery
    sends): the same requests, with the same letters, sectors and sizes.
    Pure flushes (rwbs F, FF) come apart: the classic path pairs requests by
    (dev, sector) and cannot pair the flush machinery's (unmatched,
    collision, as in test_request_path.py); the raw path shows as many as
    the disk counted."""
    paths = {p: tmp_path / f"{p}.csv" for p in ("raw", "classic")}
    tracers = [start_snoop(ioltrace, loopdev, p, "--csv", paths[p]) for p in paths]
    wait_idle(loopdev)
    s0 = device_ios(loopdev)
    fio(loopdev, tmp_path, reads=256, writes=8)
    subprocess.run(["dd", "if=/dev/zero", f"of={loopdev.path}", "bs=64k", "count=4", "seek=3000", "oflag=direct,dsync"],
                   check=True, capture_output=True, timeout=room(60))
    wait_idle(loopdev)
    dev = delta(s0, device_ios(loopdev))
    seen, flushes, gaps = {}, {}, {}
    for p, t in zip(paths, tracers):
        assert t.stop() == 0, t.err
        lines = paths[p].read_text().splitlines()
        counters = counters_line(lines[-1])
        # On a busy machine a path may not run for some completions (a BPF
        # program already running on that CPU; the classic path shares one
        # such guard with every tracing program) or lose events: each of
        # those is one row it may lack, and says so.
        gaps[p] = missed(counters) + counters["snoop_lost"]
        rows = [(r["rwbs"], int(r["sector"]), int(r["bytes"])) for r in csv_rows(lines)]
        seen[p] = Counter(r for r in rows if r[0] not in ("F", "FF"))
        flushes[p] = [r for r in rows if r[0] in ("F", "FF")]
    # The same rows, letters included; where a path could not see a request,
    # only the rows the other path has beyond it, as many as it said.
    assert sum((seen["raw"] - seen["classic"]).values()) <= gaps["classic"], (seen, gaps)
    assert sum((seen["classic"] - seen["raw"]).values()) <= gaps["raw"], (seen, gaps)
    both = sum((seen["raw"] & seen["classic"]).values())
    assert both >= dev["read"] + dev["write"] - gaps["raw"] - gaps["classic"], (both, dev, gaps)
    letters = {r for r, _, _ in seen["raw"]}
    assert "WS" in letters and letters & {"R", "RS"}, letters
    assert dev["flush"] - gaps["raw"] <= len(flushes["raw"]) <= dev["flush"] and dev["flush"] > 0, (flushes, dev)
    assert all(sector == 0 and nbytes == 0 for _, sector, nbytes in flushes["raw"])
