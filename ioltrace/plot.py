"""Pictures of recorded latency: histograms, heatmaps over time, A/B overlays.

matplotlib is an optional extra (`pip install 'ioltrace[plot]'`) imported
here only, with the Agg backend, so nothing needs a display; without it the
commands fail with one line saying how to install it. Takes Selections
(recording.aggregate) and writes one PNG, SVG or PDF; never prints.
"""

import math
import os

import numpy as np

from . import hist, layers, layout
from .errors import BadInput
from .recording import stages_of
from . import fmt
from .views.hist import title

FORMATS = ("png", "svg", "pdf")
MAX_PANELS = 8            # keys x stages drawn, most I/O first; range 1..8 keeps text legible
DPI = 100
WIDTH = 1000              # default pixels; panel heights below
HEAT_ROWS_PER_OCTAVE = 8  # heatmap y resolution: 4 fine buckets per cell
HEAT_COLUMNS = 120        # default heatmap windows across the run
A_COLOUR, B_COLOUR = "#1f77b4", "#d62728"
LATENCY_LABEL = "latency (log scale)"   # each tick names its unit: 500us, 1ms, 2ms


def require():
    """matplotlib.pyplot with the Agg backend, or BadInput saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise BadInput("plots", "matplotlib is not installed",
                       "pip install 'ioltrace[plot]', or apt-get install python3-matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_output(path):
    """The output's format from its name; BadInput if unknown or unwritable."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise BadInput(f"-o {path}", f"unknown picture format {ext!r}", "end the name in .png, .svg or .pdf")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.access(folder, os.W_OK):
        raise BadInput(f"-o {path}", f"cannot write into {folder}", "choose a writable path")
    return ext


def parse_size(text):
    """'1000x600' -> (1000, 600) pixels."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{text!r} is not WIDTHxHEIGHT in pixels") from None
    if not (400 <= w <= 10000 and 160 <= h <= 20000):
        raise ValueError(f"{text!r}: width must be 400..10000 and height 160..20000 pixels")
    return w, h


def panels(pairs):
    """(series, stage) pairs with samples, most samples first, at most MAX_PANELS;
    also how many there were."""
    have = [(s, st) for s, st in pairs if st in s.hists and s.hists[st].any()]
    have.sort(key=lambda p: -int(p[0].hists[p[1]].sum()))
    return have[:MAX_PANELS], len(have)


def _ns_label(v, _pos=None):
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "us"), (1, "ns")):
        if v >= scale:
            return f"{float(f'{v / scale:.4g}'):g}{unit}"
    return f"{v:g}ns"


def _tick_label(unit):
    """Tick text for a stage's unit (layers.Unit.name): times as 1ms,
    bytes as 4K, requests as they are."""
    if unit == "ns":
        return _ns_label
    if unit == "bytes":
        return lambda v, _pos=None: fmt.size(v)
    return lambda v, _pos=None: f"{v:g}"


def _axis_label(stage):
    unit = layers.unit_of(stage)
    return LATENCY_LABEL if unit.name == "ns" else f"{unit.what.format(stage=stage)}, {unit.name} (log scale)"


def _ticks_within(subs, low, high):
    """How many of s * 10^k (s in subs) lie in [low, high]."""
    k0, k1 = math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1
    return sum(1 for k in range(k0, k1 + 1) for s in subs if low <= s * 10.0 ** k <= high)


def _log_ns_axis(axis, pixels=None, low=None, high=None, unit="ns"):
    """Log axis labelled in ns/us/ms/s: at 1, 2 and 5 per decade when there
    is room (~70 pixels a label), else at each decade. An axis narrower than
    two such steps (one or two buckets drawn) gets plain steps instead, so
    that every axis carries at least two figures."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    subs = (1, 2, 5)
    if pixels and low and high and pixels / max(math.log10(high / low), 1) / 3 < 70:
        subs = (1,)
    if low and high and low > 0 and _ticks_within(subs, low, high) < 2:
        subs = (1, 2, 5)
        if _ticks_within(subs, low, high) < 2:
            axis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=2))
            axis.set_major_formatter(FuncFormatter(_tick_label(unit)))
            axis.set_minor_formatter(NullFormatter())
            return
    # Sizes are powers of two (4K, 64K, 1M): ticks at every power of two,
    # or every fourth when they would crowd.
    base = 2 if unit == "bytes" else 10
    if base == 2:
        subs = (1,) if not (pixels and low and high) or pixels / max(math.log2(high / low), 1) >= 60 else None
        axis.set_major_locator(LogLocator(base=2 if subs else 16))
    else:
        axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(_tick_label(unit)))
    axis.set_minor_formatter(NullFormatter())


