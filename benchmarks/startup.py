"""Start-up time of `ioltrace hist`: from launching the command to its banner.

What it measures: the wait a user has between pressing Enter and ioltrace
tracing, i.e. from Popen() to the moment the line "Tracing block I/O... Hit
Ctrl-C to end." arrives on stderr (the banner is printed once the probes are
attached). It includes Python start-up and imports, header selection, bcc's
compilation of bpf/block.bpf.c with clang, the verifier, and attaching.

How: `python3 -m ioltrace hist` from the working tree, once as a warm-up
(warm bcc, warm page cache; not counted), then N times (default 5, quick 3);
each run is stopped with SIGINT right after the banner. Alongside, as many
`ioltrace hist -v` runs, interleaved, report how much of the time is the
compile-and-attach step ("compiled and attached in X s"); they are not part of
the timed figure. Reported: each time, median and max. Wall-clock times on a
shared machine: the median is the figure, the max shows the noise.
Target: median < 1.5 s.

Run: /usr/bin/python3 benchmarks/startup.py [--quick] [--runs N]
"""

import argparse
import re
import sys

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support, ioltrace
from tests.support import bench as B  # noqa: E402

TARGET_S = 1.5


def one(*args):
    t = B.Ioltrace(*args, label="ioltrace hist " + " ".join(args))
    try:
        secs = t.start()
    finally:
        rc = t.stop()
    if rc != 0:
        raise B.BenchError(f"{t.label} exited with {rc}: {t.stderr.decode(errors='replace')[-300:]}")
    m = re.search(rb"compiled and attached in ([0-9.]+)s", t.stderr)
    return secs, float(m.group(1)) if m else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 timed runs")
    ap.add_argument("--runs", type=int, help="timed runs after the warm-up (default 5, quick 3)")
    args = ap.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    B.sigterm_as_interrupt()
    B.need_root_tools("bpftool")
    env = B.environment()
    times, compiles, totals_v = [], [], []
    try:
        one()  # warm-up
        for i in range(runs):
            secs, _ = one()
            times.append(secs)
            vsecs, comp = one("-v")
            totals_v.append(vsecs)
            compiles.append(comp)
            print(f"run {i + 1}/{runs}: {secs:.3f} s to banner (a -v run: {vsecs:.3f} s, "
                  f"of which compile+attach {comp:.3f} s)", flush=True)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    except B.BenchError as e:
        print(f"startup: {e}", file=sys.stderr)
        return 1
    finally:
        B.final_checks()
    med, mx = B.median(times), max(times)
    comp = B.median(compiles)
    ok = med < TARGET_S
    rows = [[str(i + 1), f"{t:.3f}", f"{c:.3f}"] for i, (t, c) in enumerate(zip(times, compiles))]
    text = (f"`ioltrace hist` (default options) via `{' '.join(B.IOLTRACE)}` from the working tree, "
            f"Popen to banner; 1 warm-up, then {runs} timed runs, each followed by a `-v` run that reports "
            "its compile+attach time.\n\n"
            + B.table(["run", "to banner (s)", "compile+attach in the -v run (s)"], rows)
            + f"\n\n- median {med:.3f} s, max {mx:.3f} s ({'meets' if ok else 'MISSES'} target < {TARGET_S} s)\n"
            f"- compile+attach (bcc/clang, verifier, attach): median {comp:.3f} s, "
            f"{comp / B.median(totals_v) * 100:.0f}% of the -v runs' {B.median(totals_v):.3f} s\n")
    print()
    print(text)
    B.update_results("startup", "startup: `ioltrace hist` launch to banner", text, env)
    print(f"updated {B.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
