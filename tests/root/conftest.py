"""Fixtures for real-kernel tests: privileges, loop devices, cgroups, ioltrace runs.

These tests trace real I/O with real eBPF. Where they cannot run (not root,
no bcc, no tracefs) they skip on a developer's machine and FAIL under CI=true,
so a CI run can never pass without having traced anything. Every fixture
cleans up what it made, also when the test fails.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _cannot_trace():
    if os.geteuid() != 0:
        return "not root"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return f"bcc not importable from {sys.executable}"
    if not any(os.path.isdir(f"{d}/events/block") for d in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")):
        return "tracefs with block events not mounted"
    return None


def need(condition_reason):
    """Skip locally, fail in CI."""
    if condition_reason:
        if IN_CI:
            pytest.fail(f"real-kernel test cannot run in CI: {condition_reason}")
        pytest.skip(condition_reason)


@pytest.fixture(autouse=True)
def _real_kernel():
    need(_cannot_trace())


def need_tool(name):
    need(None if shutil.which(name) else f"{name} is not installed")


def sh(*cmd, **kw):
    return subprocess.run(list(cmd), check=True, capture_output=True, text=True, **kw).stdout.strip()


class Loop:
    def __init__(self, path, backing):
        self.path = path                    # /dev/loopN
        self.name = os.path.basename(path)  # loopN
        self.backing = backing


def attach_loop(backing):
    """losetup with direct I/O where the backing filesystem allows it (tmpfs
    does from Linux 6.6), else through the page cache."""
    try:
        return sh("losetup", "-f", "--show", "--direct-io=on", backing)
    except subprocess.CalledProcessError:
        return sh("losetup", "-f", "--show", backing)


@pytest.fixture
def loopdev(tmp_path_factory):
    """A fresh loop device with direct I/O over a file in /dev/shm."""
    backing = f"/dev/shm/ioltrace-test-{os.getpid()}-{time.monotonic_ns()}.img"
    with open(backing, "wb") as f:
        f.truncate(256 << 20)
    path = None
    try:
        path = attach_loop(backing)
        yield Loop(path, backing)
    finally:
        if path:
            subprocess.run(["losetup", "-d", path], capture_output=True)
        os.unlink(backing)


def cgroup2_root():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split(" - ")
            if len(parts) == 2 and parts[1].split()[0] == "cgroup2":
                return parts[0].split()[4]
    return None


class Cgroup:
    def __init__(self, root, rel):
        self.root = root
        self.rel = rel                       # "/ioltrace-test-..."
        self.path = os.path.join(root, rel.lstrip("/"))

    def wrap(self, argv):
        """argv run inside this cgroup: the shell moves itself in, then execs."""
        return ["sh", "-c", f'echo $$ > "{self.path}/cgroup.procs" && exec "$@"', "sh"] + list(argv)


@pytest.fixture
def make_cgroup():
    root = cgroup2_root()
    need(None if root else "no cgroup v2 mount")
    made = []

    def make(tag="cg"):
        rel = f"/ioltrace-test-{os.getpid()}-{tag}-{len(made)}"
        cg = Cgroup(root, rel)
        os.mkdir(cg.path)
        made.append(cg)
        return cg

    yield make
    for cg in reversed(made):
        remove_cgroup(cg.path)


def remove_cgroup(path):
    for _ in range(50):
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
            for pid in pids:
                with open(os.path.join(os.path.dirname(path), "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


class Ioltrace:
    """ioltrace running in the background, stopped like a user would (SIGINT)."""

    def __init__(self, args, cwd=REPO):
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "ioltrace", *args], cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out = self.err = ""
        self._wait_banner()

    def _wait_banner(self, timeout=30):
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "Tracing block I/O" in line:
                self.banner = "".join(lines)
                return
        self.proc.kill()
        out, err = self.proc.communicate()
        raise AssertionError(f"ioltrace did not start: {''.join(lines)}{err}")

    def stop(self, sig=signal.SIGINT, timeout=30):
        time.sleep(0.3)  # let completions of the last I/O land
        self.proc.send_signal(sig)
        self.out, rest = self.proc.communicate(timeout=timeout)
        self.err = self.banner + rest
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def ioltrace():
    running = []

    def start(*args):
        t = Ioltrace([str(a) for a in args])
        running.append(t)
        return t

    yield start
    for t in running:
        t.kill()
