"""Kernel CPU cost per block I/O of ioltrace's eBPF programs, against a bpftrace one-liner.

What it measures: the nanoseconds the kernel spends running each tracer's BPF
programs, per traced I/O, from the kernel's own BPF accounting
(kernel.bpf_stats_enabled=1 makes it keep run_time_ns and run_cnt per program;
the old value is restored afterwards). Wall-clock time plays no part, so the
figure holds on a noisy shared machine as long as the CPU is not throttled.

How: a loop device with direct I/O over a filled file in /dev/shm. For each
round, each tracer in turn (the order rotates per round; 4 rounds, quick 1) is started, its
programs are found from the BPF program fds it holds (/proc/PID/fdinfo), and
for each fio workload (4k random reads, psync QD1 and libaio QD16) run_time_ns
and run_cnt are read with `bpftool -j prog show` before and after. Then

    ns per I/O = sum over the tracer's programs of delta(run_time_ns)
                 / delta(run_cnt) of its block_rq_complete program,

with fio's own I/O count shown beside it as a check that every I/O was seen.
Extra completions are other block I/O on the machine, traced by both tracers
alike; a measurement with more than 5% of them is repeated (twice at most)
and the cleanest attempt kept. Tracers:

- `ioltrace hist` (default options: per process/cgroup/disk/op keys, queue
  and device histograms) and `ioltrace hist --stage all` (adds a total
  histogram): programs tracepoint__block__{block_io_start or block_rq_insert,
  block_rq_issue, block_rq_complete};
- the same with `--probes raw` (the typed request path: raw tracepoints
  reading struct request at BTF offsets, request-pointer keyed in-flight
  slots, charged cgroup read per request) and `--probes classic`; and the
  raw path with IOLTRACE_RQ_WINDOW=0 ("a read per field": struct request's
  q, cmd_flags, __sector and bio read one by one instead of in one window);
- the bpftrace one-liner in tests/support/bench.py (BPFTRACE_ONELINER) (one start map keyed by
  (dev, sector), one log2 histogram): programs block_rq_issue, block_rq_comple;
- the floor: empty programs on the same three tracepoints, raw and classic
  (what merely running a program there costs; FLOOR_SCRIPT).

Reported: per program ns/run and runs per I/O, total ns per I/O (medians over
rounds), and the median over rounds of the paired ratio ioltrace/bpftrace.
Targets: ratio <= 1.0 for the classic path. The typed (raw) path's target,
<= 0.8 of the one-liner, is judged by event_cost.py on the whole event: what
it saves, the record a classic tracepoint builds, is outside run_time_ns.

Run: /usr/bin/python3 benchmarks/kernel_cost.py [--quick] [--rounds N] [--runtime S]
"""

import argparse
import sys
import time

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support, ioltrace
from tests.support import bench as B  # noqa: E402

WORKLOADS = (
    ("psync QD1", dict(ioengine="psync", iodepth=1)),
    ("libaio QD16", dict(ioengine="libaio", iodepth=16)),
)
ROLES = ("start", "issue", "complete")
TARGET_RATIO = 1.0
RAW_TARGET_RATIO = 0.8   # the typed request path against the bpftrace one-liner
MAX_FOREIGN = 0.05   # completions beyond fio's own I/Os tolerated in a measurement: 5%
RETRIES = 2          # re-measurements when other block I/O exceeded that


def role(name):
    if name.endswith(("block_io_start", "block_rq_insert")):
        return "start"
    if name.endswith("block_rq_issue"):
        return "issue"
    if name.endswith(("block_rq_complete", "block_rq_comple")):
        return "complete"
    return name


# Empty programs on ioltrace's three block tracepoints, raw or classic:
# argv[1] is "raw" or "classic". Prints the banner the bench waits for.
FLOOR_SCRIPT = r"""
import os, signal, sys
from bcc import BPF
from ioltrace import loader
loader.use_headers()   # the kernel headers ioltrace compiles with (BCC_KERNEL_SOURCE)
start = "block_io_start" if os.path.isdir("/sys/kernel/tracing/events/block/block_io_start") else "block_rq_insert"
if sys.argv[1] == "raw":
    src = "".join(f"RAW_TRACEPOINT_PROBE({tp}) {{ return 0; }}\n" for tp in (start, "block_rq_issue", "block_rq_complete"))
else:
    src = "".join(f"TRACEPOINT_PROBE(block, {tp}) {{ return 0; }}\n" for tp in (start, "block_rq_issue", "block_rq_complete"))
b = BPF(text=src)
sys.stderr.write("Tracing block I/O (floor)\n")
sys.stderr.flush()
try:
    signal.pause()
except KeyboardInterrupt:
    pass
b.cleanup()
"""


class Floor(B.Ioltrace):
    """Empty programs on the same tracepoints (kind "raw" or "classic")."""

    def __init__(self, kind):
        super().__init__(label=f"floor: empty {kind} programs")
        self.argv = [sys.executable, "-c", FLOOR_SCRIPT, kind]