def _edges(counts):
    """Index range and drawable edges (ns) of the buckets from the first to
    the last non-empty one: 0 ns drawn at 0.5 ns, overflow as one octave."""
    nz = np.nonzero(counts)[0]
    i0, i1 = int(nz[0]), int(nz[-1])
    edges = np.append(layout.BUCKET_LOW[i0:i1 + 1], layout.BUCKET_HIGH[i1]).astype(float)
    edges[edges == 0] = 0.5
    if math.isinf(edges[-1]):
        edges[-1] = edges[-2] * 2
    return i0, i1, edges


def _group_for(counts, per_bin=30):
    i0, i1, _ = _edges(counts)
    n = int(counts.sum())
    return next((g for g in (1, 2, 4, 8, 16) if n * g / (i1 - i0 + 1) >= per_bin), 32)


def _density(counts, group=None):
    """Drawable edges and counts per 1/32 octave, from the buckets joined in
    aligned groups of 1..32 so that bins hold ~30 samples on average
    (few samples over fine buckets draw as noise). Buckets have equal linear
    width within an octave, so raw counts on a log axis would saw-tooth;
    dividing by each bin's width in octaves draws the density."""
    i0, i1, _ = _edges(counts)
    group = group or _group_for(counts)
    top = layout.OVERFLOW_BUCKET  # the overflow bucket stays on its own
    j0 = i0 - i0 % group
    j1 = min(i1 - i1 % group + group - 1, top - 1)
    sums = counts[j0:j1 + 1].astype(float).reshape(-1, group).sum(axis=1)
    edges = np.append(layout.BUCKET_LOW[j0:j1 + 1:group], layout.BUCKET_HIGH[j1]).astype(float)
    if i1 == top:
        sums = np.append(sums, float(counts[top]))
        edges = np.append(edges, edges[-1] * 2)
    edges[edges == 0] = 0.5
    octaves = np.log2(edges[1:] / edges[:-1]) * layout.SUB_COUNT
    return edges, sums / octaves


MIN_PANEL_HEIGHT = 160  # pixels a panel needs for its title, axes and labels


def _figure(plt, n, size, panel_height, columns=1):
    """A figure of n rows of `columns` panels; the axes, row by row."""
    w, h = size or (WIDTH, 90 + panel_height * n)
    if h < MIN_PANEL_HEIGHT * n:
        raise BadInput(f"--size {w}x{h}", f"too small for {n} panels ({MIN_PANEL_HEIGHT} pixels high each)",
                       "choose fewer with --key or --stage, or a larger size")
    fig, axes = plt.subplots(n, columns, figsize=(w / DPI, h / DPI), dpi=DPI, squeeze=False, layout="constrained")
    return fig, [row[0] if columns == 1 else list(row) for row in axes]


def _save(plt, fig, path):
    try:
        fig.savefig(path, dpi=DPI)
    except OSError as e:
        raise BadInput(f"-o {path}", e.strerror.lower() if e.strerror else str(e)) from None
    finally:
        plt.close(fig)


def _mark(ax, counts, colour, prefix="", stage=None):
    unit = layers.unit_of(stage)
    for p, style in ((50, "--"), (99, ":")):
        v = hist.percentile(counts, p, unit.whole)
        ax.axvline(max(v, 0.5), color=colour, linestyle=style, linewidth=1.5,
                   label=f"{prefix}p{p} {fmt.value(v, unit.name)}")


