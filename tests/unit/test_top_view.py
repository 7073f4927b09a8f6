"""top's table: columns dropped whole at narrow widths, error columns that
say which layer they count, and cgroups shown by the workload they hold."""

import numpy as np
import pytest

from ioltrace import hist
from ioltrace.records import Group, GroupId
from ioltrace.views import top as tview

CID = "3f4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233445566aabb"


def block_group(key, name, op, nbytes, ios, errors=0, kind="process"):
    lat = np.full(ios, 250_000)
    return Group(GroupId(kind, key, name, "*", op), ios, nbytes, errors, int(lat.sum()), int(lat.sum()),
                 {"queue": hist.from_samples(lat // 10), "device": hist.from_samples(lat)}, {})


def sys_group(key, name, op, calls, errors=0):
    lat = np.full(calls, 3_000)
    return Group(GroupId("process", key, name, "*", op), calls, 0, errors, 0, 0,
                 {"latency": hist.from_samples(lat)}, {11: errors} if errors else {}, {"latency": int(lat.sum())})


def sample_rows():
    groups = [block_group("4242", "postgres", "write", 123_456_789, 12_345, errors=2),
              block_group("77", "dd", "read", 9_876_543, 7)]
    return tview.rows(groups, 1.0, sys_groups=[sys_group("4242", "postgres", "pwrite64", 900, errors=5)])


@pytest.mark.parametrize("layer", ["block", "syscall", "both"])
@pytest.mark.parametrize("width", range(30, 101, 5))
def test_narrow_widths_drop_whole_columns_never_cut_a_figure(layer, width):
    lines = tview.table_lines(sample_rows(), width=width, layer=layer)
    heads = lines[0].split()
    known = {h for cols in (tview.COLUMNS, tview.SYSCALL_COLUMNS, tview.BOTH_COLUMNS) for _, h, _, _ in cols}
    known |= {h for _, h, _, _ in tview.ERROR_COLUMNS.values()}
    assert set(heads) <= known, heads
    for line in lines:
        assert len(line) <= width
    for line in lines[1:]:
        # One whole value under each header: no column cut off at the edge.
        assert len(line.split()) == len(heads), (heads, line)
    if width >= 40:
        assert "NAME" in heads and ("Dp99" in heads or "Sp99" in heads)


def test_header_at_70_columns_drops_whole_fields():
    rows_ = sample_rows()
    full = tview.header_lines(rows_, {}, "12:00:00", 1.0, "process", "bytes")
    assert "IOPS: 12,352" in full[1] and len(full[1]) > 70
    fitted = tview.header_lines(rows_, {"dropped": 3, "stats_full": 12345}, "12:00:00", 1.0, "process", "bytes",
                                width=70)
    assert all(len(line) <= 70 for line in fitted)
    assert "IOPS" not in fitted[1] and fitted[1].rstrip().endswith("/s")
    assert "kernel counters: dropped=3" in fitted[2]


def test_both_layers_label_which_layer_each_error_column_counts():
    lines = tview.table_lines(sample_rows(), width=120, layer="both")
    heads = lines[0].split()
    assert "ERR" not in heads and "IOERR" in heads and "SCERR" in heads
    pg = next(line.split() for line in lines[1:] if "postgres" in line)
    # 2 failed block requests; 5 syscalls returned EAGAIN.
    assert pg[heads.index("IOERR")] == "2" and pg[heads.index("SCERR")] == "5"
    block_only = tview.table_lines(sample_rows(), width=120, layer="block")[0].split()
    assert "IOERR" in block_only and "SCERR" not in block_only
    sys_only = tview.table_lines(sample_rows(), width=120, layer="syscall")[0].split()
    assert "SCERR" in sys_only and "IOERR" not in sys_only


@pytest.mark.parametrize("kind", ["cgroup", "cgroup-v1"])
def test_cgroup_rows_show_the_workload_beside_the_id(kind):
    path = f"/system.slice/docker-{CID}.scope"
    groups = [block_group("9001", path, "write", 4096, 1, kind=kind),
              block_group("9002", "/ioltrace-test", "write", 4096, 1, kind=kind)]
    rows_ = tview.rows(groups, 1.0)
    lines = tview.table_lines(rows_, width=100)
    by_id = {line.split()[0]: line for line in lines[1:]}
    assert by_id["9001"].split()[1] == "docker:3f4a5b6c7d8e"
    assert by_id["9002"].split()[1] == "/ioltrace-test"   # no unit or container: the path


def test_process_rows_have_no_workload():
    assert all(r.workload == "" for r in sample_rows())


def test_sort_by_errors_counts_either_layer():
    rows_ = tview.rows([block_group("1", "a", "write", 10, 1, errors=1)], 1.0,
                       sys_groups=[sys_group("2", "b", "read", 10, errors=3)])
    assert [r.key for r in tview.sort_rows(rows_, "errors")] == ["2", "1"]
    assert [r.key for r in tview.sort_rows(rows_, "scerr")] == ["2", "1"]
    assert [r.key for r in tview.sort_rows(rows_, "ioerr")] == ["1", "2"]
