"""The exactness formula docs/RELIABILITY.md states is the one the kernel
side implements: the counters block_rq_complete bumps when it does not
count a completion (bpf/block.bpf.c) plus the completion program's
recursion misses."""

import re
from pathlib import Path

from ioltrace import layout

REPO = Path(__file__).resolve().parents[2]


def test_documented_formula_names_exactly_the_uncounted_counters():
    text = " ".join(REPO.joinpath("docs", "RELIABILITY.md").read_text().split())
    m = re.search(r"ios counted = the device's completed requests((?: − `\w+`)+)", text)
    assert m, "docs/RELIABILITY.md states the formula"
    assert tuple(re.findall(r"`(\w+)`", m.group(1))) == layout.UNCOUNTED_COUNTERS


def test_uncounted_counters_are_what_the_completion_program_gives_up_on():
    src = REPO.joinpath("bpf", "block.bpf.c").read_text()
    complete = src[src.index("TRACEPOINT_PROBE(block, block_rq_complete)"):]
    complete = complete[:complete.index("\n}\n")]
    # The one way the completion program gives up on a request it ran for:
    # no in-flight entry (never seen, evicted: dropped, replaced: collision).
    gives_up = re.findall(r"if \(!rq\) \{(.*?)return 0;", complete, re.S)
    assert len(gives_up) == 1 and re.findall(r"count\(IOLT_CNT_(\w+)\)", gives_up[0]) == ["UNMATCHED"]
    # A completion program the kernel skipped is missed_complete (loader, recursion_misses).
    assert set(layout.UNCOUNTED_COUNTERS) == {"unmatched"} | {m for m in layout.MISSED_COUNTERS if "complete" in m}
