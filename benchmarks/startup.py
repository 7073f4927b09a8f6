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

Second part, `ioltrace run -- CMD` on each layer (block, syscall, both),
interleaved in every round so that the layers are compared within one run
on the same load: "before" is from Popen() to the moment the command
started, "after" from the moment the command ended to ioltrace's exit (the
report printed, the probes detached). The command is `date +%s.%N`, which
prints its own start time (CLOCK_REALTIME, as time.time() here) and exits
within a millisecond, so it stands for both moments. Targets: before <= 1.5
s, after <= 0.5 s (medians), on every layer.

Run: /usr/bin/python3 benchmarks/startup.py [--quick] [--runs N] [--only hist|run]
"""

import argparse
import re
import subprocess
import sys
import time

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support, ioltrace
from tests.support import bench as B  # noqa: E402

TARGET_S = 1.5
RUN_BEFORE_S, RUN_AFTER_S = 1.5, 0.5
RUN_LAYERS = ("block", "syscall", "both")


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


def run_phases(layer):
    """(before, after) seconds of one `ioltrace run --layer LAYER -- date`."""
    t0 = time.time()
    p = subprocess.run(B.IOLTRACE + ["run", "--layer", layer, "--report-to-stderr", "--", "date", "+%s.%N"],
                       capture_output=True, cwd=B.REPO, timeout=120)
    t_end = time.time()
    if p.returncode != 0:
        raise B.BenchError(f"ioltrace run --layer {layer} exited with {p.returncode}: "
                           f"{p.stderr.decode(errors='replace')[-300:]}")
    t_cmd = float(p.stdout.split()[0])
    return t_cmd - t0, t_end - t_cmd


def run_part(runs):
    """The `run -- CMD` phases per layer; returns the RESULTS.md text."""
    for layer in RUN_LAYERS:
        run_phases(layer)  # warm-up
    got = {layer: [] for layer in RUN_LAYERS}
    for i in range(runs):
        for layer in RUN_LAYERS:
            got[layer].append(run_phases(layer))
        print(f"run round {i + 1}/{runs}: " + ", ".join(
            f"{layer} {b:.3f}+{a:.3f} s" for layer in RUN_LAYERS for b, a in [got[layer][-1]]), flush=True)
    rows, verdict = [], []
    for layer in RUN_LAYERS:
        before = B.median([b for b, _ in got[layer]])
        after = B.median([a for _, a in got[layer]])
        ok = before <= RUN_BEFORE_S and after <= RUN_AFTER_S
        verdict.append(f"{layer} {'meets' if ok else 'MISSES'}")
        rows.append([layer, f"{before:.3f}", f"{max(b for b, _ in got[layer]):.3f}", f"{after:.3f}",
                     f"{max(a for _, a in got[layer]):.3f}"])
    base = B.median([b for b, _ in got["block"]])
    ratios = ", ".join(f"{layer} {B.median([b for b, _ in got[layer]]) / base:.2f}" for layer in RUN_LAYERS)
    return (f"`ioltrace run --layer L --report-to-stderr -- date +%s.%N`, layers interleaved in each of {runs} "
            "rounds after one warm-up each; before = Popen to the command's start, after = the command's "
            "end to ioltrace's exit.\n\n"
            + B.table(["layer", "before median (s)", "before max", "after median (s)", "after max"], rows)
            + f"\n\n- targets: before <= {RUN_BEFORE_S} s, after <= {RUN_AFTER_S} s: {', '.join(verdict)}\n"
            f"- before, as a ratio to block's within this run: {ratios}\n"
            f"- load average at the end: {B.loadavg()}\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 timed runs")
    ap.add_argument("--runs", type=int, help="timed runs after the warm-up (default 5, quick 3)")
    ap.add_argument("--only", choices=("hist", "run"), help="measure only this part")
    args = ap.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    B.sigterm_as_interrupt()
    B.need_root_tools("bpftool")
    env = B.environment()
    if args.only != "hist":
        try:
            text = run_part(runs)
        except KeyboardInterrupt:
            print("interrupted; cleaned up", file=sys.stderr)
            return 130
        except B.BenchError as e:
            print(f"startup: {e}", file=sys.stderr)
            return 1
        print()
        print(text)
        B.update_results("startup-run", "startup-run: `ioltrace run -- CMD`, before and after the command", text, env)
        print(f"updated {B.RESULTS}")
        if args.only == "run":
            return 0
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
