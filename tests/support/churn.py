"""The churn driver shared by benchmarks/churn.py (its docstring says what is
measured, how, and how to run it) and tests/root/test_churn.py (its CI
version).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import bench as B

WRITER = B.REPO / "scripts" / "churn_writer.py"
MAPS = ("stats", "hist")
SAMPLE_S = 1.0  # seconds between samples; range 0.2..10


def read_json_lines(path):
    """Sums over a `--json` recording: block I/Os and bytes over all keys,
    kernel counters over all intervals, and the keys seen."""
    out = {"ios": 0, "bytes": 0, "errors": 0, "counters": {}, "pids": set(), "exited_ios": 0, "other_ios": 0,
           "intervals": 0}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if d["kind"] == "kernel":
                out["intervals"] += 1
                for k, v in d["kernel_counters"].items():
                    out["counters"][k] = out["counters"].get(k, 0) + v
                continue
            if d.get("layer") != "block":
                continue
            out["ios"] += d["ios"]
            out["bytes"] += d["bytes"]
            out["errors"] += d["errors"]
            if d["key"] == "exited":
                out["exited_ios"] += d["ios"]
            elif d["key"] == "other":
                out["other_ios"] += d["ios"]
            else:
                out["pids"].add(d["key"])
    return out


def churn(processes, seconds, keep_exited="10", stats_entries=None, sample_s=SAMPLE_S, log=print):
    """One run; returns a dict of samples and findings. Cleans up everything."""
    workdir = tempfile.mkdtemp(prefix="ioltrace-churn-")
    json_path = os.path.join(workdir, "churn.jsonl")
    tracer = writer = None
    res = {"processes": processes, "seconds": seconds, "keep_exited": keep_exited, "stats_entries": stats_entries,
           "samples": []}
    try:
        with B.loop_device(64) as (dev, dio), B.cgroups(["w"], "churn") as (root, [cg]):
            try:
                res.update(dev=dev, dio=dio, cgroup=cg)
                tracer = B.Ioltrace(label="ioltrace hist")
                tracer.argv = B.IOLTRACE + ["hist", "1", "--by", "process", "--disk", os.path.basename(dev),
                                            "--keep-exited", str(keep_exited), "--json", json_path]
                if stats_entries:
                    tracer.env = {"IOLTRACE_STATS_ENTRIES": str(stats_entries)}
                tracer.label = "ioltrace " + " ".join(tracer.argv[3:])
                tracer.start()
                pid = tracer.proc.pid
                maps = B.maps_by_name(pid, MAPS)
                res["maps"] = maps
                t0 = time.monotonic()

                def sample(phase):
                    if tracer.proc.poll() is not None:
                        raise B.BenchError(f"ioltrace exited ({tracer.proc.returncode}) during the run: "
                                           f"{tracer.proc.stderr.read().decode(errors='replace')[-300:]}")
                    s = {"t": time.monotonic() - t0, "phase": phase, "rss_kib": B.rss_kib(pid)}
                    for name, m in maps.items():
                        s[name] = B.map_entries(m["id"])
                    res["samples"].append(s)
                    return s

                log(f"{tracer.label}: pid {pid}; before: {sample('before')}")

                def join():
                    with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                        f.write(str(os.getpid()))

                writer = subprocess.Popen([sys.executable, str(WRITER), dev, str(processes), str(seconds)],
                                          preexec_fn=join, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          start_new_session=True)
                n = 0
                while writer.poll() is None:
                    n += 1
                    s = sample("writing")
                    if n % 10 == 0:
                        log(f"  {s['t']:6.1f}s  RSS {s['rss_kib'] / 1024:.1f} MiB  stats {s['stats']:,}  "
                            f"hist {s['hist']:,}")
                    time.sleep(max(0.0, t0 + n * sample_s - time.monotonic()))
                out, err = writer.communicate()
                if writer.returncode != 0:
                    raise B.BenchError(f"churn writer failed ({writer.returncode}): {err.decode()[-300:]}")
                writer = None
                res["writer"] = json.loads(out)
                # Let the last processes pass the grace period and be folded:
                # until the maps hold what they held before the writer
                # started, with 10x room for a slow machine.
                folding = keep_exited != "forever"
                settle = 3.0 + (float(keep_exited) if folding else 0.0)
                end = time.monotonic() + (10 * settle if folding else settle)
                before = res["samples"][0]
                while time.monotonic() < end:
                    s = sample("settling")
                    if folding and s["stats"] <= before["stats"] and s["hist"] <= before["hist"]:
                        break
                    time.sleep(sample_s)
                log(f"after: {sample('after')}")
                res["rc"] = tracer.stop()
                res["stderr"] = tracer.stderr.decode(errors="replace")
                tracer = None
            finally:
                if writer is not None:
                    os.killpg(writer.pid, signal.SIGKILL)
                    writer.wait()
                if tracer is not None:
                    tracer.stop()
                    tracer = None
        res["json"] = read_json_lines(json_path)
        return res
    finally:
        if tracer is not None:
            tracer.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def figures(res):
    ss = res["samples"]
    before = next(s for s in ss if s["phase"] == "before")
    after = ss[-1]
    j = res["json"]
    return {"rss_before_kib": before["rss_kib"], "rss_peak_kib": max(s["rss_kib"] for s in ss),
            "rss_after_kib": after["rss_kib"], "stats_before": before["stats"],
            "stats_peak": max(s["stats"] for s in ss), "stats_after": after["stats"],
            "hist_before": before["hist"], "hist_peak": max(s["hist"] for s in ss), "hist_after": after["hist"],
            "written_bytes": res["writer"]["bytes"], "written_ios": res["writer"]["ok"],
            "traced_bytes": j["bytes"], "traced_ios": j["ios"], "pids": len(j["pids"]),
            "exited_ios": j["exited_ios"], "other_ios": j["other_ios"],
            "alarms": {k: v for k, v in j["counters"].items() if v}}


def describe(res):
    f = figures(res)
    ent = f", stats map {res['stats_entries']} entries" if res["stats_entries"] else ""
    return (f"| --keep-exited {res['keep_exited']}{ent} | {f['written_ios']:,} / {f['written_bytes']:,} | "
            f"{f['traced_ios']:,} / {f['traced_bytes']:,} | {f['stats_before']:,} / {f['stats_peak']:,} / "
            f"{f['stats_after']:,} | {f['hist_before']:,} / {f['hist_peak']:,} / {f['hist_after']:,} | "
            f"{f['rss_before_kib'] / 1024:.1f} / {f['rss_peak_kib'] / 1024:.1f} / {f['rss_after_kib'] / 1024:.1f} | "
            f"{f['other_ios']:,} | {', '.join(f'{k} {v:,}' for k, v in f['alarms'].items()) or 'none'} |")
