"""fmt.py formatters and the width of views/hist.render's output."""

import errno
import math
import re
import unicodedata

import numpy as np
import pytest

from ioltrace import hist
from ioltrace.records import Group, GroupId
from ioltrace import fmt
from ioltrace.views import hist as view

SCALE = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}


def parse_ns(text):
    m = re.fullmatch(r"([0-9.]+)(ns|us|ms|s)", text)
    assert m, text
    return float(m.group(1)), m.group(2)


@pytest.mark.parametrize("value, unit", [
    (0, "ns"), (1, "ns"), (999, "ns"), (1000, "us"), (1500, "us"), (24_500, "us"), (999_000, "us"),
    (1e6, "ms"), (2.5e6, "ms"), (3.1e6, "ms"), (3e9, "s"), (1.25e9, "s"), (7200e9, "s"),
])
def test_ns_unit_and_value(value, unit):
    num, got_unit = parse_ns(fmt.ns(value))
    assert got_unit == unit
    assert math.isclose(num * SCALE[unit], value, rel_tol=0.005, abs_tol=0.5)


@pytest.mark.parametrize("value", [math.nan, float("nan"), np.float64("nan"), None])
def test_ns_missing(value):
    assert fmt.ns(value) == "-"


@pytest.mark.parametrize("value", [999.7, 999_999, 999_999_999])
def test_ns_rounding_never_shows_1000_of_a_smaller_unit(value):
    num, unit = parse_ns(fmt.ns(value))
    assert num < 1000


@pytest.mark.parametrize("value, text", [
    (0, "0B"), (512, "512B"), (1023, "1023B"), (1024, "1.0K"), (4096, "4.0K"), (1.5 * 2**20, "1.5M"),
    (3 * 2**30, "3.0G"), (2**40, "1.0T"), (5.5 * 2**40, "5.5T"),
])
def test_size(value, text):
    assert fmt.size(value) == text
    assert fmt.rate(value) == text + "/s"


def test_errno_name_matches_errno_module():
    assert fmt.errno_name(28) == errno.errorcode[errno.ENOSPC] == "ENOSPC"
    assert all(fmt.errno_name(n) == name for n, name in errno.errorcode.items())
    assert fmt.errno_name(4095) == "E4095"


LONG = "/system.slice/docker-0123456789abcdef0123456789abcdef.scope"


@pytest.mark.parametrize("text, width, want", [
    ("postgres", 15, "postgres"),
    ("postgres", 8, "postgres"),
    ("postgres", 7, "…stgres"),
    ("a\tb\x1bc\nd\x7f", 20, "a?b?c?d?"),
    (LONG, 20, "…" + LONG[-19:]),
    ("kworker/u8:2\n", 5, "…8:2?"),
])
def test_truncate(text, width, want):
    assert fmt.truncate(text, width) == want


def test_truncate_never_exceeds_width_and_prints_nothing_raw():
    for width in range(1, 70):
        for text, clean in ((LONG, LONG), ("x\x00y\x01z" * 20, "x?y?z" * 20), ("é" * 80, "é" * 80)):
            out = fmt.truncate(text, width)
            assert len(out) == min(width, len(clean)) and out.isprintable()
            if 1 < width < len(clean):
                assert out == "…" + clean[-(width - 1):]
            elif width >= len(clean):
                assert out == clean


def test_truncate_counts_terminal_columns():
    out = fmt.truncate("数据库服务进程", 8)
    assert sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in out) <= 8


def _group(name="postgres", kind="process", key="1234", n=1000, seconds_mean=1e5, errnos=None):
    x = np.random.default_rng(1).lognormal(math.log(seconds_mean), 1, n).astype(np.int64)
    q = np.random.default_rng(2).lognormal(math.log(seconds_mean / 10), 1, n).astype(np.int64)
    errnos = errnos if errnos is not None else {errno.EIO: 1, errno.ENOSPC: 1}
    return Group(GroupId(kind, key, name, "nvme0n1", "write"), n, 4096 * n, sum(errnos.values()),
                 int(q.sum()), int(x.sum()), {"device": hist.from_samples(x), "queue": hist.from_samples(q)},
                 errnos), x


def test_render_structure():
    g, x = _group()
    empty = g._replace(id=g.id._replace(key="99"), ios=0, hists={"device": hist.empty()})
    lines = view.render([g, empty], ["queue", "device"], 1.0)
    titles = [l for l in lines if l.endswith(" time")]
    assert titles == ["PID 1234 (postgres)  disk nvme0n1  write  queue time",
                      "PID 1234 (postgres)  disk nvme0n1  write  device time"]
    rows = [l for l in lines if re.match(r"\s*\d+ -> \d+\s*:", l)]
    assert sum(int(l.split(":")[1].split()[0]) for l in rows) == 2 * len(x)
    assert any("ENOSPC=1" in l and "EIO=1" in l for l in lines)
    assert view.render([empty], ["device"], 1.0) == []


@pytest.mark.parametrize("millis", [False, True])
def test_render_fits_80_columns(millis):
    groups = [_group()[0], _group(kind="disk", key="sda", name="sda", n=50, seconds_mean=3e6, errnos={})[0]]
    lines = view.render(groups, ["queue", "device"], 1.0, millis=millis)
    assert lines
    assert max(len(l) for l in lines) <= 80, [l for l in lines if len(l) > 80]


def test_render_title_fits_80_columns_with_long_cgroup_path():
    g = _group(kind="cgroup", key="4242", name=LONG, n=1, errnos={})[0]
    lines = view.render([g], ["device"], 1.0)
    assert max(len(l) for l in lines[:2]) <= 80
