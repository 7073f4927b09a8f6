"""The soak driver shared by benchmarks/soak.py (its docstring says what is
measured, how, and how to run it) and tests/root/test_soak.py (its 2-minute
version).
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


from . import bench as B

SAMPLE_S = 10               # seconds between samples; range 1..60
RSS_FLAT_KIB = 2048         # second-half RSS growth called flat; 30x the measured noise (tests/root/test_soak.py)
HASH_MAPS = ("stats", "hist", "errs")  # the maps that grow with new keys (names as bcc gives them)
FIO_TAGS = ("a", "b")


# ---------------------------------------------------------------- cgroups

# ---------------------------------------------------------------- fio

def fio_argv(dev, name, iops, seconds, output):
    return ["fio", f"--name={name}", f"--filename={dev}", "--direct=1", "--rw=randrw", "--rwmixread=70",
            "--bs=4k", "--ioengine=libaio", "--iodepth=4", "--numjobs=1",
            # fio limits reads and writes separately: split the job's IOPS 70/30 like the mix.
            f"--rate_iops={iops * 7 // 10},{iops - iops * 7 // 10}",
            "--time_based", f"--runtime={seconds}", "--norandommap", "--randrepeat=0",
            "--output-format=json", f"--output={output}"]


def start_fio(argv, cgroup):
    def join():
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    return subprocess.Popen(argv, preexec_fn=join, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def stop_procs(procs, timeout=15):
    """SIGTERM (fio then writes its summary), SIGKILL if it does not exit."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stderr is not None:
            p.stderr.close()


def fio_summary(path):
    """(read IOPS, write IOPS) from fio's JSON output, or None."""
    try:
        text = Path(path).read_text()
        job = json.loads(text[text.index("{"):])["jobs"][0]
        return float(job["read"]["iops"]), float(job["write"]["iops"])
    except (OSError, ValueError, KeyError, IndexError):
        return None


# ---------------------------------------------------------------- sampling

def slope_per_min(ts, ys):
    """Least-squares slope over the second half of the samples, per minute."""
    ts, ys = np.asarray(ts, float), np.asarray(ys, float)
    half = ts >= ts[-1] / 2
    if half.sum() < 2:
        return float("nan")
    return float(np.polyfit(ts[half] / 60, ys[half], 1)[0])


# ---------------------------------------------------------------- CSV checks

def check_csv(path):
    """Parse the recording with ioltrace's own reader; the intervals in order
    of appearance must tile the run. Returns a dict of findings."""
    from datetime import datetime

    from ioltrace.errors import IoltraceError
    from ioltrace.export import csv as rec

    res = {"parse_error": None, "rows": 0, "intervals": 0, "gaps": [], "overlaps": [], "order": [],
           "ios": 0, "bytes": 0, "lengths": [], "cells": 0}
    try:
        rows = rec.read(path)
    except IoltraceError as e:
        res["parse_error"] = str(e)
        return res
    res["rows"] = len(rows)
    intervals = list(dict.fromkeys((r.interval_start, r.interval_end) for r in rows))
    # Rows of one interval are contiguous: each pair appears in one run only.
    runs = [(r.interval_start, r.interval_end) for i, r in enumerate(rows)
            if i == 0 or (rows[i - 1].interval_start, rows[i - 1].interval_end) != (r.interval_start, r.interval_end)]
    if len(runs) != len(intervals):
        res["order"].append(f"{len(runs)} runs of rows for {len(intervals)} intervals: an interval's rows are split")
    res["intervals"] = len(intervals)

    def ts(text):
        return datetime.fromisoformat(text).timestamp()
    for (a0, b0), (a1, b1) in zip(intervals, intervals[1:]):
        if a1 != b0:
            (res["gaps"] if ts(a1) > ts(b0) else res["overlaps"]).append(f"{b0} -> {a1}")
    res["lengths"] = [ts(b) - ts(a) for a, b in intervals]
    bad = [f"{a} .. {b}" for a, b in intervals if ts(b) <= ts(a)]
    res["order"] += [f"interval not increasing: {x}" for x in bad]
    cells = set()
    for r in rows:
        if r.layer == "block" and r.key_kind != "kernel":
            if r.stage in ("ios", "bytes"):
                res[r.stage] += r.count
            elif r.bucket_low_ns:
                cells.add((r.key, r.disk, r.op, r.stage, r.bucket_low_ns))
    # What the hist map should hold: one entry per (key, stage, bucket) ever hit.
    res["cells"] = len(cells)
    res["first"], res["last"] = (intervals[0][0], intervals[-1][1]) if intervals else (None, None)
    return res


# ---------------------------------------------------------------- the run

