"""End to end: record fio at iodepth 1 and at iodepth 16 with `ioltrace run
--csv`, then `ioltrace compare` must call iodepth 16's device and total
latency as significantly different (fio's own latency rises). Ground truth from outside ioltrace: fio's own
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
    # fio's clat rises with iodepth (asserted above), but on a loop device
    # over RAM the block layer's latency need not: measured here, the total
    # mean went 32 -> 23 us in one loaded run and p99 x2.6 in a quiet one;
    # in the 6.1 guest (page cache) 99 -> 64 us. What must hold is that
    # compare sees the two distributions differ, significantly.
    for stage in ("device", "total"):
        tests = {t["stat"]: t for t in got[stage]["tests"]}
        assert tests["dist"]["significant"], tests
        for side in ("a", "b"):
            lat = next(k for k in doc[side]["keys"] if k["op"] == "read")["latency"][stage]
            assert lat["mean_exact"]
    text = compare(qd1, qd16, "--disk", loopdev.name, "--stage", "total")
    print(text)
    assert "fio  disk " + loopdev.name + "  read  total time" in text
    verdict = next(line for line in text.splitlines() if line.startswith("  => "))
    assert not verdict.startswith("  => no significant difference"), text
    assert text.rstrip().splitlines()[-1].endswith("buckets resolve ~3%")
