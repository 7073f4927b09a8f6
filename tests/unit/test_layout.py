"""layout.py against bpf/ioltrace.h as gcc compiles it.

Ground truth is the header itself: a small C harness built with the host
compiler prints every IOLT_* constant, every struct's size and field offsets,
iolt_bucket() of a list of values and iolt_op_from_rwbs() of rwbs strings.
The rwbs expectations come from the kernel's blk_fill_rwbs(), not the header.
"""

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ioltrace import layers, layout

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "bpf" / "ioltrace.h"

# struct name in C -> (layout.py class, field names in C order)
STRUCTS = {
    "iolt_rq": (layout.Rq, ("sector", "dev", "tgid", "start_ns", "issue_ns", "cgid", "comm", "tid", "depth")),
    "iolt_stat_key": (layout.StatKey, ("cgid", "tgid", "tid", "dev", "op", "blkcg")),
    "iolt_rqp": (layout.Rqp, ("rq", "start_ns", "issue_ns", "cgid", "blkcg", "comm", "tgid", "tid", "dev", "op",
                              "left", "size", "depth", "_pad")),
    "iolt_stat": (layout.Stat, ("ios", "bytes", "errors", "queue_ns", "device_ns", "comm", "size_sum",
                                "depth_sum")),
    "iolt_hist_key": (layout.HistKey, ("k", "stage", "bucket")),
    "iolt_err_key": (layout.ErrKey, ("k", "err", "_pad")),
    "iolt_sc_start": (layout.ScStart, ("ts", "sc", "_pad")),
    "iolt_sc_key": (layout.ScKey, ("cgid", "tgid", "tid", "sc", "_pad")),
    "iolt_sc_stat": (layout.ScStat, ("calls", "bytes", "errors", "sum_ns", "comm")),
    "iolt_sc_hist_key": (layout.ScHistKey, ("k", "bucket", "_pad")),
    "iolt_sc_err_key": (layout.ScErrKey, ("k", "err", "_pad")),
    "iolt_sys_exit": (layout.SysExit, ("_common", "id", "ret")),
    "iolt_loop_state": (layout.LoopState, ("first_ns", "prev_ns", "expect", "_pad")),
    "iolt_loop_key": (layout.LoopKey, ("tgid", "step")),
    "iolt_loop_stat": (layout.LoopStat, ("count", "sum_ns", "min_ns", "max_ns", "comm")),
    "iolt_loop_hist_key": (layout.LoopHistKey, ("k", "bucket", "_pad")),
    "iolt_sc_snoop_event": (layout.ScSnoopEvent, ("ts_ns", "lat_ns", "cgid", "ret", "comm", "tgid", "tid", "sc",
                                                   "_pad")),
    "iolt_snoop_event": (layout.SnoopEvent, ("ts_ns", "sector", "queue_ns", "device_ns", "cgid", "comm", "tgid",
                                             "tid", "dev", "bytes", "err", "rwbs")),
}

# blk_fill_rwbs(): optional 'F' (REQ_PREFLUSH), then the op letter (W write,
# D discard, DE secure erase, F flush, R read, N anything else), then flags
# F (FUA), A (readahead), S (sync), M (meta).
RWBS = {
    "R": "read", "RS": "read", "RA": "read", "RAS": "read", "RM": "read", "RSM": "read", "FR": "read",
    "W": "write", "WS": "write", "WFS": "write", "FWS": "write", "FW": "write", "FWFS": "write",
    "WSM": "write", "WF": "write", "FWFSM": "write",
    "F": "flush", "FF": "flush", "FFS": "flush",
    "D": "discard", "DE": "discard", "FD": "discard", "DS": "discard",
    "N": "other", "FN": "other", "NS": "other", "": "other",
}

C_MAIN = r"""
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
typedef uint32_t __u32; typedef uint64_t __u64; typedef int32_t __s32; typedef int64_t __s64;
#include "ioltrace.h"

int main(int argc, char **argv)
{
	char line[256];
	if (!strcmp(argv[1], "consts")) {
%(consts)s
%(structs)s
	} else if (!strcmp(argv[1], "bucket")) {
		unsigned long long v;
		while (scanf("%%llu", &v) == 1)
			printf("%%u\n", iolt_bucket((__u64)v));
	} else {
		while (fgets(line, sizeof(line), stdin)) {
			char rwbs[8] = {0};  /* RWBS_LEN in the kernel */
			line[strcspn(line, "\n")] = 0;
			memcpy(rwbs, line, strnlen(line, sizeof(rwbs) - 1));
			printf("%%u\n", iolt_op_from_rwbs(rwbs));
		}
	}
	return 0;
}
"""


