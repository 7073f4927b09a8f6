"""Kernel CPU cost per block I/O of the size and depth stages (--size-depth).

What it measures, and how: as benchmarks/kernel_cost.py (whose helpers it
uses): the kernel's own BPF accounting (kernel.bpf_stats_enabled=1) gives
run_time_ns of each of the tracer's programs; ns per I/O = their sum /
completions, for fio 4k random reads at psync QD1 and libaio QD16 on a loop
device over /dev/shm. Tracers, each round in a rotated order:

- `ioltrace hist --probes raw` and the same with `--size-depth`;
- `ioltrace hist --probes classic` and the same with `--size-depth`.

--size-depth adds, per request: a per-disk counter's lookup and atomic add
at issue, its decrement at completion, two more histogram cells and two
sums in the stats entry at completion (and a program on block_rq_requeue,
which runs only on requeues). Reported: ns per I/O per tracer (median over
rounds) and the median of the paired per-round ratios with/without.

Run: /usr/bin/python3 benchmarks/size_depth.py [--quick] [--rounds N] [--runtime S]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support, ioltrace
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.support import bench as B  # noqa: E402
import kernel_cost as K  # noqa: E402

PATHS = ("raw", "classic")


def tracers():
    out = []
    for path in PATHS:
        out.append((f"{path}", lambda p=path: B.Ioltrace("--probes", p, label=f"ioltrace hist --probes {p}")))
        out.append((f"{path} --size-depth", lambda p=path: B.Ioltrace(
            "--probes", p, "--size-depth", label=f"ioltrace hist --probes {p} --size-depth")))
    return out


def report(samples, rounds, runtime, dio):
    rows, verdicts, detail = [], [], []
    for wname, _ in K.WORKLOADS:
        for path in PATHS:
            base, with_sd = samples[path][wname], samples[f"{path} --size-depth"][wname]
            r = [a["ns_per_io"] / b["ns_per_io"] for a, b in zip(with_sd, base) if a["ns_per_io"] and b["ns_per_io"]]
            extra = [a["ns_per_io"] - b["ns_per_io"] for a, b in zip(with_sd, base) if a["ns_per_io"] and b["ns_per_io"]]
            for name, ss in ((path, base), (f"{path} --size-depth", with_sd)):
                per_io = [s["ns_per_io"] for s in ss]
                cover = B.median([s["complete"] / s["fio_ios"] for s in ss if s["fio_ios"]])
                rows.append([wname, name, K.fmt_ns(B.median(per_io)),
                             f"{K.fmt_ns(min(per_io))}-{K.fmt_ns(max(per_io))}", f"{cover:.3f}",
                             f"{B.median(r):.3f} ({min(r):.3f}-{max(r):.3f})" if name != path else "1 (reference)"])
            verdicts.append(f"{wname}, {path} path: --size-depth costs x{B.median(r):.3f} "
                            f"({min(r):.3f}-{max(r):.3f}), {K.fmt_ns(B.median(extra))} ns more per I/O")
            for name, ss in ((path, base), (f"{path} --size-depth", with_sd)):
                for rl in K.ROLES:
                    ns_run = [s["progs"][rl][0] / s["progs"][rl][1] for s in ss if s["progs"].get(rl, (0, 0))[1]]
                    if ns_run:
                        detail.append([wname, name, rl, K.fmt_ns(B.median(ns_run))])
    text = (f"Loop device over /dev/shm, direct I/O {'on' if dio else 'OFF'}; fio 4k randread, {runtime} s per "
            f"workload; {rounds} rounds, tracer order rotated each round. ns per I/O = sum of the tracer's "
            "programs' run_time_ns / run_cnt of its complete program (kernel.bpf_stats_enabled=1).\n\n"
            + B.table(["workload", "tracer (ioltrace hist --probes)", "ns/IO", "range", "completions/fio IOs",
                       "ratio to the same path without"], rows, left=2)
            + "\n\nPer program, ns per run (medians over rounds):\n\n"
            + B.table(["workload", "tracer", "program", "ns/run"], detail, left=3)
            + "\n\n" + "\n".join(f"- {v}" for v in verdicts) + "\n")
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s workloads")
    ap.add_argument("--rounds", type=int, help="rounds of every tracer (default 4, quick 1)")
    ap.add_argument("--runtime", type=int, help="seconds per fio workload (default 5, quick 2)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 4)
    runtime = args.runtime or (2 if args.quick else 5)
    B.sigterm_as_interrupt()
    B.need_root_tools("fio", "bpftool", "losetup")
    env = B.environment()
    tlist = tracers()
    try:
        with B.loop_device() as (dev, dio), B.bpf_stats_enabled():
            samples = K.run_rounds(tlist, dev, rounds, runtime)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    except B.BenchError as e:
        print(f"size_depth: {e}", file=sys.stderr)
        return 1
    finally:
        B.final_checks()
    text = report(samples, rounds, runtime, dio)
    print()
    print(text)
    B.update_results("size_depth", "size_depth: BPF run time per I/O with and without --size-depth", text, env)
    print(f"updated {B.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
