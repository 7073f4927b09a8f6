"""`ioltrace compare` output: stats.Comparisons as side-by-side text.

One block per key and stage: each figure for A and B with the change in
percent, the tests of stats.two_sample with their interval and p-value, and
a one-line verdict; with repeated runs, each figure's across-run min, max,
mean and std dev % per group. The method is stated in the footer. Returns
lines; computes no statistics itself.
"""

import math
import textwrap

from .. import stats
from . import fmt
from .hist import footer, title

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


def _ratio(t):
    if t.ratio != t.ratio:
        return "-"
    high = "inf" if math.isinf(t.high) else f"{t.high:.2f}"
    return f"{t.ratio:.2f} [{t.low:.2f}, {high}]"


def verdict(tests):
    """One line: which way B differs from A, judged by the tested statistics."""
    if not tests:
        return None
    sig = [t for t in tests if t.significant]
    if not sig:
        return "=> no significant difference (" + ", ".join(f"{t.stat} p={pvalue(t.p)}" for t in tests) + ")"
    moved = [t for t in sig if t.stat != "dist" and t.ratio == t.ratio and t.ratio != 1]
    if not moved:
        return f"=> distributions differ (KS distance {tests[-1].ratio:.3f}, p={pvalue(tests[-1].p)})"
    way = "slower" if moved[0].ratio > 1 else "faster"
    return f"=> B {way}: " + ", ".join(f"{t.stat} x{t.ratio:.2f} (p={pvalue(t.p)})" for t in moved) + ", significant"


def _title(c, width=80):
    side = "" if c.a and c.b else ("  [only in A]" if c.a else "  [only in B]")
    return title(c, c.stage, width - len(side)) + side


def render_pair(c):
    lines = ["", _title(c), f"  {'':<8}{'A':>12}{'B':>12}{'change':>10}   {'B/A [95% interval]':<22}{'p':>8}"]
    tests = {t.stat: t for t in c.tests}
    for label, key, show in FIGURES:
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
    v = verdict(c.tests)
    if v:
        lines.append("  " + v)
    return lines


def render_runs(c, n_a, n_b):
    lines = ["", _title(c), f"  {'':<8}{'':<5}{'mean':>10}{'min':>10}{'max':>10}{'sd%':>7}{'change':>10}{'p':>8}"]
    for label, key, show in RUN_FIGURES:
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
    smallest = c.runs["p50"][3]
    if smallest == smallest and smallest >= stats.ALPHA:
        lines.append(f"  note: {n_a} and {n_b} runs give p >= {smallest:.2f} at best: too few runs to reach "
                     f"p < {stats.ALPHA:g}")
    if c.tests:
        lines.append("  pooled samples: " + ", ".join(
            (f"{t.stat} x{t.ratio:.2f} p={pvalue(t.p)}" if t.stat != "dist" else f"dist p={pvalue(t.p)}")
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
        foot = footer(counters, sorted(k for k, v in counters.items() if v and k != "issue_no_start"))
        if foot:
            out.append(f"{side} {foot}")
    out.append("")
    out += textwrap.wrap(("method: " + (stats.RUNS_METHOD + "; pooled samples: " if runs else "") + stats.METHOD),
                         80, subsequent_indent="  ")
    return out
