"""`ioltrace report` output: a Selection (recording.aggregate) as text or CSV.

Per key and stage: the histogram (views.hist.render_hist), the figures of
stats.describe in the layout of the live views, and with --interval one row
per time window. Returns lines or a string; never reads files or prints.
"""

import csv
import io

from .. import cgnames, fmt, hist, layers, stats
from ..recording import Series, stages_of
from .hist import footer, render_hist, title

PCTS = tuple(f"p{p:g}" for p in hist.PERCENTILES)
CSV_FIELDS = ("kind", "key", "name", "workload", "disk", "op", "layer", "stage", "window_start_s", "window_end_s", "seconds",
              "ios", "bytes", "errors", "iops", "bytes_per_s", "count", "mean_ns", "mean_exact", "stddev_ns",
              "min_bucket_low_ns", "max_bucket_high_ns") + tuple(f"{p}_ns" for p in PCTS)


def kernel_footer(counters):
    """The footer of the live views: non-zero counters that mean lost or
    degraded data, and any this version does not know (a newer recorder's)."""
    known = {n for layer in layers.ALL for n in layer.counters + layer.derived}
    alarms = set(layers.ALARM_COUNTERS)
    return footer(counters, sorted(k for k, v in counters.items() if v and (k in alarms or k not in known)))


def header(sel):
    files = ", ".join(sel.paths) if len(sel.paths) <= 3 else f"{len(sel.paths)} recordings"
    return f"Report of {files}: {sel.seconds:.1f}s recorded, by {sel.by}"


def figure_lines(d, errnos=None, per_s="IOPS", unit="ns"):
    """The two summary lines of the live views, from a describe() dict;
    figures in the stage's unit (layers.Unit.name)."""
    mean = fmt.value(d["mean"], unit) + ("" if d["mean_exact"] or d["count"] == 0 else "~")
    lines = [f"  count {d['ios']}  {per_s} {d['iops']:.1f}  {fmt.rate(d['bytes_per_s'])}"
             f"  mean {mean}  stddev {fmt.value(d['stddev'], unit)}",
             f"  {fmt.min_max(d, unit)}  " + "  ".join(f"{p} {fmt.value(d[p], unit)}" for p in PCTS)]
    if d["errors"]:
        lines.append("  errors " + (", ".join(f"{k}={v}" for k, v in errnos) if errnos else str(d["errors"])))
    return lines


def window_lines(sel, series, stage):
    lines = [f"  {'window':<13} {'count':>8} {'IOPS':>9} " + " ".join(f"{p:>8}" for p in PCTS)]
    for w, (wc, wh) in sorted(series.windows.items()):
        secs = sel.window_seconds.get(w, sel.window)
        d = stats.describe(Series(series.id, series.layer, wc, wh, {}), stage, secs)
        span = f"{w * sel.window:g}-{(w + 1) * sel.window:g}s"
        unit = layers.unit_of(stage).name
        lines.append(f"  {span:<13} {d['count']:>8} {d['iops']:>9.1f} "
                     + " ".join(f"{fmt.value(d[p], unit):>8}" for p in PCTS))
    return lines


def render(sel, stages=(), millis=False):
    """The table format: lines."""
    unit_ns, unit_name = (1e6, "msecs") if millis else (1e3, "usecs")
    out = [header(sel)]
    approx = False
    # Keys whose disks were merged say so: one histogram over sda and nvme0n1
    # is neither disk's.
    disks = sorted(d for d in sel.seen.get("disk", ()) if d != "*")
    merged = f"  {len(disks)} disks merged" if len(disks) > 1 else ""
    for s in sel.series:
        errnos = [(k.split(":", 1)[1], v) for k, v in sorted(s.counters.items()) if k.startswith("errno:")]
        for stage in stages_of(s, wanted=stages):
            counts = s.hists[stage]
            if not counts.any():
                continue
            out += ["", title(s, stage) + (merged if s.id.disk == "*" and s.layer != "syscall" else "")]
            unit = layers.unit_of(stage)
            out += render_hist(counts, unit_ns, unit.heading or unit_name, unit.whole)
            d = stats.describe(s, stage, sel.seconds)
            approx |= not d["mean_exact"]
            out += figure_lines(d, errnos, "calls/s" if s.layer == "syscall" else "IOPS", unit.name)
            if sel.window is not None:
                out += window_lines(sel, s, stage)
    if not any(s.hists for s in sel.series):
        out.append("(no latency recorded for these keys)")
    foot = kernel_footer(sel.counters)
    if foot:
        out.append(foot)
    if approx:
        out.append("~ mean from bucket midpoints (no exact sum recorded for these samples)")
    if merged and any(s.id.disk == "*" and s.layer != "syscall" for s in sel.series):
        out.append(f"disks merged per key: {', '.join(disks)}; --by disk, a pair with disk (cgroup,disk) or --disk NAME splits them")
    return out


def csv_text(sel, stages=()):
    """The csv format: one row per key and stage, then one per window."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_FIELDS)

    def row(s, stage, secs, span):
        d = stats.describe(s, stage, secs)
        gid = s.id
        w.writerow([gid.kind, gid.key, gid.name,
                    cgnames.name_of(gid.name) if gid.kind in ("cgroup", "cgroup-v1") else "", gid.disk, gid.op, s.layer, stage, *span, f"{secs:.6f}",
                    d["ios"], d["bytes"], d["errors"], f"{d['iops']:.3f}", f"{d['bytes_per_s']:.1f}", d["count"],
                    _num(d["mean"]), int(d["mean_exact"]), *(_num(d[k]) for k in ("stddev", "min_low", "max_high") + PCTS)])

    for s in sel.series:
        for stage in stages_of(s, wanted=stages):
            row(s, stage, sel.seconds, ("", ""))
            for i, (wc, wh) in sorted(s.windows.items()):
                part = Series(s.id, s.layer, wc, wh, {})
                if stage in wh:
                    row(part, stage, sel.window_seconds.get(i, sel.window),
                        (f"{i * sel.window:g}", f"{(i + 1) * sel.window:g}"))
    return buf.getvalue()


def _num(v):
    return "" if v != v or v == float("inf") else f"{v:.1f}"
