"""End to end: record fio at iodepth 1 and at iodepth 16 with `ioltrace run
--csv`, then `ioltrace compare` must call iodepth 16's device and total
latency higher, significantly. Ground truth from outside ioltrace: fio's own
JSON (I/O counts, and that its completion latency rose too)."""

import json
import subprocess
import sys

from .conftest import REPO, need_tool

SECONDS = 3


def record(loopdev, tmp_path, iodepth):
    csv_path = tmp_path / f"qd{iodepth}.csv"
    fio_json = tmp_path / f"qd{iodepth}.json"
    p = subprocess.run([sys.executable, "-m", "ioltrace", "run", "--csv", str(csv_path), "--report-to-stderr", "--",
                        "fio", f"--name=qd{iodepth}", f"--filename={loopdev.path}", "--rw=randread", "--bs=4k",
                        "--direct=1", "--ioengine=libaio", f"--iodepth={iodepth}", f"--runtime={SECONDS}",
                        "--time_based", "--output-format=json", f"--output={fio_json}"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    job = json.loads(fio_json.read_text())["jobs"][0]["read"]
    return str(csv_path), job


def compare(*args):
    p = subprocess.run([sys.executable, "-m", "ioltrace", "compare", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_iodepth_16_is_significantly_slower(loopdev, tmp_path):
    need_tool("fio")
    qd1, job1 = record(loopdev, tmp_path, 1)
    qd16, job16 = record(loopdev, tmp_path, 16)
    assert job16["clat_ns"]["mean"] > job1["clat_ns"]["mean"]  # fio saw it too
    doc = json.loads(compare(qd1, qd16, "--disk", loopdev.name, "--layer", "block", "--format", "json"))
    got = {c["stage"]: c for c in doc["comparisons"] if c["in"] == "both"}
    assert {"device", "total"} <= set(got), doc["comparisons"]
    # One key (fio, its worker's reads), counted as fio counted them.
    for side, job in (("a", job1), ("b", job16)):
        [key] = [k for k in doc[side]["keys"] if k["op"] == "read"]
        assert key["name"] == "fio" and key["disk"] == loopdev.name
        assert abs(key["ios"] - job["total_ios"]) <= 0.01 * job["total_ios"], (key["ios"], job["total_ios"])
    # Through the page cache (loop without direct I/O: tmpfs before Linux
    # 6.6) the loop worker copies in memory and the waiting at iodepth 16
    # happens above the block layer: measured in the 6.1 guest, fio's clat
    # mean rose while the block total fell (99 -> 64 us). Only with direct
    # I/O must the block layer's latency rise.
    with open(f"/sys/block/{loopdev.name}/loop/dio") as f:
        direct = f.read().strip() == "1"
    for stage in ("device", "total"):
        tests = {t["stat"]: t for t in got[stage]["tests"]}
        assert tests["dist"]["significant"], tests
        if stage == "device" or not direct:
            # Where the waiting at iodepth 16 shows depends on the kernel:
            # on 6.18 in the device's tail (p50 +9%, p99 x2.6), on 6.1
            # before issue. The distribution changes either way.
            continue
        higher = [t for s, t in tests.items() if s != "dist" and t["significant"] and t["ratio"] > 1]
        assert higher, (stage, tests)
        a = next(k for k in doc["a"]["keys"] if k["op"] == "read")["latency"][stage]
        b = next(k for k in doc["b"]["keys"] if k["op"] == "read")["latency"][stage]
        assert b["mean_ns"] > a["mean_ns"] and b["mean_exact"] and a["mean_exact"]
    text = compare(qd1, qd16, "--disk", loopdev.name, "--stage", "total")
    print(text)
    assert "fio  disk " + loopdev.name + "  read  total time" in text
    verdict = next(line for line in text.splitlines() if line.startswith("  => "))
    if direct:
        assert verdict.startswith("  => B slower:") or (verdict.startswith("  => B differs:") and " slower" in verdict), text
    else:
        assert not verdict.startswith("  => no significant difference"), text
    assert text.rstrip().splitlines()[-1].endswith("buckets resolve ~3%")
