"""`ioltrace loop` text: one histogram per process and step of the chain.

Takes the loop layer of a delta Snapshot (loop_totals, loop_hists keyed by
records.LoopKey) and names from a resolver; returns lines.
"""

from .. import fmt, hist
from . import hist as hview


def interval_lines(delta, events, resolver, alarm_names, millis=False):
    """alarm_names: the counters shown in a footer line when non-zero."""
    unit_ns, unit_name = (1e6, "msecs") if millis else (1e3, "usecs")
    steps = [f"{a} -> {b}" for a, b in zip(events, events[1:])]
    lines = []
    for key, d in sorted(delta.loop_hists.items()):
        t = delta.loop_totals.get(key)
        comm, sum_ns = (t.comm, t.sum_ns) if t is not None else ("", 0)
        # Steps past the chain's own are layout.LOOP_WHOLE_STEP: first event -> last.
        label = steps[key.step] if key.step < len(steps) else f"whole chain {events[0]} -> {events[-1]}"
        s = hist.summary(d, sum_ns)
        lines += ["", f"PID {key.tgid} ({resolver.comm(key.tgid, comm)})  {label}"]
        lines += hview.render_hist(d, unit_ns, unit_name)
        lines.append(f"  count {int(d.sum())}  mean {fmt.ns(s['mean'])}  median {fmt.ns(s['p50'])}  "
                     f"stddev {fmt.ns(s['stddev'])}")
        lines.append(f"  min {fmt.ns(s['min'])}  max {fmt.ns(s['max'])}  p90 {fmt.ns(s['p90'])}  "
                     f"p99 {fmt.ns(s['p99'])}  p99.9 {fmt.ns(s['p99.9'])}")
    lines = lines or ["(no complete steps in this interval)"]
    foot = hview.footer(delta.counters, alarm_names)
    return lines + [foot] if foot else lines
