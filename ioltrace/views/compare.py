"""`ioltrace compare` output: stats.Comparisons as side-by-side text.

One block per key and stage: each figure for A and B with the change in
percent, the tests of stats.two_sample with their interval and p-value, and
a one-line verdict; with repeated runs, each figure's across-run min, max,
mean and std dev % per group. The method is stated in the footer. Returns
lines; computes no statistics itself.
"""

import math
import textwrap

from .. import fmt, layers, stats
from .hist import title
from .report import kernel_footer

FIGURES = (("count", "ios", str), ("IOPS", "iops", lambda v: f"{v:.1f}"), ("bytes/s", "bytes_per_s", fmt.rate),
           ("mean", "mean", fmt.ns), ("stddev", "stddev", fmt.ns), ("min", "min", fmt.ns), ("max", "max", fmt.ns),
           ("p50", "p50", fmt.ns), ("p90", "p90", fmt.ns), ("p99", "p99", fmt.ns), ("p99.9", "p99.9", fmt.ns))
RUN_FIGURES = (("IOPS", "iops", lambda v: f"{v:.1f}"), ("bytes/s", "bytes_per_s", fmt.rate), ("mean", "mean", fmt.ns),
               ("stddev", "stddev", fmt.ns), ("p50", "p50", fmt.ns), ("p90", "p90", fmt.ns), ("p99", "p99", fmt.ns),
               ("p99.9", "p99.9", fmt.ns))


def change(a, b):
    if a is None or b is None or a != a or b != b or a == 0:
        return "-"
    return f"{100.0 * (b - a) / a:+.1f}%"


def pvalue(p):
    if p != p:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_is(p):
    """'p<0.001' or 'p=0.042'."""
    text = pvalue(p)
    return "p" + text if text.startswith("<") else "p=" + text


def _ratio(t):
    if t.ratio != t.ratio:
        return "-"
    high = "inf" if math.isinf(t.high) else f"{t.high:.2f}"
    return f"{t.ratio:.2f} [{t.low:.2f}, {high}]"


def _in_unit(figures, stage):
    """The figures with times shown in the stage's unit (size: bytes; depth: requests)."""
    unit = layers.unit_of(stage).name
    if unit == "ns":
        return figures
    return tuple((label, key, (lambda v: fmt.value(v, unit)) if show is fmt.ns else show)
                 for label, key, show in figures)


def verdict(tests, stage=None):
    """One line: which way B differs from A, judged by the tested statistics."""
    unit = layers.unit_of(stage).name
    up, down = ("slower", "faster") if unit == "ns" else ("larger", "smaller")
    if not tests:
        return None
    sig = [t for t in tests if t.significant]
    if not sig:
        return "=> no significant difference (" + ", ".join(f"{t.stat} {p_is(t.p)}" for t in tests) + ")"
    moved = [t for t in sig if t.stat != "dist" and t.a != t.b]
    if not moved:
        return f"=> distributions differ (KS distance {tests[-1].ratio:.3f}, {p_is(tests[-1].p)})"

    def part(t):
        size = f"x{t.ratio:.2f}" if t.ratio == t.ratio else f"{fmt.value(t.a, unit)} -> {fmt.value(t.b, unit)}"
        return f"{t.stat} {size} ({p_is(t.p)})"

    ways = {t.b > t.a for t in moved}
    if len(ways) == 1:
        return f"=> B {up if ways.pop() else down}: " + ", ".join(map(part, moved)) + ", significant"
    return "=> B differs: " + ", ".join(part(t) + (f" {up}" if t.b > t.a else f" {down}") for t in moved) + \
        ", significant"


def runs_verdict(runs):
    """One line from the across-run tests of p50 and p99."""
    tested = [(k, runs[k]) for k in ("p50", "p99") if runs[k][2] == runs[k][2]]
    if not tested:
        return "=> not comparable (a group has no runs with this key)"
    sig = [(k, r) for k, r in tested if r[2] < stats.ALPHA]
    if not sig:
        return "=> no significant difference across runs (" + ", ".join(f"{k} {p_is(r[2])}" for k, r in tested) + ")"
    way = "slower" if sig[0][1][1]["mean"] > sig[0][1][0]["mean"] else "faster"
    return f"=> B {way} across runs: " + ", ".join(
        f"{k} {change(r[0]['mean'], r[1]['mean'])} ({p_is(r[2])})" for k, r in sig) + ", significant"


