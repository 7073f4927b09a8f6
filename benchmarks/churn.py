"""Process churn: many short-lived processes, bounded memory, exact totals.

What it measures: N processes (default 20,000), each writing one 4 KiB block
with O_DIRECT to a loop device and exiting, spread evenly over S seconds
(scripts/churn_writer.py, in a cgroup v2 child of its own), traced by
`ioltrace hist 1 --by process --disk LOOP --json FILE --keep-exited K`.
Sampled every second: ioltrace's VmRSS (/proc/PID/status) and the entries of
its kernel maps stats and hist (`bpftool -j map dump`). At the end: the
bytes and I/Os of every JSON line summed over all keys, against the bytes
the writer's children wrote (each child's exit status says whether its
pwrite was whole); the kernel counters summed over the intervals; which
keys were seen (own pids, the cgroup's "exited" key, the "other" key of a
full stats map).

`--keep-exited forever` is the behaviour before folding: the maps keep one
key per process, until the stats map fills and the rest go to "other".
IOLTRACE_STATS_ENTRIES (--stats-entries) shrinks the stats map to show that.

Run: sudo /usr/bin/python3 benchmarks/churn.py [--processes 20000] [--seconds 120]
         [--keep-exited 10] [--compare]   (--compare: also forever, same load)

Everything it makes (the writer and its children, the cgroup, the loop
device, its backing file, the JSON file) is removed on the way out, also on
Ctrl-C and SIGTERM.
"""

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support, ioltrace
from tests.support import bench as B  # noqa: E402
from tests.support.churn import churn, describe  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=20000, help="short-lived writers (default 20000)")
    ap.add_argument("--seconds", type=float, default=120, help="spread over this long (default 120)")
    ap.add_argument("--keep-exited", default="10", help="ioltrace --keep-exited (default 10)")
    ap.add_argument("--stats-entries", type=int, help="IOLTRACE_STATS_ENTRIES for ioltrace (default: its own)")
    ap.add_argument("--compare", action="store_true", help="also run with --keep-exited forever (no folding)")
    ap.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    args = ap.parse_args(argv)
    B.sigterm_as_interrupt()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    B.need_root_tools("losetup", "bpftool")
    env = B.environment()
    runs = [args.keep_exited] + (["forever"] if args.compare else [])
    results = []
    try:
        for keep in runs:
            results.append(churn(args.processes, args.seconds, keep, args.stats_entries,
                                 log=lambda msg: print(msg, flush=True)))
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    except B.BenchError as e:
        print(f"churn: {e}", file=sys.stderr)
        return 1
    finally:
        B.final_checks()
    text = (f"{args.processes:,} processes over {args.seconds:g} s, each one 4 KiB O_DIRECT write to a loop "
            f"device over /dev/shm (direct I/O {'on' if results[0]['dio'] else 'OFF'}), from one cgroup v2 "
            f"child; `ioltrace hist 1 --by process --disk LOOP --json FILE`. Figures are before the writer "
            f"starts / peak / after the last fold; RSS in MiB.\n\n"
            "| run | written: I/Os / bytes | traced: I/Os / bytes | stats entries | hist entries | VmRSS | "
            "I/Os under other | kernel alarms |\n|---|---|---|---|---|---|---|---|\n"
            + "\n".join(describe(r) for r in results) + "\n")
    print()
    print(text)
    ok = all(r["rc"] == 0 and r["json"]["bytes"] == r["writer"]["bytes"] for r in results)
    if not args.no_record:
        B.update_results("churn", "churn: short-lived processes, folded after they exit", text, env)
        print(f"updated {B.RESULTS}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
