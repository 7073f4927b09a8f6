"""top, run and demo on a real kernel: ground truth is what the test's own
commands wrote, the pids it started, and the system state (loop devices,
cgroups, files) before and after."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from ioltrace.export import csv as rec

from .conftest import REPO, START_TIMEOUT_S, cgroup2_root, need_tool, room, wait_until

IOLTRACE = [sys.executable, "-m", "ioltrace"]


def ioltrace_run(*args, timeout=600):
    """ioltrace to completion; .pid says which ioltrace-run-PID cgroup was its own."""
    proc = subprocess.Popen(IOLTRACE + [str(a) for a in args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=room(timeout))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    done.pid = proc.pid
    return done


def run_cgroups(pid):
    """Every place the run's own cgroup could be left behind."""
    return [p for p in (os.path.join(root, f"ioltrace-run-{pid}") for root in
                        filter(None, (cgroup2_root(), "/sys/fs/cgroup/blkio"))) if os.path.exists(p)]


def _comms(cgroups):
    """The command names of the processes in these cgroups."""
    comms = []
    for path in cgroups:
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = f.read().split()
        except FileNotFoundError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comms.append(f.read().strip())
            except FileNotFoundError:
                pass
    return comms


def test_run_reports_exact_bytes_and_returns_the_exit_code(loopdev, tmp_path):
    csv_path = tmp_path / "run.csv"
    p = ioltrace_run("run", "--csv", csv_path, "--", "sh", "-c",
                     f"dd if=/dev/zero of={loopdev.path} bs=4096 count=300 oflag=direct 2>/dev/null; exit 7")
    assert p.returncode == 7, p.stderr
    rows = rec.read(csv_path)
    writes = [r for r in rows if r.stage == "bytes" and r.op == "write" and r.disk == loopdev.name]
    assert sum(r.count for r in writes) == 300 * 4096
    # one row per pid: "dd|sh" when the shell, before its exec of dd, read
    # the dd binary from a disk (a cold page cache)
    assert all("dd" in r.name.split("|") for r in writes), writes
    assert "dd" in p.stdout and "total write device time" in p.stdout
    assert run_cgroups(p.pid) == []


def test_run_counts_the_io_of_forked_children_only(loopdev, tmp_path):
    csv_path = tmp_path / "run.csv"
    # Outside I/O during the run must not be counted.
    outsider = subprocess.Popen(["sh", "-c", f"sleep 0.3; dd if=/dev/zero of={loopdev.path} bs=4096 count=500 "
                                 "seek=20000 oflag=direct 2>/dev/null"])
    script = (f"dd if=/dev/zero of={loopdev.path} bs=8192 count=100 oflag=direct 2>/dev/null & "
              f"(dd if=/dev/zero of={loopdev.path} bs=16384 count=50 seek=1000 oflag=direct 2>/dev/null) & "
              "sleep 1; wait")
    p = ioltrace_run("run", "--csv", csv_path, "--", "sh", "-c", script)
    assert outsider.wait() == 0
    assert p.returncode == 0, p.stderr
    rows = rec.read(csv_path)
    per_pid = {}
    for r in rows:
        if r.stage == "bytes" and r.op == "write" and r.disk == loopdev.name:
            per_pid[r.key] = per_pid.get(r.key, 0) + r.count
    assert sorted(per_pid.values()) == [100 * 8192, 50 * 16384], (per_pid, p.stdout, p.stderr)


def test_run_of_a_missing_command_is_one_line_and_leaves_no_cgroup():
    p = ioltrace_run("run", "--", "/nonexistent/command")
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert run_cgroups(p.pid) == []