def _per_field():
    t = B.Ioltrace("--probes", "raw", label="IOLTRACE_RQ_WINDOW=0 ioltrace hist --probes raw")
    t.env = {"IOLTRACE_RQ_WINDOW": "0"}
    return t


def tracers():
    return [
        ("ioltrace raw", lambda: B.Ioltrace("--probes", "raw", label="ioltrace hist --probes raw")),
        ("ioltrace raw, a read per field", _per_field),
        ("ioltrace classic", lambda: B.Ioltrace("--probes", "classic", label="ioltrace hist --probes classic")),
        ("ioltrace raw --stage all", lambda: B.Ioltrace("--probes", "raw", "--stage", "all",
                                                        label="ioltrace hist --probes raw --stage all")),
        ("bpftrace", B.Bpftrace),
        ("floor raw", lambda: Floor("raw")),
        ("floor classic", lambda: Floor("classic")),
    ]


def one_workload(ids, dev, runtime, wopts):
    before = B.prog_stats(ids)
    job = B.fio(dev, runtime=runtime, **wopts)
    after = B.prog_stats(ids)
    progs = {}
    for pid_, (name, t1, c1) in after.items():
        _, t0, c0 = before[pid_]
        progs[role(name)] = (t1 - t0, c1 - c0)
    complete = progs["complete"][1]
    ios = B.fio_ios(job)
    return {
        "progs": progs,
        "fio_ios": ios,
        "complete": complete,
        "foreign": complete / ios - 1 if ios else 1.0,
        "ns_per_io": sum(t for t, _ in progs.values()) / complete if complete else None,
    }


def measure(tracer, dev, runtime):
    """One tracer started once, each workload measured; -> {workload: sample}."""
    out = {}
    tracer.start()
    try:
        ids = tracer.prog_ids
        # The raw path's block_rq_merge program runs only on request merges (rare here).
        roles = sorted(r for r in (role(n) for n, _, _ in B.prog_stats(ids).values()) if r in ROLES)
        expected = sorted(ROLES) if isinstance(tracer, B.Ioltrace) else ["complete", "issue"]
        if roles != expected:
            raise B.BenchError(f"{tracer.label}: programs {roles}, expected {expected}")
        others = B.block_progs_of_others(ids)
        for wname, wopts in WORKLOADS:
            # Other people's block I/O is traced too; retry a measurement it
            # swamped and keep the cleanest attempt.
            best = None
            for _ in range(RETRIES + 1):
                s = one_workload(ids, dev, runtime, wopts)
                if best is None or s["foreign"] < best["foreign"]:
                    best = s
                if s["foreign"] <= MAX_FOREIGN:
                    break
            best["others"] = others
            out[wname] = best
    finally:
        rc = tracer.stop()
    if rc not in (0, None) and not isinstance(tracer, B.Bpftrace):
        raise B.BenchError(f"{tracer.label} exited with {rc}: {tracer.stderr.decode(errors='replace')[-300:]}")
    return out


def fmt_ns(x):
    return "-" if x is None or x != x else f"{x:,.0f}"