def _header_constants():
    # Object-like macros only: the names come from the header, the values from gcc.
    names = re.findall(r"^#define\s+(IOLT_\w+)\s+\S", HEADER.read_text(), re.M)
    return sorted(set(names))


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("harness")
    consts = "\n".join(f'\t\tprintf("const {n} %llu\\n", (unsigned long long)({n}));' for n in _header_constants())
    structs = []
    for s, (_, fields) in STRUCTS.items():
        structs.append(f'\t\tprintf("size {s} %zu\\n", sizeof(struct {s}));')
        structs += [f'\t\tprintf("off {s} {f} %zu\\n", offsetof(struct {s}, {f}));' for f in fields]
    (d / "h.c").write_text(C_MAIN % {"consts": consts, "structs": "\n".join(structs)})
    exe = d / "h"
    cc = subprocess.run([gcc, "-O2", "-Wall", "-Werror", f"-I{HEADER.parent}", "-o", str(exe), str(d / "h.c")],
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr

    def run(mode, stdin=""):
        return subprocess.run([str(exe), mode], input=stdin, check=True, capture_output=True,
                              text=True).stdout.splitlines()
    return run


@pytest.fixture(scope="module")
def c_facts(harness):
    consts, sizes, offs = {}, {}, {}
    for line in harness("consts"):
        kind, *rest = line.split()
        if kind == "const":
            consts[rest[0]] = int(rest[1])
        elif kind == "size":
            sizes[rest[0]] = int(rest[1])
        else:
            offs[(rest[0], rest[1])] = int(rest[2])
    return consts, sizes, offs


def _expected_constants():
    exp = {
        "IOLT_SUB_BITS": layout.SUB_BITS, "IOLT_SUB_COUNT": layout.SUB_COUNT,
        "IOLT_MAX_LOG2": layout.MAX_LOG2, "IOLT_OVERFLOW_BUCKET": layout.OVERFLOW_BUCKET,
        "IOLT_NBUCKETS": layout.NBUCKETS, "IOLT_NOPS": len(layout.OPS),
        "IOLT_NCOUNTERS": len(layout.COUNTERS), "IOLT_OTHER_TGID": layout.OTHER_TGID,
        "IOLT_INFLIGHT_BITS": layout.DEFAULT_INFLIGHT_BITS,
        "IOLT_INFLIGHT_SLOTS": 1 << layout.DEFAULT_INFLIGHT_BITS,
        "IOLT_INFLIGHT_WAYS": layout.INFLIGHT_WAYS,
        "IOLT_STATS_ENTRIES": layout.DEFAULT_STATS_ENTRIES,
        "IOLT_HIST_ENTRIES": layout.DEFAULT_HIST_ENTRIES,
        "IOLT_ERRS_ENTRIES": layout.DEFAULT_ERRS_ENTRIES,
        "IOLT_DEPTH_DISKS": layout.DEPTH_DISKS,
    }
    exp.update({f"IOLT_OP_{n.upper()}": i for i, n in enumerate(layout.OPS)})
    exp.update({f"IOLT_STAGE_{n.upper()}": i for i, n in enumerate(layout.STAGES)})
    exp.update({f"IOLT_CNT_{n.upper()}": i for i, n in enumerate(layout.COUNTERS)})
    exp.update({f"IOLT_{n.upper()}": i + 1 for i, n in enumerate(layout.FILTERED_COUNTERS)})
    exp.update({
        "IOLT_SC_COUNT": len(layout.SYSCALLS), "IOLT_SC_BYTES_FAMILY": layout.SC_BYTES_FAMILY,
        "IOLT_SC_THREADS": layout.DEFAULT_SC_THREADS, "IOLT_SC_NCOUNTERS": len(layout.SC_COUNTERS),
        "IOLT_LOOP_MAX_EVENTS": layout.LOOP_MAX_EVENTS, "IOLT_LOOP_RECORD": layout.LOOP_RECORD,
        "IOLT_LOOP_WHOLE": layout.LOOP_WHOLE, "IOLT_LOOP_STORE": layout.LOOP_STORE,
        "IOLT_LOOP_DELETE": layout.LOOP_DELETE,
    })
    exp.update({f"IOLT_SC_CNT_{n.upper().replace('SYSCALL_', '')}": i for i, n in enumerate(layout.SC_COUNTERS)})
    exp["IOLT_LOOP_NCOUNTERS"] = len(layout.LOOP_COUNTERS)
    exp.update({f"IOLT_LOOP_CNT_{n.upper().replace('LOOP_', '')}": i for i, n in enumerate(layout.LOOP_COUNTERS)})
    exp["IOLT_SNOOP_NCOUNTERS"] = len(layout.SNOOP_COUNTERS)
    exp.update({f"IOLT_SNOOP_CNT_{n.upper().replace('SNOOP_', '')}": i for i, n in enumerate(layout.SNOOP_COUNTERS)})
    exp["IOLT_RWBS_LEN"] = layout.RWBS_LEN
    exp["IOLT_SC_SNOOP_NCOUNTERS"] = len(layout.SC_SNOOP_COUNTERS)
    exp.update({f"IOLT_SC_SNOOP_CNT_{n.upper().replace('SYSCALL_SNOOP_', '')}": i
                for i, n in enumerate(layout.SC_SNOOP_COUNTERS)})
    return exp


def test_constants_match_header(c_facts):
    consts = c_facts[0]
    exp = _expected_constants()
    # Every constant of the header has a Python counterpart and vice versa.
    assert set(consts) == set(exp)
    assert {n: consts[n] for n in exp} == exp
    assert consts["IOLT_NBUCKETS"] == 1025  # as the header's comment says
    assert (layout.STAGE_QUEUE, layout.STAGE_DEVICE, layout.STAGE_TOTAL) == (
        consts["IOLT_STAGE_QUEUE"], consts["IOLT_STAGE_DEVICE"], consts["IOLT_STAGE_TOTAL"])
    assert set(layout.ALARM_COUNTERS) <= set(layout.COUNTERS) | set(layout.MISSED_COUNTERS) | set(
        layout.SWEEP_COUNTERS)


@pytest.mark.parametrize("cname", STRUCTS)
def test_struct_layout_matches_gcc(c_facts, cname):
    _, sizes, offs = c_facts
    cls, fields = STRUCTS[cname]
    assert [f for f, _ in cls._fields_] == list(fields)
    assert ctypes.sizeof(cls) == sizes[cname]
    assert sizes[cname] % 8 == 0   # every struct stays 8-byte aligned (iolt_rqp: size, depth, _pad)
    assert {f: getattr(cls, f).offset for f in fields} == {f: offs[(cname, f)] for f in fields}


def _programs():
    """(layer, C source) of every layer's own program and of its probe sets."""
    return [(layer, source) for layer in layers.ALL
            for source in (layer.source,) + tuple(p.source for p in layer.probe_sets)]


def test_every_layer_map_is_declared_in_its_program():
    """Each layers.py declaration names exactly the maps its C program (and
    each program of its probe sets) defines, with the struct types layout.py
    decodes (by name), and a counter array as long as the declared counters."""
    ctype_of = {cls: c for c, (cls, _) in STRUCTS.items()}
    for layer, source in _programs():
        src = (REPO / "bpf" / source).read_text()
        by_name = {}
        for macro, args in re.findall(r"^BPF_(F_TABLE|HASH|ARRAY)\((.*?)\);", src, re.M):
            parts = [p.strip() for p in args.split(",")]
            if macro == "F_TABLE":      # ("hash", key, value, name, size, flags)
                by_name[parts[3]] = (parts[1], parts[2])
            elif macro == "HASH":       # (name, key, value, size)
                by_name[parts[0]] = (parts[1], parts[2])
            else:                       # (name, value, size): u32 index
                by_name[parts[0]] = ("u32", parts[1])
        assert set(by_name) == {m.name for m in layer.maps_of(source)}, source
        for m in layer.maps_of(source):
            key, value = by_name[m.name]
            for c, cls in ((key, m.key), (value, m.value)):
                if c.startswith("struct "):
                    assert ctype_of[cls] == c.split()[1], (m.name, c)
                else:
                    assert ctypes.sizeof(cls) == {"u32": 4, "u64": 8}[c], (m.name, c)
        assert layer.counters_map in by_name
        assert all(m.full is None or m.full in layer.counters for m in layer.maps)
        assert set(layer.alarms) <= set(layer.counters) | set(layer.derived)
        if layer.inflight:   # Tracer._sweep reads these two fields of every slot
            value = layer.maps_of(source)[[m.name for m in layer.maps_of(source)].index(layer.inflight)].value
            assert {"start_ns", "issue_ns"} <= {f for f, _ in value._fields_}, source


def test_program_entry_points_match_python():
    """Syscall numbers and loop event slots exist once in Python
    (layout.SYSCALLS, LOOP_MAX_EVENTS); the C programs must map exactly the
    syscalls of layout.SYSCALLS to their indexes, and define one ev_N per
    event slot."""
    sc = (REPO / "bpf" / "syscall.bpf.c").read_text()
    uses = sc.split("#define IOLT_SC(", 1)[1].split("\n", 1)[1]   # after the macro
    pairs = [(int(n), name) for n, name in re.findall(r"IOLT_SC\((\d+), (\w+)\)", uses)]
    assert pairs == list(enumerate(layout.SYSCALLS))
    assert len(layout.SYSCALLS) <= 64   # the IOLT_SC_WANTED bit mask is one u64
    loop = (REPO / "bpf" / "loop.bpf.c").read_text()
    assert [int(n) for n in re.findall(r"^int ev_(\d+)\(void \*ctx\) \{ return on_event\(\1\); \}$", loop, re.M)] \
        == list(range(layout.LOOP_MAX_EVENTS))
    from ioltrace import cli

    with pytest.raises(Exception):
        cli.chain_arg(",".join(["syscalls:sys_enter_read"] * (layout.LOOP_MAX_EVENTS + 1)))
    assert len(cli.chain_arg(",".join(["syscalls:sys_enter_read"] * layout.LOOP_MAX_EVENTS))) == layout.LOOP_MAX_EVENTS


def _values():
    vals = {0, 1, 31, 32, 33, 63, 64, 65, 2**63 - 1, 2**63, 2**64 - 1}
    for e in range(41):
        vals |= {2**e - 1, 2**e, 2**e + 1}
    vals |= {layout.SUB_COUNT << e for e in range(40)}
    rng = np.random.default_rng(20240611)
    vals |= set(np.exp(rng.uniform(0, 40 * np.log(2), 10_000)).astype(np.uint64).tolist())
    return sorted(int(v) for v in vals)


def test_bucket_of_matches_c(harness):
    vals = _values()
    c = [int(x) for x in harness("bucket", "\n".join(map(str, vals)) + "\n")]
    assert len(c) == len(vals)
    assert [layout.bucket_of(v) for v in vals] == c
    assert layout.buckets_of(np.array(vals, dtype=np.uint64)).tolist() == c


def test_bucket_bounds_hold_every_value():
    vals = np.array(_values(), dtype=np.uint64)
    b = layout.buckets_of(vals)
    f = vals.astype(np.float64)
    finite = vals < np.uint64(2**53)  # float64 bounds are exact there
    assert np.all(layout.BUCKET_LOW[b][finite] <= f[finite])
    assert np.all(f[finite] < layout.BUCKET_HIGH[b][finite])
    assert np.all(b[vals >= np.uint64(2 ** (layout.MAX_LOG2 + 1))] == layout.OVERFLOW_BUCKET)
    assert np.all(b[vals < np.uint64(2 ** (layout.MAX_LOG2 + 1))] < layout.OVERFLOW_BUCKET)
    # Every bucket's own bounds land in it.
    idx = np.arange(layout.NBUCKETS - 1)
    assert layout.buckets_of(layout.BUCKET_LOW[idx].astype(np.uint64)).tolist() == idx.tolist()
    assert layout.buckets_of((layout.BUCKET_HIGH[idx] - 1).astype(np.uint64)).tolist() == idx.tolist()


def test_buckets_contiguous_and_fine():
    low, high = layout.BUCKET_LOW, layout.BUCKET_HIGH
    assert low[0] == 0 and np.isinf(high[-1]) and len(low) == layout.NBUCKETS
    assert np.all(high[:-1] == low[1:])
    assert np.all(np.diff(low) > 0)
    assert np.all(layout.BUCKET_LOW <= layout.BUCKET_MID) and np.all(layout.BUCKET_MID[:-1] < high[:-1])
    fin = (low >= 32) & np.isfinite(high)
    assert np.all((high[fin] - low[fin]) / low[fin] <= 1 / 32)
    # 1 us .. 60 s is covered by finite fine buckets.
    assert layout.bucket_of(1_000) < layout.bucket_of(60 * 10**9) < layout.OVERFLOW_BUCKET
    assert high[layout.OVERFLOW_BUCKET - 1] > 60e9


def test_rwbs_matches_blk_fill_rwbs(harness):
    table = sorted(RWBS.items())
    got = harness("rwbs", "".join(r + "\n" for r, _ in table))
    assert {r: layout.OPS[int(g)] for (r, _), g in zip(table, got)} == dict(table)