def test_run_ctrl_c_passes_the_signal_and_removes_the_cgroup(loopdev):
    proc = subprocess.Popen(IOLTRACE + ["run", "--", "sleep", "30"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # run starts the command in its cgroup once the probes are attached.
        wait_until("sleep in the run's cgroup", lambda: "sleep" in _comms(run_cgroups(proc.pid)),
                   timeout=START_TIMEOUT_S)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=room(60))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err  # sleep died of SIGINT: 128 + 2
    assert "Traceback" not in err
    assert run_cgroups(proc.pid) == []


def test_top_batch_shows_a_background_writer(loopdev):
    need_tool("fio")
    # Time-based, as a thread: one pid writing for the whole test.
    writer = subprocess.Popen(["fio", "--name=w", f"--filename={loopdev.path}", "--rw=randwrite", "--bs=4k",
                               "--direct=1", "--ioengine=psync", "--time_based", f"--runtime={int(room(600))}",
                               "--thread", "--output=/dev/null"])
    try:
        p = ioltrace_run("top", "-b", "-n", "2", "--disk", loopdev.name)
    finally:
        writer.kill()
        writer.wait()
    assert p.returncode == 0, p.stderr
    tables = p.stdout.split("ioltrace top - ")[1:]
    assert len(tables) == 2
    for table in tables:
        row = next(l for l in table.splitlines() if re.match(rf"\s*{writer.pid}\s", l))
        cols = row.split()
        assert cols[1] == "fio"
        write_bps = cols[3]
        assert write_bps not in ("0B", "0B/s") and re.match(r"[\d.]+[KMGT]?B?$", write_bps), row
        assert all(len(l) <= 80 for l in table.splitlines())


def test_top_in_a_real_terminal_sorts_quits_and_restores(loopdev, tmp_path):
    need_tool("tmux")
    need_tool("fio")
    session = f"ioltrace-test-{os.getpid()}"
    # Time-based fio jobs as threads: each keeps one pid for the whole test.
    # Rate-limited: the test needs both on screen, not the CPUs saturated
    # (an emulated guest then takes minutes to redraw).
    job = ["fio", "--name=j", f"--filename={loopdev.path}", "--direct=1", "--ioengine=psync", "--time_based",
           f"--runtime={int(room(1800))}", "--thread", "--output=/dev/null", "--rate_iops=200"]
    reader = subprocess.Popen(job + ["--rw=randread", "--bs=4k"])
    writer = subprocess.Popen(job + ["--rw=randwrite", "--bs=64k"])
    cmd = " ".join(IOLTRACE + ["top", "--disk", loopdev.name, "-o"])
    tmux = ["tmux", "-L", session]
    try:
        subprocess.run(tmux + ["new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                               f"cd {REPO} && {cmd}; echo IOLTRACE-EXIT-$?; sleep 30"], check=True)

        def screen():
            return subprocess.run(tmux + ["capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True).stdout

        def wait_for(pred, timeout=120):
            deadline = time.monotonic() + room(timeout)
            while time.monotonic() < deadline:
                s = screen()
                if pred(s):
                    return s
                time.sleep(0.3)
            raise AssertionError("screen never matched:\n" + screen())

        def order(s):
            pids = [int(m.group(1)) for m in re.finditer(r"^\s*(\d+) fio\b", s, re.M)]
            return [p for p in pids if p in (reader.pid, writer.pid)]

        # The first screen waits for bcc's compile: up to 25 s in a guest under software emulation.
        s = wait_for(lambda s: "Total DISK READ" in s and len(order(s)) == 2, timeout=START_TIMEOUT_S)
        assert "ioltrace top" in s
        subprocess.run(tmux + ["send-keys", "-t", session, "r"], check=True)
        s = wait_for(lambda s: "sort read" in s and order(s) == [reader.pid, writer.pid])
        subprocess.run(tmux + ["send-keys", "-t", session, "w"], check=True)
        s = wait_for(lambda s: "sort write" in s and order(s) == [writer.pid, reader.pid])
        subprocess.run(tmux + ["send-keys", "-t", session, "q"], check=True)
        s = wait_for(lambda s: "IOLTRACE-EXIT-0" in s)
        # The summary is printed to the restored terminal, not the alternate screen.
        assert "Summary of" in s
        mode = subprocess.run(tmux + ["display", "-p", "-t", session, "#{alternate_on}"], capture_output=True,
                              text=True).stdout.strip()
        assert mode == "0"
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True)
        for p in (reader, writer):
            p.kill()
            p.wait()
