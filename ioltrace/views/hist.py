"""`ioltrace hist` output: one log2 histogram per key, like biolatency.

Takes Groups (group.by_key) and returns text; the fine kernel buckets are
drawn as power-of-two rows but every statistic uses the fine buckets.
"""

from .. import cgnames, fmt, hist, layers

BAR_WIDTH = 40


def render_hist(counts, unit_ns, unit_name, whole=False):
    """Rows of times in unit_ns units, or of whole counts (sizes, depths)."""
    rows = hist.whole_rows(counts) if whole else hist.coarse_rows(counts, unit_ns)
    if not rows:
        return []
    top = max(c for _, _, c in rows) or 1
    lines = [f"{unit_name:>20} : count     distribution"]
    for low, high, c in rows:
        bar = "*" * int(round(c * BAR_WIDTH / top))
        lines.append(f"{low:>9} -> {high:<9}: {c:<9} |{bar:<{BAR_WIDTH}}|")
    return lines


def title(g, stage, width=80):
    gid = g.id
    tail = ""
    if gid.kind != "disk" and gid.disk != "*":
        tail += f"  disk {gid.disk}"
    if gid.op != "*":
        tail += f"  {gid.op}"
    tail += "  syscall time" if stage == "latency" else "  " + layers.unit_of(stage).what.format(stage=stage)
    prefix = {"process": f"PID {gid.key} (", "thread": f"TID {gid.key} (", "cgroup": "cgroup ",
              "cgroup-v1": "cgroup-v1 ", "disk": "disk "}.get(gid.kind, "")
    close = ")" if gid.kind in ("process", "thread") else ""
    room = max(8, width - len(prefix) - len(close) - len(tail))
    name = gid.name
    if gid.kind in ("cgroup", "cgroup-v1") and cgnames.name_of(name):
        name += f" [{cgnames.name_of(name)}]"   # at the end, which truncation keeps
    return prefix + fmt.truncate(name, room) + close + tail


def stats_lines(g, stage, seconds):
    counts = g.hists.get(stage)
    unit = layers.unit_of(stage)
    exact = (g.sums or {}).get(stage, {"queue": g.queue_ns, "device": g.device_ns,
                                        "total": g.queue_ns + g.device_ns}.get(stage))
    s = hist.summary(counts if counts is not None else hist.empty(), exact, unit.whole)
    secs = max(seconds, 1e-9)
    line1 = (f"  count {g.ios}  IOPS {g.ios / secs:.1f}  {fmt.rate(g.bytes / secs)}"
             f"  mean {fmt.value(s['mean'], unit.name)}  stddev {fmt.value(s['stddev'], unit.name)}")
    line2 = (f"  {fmt.min_max(s, unit.name)}  "
             + "  ".join(f"p{p:g} {fmt.value(s[f'p{p:g}'], unit.name)}" for p in hist.PERCENTILES))
    lines = [line1, line2]
    if g.errors:
        lines.append("  errors " + (", ".join(f"{fmt.errno_name(e)}={n}" for e, n in sorted(g.errnos.items()))
                                    if g.errnos else str(g.errors)))
    return lines


def render(groups, stages, seconds, millis=False):
    unit_ns, unit_name = (1e6, "msecs") if millis else (1e3, "usecs")
    out = []
    for g in groups:
        shown = False
        for stage in stages:
            counts = g.hists.get(stage)
            if counts is None or not counts.any():
                continue
            out.append("")
            out.append(title(g, stage))
            unit = layers.unit_of(stage)
            out.extend(render_hist(counts, unit_ns, unit.heading or unit_name, unit.whole))
            out.extend(stats_lines(g, stage, seconds))
            shown = True
        # The stats map is read before the hist map, so I/Os completing
        # between the two reads have their samples in the previous interval:
        # their count must still be shown, or the live totals come up short.
        if g.ios and not shown and not set(g.hists) - set(stages):
            out.append("")
            out.append(title(g, stages[0]))
            out.extend(stats_lines(g, stages[0], seconds))
            out.append("  (latencies in the previous interval: the maps are read one after another)")
    return out


def filter_note(counters, pid, children, cgroup_is_ours=False):
    """One line saying how many completed requests each filter excluded
    (kernel counters filtered_*), or None when none did. cgroup_is_ours: the
    cgroup filter is the command's own (run), not the user's: left out."""
    parts = []
    if counters.get("filtered_cgroup") and not cgroup_is_ours:
        parts.append(f"--cgroup {counters['filtered_cgroup']}")
    kids = counters.get("filtered_children", 0)
    if counters.get("filtered_pid") or kids:
        parts.append(f"--pid {pid} {counters.get('filtered_pid', 0) + kids}"
                     + (f" ({kids} of them from its child processes: add --children to trace those)" if kids else ""))
    for name in ("comm", "disk"):
        if counters.get(f"filtered_{name}"):
            parts.append(f"--{name} {counters[f'filtered_{name}']}")
    if not parts:
        return None
    return "block I/O requests excluded by filter: " + ", ".join(parts)


def footer(counters, alarm_names):
    """One line of the kernel's diagnostic counters, only when non-zero."""
    bad = [(n, counters.get(n, 0)) for n in alarm_names if counters.get(n, 0)]
    if not bad:
        return None
    return "kernel counters: " + "  ".join(f"{n}={v}" for n, v in bad)