def histograms(sel, stages, path, size=None):
    """One latency histogram per key and stage; returns a note when keys were left out."""
    plt = require()
    chosen, total = panels([(s, st) for s in sel.series for st in stages_of(s, wanted=stages)])
    if not chosen:
        raise BadInput("plot", "no latency samples in the selected keys")
    fig, axes = _figure(plt, len(chosen), size, 300)
    for ax, (s, stage) in zip(axes, chosen):
        counts = s.hists[stage]
        edges, dens = _density(counts)
        ax.stairs(dens, edges, fill=True, color=A_COLOUR, alpha=0.6)
        _mark(ax, counts, "black", stage=stage)
        _style(ax, s, stage, f"{int(counts.sum())} I/Os in {sel.seconds:.1f}s", fig, edges)
        ax.set_ylabel("I/Os per 1/32 octave")
        ax.legend(loc="best", fontsize="small")
    _save(plt, fig, path)
    return _note(len(chosen), total)


def overlay(pairs, stages, labels, path, size=None):
    # labels: ("A: what A is", "B: what B is"), shown once at the top.
    """Per matched key and stage, two panels: A and B histograms as
    fractions of their I/Os, and the fraction of I/Os slower than each
    latency on a log scale, where the tails (p99, p99.9) can be read off."""
    plt = require()
    both = [(a, b, st) for a, b in pairs if a is not None and b is not None
            for st in stages_of(a, wanted=stages) if st in b.hists and a.hists[st].any() and b.hists[st].any()]
    both.sort(key=lambda t: -int(t[0].hists[t[2]].sum() + t[1].hists[t[2]].sum()))
    if not both:
        raise BadInput("compare --plot", "no key has latency samples in both A and B")
    chosen = both[:MAX_PANELS]
    fig, rows = _figure(plt, len(chosen), size, 320, columns=2)
    fig.suptitle(f"{labels[0]}    {labels[1]}", fontsize="medium")
    for (ax, tail), (a, b, stage) in zip(rows, chosen):
        group = max(_group_for(a.hists[stage]), _group_for(b.hists[stage]))  # same bins for both
        span, smallest = [], 1.0
        top = 0.0
        for s, colour, label in ((a, A_COLOUR, "A"), (b, B_COLOUR, "B")):
            counts = s.hists[stage]
            n = int(counts.sum())
            edges, dens = _density(counts, group)
            span += [edges[0], edges[-1]]
            top = max(top, float((dens / n).max()))
            ax.stairs(dens / n, edges, fill=True, alpha=0.35, color=colour, label=f"{label}: {n} I/Os")
            _mark(ax, counts, colour, prefix=label + " ", stage=stage)
            i0, i1, fine = _edges(counts)
            slower = 1.0 - np.cumsum(counts[i0:i1 + 1], dtype=float) / n
            tail.stairs(np.maximum(np.append(1.0, slower[:-1]), 0.1 / n), fine, color=colour, linewidth=1.5,
                        baseline=None, label=label)
            smallest = min(smallest, 1.0 / n)
        _style(ax, a, stage, "A vs B", fig, (min(span), max(span)), width=0.5)
        ax.set_ylabel("fraction of I/Os per 1/32 octave")
        ax.set_ylim(0, top * 1.45)  # room for the legend above the bars
        ax.legend(loc="upper right", fontsize="small", ncol=2)
        _style(tail, a, stage, "fraction of I/Os slower than x", fig, (min(span), max(span)), width=0.4)
        tail.set_yscale("log")
        tail.set_ylim(max(smallest / 2, 1e-6), 1.5)
        for q, name in ((0.5, "p50"), (0.01, "p99"), (0.001, "p99.9")):
            if q >= smallest:
                tail.axhline(q, color="grey", linewidth=0.8, linestyle="--")
                tail.annotate(name, (0.995, q), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                              fontsize="small", color="dimgrey")
        tail.set_ylabel("fraction slower")
        tail.legend(loc="lower left", fontsize="small")
    _save(plt, fig, path)
    return _note(len(chosen), len(both))


