"""Pictures of recorded latency: histograms, heatmaps over time, A/B overlays.

matplotlib is an optional extra (`pip install 'ioltrace[plot]'`) imported
here only, with the Agg backend, so nothing needs a display; without it the
commands fail with one line saying how to install it. Takes Selections
(recording.aggregate) and writes one PNG, SVG or PDF; never prints.
"""

import math
import os

import numpy as np

from . import hist, layout
from .errors import BadInput
from .recording import stages_of
from .views.hist import title

FORMATS = ("png", "svg", "pdf")
MAX_PANELS = 8            # keys x stages drawn, most I/O first; range 1..8 keeps text legible
DPI = 100
WIDTH = 1000              # default pixels; panel heights below
HEAT_ROWS_PER_OCTAVE = 8  # heatmap y resolution: 4 fine buckets per cell
HEAT_COLUMNS = 120        # default heatmap windows across the run
A_COLOUR, B_COLOUR = "#1f77b4", "#d62728"


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
    if not (200 <= w <= 10000 and 150 <= h <= 20000):
        raise ValueError(f"{text!r}: width must be 200..10000 and height 150..20000 pixels")
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
            return f"{v / scale:g}{unit}"
    return f"{v:g}ns"


def _log_ns_axis(axis):
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(_ns_label))


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


def _figure(plt, n, size, panel_height):
    w, h = size or (WIDTH, 90 + panel_height * n)
    fig, axes = plt.subplots(n, 1, figsize=(w / DPI, h / DPI), dpi=DPI, squeeze=False, layout="constrained")
    return fig, [a[0] for a in axes]


def _save(plt, fig, path):
    try:
        fig.savefig(path, dpi=DPI)
    except OSError as e:
        raise BadInput(f"-o {path}", e.strerror.lower() if e.strerror else str(e)) from None
    finally:
        plt.close(fig)


def _mark(ax, counts, colour, prefix=""):
    for p, style in ((50, "--"), (99, ":")):
        v = hist.percentile(counts, p)
        ax.axvline(max(v, 0.5), color=colour, linestyle=style, linewidth=1.5,
                   label=f"{prefix}p{p} {_ns_label(v) if v >= 1 else '0'}")


def histograms(sel, stages, path, size=None):
    """One latency histogram per key and stage; returns a note when keys were left out."""
    plt = require()
    chosen, total = panels([(s, st) for s in sel.series for st in _stages(s, stages)])
    if not chosen:
        raise BadInput("plot", "no latency samples in the selected keys")
    fig, axes = _figure(plt, len(chosen), size, 300)
    for ax, (s, stage) in zip(axes, chosen):
        counts = s.hists[stage]
        i0, i1, edges = _edges(counts)
        ax.stairs(counts[i0:i1 + 1], edges, fill=True, color=A_COLOUR, alpha=0.6)
        _mark(ax, counts, "black")
        _style(ax, s, stage, f"n={int(counts.sum())}, {sel.seconds:.1f}s recorded")
        ax.set_ylabel("I/Os per bucket")
        ax.legend(loc="upper right", fontsize="small")
    _save(plt, fig, path)
    return _note(len(chosen), total)


def overlay(pairs, stages, labels, path, size=None):
    """A and B histograms of each matched key, as fractions of their I/Os."""
    plt = require()
    both = [(a, b, st) for a, b in pairs if a is not None and b is not None
            for st in _stages(a, stages) if st in b.hists and a.hists[st].any() and b.hists[st].any()]
    both.sort(key=lambda t: -int(t[0].hists[t[2]].sum() + t[1].hists[t[2]].sum()))
    if not both:
        raise BadInput("compare --plot", "no key has latency samples in both A and B")
    chosen = both[:MAX_PANELS]
    fig, axes = _figure(plt, len(chosen), size, 300)
    for ax, (a, b, stage) in zip(axes, chosen):
        for s, colour, label in ((a, A_COLOUR, labels[0]), (b, B_COLOUR, labels[1])):
            counts = s.hists[stage]
            i0, i1, edges = _edges(counts)
            ax.stairs(counts[i0:i1 + 1] / counts.sum(), edges, fill=True, alpha=0.35, color=colour,
                      label=f"{label} (n={int(counts.sum())})")
            _mark(ax, counts, colour, prefix=label.split(":")[0] + " ")
        _style(ax, a, stage, "A vs B")
        ax.set_ylabel("fraction of I/Os per bucket")
        ax.legend(loc="upper right", fontsize="small")
    _save(plt, fig, path)
    return _note(len(chosen), len(both))


def heatmap(sel, stages, path, size=None):
    """Latency over time per key and stage: windows on x, latency on y,
    colour the I/O count (log scale), with p50 and p99 per window drawn over it."""
    plt = require()
    from matplotlib.colors import LogNorm

    if sel.window is None:
        raise ValueError("heatmap needs a Selection aggregated with a window")
    chosen, total = panels([(s, st) for s in sel.series for st in _stages(s, stages)])
    if not chosen:
        raise BadInput("plot", "no latency samples in the selected keys")
    fig, axes = _figure(plt, len(chosen), size, 330)
    group = layout.SUB_COUNT // HEAT_ROWS_PER_OCTAVE
    for ax, (s, stage) in zip(axes, chosen):
        nwin = max(s.windows) + 1
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
        x = np.arange(nwin + 1) * sel.window
        masked = np.ma.masked_equal(cells.T, 0)
        mesh = ax.pcolormesh(x, y, masked, norm=LogNorm(vmin=1, vmax=max(1, cells.max())), cmap="viridis",
                             shading="flat")
        fig.colorbar(mesh, ax=ax, label="I/Os per cell", pad=0.01)
        mids = (x[:-1] + x[1:]) / 2
        for p, style in ((50, "-"), (99, "--")):
            v = [hist.percentile(s.windows[w][1][stage], p) if stage in s.windows.get(w, ({}, {}))[1] else math.nan
                 for w in range(nwin)]
            ax.plot(mids, np.maximum(v, 0.5), color="white", linestyle=style, linewidth=1.2, label=f"p{p}")
        ax.set_yscale("log")
        _log_ns_axis(ax.yaxis)
        ax.set_ylim(y[0], y[-1])
        ax.set_xlim(0, x[-1])
        ax.set_xlabel(f"time since start of recording (s), {sel.window:g}s windows")
        ax.set_ylabel("latency")
        ax.set_title(f"{title(s, stage)}\n{int(s.hists[stage].sum())} I/Os", fontsize="medium")
        ax.legend(loc="upper right", fontsize="small", facecolor="#444444", labelcolor="white")
    _save(plt, fig, path)
    return _note(len(chosen), total)


def _stages(series, wanted):
    return stages_of(series, wanted=wanted)


def _style(ax, s, stage, extra):
    ax.set_xscale("log")
    _log_ns_axis(ax.xaxis)
    ax.set_xlabel("latency (log scale; bucket = 1/32 octave)")
    ax.set_title(f"{title(s, stage)}\n{extra}", fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)


def _note(drawn, total):
    if drawn < total:
        return f"plotted the {drawn} of {total} key/stage histograms with the most I/O; choose with --key or --stage"
    return None