def report(samples, rounds, runtime, dio):
    """samples[tracer][workload] = [sample per round] -> (text, verdict lines)."""
    names = [n for n, _ in tracers()]
    summary, detail, verdicts = [], [], []
    for wname, _ in WORKLOADS:
        bt = samples["bpftrace"][wname]
        for tname in names:
            ss = samples[tname][wname]
            per_io = [s["ns_per_io"] for s in ss]
            cover = B.median([s["complete"] / s["fio_ios"] for s in ss if s["fio_ios"]])
            if tname == "bpftrace":
                ratio = "1 (reference)"
            else:
                r = [a["ns_per_io"] / b["ns_per_io"] for a, b in zip(ss, bt) if a["ns_per_io"] and b["ns_per_io"]]
                ratio = f"{B.median(r):.3f} ({min(r):.3f}-{max(r):.3f})"
                if tname.startswith("ioltrace raw"):
                    # What the typed path saves is the record a classic
                    # tracepoint builds outside the program's run time:
                    # event_cost.py judges it on the whole event.
                    verdicts.append(f"{wname}, {tname}: ratio {B.median(r):.3f} (program time only; the typed "
                                    f"path's target <= {RAW_TARGET_RATIO} is judged on the whole event by "
                                    "event_cost.py)")
                elif not tname.startswith("floor"):
                    ok = B.median(r) <= TARGET_RATIO
                    verdicts.append(f"{wname}, {tname}: ratio {B.median(r):.3f} "
                                    f"({'meets' if ok else 'MISSES'} target <= {TARGET_RATIO})")
            summary.append([wname, tname, fmt_ns(B.median(per_io)),
                            f"{fmt_ns(min(per_io))}-{fmt_ns(max(per_io))}", f"{cover:.3f}", ratio])
            for rl in ROLES:
                if rl not in ss[0]["progs"]:
                    continue
                ns_run = [s["progs"][rl][0] / s["progs"][rl][1] for s in ss if s["progs"][rl][1]]
                runs_io = [s["progs"][rl][1] / s["complete"] for s in ss if s["complete"]]
                ns_io = [s["progs"][rl][0] / s["complete"] for s in ss if s["complete"]]
                detail.append([wname, tname, rl, fmt_ns(B.median(ns_run)), f"{B.median(runs_io):.3f}",
                               fmt_ns(B.median(ns_io))])
    for wname, _ in WORKLOADS:
        # The window's effect, paired per round: start program ns/run, and all programs per I/O.
        win, per = samples["ioltrace raw"][wname], samples["ioltrace raw, a read per field"][wname]
        start = [(a["progs"]["start"][0] / a["progs"]["start"][1]) / (b["progs"]["start"][0] / b["progs"]["start"][1])
                 for a, b in zip(win, per) if a["progs"]["start"][1] and b["progs"]["start"][1]]
        whole = [a["ns_per_io"] / b["ns_per_io"] for a, b in zip(win, per) if a["ns_per_io"] and b["ns_per_io"]]
        if start and whole:
            verdicts.append(f"{wname}: raw path with one window read / a read per field: start program "
                            f"{B.median(start):.3f} ({min(start):.3f}-{max(start):.3f}) per run, all programs "
                            f"{B.median(whole):.3f} ({min(whole):.3f}-{max(whole):.3f}) per I/O")
    others = sorted({o for t in samples.values() for w in t.values() for s in w for o in s["others"]})
    foreign = sum(1 for t in samples.values() for w in t.values() for s in w
                  if s["fio_ios"] and s["complete"] / s["fio_ios"] > 1.05)
    text = (f"Loop device over /dev/shm, direct I/O {'on' if dio else 'OFF'}; fio 4k randread, {runtime} s per "
            f"workload; {rounds} rounds, tracer order rotated each round. ns per I/O = sum of the tracer's "
            f"programs' run_time_ns / run_cnt of its complete program (kernel.bpf_stats_enabled=1).\n\n"
            "Per I/O, all programs (median over rounds; ratio = median of per-round ratios to bpftrace):\n\n"
            + B.table(["workload", "tracer", "ns/IO", "range", "completions/fio IOs", "ratio vs bpftrace"], summary, left=2)
            + "\n\nPer program (medians over rounds):\n\n"
            + B.table(["workload", "tracer", "program", "ns/run", "runs/IO", "ns/IO"], detail, left=3)
            + "\n\n" + "\n".join(f"- {v}" for v in verdicts) + "\n")
    if foreign:
        text += (f"\n{foreign} of {sum(len(w) for t in samples.values() for w in t.values())} measurements saw over 5% "
                 "more completions than fio's I/Os: other block I/O on the machine was traced too (it is in both "
                 "numerator and denominator, so ns/IO is then an average over a different mix; ns/run per "
                 "program is the steadier figure).\n")
    if others:
        text += f"\nOther programs on block tracepoints were loaded during the run (noise): {', '.join(others)}\n"
    return text, verdicts


def run_rounds(tlist, dev, rounds, runtime):
    """Every (name, make) tracer of tlist measured once per round on dev
    after a warm-up, the order rotated each round, progress on stdout:
    {tracer: {workload: [samples]}}."""
    samples = {n: {w: [] for w, _ in WORKLOADS} for n, _ in tlist}
    B.fio(dev, ioengine="psync", iodepth=1, runtime=1)  # warm the device and fio
    for r in range(rounds):
        order = tlist[r % len(tlist):] + tlist[:r % len(tlist)]
        for tname, make in order:
            t0 = time.monotonic()
            res = measure(make(), dev, runtime)
            for w, s in res.items():
                samples[tname][w].append(s)
            print(f"round {r + 1}/{rounds} {tname:22s} " + "  ".join(
                f"{w}: {fmt_ns(s['ns_per_io'])} ns/IO" for w, s in res.items())
                + f"  ({time.monotonic() - t0:.0f} s)", flush=True)
    return samples


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s workloads")
    ap.add_argument("--rounds", type=int, help="rounds of every tracer (default 4, quick 1)")
    ap.add_argument("--runtime", type=int, help="seconds per fio workload (default 5, quick 2)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 4)
    runtime = args.runtime or (2 if args.quick else 5)
    B.sigterm_as_interrupt()
    B.need_root_tools("fio", "bpftrace", "bpftool", "losetup")
    env = B.environment()
    tlist = tracers()
    try:
        with B.loop_device() as (dev, dio), B.bpf_stats_enabled():
            samples = run_rounds(tlist, dev, rounds, runtime)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    except B.BenchError as e:
        print(f"kernel_cost: {e}", file=sys.stderr)
        return 1
    finally:
        B.final_checks()
    text, _ = report(samples, rounds, runtime, dio)
    print()
    print(text)
    B.update_results("kernel_cost", "kernel_cost: BPF run time per I/O (ioltrace raw and classic vs bpftrace "
                     "one-liner, with the empty-program floor)", text, env)
    print(f"updated {B.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