def heatmap(sel, stages, path, size=None):
    """Latency over time per key and stage: windows on x, latency on y,
    colour the I/Os per window and 1/8 octave (log scale), with each
    window's p50 and p99 drawn over it. All panels share the time axis."""
    plt = require()
    from matplotlib.colors import LogNorm

    if sel.window is None:
        raise ValueError("heatmap needs a Selection aggregated with a window")
    chosen, total = panels([(s, st) for s in sel.series for st in stages_of(s, wanted=stages)])
    if not chosen:
        raise BadInput("plot", "no latency samples in the selected keys")
    fig, axes = _figure(plt, len(chosen), size, 330)
    group = layout.SUB_COUNT // HEAT_ROWS_PER_OCTAVE
    nwin = max(sel.window_seconds) + 1
    for ax, (s, stage) in zip(axes, chosen):
        grid = np.zeros((nwin, layout.NBUCKETS), dtype=float)
        for w, (_, wh) in s.windows.items():
            if stage in wh:
                grid[w] = wh[stage]
        top = layout.OVERFLOW_BUCKET - 1
        grid[:, top] += grid[:, top + 1]  # overflow drawn in the top row
        i0, i1, _ = _edges(s.hists[stage])
        i0, i1 = i0 - i0 % group, min(i1, top)
        i1 = i1 - i1 % group + group - 1
        cells = grid[:, i0:i1 + 1].reshape(nwin, -1, group).sum(axis=2)
        y = np.append(layout.BUCKET_LOW[i0:i1 + 1:group], layout.BUCKET_HIGH[i1]).astype(float)
        y[y == 0] = 0.5
        # Per 1/8 octave: cells are equal in linear width within an octave,
        # so raw counts would band at every power of two.
        cells = cells / (np.log2(y[1:] / y[:-1]) * HEAT_ROWS_PER_OCTAVE)[None, :]
        x = np.arange(nwin + 1) * sel.window
        masked = np.ma.masked_equal(cells.T, 0)
        low = cells[cells > 0].min()
        mesh = ax.pcolormesh(x, y, masked, norm=LogNorm(vmin=low, vmax=max(low * 10, cells.max())), cmap="viridis",
                             shading="flat")
        fig.colorbar(mesh, ax=ax, label=f"I/Os per window per 1/{HEAT_ROWS_PER_OCTAVE} octave", pad=0.01)
        mids = (x[:-1] + x[1:]) / 2
        for p, style in ((50, "-"), (99, "--")):
            v = [hist.percentile(s.windows[w][1][stage], p) if stage in s.windows.get(w, ({}, {}))[1] else math.nan
                 for w in range(nwin)]
            # Markers too: a line through one or two windows is too short to see.
            ax.plot(mids, np.maximum(v, 0.5), color="white", linestyle=style, linewidth=1.2, label=f"p{p}",
                    marker="o" if nwin <= 3 else None, markersize=4)
        ax.set_yscale("log")
        _log_ns_axis(ax.yaxis, fig.get_figheight() * DPI / len(chosen) * 0.6, y[0], y[-1],
                     layers.unit_of(stage).name)
        ax.set_ylim(y[0], y[-1])
        ax.set_xlim(0, x[-1])
        ax.set_xlabel(f"time since start of recording (s), {sel.window:g}s windows")
        ax.set_ylabel(_axis_label(stage))
        ax.set_title(f"{title(s, stage)}\n{int(s.hists[stage].sum())} I/Os", fontsize="medium")
        ax.legend(loc="upper right", fontsize="small", facecolor="#444444", labelcolor="white", framealpha=0.5)
    _save(plt, fig, path)
    return _note(len(chosen), total)


def _style(ax, s, stage, extra, fig, edges, width=0.85):
    """Log latency x axis, grid and a two-line title; width: the panel's share of the figure."""
    ax.set_xscale("log")
    _log_ns_axis(ax.xaxis, fig.get_figwidth() * DPI * width, edges[0], edges[-1], layers.unit_of(stage).name)
    ax.set_xlabel(_axis_label(stage))
    ax.set_title(f"{title(s, stage)}\n{extra}", fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)


def _note(drawn, total):
    if drawn < total:
        return f"plotted the {drawn} of {total} key/stage histograms with the most I/O; choose with --key or --stage"
    return None
