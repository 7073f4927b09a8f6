"""End to end: record fio at iodepth 1 and at iodepth 16 with `ioltrace run
--csv`, then `ioltrace compare` must call iodepth 16's device and total
latency significantly higher. Ground truth from outside ioltrace: fio's own
JSON (I/O counts, and that its completion latency rose too).

The device must queue. A loop device in buffered mode serves its requests
one after another in one worker, so 16 queued requests wait for each other;
the test turns direct I/O off on its loop device because on the 6.18 host a
direct-I/O loop device over tmpfs completes most reads inside the
submitting call (recent kernels first try a loop's direct I/O without
blocking), and then nothing queues: in two CI runs the device p50 came out
x0.87 of iodepth 1, and fio's own clat went 70 -> 54 us. Buffered: total
p50 x8.0 to x9.1; with four busy loops on the two CPUs, x7.7 and x12. The
wait shows as device time on 6.1 (x5.7 to x6.3) and as queue time on 6.18
(see the test).

16 requests wait longer only if serving one takes longer than waking the
worker: with 4 KiB reads over RAM it does not (the total mean went 32 -> 23
us at iodepth 16), with 512 KiB reads it does. 512 KiB is also the largest
read that stays one request (the loop device's 128 segments of 4 KiB), so
ioltrace's request count can be held to fio's I/O count; merging is off for
the same reason. fio submits and reaps its 16 I/Os as one batch, so that 16
requests reach the device together however late fio gets the CPU on a
shared machine."""

import json
import re
import subprocess
import sys

from .conftest import REPO, need_tool, room, sh

SECONDS = 3
BS = "512k"


def record(loopdev, tmp_path, iodepth):
    csv_path = tmp_path / f"qd{iodepth}.csv"
    fio_json = tmp_path / f"qd{iodepth}.json"
    p = subprocess.run([sys.executable, "-m", "ioltrace", "run", "--csv", str(csv_path), "--report-to-stderr", "--",
                        "fio", f"--name=qd{iodepth}", f"--filename={loopdev.path}", "--rw=randread", f"--bs={BS}",
                        "--direct=1", "--ioengine=libaio", f"--iodepth={iodepth}", f"--iodepth_batch_submit={iodepth}",
                        f"--iodepth_batch_complete_min={iodepth}", f"--runtime={SECONDS}",
                        "--time_based", "--output-format=json", f"--output={fio_json}"],
                       cwd=REPO, capture_output=True, text=True, timeout=room(1200))
    assert p.returncode == 0, p.stderr
    job = json.loads(fio_json.read_text())["jobs"][0]["read"]
    return str(csv_path), job


def compare(*args):
    p = subprocess.run([sys.executable, "-m", "ioltrace", "compare", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=room(600))
    assert p.returncode == 0, p.stderr
    return p.stdout


def fio_clat(job):
    """fio's completion latency: (median, mean) in ns."""
    return job["clat_ns"]["percentile"]["50.000000"], job["clat_ns"]["mean"]


def fio_rose(job1, job16):
    (p50_1, mean_1), (p50_16, mean_16) = fio_clat(job1), fio_clat(job16)
    return p50_16 >= 1.25 * p50_1 and mean_16 > mean_1


def test_iodepth_16_is_significantly_slower(loopdev, tmp_path):
    need_tool("fio")
    # No merging: two random 512 KiB reads that happen to be adjacent in a
    # batch would become one request (ioltrace counts requests, as iostat
    # does); measured 1.8% fewer requests than fio's I/Os in the 6.1 guest.
    # No direct I/O: the device must queue (see above).
    with open(f"/sys/block/{loopdev.name}/queue/nomerges", "w") as f:
        f.write("2")
    sh("losetup", "--direct-io=off", loopdev.path)
    with open(f"/sys/block/{loopdev.name}/loop/dio") as f:
        assert f.read().strip() == "0"
    # Ground truth first: fio's own clat must rise, its median as well as its
    # mean, i.e. the device really queued. One CI run in five saw the mean
    # fall (34 vs 60 us) on the 6.18 host, and one saw the mean rise on a
    # tail while the median fell (ioltrace's device p50 x0.76 in that run):
    # then the pair is recorded again, up to three times, until fio's median
    # is at least 1.25x; what ioltrace must say is then known from fio.
    for attempt in (1, 2, 3):
        qd1, job1 = record(loopdev, tmp_path, 1)
        qd16, job16 = record(loopdev, tmp_path, 16)
        if fio_rose(job1, job16):
            break
    assert fio_rose(job1, job16), (fio_clat(job1), fio_clat(job16))  # fio saw it too
    doc = json.loads(compare(qd1, qd16, "--disk", loopdev.name, "--layer", "block", "--format", "json"))
    got = {c["stage"]: c for c in doc["comparisons"] if c["in"] == "both"}
    assert {"queue", "device", "total"} <= set(got), doc["comparisons"]
    # One key (fio, its worker's reads), counted as fio counted them.
    for side, job in (("a", job1), ("b", job16)):
        [key] = [k for k in doc[side]["keys"] if k["op"] == "read"]
        assert key["name"] == "fio" and key["disk"] == loopdev.name
        assert abs(key["ios"] - job["total_ios"]) <= 0.01 * job["total_ios"], (key["ios"], job["total_ios"])

    def slower(stage):
        tests = {t["stat"]: t for t in got[stage]["tests"]}
        means = [next(k for k in doc[side]["keys"] if k["op"] == "read")["latency"][stage] for side in ("a", "b")]
        assert all(m["mean_exact"] for m in means)
        return (tests["dist"]["significant"] and tests["p50"]["significant"] and tests["p50"]["ratio"] > 1
                and means[1]["mean_ns"] > means[0]["mean_ns"])

    assert slower("total"), got["total"]
    # Where the 16 wait depends on where the kernel fires block_rq_issue for
    # a loop device: in loop_queue_rq on 6.1 (the wait is device time), in
    # the loop worker on 6.18 (queue time; both probe paths agree, and the
    # device p50 falls x0.8). Either way, one of the two stages shows it.
    assert slower("queue") or slower("device"), (got["queue"], got["device"])
    text = compare(qd1, qd16, "--disk", loopdev.name, "--stage", "total")
    print(text)
    assert "fio  disk " + loopdev.name + "  read  total time" in text
    verdict = next(line for line in text.splitlines() if line.startswith("  => "))
    # The verdict names the median as slower, as fio's median was. It may say
    # "differs" instead of "slower" when the tail went the other way: one CI
    # run in the 6.1 guest under qemu's software emulation had iodepth 1's
    # p99 at 7.67 ms and iodepth 16's at 5.31 ms (p50 x6.82, p99 x0.69).
    p50 = re.match(r"  => B (slower|differs): p50 x([0-9.]+) \(p[<=][0-9.]+\)( slower)?[,:]", verdict)
    assert p50 and (p50[1] == "slower" or p50[3]) and float(p50[2]) > 1, text
    assert verdict.endswith(", significant"), text
    assert text.rstrip().splitlines()[-1].endswith("buckets resolve ~3%")