def _title(c, width=80):
    side = "" if c.a and c.b else ("  [only in A]" if c.a else "  [only in B]")
    return title(c, c.stage, width - len(side)) + side


def render_pair(c):
    lines = ["", _title(c), f"  {'':<8}{'A':>12}{'B':>12}{'change':>10}   {'B/A [95% interval]':<22}{'p':>8}"]
    tests = {t.stat: t for t in c.tests}
    for label, key, show in _in_unit(FIGURES, c.stage):
        va = c.a[key] if c.a else None
        vb = c.b[key] if c.b else None
        line = (f"  {label:<8}{show(va) if va is not None else '-':>12}{show(vb) if vb is not None else '-':>12}"
                f"{change(va, vb):>10}")
        t = tests.get(key)
        if t is not None:
            line += f"   {_ratio(t):<22}{pvalue(t.p):>8}{' *' if t.significant else ''}"
        lines.append(line.rstrip())
    t = tests.get("dist")
    if t is not None:
        lines.append(f"  {'dist':<8}{'KS distance ' + format(t.ratio, '.3f'):>34}   {'':<22}{pvalue(t.p):>8}"
                     f"{' *' if t.significant else ''}")
    v = verdict(c.tests, c.stage)
    if v:
        lines.append("  " + v)
    return lines


def render_runs(c, n_a, n_b):
    lines = ["", _title(c), f"  {'':<8}{'':<5}{'mean':>10}{'min':>10}{'max':>10}{'sd%':>7}{'change':>10}{'p':>8}"]
    for label, key, show in _in_unit(RUN_FIGURES, c.stage):
        sa, sb, p, smallest = c.runs[key]
        for side, s in (("A", sa), ("B", sb)):
            if s["n"] == 0:
                lines.append(f"  {label if side == 'A' else '':<8}{side:<5}{'-':>10}")
                continue
            sd = "-" if s["sd_pct"] != s["sd_pct"] else f"{s['sd_pct']:.1f}%"
            line = (f"  {label if side == 'A' else '':<8}{side:<5}{show(s['mean']):>10}{show(s['min']):>10}"
                    f"{show(s['max']):>10}{sd:>7}")
            if side == "B":
                line += f"{change(sa['mean'], sb['mean']):>10}{pvalue(p):>8}{' *' if p < stats.ALPHA else ''}"
            lines.append(line)
    lines.append("  " + runs_verdict(c.runs))
    smallest = c.runs["p50"][3]
    if smallest == smallest and smallest >= stats.ALPHA:
        lines.append(f"  note: {n_a} and {n_b} runs give p >= {smallest:.2f} at best: too few runs to reach "
                     f"p < {stats.ALPHA:g}")
    if c.tests:
        lines.append("  pooled samples: " + ", ".join(
            (f"{t.stat} x{t.ratio:.2f} {p_is(t.p)}" if t.stat != "dist" else f"dist {p_is(t.p)}")
            for t in c.tests))
    return lines


def render(comparisons, label_a, label_b, counters_a, counters_b, runs=None):
    """The whole comparison; runs: (number of A runs, of B runs) for --runs."""
    out = [f"A: {label_a}", f"B: {label_b}"]
    for c in comparisons:
        out += render_runs(c, *runs) if runs else render_pair(c)
    if not comparisons:
        out.append("(no latency recorded in either)")
    for side, counters in (("A", counters_a), ("B", counters_b)):
        foot = kernel_footer(counters)
        if foot:
            out.append(f"{side} {foot}")
    out.append("")
    out += textwrap.wrap("method: " + (stats.RUNS_METHOD + " " if runs else "") + stats.METHOD, 80,
                         subsequent_indent="  ")
    return out
