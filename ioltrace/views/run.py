"""`ioltrace run` report: per-process table, total histograms, syscalls.

Takes Groups (group.by_key) of the whole run and returns lines; knows
nothing of cgroups, children or the kernel.
"""

from .. import fmt, hist
from . import hist as hview


def report_lines(argv, seconds, procs, rw, totals, sys_groups, footer, leftover, block=True, syscall=False,
                 excluded=None):
    """procs: Groups per process (disks and ops merged); rw: pid -> {"read",
    "write"} bytes; totals: Groups of all disks per op; sys_groups: syscall
    Groups per process, or None when that layer was not traced; excluded:
    the line saying what the filters left out (views.hist.filter_note), or None."""
    lines = ["", f" Block I/O of '{' '.join(argv)}' ({seconds:.2f}s, {len(procs)} process(es)):", ""]
    lines.append(f"{'PID':>8} {'COMM':<16} {'IOS':>8} {'READ':>9} {'WRITE':>9} {'Qp50':>7} {'Dp50':>7} {'Dp99':>7}")
    for g in procs:
        q, d = g.hists.get("queue", hist.empty()), g.hists.get("device", hist.empty())
        lines.append(f"{g.id.key:>8} {fmt.truncate(g.id.name, 16):<16} {g.ios:>8} {fmt.size(rw[g.id.key]['read']):>9} "
                     f"{fmt.size(rw[g.id.key]['write']):>9} {fmt.ns(hist.percentile(q, 50)):>7} "
                     f"{fmt.ns(hist.percentile(d, 50)):>7} {fmt.ns(hist.percentile(d, 99)):>7}")
    for g in totals:
        for stage in ("queue", "device", "total"):
            lines += [""] + [f"total {g.id.op} {stage} time" if g.id.op != "*" else f"total {stage} time"]
            lines += hview.render_hist(g.hists.get(stage, hist.empty()), 1e3, "usecs")
            lines += hview.stats_lines(g, stage, seconds)
    if excluded:
        lines.append(excluded)
    if block and not procs:
        lines.append("(no block I/O passed the filters: see the line above)" if excluded else
                     "(no block I/O: page-cache hits and buffered writes not yet flushed do no block I/O)")
    if syscall:
        lines += syscall_table(sys_groups, seconds)
    if footer:
        lines.append(footer)
    if leftover:
        lines.append(f"note: {len(leftover)} process(es) outlived the command; moved out of its cgroup")
    return lines


def syscall_table(groups, seconds):
    lines = ["", f"{'PID':>8} {'COMM':<16} {'SYSCALL':<15} {'CALLS':>8} {'BYTES':>8} {'p50':>7} {'p99':>7}"
                 f" {'max':>7} ERRORS"]
    for g in groups:
        lat = g.hists.get("latency", hist.empty())
        errs = ",".join(f"{fmt.errno_name(e)}={n}" for e, n in sorted(g.errnos.items()))
        lines.append(f"{g.id.key:>8} {fmt.truncate(g.id.name, 16):<16} {g.id.op:<15} {g.ios:>8} "
                     f"{fmt.size(g.bytes):>8} {fmt.ns(hist.percentile(lat, 50)):>7} {fmt.ns(hist.percentile(lat, 99)):>7}"
                     f" {fmt.ns(hist.summary(lat)['max']):>7} {errs}")
    if not groups:
        lines.append("(no traced syscalls)")
    return lines