def soak(minutes, iops, interval=1.0, sample_s=SAMPLE_S, log=print, workdir=None):
    """Run the soak; returns a dict of samples and findings. Cleans up everything."""
    seconds = int(round(minutes * 60))
    own_dir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="ioltrace-soak-")
    csv_path = os.path.join(workdir, "soak.csv")
    procs, tracer = [], None
    res = {"minutes": minutes, "iops_per_job": iops, "interval": interval, "samples": [],
           "csv_path": csv_path}
    try:
        with B.loop_device(256) as (dev, dio), B.cgroups(FIO_TAGS, "soak") as (root, cgs):
            try:
                res.update(dev=dev, dio=dio, cgroup_root=root, cgroups=cgs)
                for tag, cg in zip(FIO_TAGS, cgs):
                    out = os.path.join(workdir, f"fio-{tag}.json")
                    procs.append(start_fio(fio_argv(dev, f"soak-{tag}", iops, seconds + 120, out), cg))
                time.sleep(2)
                for p in procs:
                    if p.poll() is not None:
                        err = p.stderr.read().decode(errors="replace")[-300:]
                        raise B.BenchError(f"fio exited early ({p.returncode}): {err}")
                tracer = B.Ioltrace(label="ioltrace top")
                tracer.argv = B.IOLTRACE + ["top", "-b", "--disk", os.path.basename(dev), "--csv", csv_path,
                                            f"{interval:g}"]
                tracer.label = "ioltrace " + " ".join(tracer.argv[3:])
                startup = tracer.start()
                pid = tracer.proc.pid
                log(f"{tracer.label}: pid {pid}, attached in {startup:.1f}s; fio on {dev} in {', '.join(cgs)}")
                maps = B.maps_by_name(pid, HASH_MAPS)
                res["maps"] = maps
                t0 = time.monotonic()
                n = 0
                while True:
                    if tracer.proc.poll() is not None:
                        raise B.BenchError(f"ioltrace exited ({tracer.proc.returncode}) during the soak")
                    for p in procs:
                        if p.poll() is not None:
                            raise B.BenchError(f"a fio job exited ({p.returncode}) during the soak")
                    t = time.monotonic() - t0
                    s = {"t": t, "rss_kib": B.rss_kib(pid)}
                    for name, m in maps.items():
                        s[name] = B.map_entries(m["id"])
                    res["samples"].append(s)
                    if n % 6 == 0:
                        log(f"  {t / 60:5.1f} min  RSS {s['rss_kib'] / 1024:.1f} MiB  "
                            + "  ".join(f"{name} {s[name]}" for name in maps))
                    n += 1
                    if t >= seconds:
                        break
                    time.sleep(max(0.0, t0 + n * sample_s - time.monotonic()))
                rc = tracer.stop()
                res["rc"] = rc
                res["stderr"] = tracer.stderr.decode(errors="replace")
                tracer = None
            finally:
                # fio and the tracer go before their cgroups and device do.
                if tracer is not None:
                    tracer.stop()
                    tracer = None
                stop_procs(procs)
                procs = []
        # fio writes its JSON when it exits (SIGTERM above).
        res["fio"] = [fio_summary(os.path.join(workdir, f"fio-{tag}.json")) for tag in FIO_TAGS]
        res["csv"] = check_csv(csv_path)
        return res
    finally:
        if tracer is not None:
            tracer.stop()
        stop_procs(procs)
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def summarize(res):
    """Figures of a finished soak: slopes (per minute, second half) and totals."""
    ss = res["samples"]
    ts = [s["t"] for s in ss]
    half = [s for s in ss if s["t"] >= ts[-1] / 2]
    out = {"rss_slope_kib_min": slope_per_min(ts, [s["rss_kib"] for s in ss]),
           "rss_first_kib": ss[0]["rss_kib"], "rss_half_kib": half[0]["rss_kib"], "rss_last_kib": ss[-1]["rss_kib"],
           "rss_max_kib": max(s["rss_kib"] for s in ss),
           "rss_half_growth_kib": half[-1]["rss_kib"] - half[0]["rss_kib"],
           "rss_half_range_kib": max(s["rss_kib"] for s in half) - min(s["rss_kib"] for s in half)}
    for name in HASH_MAPS:
        ys = [s[name] for s in ss]
        out[f"{name}_slope_min"] = slope_per_min(ts, ys)
        out[f"{name}_first"], out[f"{name}_half"], out[f"{name}_last"] = ys[0], half[0][name], ys[-1]
        out[f"{name}_half_constant"] = len({s[name] for s in half}) == 1
    # hist entries are (key, stage, fine bucket) cells made on a bucket's
    # first hit: they converge rather than stay flat; show it by quarter.
    quarters = [next(s for s in ss if s["t"] >= ts[-1] * q / 4) for q in range(5)]
    out["hist_quarters"] = [(q["t"] / 60, q["hist"]) for q in quarters]
    return out
