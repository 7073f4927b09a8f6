"""IOPS lost to each block tracer, all in one run: ioltrace's typed (raw) and
classic paths, the bpftrace one-liner, and the floor (empty programs).

What it measures: the whole path as an I/O-bound workload feels it, record
building included (the kernel builds a classic tracepoint's record before
the program runs, which its BPF accounting in kernel_cost.py does not see;
raw tracepoints build none). fio 4k random reads, io_uring, iodepth 32,
direct, on a loop device with direct I/O over a filled file in /dev/shm.

How: rounds; in each, every variant runs once (untraced included), in an
order rotated per round so drift on this shared machine spreads over all;
a variant's figure is the median over rounds of its IOPS / the same round's
untraced IOPS. Target: the raw path loses no more than the bpftrace
one-liner.

Run: /usr/bin/python3 benchmarks/request_path.py [--quick] [--rounds N] [--runtime S]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support, ioltrace
from tests.support import bench as B  # noqa: E402
from kernel_cost import Floor

FIO = dict(ioengine="io_uring", iodepth=32)


def variants():
    return [
        ("untraced", None),
        ("ioltrace raw", lambda: B.Ioltrace("--probes", "raw", label="ioltrace hist --probes raw")),
        ("ioltrace classic", lambda: B.Ioltrace("--probes", "classic", label="ioltrace hist --probes classic")),
        ("bpftrace", B.Bpftrace),
        ("floor raw", lambda: Floor("raw")),
        ("floor classic", lambda: Floor("classic")),
    ]


def run_once(dev, runtime, make):
    if make is None:
        return B.fio_iops(B.fio(dev, runtime=runtime, **FIO))
    with make() as t:
        t.start()
        job = B.fio(dev, runtime=runtime, **FIO)
        rc = t.stop()
    if rc not in (0, None) and not isinstance(t, B.Bpftrace):
        raise B.BenchError(f"{t.label} exited with {rc}: {t.stderr.decode(errors='replace')[-300:]}")
    return B.fio_iops(job)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds of 3 s runs")
    ap.add_argument("--rounds", type=int, help="rounds (default 6, quick 2)")
    ap.add_argument("--runtime", type=int, help="seconds per fio run (default 5, quick 3)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 6)
    runtime = args.runtime or (3 if args.quick else 5)
    B.sigterm_as_interrupt()
    B.need_root_tools("fio", "bpftrace", "losetup", "bpftool")
    env = B.environment()
    vs = variants()
    iops = {n: [] for n, _ in vs}
    try:
        with B.loop_device() as (dev, dio):
            B.fio(dev, runtime=2, **FIO)  # warm-up, discarded
            for r in range(rounds):
                order = vs[r % len(vs):] + vs[:r % len(vs)]
                for name, make in order:
                    iops[name].append(run_once(dev, runtime, make))
                print(f"round {r + 1}/{rounds}: " + "  ".join(f"{n} {iops[n][-1]:,.0f}" for n, _ in vs), flush=True)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    except B.BenchError as e:
        print(f"request_path: {e}", file=sys.stderr)
        return 1
    finally:
        B.final_checks()
    rows, loss = [], {}
    for name, _ in vs:
        ratios = [a / b for a, b in zip(iops[name], iops["untraced"])]
        loss[name] = (1 - B.median(ratios)) * 100
        rows.append([name, f"{B.median(iops[name]):,.0f}", f"{B.median(ratios):.3f}",
                     f"{min(ratios):.3f}-{max(ratios):.3f}", f"{loss[name]:.1f}%"])
    ok = loss["ioltrace raw"] <= loss["bpftrace"]
    text = (f"fio 4k randread, io_uring, iodepth 32, direct=1, {runtime} s per run, loop device over /dev/shm "
            f"(direct I/O {'on' if dio else 'OFF'}); {rounds} rounds, every variant once per round, order rotated.\n\n"
            + B.table(["variant", "IOPS (median)", "IOPS / untraced (median)", "range", "IOPS loss"], rows, left=1)
            + f"\n\n- ioltrace raw loses {loss['ioltrace raw']:.1f}%, the bpftrace one-liner "
              f"{loss['bpftrace']:.1f}%, ioltrace classic {loss['ioltrace classic']:.1f}%; floor: raw "
              f"{loss['floor raw']:.1f}%, classic {loss['floor classic']:.1f}% "
              f"({'meets' if ok else 'MISSES'} target: raw <= bpftrace)\n")
    print()
    print(text)
    B.update_results("request_path", "request_path: IOPS loss per tracer (typed vs classic vs bpftrace, with floor)",
                     text, env)
    print(f"updated {B.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
