"""ioltrace plot and compare --plot: pictures from recordings in the real
format are valid PNGs (or SVGs) of the requested size with content; without
matplotlib the commands say how to install it. matplotlib is optional: the
drawing tests skip without it on a developer's machine and FAIL under
CI=true, where scripts/setup.sh installs it."""

import os
import struct

import numpy as np
import pytest

from ioltrace import cli

from .recfiles import T0, group, ioltrace, samples, write

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def mpl():
    try:
        import matplotlib
    except ImportError:
        if IN_CI:
            pytest.fail("matplotlib is missing in CI: scripts/setup.sh must install python3-matplotlib")
        pytest.skip("matplotlib not installed (pip install 'ioltrace[plot]')")
    return matplotlib


def recording(path, median=30_000, seconds=20, keys=(("100", "fio"), ("7", "dd"))):
    """Per-second intervals; latency doubles halfway through, as a drift to see."""
    intervals = []
    for i in range(seconds):
        scale = median * (2 if i >= seconds // 2 else 1)
        gs = [group(k, name, samples(i * 10 + j, 500 // (j + 1), scale * (j + 1)), queue=samples(i + 99, 500 // (j + 1), 2000))
              for j, (k, name) in enumerate(keys)]
        intervals.append((gs, T0 + i, T0 + i + 1))
    return write(path, intervals, counters={"unmatched": 0})


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def check_png(mpl, path, size):
    assert png_size(path) == size
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.shape[:2] == (size[1], size[0])
    grey = img[..., :3].mean(axis=2)
    # Not blank: many distinct shades, a real share of non-white pixels.
    assert grey.std() > 0.05 and len(np.unique(np.round(grey, 2))) > 20
    assert (grey < 0.9).mean() > 0.05


def cli_ok(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out, err


def test_histogram_png(tmp_path, capsys, mpl):
    rec = recording(tmp_path / "r.csv")
    out = tmp_path / "h.png"
    cli_ok(capsys, "plot", rec, "-o", out, "--size", "800x900", "--stage", "device", "--stage", "queue")
    check_png(mpl, out, (800, 900))


def test_default_size_grows_with_panels(tmp_path, capsys, mpl):
    rec = recording(tmp_path / "r.csv")
    out = tmp_path / "h.png"
    cli_ok(capsys, "plot", rec, "-o", out, "--key", "fio", "--stage", "device")
    w, h = png_size(out)
    cli_ok(capsys, "plot", rec, "-o", out, "--key", "fio")
    assert png_size(out) == (w, h + 2 * 300)


def test_heatmap_png_and_svg(tmp_path, capsys, mpl):
    rec = recording(tmp_path / "r.csv")
    out = tmp_path / "m.png"
    cli_ok(capsys, "plot", rec, "-o", out, "--heatmap", "--stage", "device", "--interval", "2", "--size", "1000x700")
    check_png(mpl, out, (1000, 700))
    svg = tmp_path / "m.svg"
    cli_ok(capsys, "plot", rec, "-o", svg, "--heatmap", "--key", "dd")
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "dd" in text


def test_compare_overlay_png(tmp_path, capsys, mpl):
    a = recording(tmp_path / "a.csv")
    b = recording(tmp_path / "b.csv", median=60_000)
    out = tmp_path / "ab.png"
    text, _ = cli_ok(capsys, "compare", a, b, "--stage", "device", "--plot", out, "--size", "900x600")
    assert "=> B slower" in text
    check_png(mpl, out, (900, 600))


def test_too_many_panels_says_which_were_drawn(tmp_path, capsys, mpl):
    keys = tuple((str(i), f"p{i}") for i in range(4))
    rec = recording(tmp_path / "r.csv", seconds=2, keys=keys)
    _, err = cli_ok(capsys, "plot", rec, "-o", tmp_path / "x.png")
    assert err == "ioltrace: plotted the 8 of 12 key/stage histograms with the most I/O; choose with --key or --stage\n"


def test_without_matplotlib_one_line_how_to_install(tmp_path):
    rec = write(tmp_path / "r.csv", [([group("1", "x", samples(1, 100))], T0, T0 + 1)])
    for argv in (["plot", rec, "-o", tmp_path / "x.png"], ["compare", rec, rec, "--plot", tmp_path / "x.png"]):
        p = ioltrace(*argv, block=("matplotlib",))
        assert p.returncode == 2 and p.stdout == "" and p.stderr.count("\n") == 1
        assert p.stderr == ("ioltrace: plots: matplotlib is not installed (pip install 'ioltrace[plot]', "
                            "or apt-get install python3-matplotlib)\n")
        assert not (tmp_path / "x.png").exists()


def test_plot_runs_without_bcc(tmp_path, mpl):
    rec = recording(tmp_path / "r.csv", seconds=4)
    p = ioltrace("plot", rec, "-o", tmp_path / "x.png", "--heatmap", "--size", "600x400", "--key", "fio",
                 "--stage", "device")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert png_size(tmp_path / "x.png") == (600, 400)
    # Six panels do not fit in 400 pixels: one line, not a squashed picture.
    p = ioltrace("plot", rec, "-o", tmp_path / "y.png", "--heatmap", "--size", "600x400")
    assert p.returncode == 2 and p.stderr == ("ioltrace: --size 600x400: too small for 6 panels (160 pixels high "
                                              "each) (choose fewer with --key or --stage, or a larger size)\n")
    assert not (tmp_path / "y.png").exists()
