"""Long runs do not drift: `ioltrace top -b --csv` for N minutes under a steady fio mix.

What it measures: whether anything ioltrace keeps grows with time while the
set of things it traces stays the same: the user-space process's resident
memory (VmRSS) and the number of entries in its kernel maps (stats, hist,
errs: hash maps that only grow when a new key or histogram cell appears);
and whether the recording is complete: the CSV parses with
`ioltrace.export.csv.read`, and its intervals tile the run (each
interval_start equals the previous interval_end: no gaps, no overlaps).

How: a loop device with direct I/O over a filled file in /dev/shm; two
cgroup v2 children under the v2 root (/sys/fs/cgroup/unified on hybrid
hosts, else /sys/fs/cgroup), each running one rate-limited fio job (4k
randrw, 70% reads, libaio QD4, --iops per job split 70/30 into fio's
--rate_iops=READ,WRITE, direct=1) on that device for the whole run. Once
fio runs, `python -m ioltrace top -b --disk LOOP --csv FILE` starts (the
disk filter keeps other I/O on this shared machine out of the maps, so the
set of keys is fixed: same keys, same entries). Every 10 s: VmRSS from
/proc/PID/status and the entry counts of the process's maps (found through
/proc/PID/fdinfo map_id, counted with `bpftool -j map dump id N`). After N
minutes ioltrace gets SIGINT; its CSV is checked. Slopes are a
least-squares line over the second half of the samples (after warm-up), per
minute.

Run: sudo /usr/bin/python3 benchmarks/soak.py [--minutes 30] [--iops 2000] [--interval 1]

Everything it makes (fio processes, cgroups, loop device, backing file, CSV
and output files) is removed on the way out, also on Ctrl-C and SIGTERM.
"""

import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support, ioltrace
from tests.support import bench as B  # noqa: E402
from ioltrace import layout  # noqa: E402  (pure: constants only)
from tests.support.soak import RSS_FLAT_KIB, SAMPLE_S, soak, summarize  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30, help="length of the soak (default 30)")
    ap.add_argument("--iops", type=int, default=2000,
                    help="IOPS per fio job, split 70/30 into reads and writes (two jobs; default 2000)")
    ap.add_argument("--interval", type=float, default=1.0, help="ioltrace top interval, s (default 1)")
    ap.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    args = ap.parse_args(argv)
    B.sigterm_as_interrupt()
    # Started in the background by a shell, SIGINT arrives ignored: take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    B.need_root_tools("fio", "losetup", "bpftool")
    env = B.environment()
    load = [B.loadavg()]
    try:
        res = soak(args.minutes, args.iops, args.interval, log=lambda msg: print(msg, flush=True))
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    except B.BenchError as e:
        print(f"soak: {e}", file=sys.stderr)
        return 1
    finally:
        B.final_checks()
    load.append(B.loadavg())
    f = summarize(res)
    c = res["csv"]
    lengths = c["lengths"] or [float("nan")]
    expect = res["samples"][-1]["t"] / res["interval"]     # the run ends at the first sample past N minutes
    ok_csv = c["parse_error"] is None and not (c["gaps"] or c["overlaps"] or c["order"])
    fio = res["fio"]
    fio_text = ", ".join(f"{r:,.0f} read + {w:,.0f} write IOPS" if x else "?" for x in fio
                         for r, w in [x or (0, 0)])
    rows = []
    for label, key, unit in (("VmRSS", "rss", "KiB"), ("stats entries", "stats", ""), ("hist entries", "hist", ""),
                             ("errs entries", "errs", "")):
        if key == "rss":
            rows.append([f"{label} ({unit})", f"{f['rss_first_kib']:,}", f"{f['rss_half_kib']:,}",
                         f"{f['rss_last_kib']:,}", f"{f['rss_slope_kib_min']:+.2f} KiB/min"])
        else:
            rows.append([label, f"{f[key + '_first']:,}", f"{f[key + '_half']:,}", f"{f[key + '_last']:,}",
                         f"{f[key + '_slope_min']:+.3f} /min"])
    sizes = ", ".join(f"{n} max {m['max_entries']:,}" for n, m in res["maps"].items())
    text = (f"`ioltrace top -b --disk LOOP --csv FILE {res['interval']:g}` for {res['minutes']:g} min "
            f"({len(res['samples'])} samples, every {SAMPLE_S} s) on a loop device over /dev/shm (direct I/O "
            f"{'on' if res['dio'] else 'OFF'}), two cgroup v2 children of {res['cgroup_root']} each running fio "
            f"4k randrw 70% reads, libaio QD4, {res['iops_per_job']:,} IOPS per job (fio --rate_iops split "
            f"70/30; got: {fio_text}). "
            f"Slopes: least squares over the second half of the samples (after warm-up).\n\n"
            + B.table(["measure", "first sample", "at half time", "last sample", "slope, second half"], rows)
            + f"\n\n- maps ({sizes}); entries counted with `bpftool -j map dump`\n"
            f"- VmRSS over the second half: range {f['rss_half_range_kib']:,} KiB, last - first "
            f"{f['rss_half_growth_kib']:+,} KiB; max {f['rss_max_kib']:,} KiB\n"
            f"- CSV: {c['rows']:,} rows, {c['intervals']:,} intervals (expected about {expect:,.0f}), "
            f"{'parsed by export.csv.read' if c['parse_error'] is None else 'PARSE ERROR: ' + c['parse_error']}; "
            f"gaps {len(c['gaps'])}, overlaps {len(c['overlaps'])}"
            f"{', ' + '; '.join(c['order'][:3]) if c['order'] else ''}; interval lengths "
            f"{min(lengths):.3f}-{max(lengths):.3f} s; {c['ios']:,} I/Os, {c['bytes'] / 2**30:.2f} GiB recorded\n"
            f"- ioltrace exit code {res['rc']} (SIGINT); load average {load[0]} at start, {load[1]} at end "
            f"({os.cpu_count()} CPUs, shared machine)\n"
            f"- stats entries {'constant' if f['stats_half_constant'] else 'NOT constant'} over the second half "
            f"({f['stats_last']}), errs entries {'constant' if f['errs_half_constant'] else 'NOT constant'} "
            f"({f['errs_last']}): same keys, same entries\n"
            f"- hist entries are (key, stage, bucket) cells, made when a latency first falls in a bucket, so rare "
            f"tail buckets keep adding a few while converging; at most stats keys x 2 stages x {layout.NBUCKETS} "
            f"buckets = {f['stats_last'] * 2 * layout.NBUCKETS:,}. By quarter of the run: "
            + ", ".join(f"{m:.1f} min {n:,}" for m, n in f["hist_quarters"])
            + " (added per quarter: " + ", ".join(f"{b - a:+,}" for (_, a), (_, b) in
                                                zip(f["hist_quarters"], f["hist_quarters"][1:])) + "); "
            f"at the end {f['hist_last']:,} entries for {c['cells']:,} distinct (key, stage, bucket) cells "
            f"in the CSV: nothing but cells that I/O hit\n"
            f"- verdict: {'CSV complete, intervals contiguous' if ok_csv else 'CSV PROBLEMS (see above)'}; "
            f"RSS {'flat' if abs(f['rss_half_growth_kib']) < RSS_FLAT_KIB else 'GROWING'} after warm-up "
            f"({f['rss_half_growth_kib']:+,} KiB over the second half)\n")
    print()
    print(text)
    if not args.no_record:
        B.update_results("soak", f"soak: {res['minutes']:g} minutes of `ioltrace top -b --csv` under fio", text, env)
        print(f"updated {B.RESULTS}")
    return 0 if ok_csv and res["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
