"""The chain pairing of `ioltrace loop`, run natively: iolt_loop_event() from
bpf/ioltrace.h (the same function the kernel program calls) compiled with
gcc, fed synthetic per-thread event streams; expectations written by hand
from the definition (each event 0 starts a chain, each next event in order
records one step, the last also records the whole chain)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from ioltrace import layout

REPO = Path(__file__).resolve().parents[2]

HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
typedef uint32_t __u32; typedef uint64_t __u64; typedef int32_t __s32; typedef int64_t __s64;
#include "ioltrace.h"

int main(int argc, char **argv)
{
	unsigned n, tid, idx;
	unsigned long long now;
	struct iolt_loop_state st[16] = {{0}};
	int have[16] = {0};
	if (scanf("%u", &n) != 1)
		return 1;
	while (scanf("%u %u %llu", &tid, &idx, &now) == 3) {
		__u32 step = 0;
		__u64 step_ns = 0, whole_ns = 0;
		struct iolt_loop_state s = st[tid];
		__u32 todo = iolt_loop_event(&s, have[tid], idx, now, n, &step, &step_ns, &whole_ns);
		if (todo & IOLT_LOOP_RECORD)
			printf("%u %u %llu\n", tid, step, (unsigned long long)step_ns);
		if (todo & IOLT_LOOP_WHOLE)
			printf("%u whole %llu\n", tid, (unsigned long long)whole_ns);
		if (todo & IOLT_LOOP_STORE) {
			st[tid] = s;
			have[tid] = 1;
		}
		if (todo & IOLT_LOOP_DELETE)
			have[tid] = 0;
	}
	return 0;
}
"""


@pytest.fixture(scope="module")
def run_chain(tmp_path_factory):
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc, "gcc is needed (scripts/setup.sh installs it)"
    d = tmp_path_factory.mktemp("chain")
    (d / "c.c").write_text(HARNESS)
    subprocess.run([gcc, "-O2", "-Wall", "-Werror", f"-I{REPO / 'bpf'}", "-o", str(d / "c"), str(d / "c.c")],
                   check=True)

    def run(n, events):
        stdin = f"{n}\n" + "".join(f"{tid} {idx} {t}\n" for tid, idx, t in events)
        out = subprocess.run([str(d / "c")], input=stdin, capture_output=True, text=True, check=True).stdout
        return [tuple(int(x) if x.isdigit() else x for x in line.split()) for line in out.splitlines()]

    return run


CASES = {
    # from/to pair: each 0 -> next 1 records once; a 1 without a 0 is ignored.
    "pair": (2, [(0, 1, 5), (0, 0, 10), (0, 1, 25), (0, 1, 30), (0, 0, 40), (0, 1, 47)],
             [(0, 0, 15), (0, 0, 7)]),
    # a repeated start restarts the measurement from the latest one.
    "restart": (2, [(0, 0, 10), (0, 0, 20), (0, 1, 26)], [(0, 0, 6)]),
    # threads are independent, even interleaved.
    "threads": (2, [(1, 0, 10), (2, 0, 12), (2, 1, 20), (1, 1, 40)], [(2, 0, 8), (1, 0, 30)]),
    # a 3-event chain records both steps and the whole chain.
    "chain3": (3, [(0, 0, 100), (0, 1, 130), (0, 2, 190)], [(0, 0, 30), (0, 1, 60), (0, "whole", 90)]),
    # out-of-order events are ignored; the chain still completes in order.
    "out_of_order": (3, [(0, 0, 0), (0, 2, 5), (0, 1, 10), (0, 1, 12), (0, 2, 20)],
                     [(0, 0, 10), (0, 1, 10), (0, "whole", 20)]),
    # a chain cut by a new start begins again.
    "cut": (3, [(0, 0, 0), (0, 1, 4), (0, 0, 50), (0, 1, 55), (0, 2, 65)],
            [(0, 0, 4), (0, 0, 5), (0, 1, 10), (0, "whole", 15)]),
}


@pytest.mark.parametrize("case", CASES)
def test_chain_pairing(run_chain, case):
    n, events, expected = CASES[case]
    assert run_chain(n, events) == expected


def test_n_minus_one_samples_for_n_alternating_events(run_chain):
    # The fsync test's shape: N exits and N enters, alternating, enter first.
    events = []
    for i in range(10):
        events += [(0, 1, i * 100), (0, 0, i * 100 + 3)]  # sys_enter (to) then sys_exit (from)
    out = run_chain(2, events)
    assert len(out) == 9 and all(ns == 97 for _, _, ns in out)
    assert layout.LOOP_WHOLE_STEP == layout.LOOP_MAX_EVENTS
