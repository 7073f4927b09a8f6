"""The demo's pure parts: the kernel's stat formats, and the verdict it draws
from shares and queue depths (no root, no bcc)."""

import pytest

from ioltrace import demo

V1 = """7:3 Read 5242880
7:3 Write 0
7:3 Sync 5242880
7:3 Async 0
7:3 Discard 0
7:3 Total 5242880
7:30 Read 99
Total 5242880
"""
V2 = "7:30 rbytes=99 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n7:3 rbytes=1048576 wbytes=4096 rios=2 wios=1\n"


@pytest.mark.parametrize("text, dev, want", [
    (V1, "7:3", 5242880),
    (V1, "7:30", 99),        # a device whose number starts like another's
    (V1, "8:0", 0),          # no line yet: no I/O on it
    (V2, "7:3", 1048576),
    (V2, "7:30", 99),
    ("", "7:3", 0),
    ("Total 0\n", "7:3", 0),  # v1's throttle file of a group without I/O
])
def test_parse_read_bytes(text, dev, want):
    assert demo.parse_read_bytes(text, dev) == want


def judge(traced=66.7, kernel=66.7, waiting=(14.0, 15.0), obstacles=()):
    return demo.judge_shares(traced, kernel, list(waiting), list(obstacles), "blkio.throttle.io_service_bytes")


def test_a_backlogged_split_within_tolerance_matches():
    ok, lines = judge(kernel=70.0)
    assert ok is True and "MATCHES" in lines[0] and "70.0%" in lines[0]


def test_the_kernel_count_is_the_judge_not_the_traced_one():
    ok, lines = judge(traced=66.7, kernel=75.0)
    assert ok is False and "does NOT match" in lines[0] and "+8.3 points" in lines[0]


def test_a_group_that_ran_dry_gives_no_match_even_within_tolerance():
    ok, lines = judge(kernel=65.0, waiting=(14.0, 0.4))
    assert ok is False
    assert "matches only by chance" in lines[0] and "weight500 was not backlogged" in lines[0]


def test_off_and_dry_says_why():
    ok, lines = judge(kernel=52.0, waiting=(0.9, 14.0))
    assert ok is False and "does NOT match" in lines[0] and "weight1000 was not backlogged" in lines[0]


def test_no_verdict_where_weights_cannot_take_effect():
    ok, lines = judge(obstacles=["the bfq I/O scheduler is not available"])
    assert ok is None and len(lines) == 1
    assert "no verdict" in lines[0] and "bfq" in lines[0] and "%" not in lines[0]


def test_without_a_kernel_count_ioltrace_s_is_used_and_said():
    ok, lines = judge(traced=66.0, kernel=None)
    assert ok is True and "ioltrace's count" in lines[0]


def test_wrap_keeps_80_columns_and_table_rows():
    row = "  weight1000     1000   66.7%   66.9%   66.9%   15.1 (14.0) of 16"
    long = "demo: " + "word " * 40
    out = demo.wrap([row, long])
    assert out[0] == row
    assert all(len(line) <= 79 for line in out)
    assert " ".join(x.strip() for x in out[1:]) == long.strip()
