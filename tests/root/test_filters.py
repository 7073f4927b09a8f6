"""What the kernel filters leave out is said, with counts that agree with
the workload's own: `--pid N` and the processes N forks (fio's workers),
with and without --children, and `run --pid` that excludes the command."""

import json
import re
import subprocess
import sys

import pytest

from ioltrace.export import csv as rec

from .conftest import REPO, need_tool

IOLTRACE = [sys.executable, "-m", "ioltrace"]
ALARMS = re.compile(r"kernel counters: (.*)")
EXCLUDED = re.compile(r"--pid (\d+) (\d+)(?: \((\d+) of them from its child processes)?")


def lost(text):
    """Requests the kernel says were lost (a completion skipped because
    another BPF program ran on that CPU, a slot taken): counted, not silent."""
    return sum(int(v) for m in ALARMS.finditer(text) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))
               if k in ("missed_complete", "dropped", "collision"))


def gated(argv):
    """argv started on a line on stdin: its pid is known (exec keeps it)
    before it runs, so tracing by pid starts first."""
    return subprocess.Popen(["sh", "-c", 'read x; exec "$@"', "sh"] + list(argv), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("children", [False, True], ids=["pid", "pid+children"])
def test_pid_and_the_fio_workers_it_forks(loopdev, ioltrace, tmp_path, children):
    need_tool("fio")
    csv_path = tmp_path / "f.csv"
    # Two worker processes (no --thread), each writing its own 4 MiB in 64k
    # direct writes: one request per write, no merging at depth 1.
    fio = gated(["fio", "--name=w", f"--filename={loopdev.path}", "--rw=write", "--bs=64k", "--direct=1",
                 "--ioengine=psync", "--numjobs=2", "--size=4M", "--offset_increment=4M", "--output-format=json"])
    try:
        t = ioltrace("hist", "--pid", fio.pid, *(["--children"] if children else []), "--by", "process",
                     "--disk", loopdev.name, "--csv", csv_path)
        fio.stdin.write("go\n")
        fio.stdin.flush()
        out, _ = fio.communicate(timeout=300)
    finally:
        if fio.poll() is None:
            fio.kill()
    assert fio.returncode == 0
    assert t.stop() == 0, t.err
    jobs = json.loads(out)["jobs"]
    assert len(jobs) == 2
    fio_writes = sum(j["write"]["total_ios"] for j in jobs)
    assert fio_writes == 128
    rows = [r for r in rec.read(csv_path) if r.layer == "block" and r.stage == "ios"]
    traced = sum(r.count for r in rows)
    m = EXCLUDED.search(t.out)
    # Exact, unless the kernel's own counters say requests may have been lost.
    low = fio_writes - lost(t.out)
    if children:
        assert low <= traced <= fio_writes
        assert len({r.key for r in rows if r.count}) == 2        # the two workers, by pid
        assert m is None, t.out
    else:
        assert traced == 0
        assert m, t.out
        assert int(m.group(1)) == fio.pid and int(m.group(2)) == int(m.group(3))
        assert low <= int(m.group(2)) <= fio_writes
        assert "--children" in t.out


def test_run_pid_says_the_filter_excluded_the_command(loopdev):
    other = subprocess.Popen(["sleep", "600"])
    try:
        # --disk: dd's own start-up may read from the root disk (a cold page
        # cache), and the filter counts what it excluded on the disks traced.
        p = subprocess.run(IOLTRACE + ["run", "--layer", "block", "--disk", loopdev.name, "--pid", str(other.pid),
                                       "--", "dd",
                                       "if=/dev/zero", f"of={loopdev.path}", "bs=64k", "count=64", "oflag=direct"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        other.kill()
        other.wait()
    assert p.returncode == 0, p.stderr
    assert "64+0 records out" in p.stderr        # dd's own count
    m = EXCLUDED.search(p.stdout)
    assert m, p.stdout
    assert int(m.group(1)) == other.pid and m.group(3) is None
    assert 64 - lost(p.stdout) <= int(m.group(2)) <= 64
    assert "page-cache" not in p.stdout         # the workload is not blamed
