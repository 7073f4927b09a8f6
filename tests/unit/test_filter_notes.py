"""What the filters excluded: the descendants --pid follows (read from a fake
/proc), the flags they become, and the lines the reports print from the
kernel's filtered_* counters."""

import pytest

from ioltrace import cli, loader
from ioltrace.commands import run
from ioltrace.errors import BadInput
from ioltrace.views import hist as hview
from ioltrace.views import run as rview


def fake_proc(tmp_path, parents):
    """/proc with PID/stat for each pid -> ppid; comms with spaces and ')'."""
    for pid, ppid in parents.items():
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "stat").write_text(f"{pid} (a b) c) S {ppid} 1 1 0 -1 4194560\n")
    (tmp_path / "self").mkdir()
    return tmp_path


def test_descendants_walks_the_ppid_tree(tmp_path):
    proc = fake_proc(tmp_path, {1: 0, 100: 1, 101: 100, 102: 100, 103: 101, 200: 1, 201: 200})
    assert sorted(loader.descendants(100, str(proc))) == [101, 102, 103]
    assert loader.descendants(103, str(proc)) == []
    assert sorted(loader.descendants(1, str(proc))) == [100, 101, 102, 103, 200, 201]


def test_children_flag_only_with_pid(monkeypatch):
    monkeypatch.setattr(loader, "fork_child_offset", lambda root=None: 20)
    flags = loader.cflags(loader.Options(tgid=42, children=True), "block_io_start")
    assert "-DIOLT_FILTER_TGID=42U" in flags and "-DIOLT_FILTER_CHILDREN" in flags
    assert "-DIOLT_FORK_CHILD_OFF=20" in flags
    assert "-DIOLT_FILTER_CHILDREN" not in loader.cflags(loader.Options(tgid=42), "block_io_start")
    with pytest.raises(BadInput):
        cli.options_of(run.Options, cli.build_parser().parse_args(["run", "--children", "--", "true"]))


def test_run_refuses_another_cgroup():
    with pytest.raises(BadInput) as e:
        cli.options_of(run.Options, cli.build_parser().parse_args(["run", "--cgroup", "/x", "--", "true"]))
    assert "own cgroup" in str(e.value)


def test_filter_note_names_each_filter_and_the_children():
    counters = {"filtered_cgroup": 900, "filtered_pid": 10, "filtered_children": 128, "filtered_disk": 3}
    line = hview.filter_note(counters, 77, False)
    assert line == ("block I/O requests excluded by filter: --cgroup 900, --pid 77 138 (128 of them from its "
                    "child processes: add --children to trace those), --disk 3")
    # run's own cgroup filter is not the user's: not reported.
    assert "--cgroup" not in hview.filter_note(counters, 77, False, cgroup_is_ours=True)
    assert hview.filter_note({"filtered_cgroup": 5}, None, False, cgroup_is_ours=True) is None
    assert hview.filter_note({}, None, False) is None


def test_run_report_blames_the_filter_not_the_workload():
    note = hview.filter_note({"filtered_pid": 64}, 5, False, cgroup_is_ours=True)
    lines = rview.report_lines(["dd"], 1.0, [], {}, [], None, None, [], excluded=note)
    text = "\n".join(lines)
    assert "--pid 5 64" in text and "page-cache" not in text
    plain = "\n".join(rview.report_lines(["dd"], 1.0, [], {}, [], None, None, []))
    assert "page-cache" in plain
