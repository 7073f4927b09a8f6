"""What the plots show, read back from the PNG (matplotlib's image reader)
and from the drawn axes: every latency axis carries at least two figures,
even over one or two buckets; a heatmap has one column per time window; one
or two windows still show their p50 and p99."""

import numpy as np
import pytest

from ioltrace import cli, plot

from .recfiles import T0, group, samples, write
from .test_plot import mpl  # noqa: F401  (fixture: skip without matplotlib, fail in CI)


@pytest.fixture
def drawn(monkeypatch):
    """The figures the commands draw, kept open for inspection after saving."""
    figs = []

    def save(plt, fig, path):
        fig.savefig(path, dpi=plot.DPI)
        figs.append(fig)

    monkeypatch.setattr(plot, "_save", save)
    yield figs
    import matplotlib.pyplot as plt

    for f in figs:
        plt.close(f)


def ok(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    assert rc == 0, capsys.readouterr().err


def figures_on(axis):
    lo, hi = sorted(axis.get_view_interval())
    locs = [t for t in axis.get_majorticklocs() if lo <= t <= hi]
    labels = [axis.get_major_formatter()(t) for t in locs]
    return [lab for lab in labels if lab]


def latency_axes(fig):
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log" and "latency" in axis.get_label_text():
                yield axis


def one_bucket(tmp_path, name="one.csv", windows=1):
    # Two requests 200 ns apart: one fine bucket, far less than a 1-2-5 step.
    return write(tmp_path / name, [([group("1", "dd", np.array([1_000_100, 1_000_300]))], T0 + i, T0 + i + 1)
                                   for i in range(windows)])


@pytest.mark.parametrize("argv", [
    ["--stage", "device"],
    ["--stage", "device", "--size", "400x200"],
    ["--heatmap", "--stage", "device"],
    ["--heatmap", "--stage", "device", "--size", "1000x250"],
])
def test_latency_axes_over_one_bucket_have_two_figures(tmp_path, capsys, mpl, drawn, argv):  # noqa: F811
    ok(capsys, "plot", one_bucket(tmp_path), "-o", tmp_path / "p.png", *argv)
    axes = list(latency_axes(drawn[-1]))
    assert axes
    for axis in axes:
        assert len(figures_on(axis)) >= 2, (axis.axis_name, figures_on(axis))


def test_compare_plot_over_one_bucket_has_two_figures(tmp_path, capsys, mpl, drawn):  # noqa: F811
    a, b = one_bucket(tmp_path, "a.csv"), one_bucket(tmp_path, "b.csv")
    ok(capsys, "compare", a, b, "--stage", "device", "--plot", tmp_path / "ab.png", "--size", "400x200")
    for axis in latency_axes(drawn[-1]):
        assert len(figures_on(axis)) >= 2, figures_on(axis)


def mesh_pixels(fig, path, hide_legend=False):
    """The heatmap's drawing area of the first panel, as RGB rows of pixels
    (the legend's box painted black when asked)."""
    import matplotlib.image

    img = matplotlib.image.imread(path)[..., :3].copy()
    ax = fig.axes[0]
    box = ax.get_window_extent()
    h = img.shape[0]
    if hide_legend:
        lb = ax.get_legend().get_window_extent()
        img[int(h - lb.y1) - 1:int(h - lb.y0) + 2, int(lb.x0) - 1:int(lb.x1) + 2] = 0
    # Display coordinates start bottom-left, images top-left; 2 pixels in from the frame.
    return img[int(h - box.y1) + 2:int(h - box.y0) - 2, int(box.x0) + 2:int(box.x1) - 2]


def test_heatmap_has_a_column_per_window(tmp_path, capsys, mpl, drawn):  # noqa: F811
    # Ten one-second intervals whose latency grows each second: ten columns that differ.
    intervals = [([group("1", "fio", samples(i, 400, 20_000 * 1.6 ** i))], T0 + i, T0 + i + 1) for i in range(10)]
    path = write(tmp_path / "r.csv", intervals)
    out = tmp_path / "m.png"
    ok(capsys, "plot", path, "-o", out, "--heatmap", "--stage", "device")
    area = mesh_pixels(drawn[-1], out)
    # Columns of the area differ where windows differ: count the runs of identical columns.
    cols = np.round(area, 2).transpose(1, 0, 2).reshape(area.shape[1], -1)
    changes = (np.abs(np.diff(cols, axis=0)).max(axis=1) > 0.05).sum()
    assert changes >= 9, changes
    # Non-background: the mesh fills the area (viridis, not white).
    assert (area.mean(axis=2) < 0.9).mean() > 0.3


@pytest.mark.parametrize("windows", [1, 2])
def test_one_or_two_windows_still_show_p50_and_p99(tmp_path, capsys, mpl, drawn, windows):  # noqa: F811
    out = tmp_path / "m.png"
    ok(capsys, "plot", one_bucket(tmp_path, windows=windows), "-o", out, "--heatmap", "--stage", "device")
    area = mesh_pixels(drawn[-1], out, hide_legend=True)
    white = (area.min(axis=2) > 0.95).sum()
    assert white >= 10, white     # the p50/p99 markers over the dark mesh
