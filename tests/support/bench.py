"""Shared pieces of the benchmark scripts: loop devices, tracers, fio, results.

Everything a benchmark starts or changes is undone on the way out, also on
Ctrl-C and SIGTERM: loop devices are detached and their backing files in
/dev/shm removed, tracers get SIGINT (then SIGKILL), sysctls are restored.
Timing on this kind of machine (shared, 2 cores, noisy) is only meaningful as
ratios within one run, so the helpers here return raw figures and leave the
pairing and the medians to the scripts. Standard library and numpy only; this
module never imports bcc or ioltrace.
"""

import contextlib
import datetime
import glob
import json
import os
import platform
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / "benchmarks"
RESULTS = BENCH_DIR / "RESULTS.md"
SHM_PREFIX = "/dev/shm/ioltrace-bench-"
BANNER = b"Tracing block I/O"

# The working tree, not the .venv copy: the venv holds a non-editable install
# that can lag behind the checkout being measured.
IOLTRACE = [sys.executable, "-m", "ioltrace"]

# The comparison tracer: one start map keyed by (dev, sector), one log2 histogram.
BPFTRACE_ONELINER = (
    "tracepoint:block:block_rq_issue { @start[args->dev, args->sector] = nsecs; } "
    "tracepoint:block:block_rq_complete /@start[args->dev, args->sector]/ { "
    "@usecs = hist((nsecs - @start[args->dev, args->sector]) / 1000); "
    "delete(@start[args->dev, args->sector]); }"
)


class BenchError(Exception):
    """A precondition or a tool failed; the message says which and why."""


def sigterm_as_interrupt():
    """Make SIGTERM and SIGHUP unwind like Ctrl-C, so every finally runs."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def need_root_tools(*tools):
    if os.geteuid() != 0:
        raise BenchError("run as root: the benchmarks attach eBPF programs and create loop devices")
    missing = [t for t in tools if not any(os.access(os.path.join(d, t), os.X_OK)
                                           for d in os.environ.get("PATH", "/usr/bin:/usr/sbin").split(":") + ["/usr/sbin"])]
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)}")


def sh(*cmd, check=True):
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[:300]}")
    return r.stdout.strip()


# ---------------------------------------------------------------- loop devices

@contextlib.contextmanager
def loop_device(size_mib=512):
    """A loop device with direct I/O over a filled file in /dev/shm (tmpfs).

    The file is written in full so random reads hit real tmpfs pages, not holes.
    Yields (path, dio) where dio says whether the kernel kept direct I/O on.
    """
    backing = f"{SHM_PREFIX}{os.getpid()}-{time.monotonic_ns()}.img"
    path = None
    try:
        chunk = os.urandom(1 << 20)
        with open(backing, "wb") as f:
            for _ in range(size_mib):
                f.write(chunk)
        try:
            path = sh("losetup", "-f", "--show", "--direct-io=on", backing)
        except subprocess.CalledProcessError:  # tmpfs takes O_DIRECT from Linux 6.6
            path = sh("losetup", "-f", "--show", backing)
        name = os.path.basename(path)
        try:
            dio = Path(f"/sys/block/{name}/loop/dio").read_text().strip() == "1"
        except OSError:
            dio = False
        yield path, dio
    finally:
        if path:
            for _ in range(20):
                if subprocess.run(["losetup", "-d", path], capture_output=True).returncode == 0:
                    break
                time.sleep(0.25)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(backing)
        # A detach while fio still holds the device (interrupted run) only
        # marks it for auto-clear; wait for the last close to finish it.
        deadline = time.monotonic() + 10
        while path and time.monotonic() < deadline and backing in sh("losetup", "-a", check=False):
            time.sleep(0.1)


def leftovers():
    """Loop devices and backing files of ours still present (should be none)."""
    loops = [l for l in sh("losetup", "-a", check=False).splitlines() if SHM_PREFIX in l]
    files = glob.glob(SHM_PREFIX + "*")
    return loops, files


# ---------------------------------------------------------------- BPF accounting

@contextlib.contextmanager
def bpf_stats_enabled(on=True):
    """kernel.bpf_stats_enabled=1 (0 with on=False: its timing adds to every
    program run) for the duration; the old value is restored."""
    knob = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = knob.read_text().strip()
    knob.write_text("1\n" if on else "0\n")
    try:
        yield
    finally:
        knob.write_text(old + "\n")


def prog_ids_of(pid):
    """BPF program ids held open by a process, from /proc/PID/fdinfo."""
    ids = set()
    for fdinfo in glob.glob(f"/proc/{pid}/fdinfo/*"):
        try:
            text = Path(fdinfo).read_text()
        except OSError:
            continue
        m = re.search(r"^prog_id:\s*(\d+)", text, re.M)
        if m:
            ids.add(int(m.group(1)))
    return ids


def prog_stats(ids):
    """{id: (name, run_time_ns, run_cnt)} from `bpftool -j prog show`."""
    out = sh("bpftool", "-j", "prog", "show")
    res = {}
    for p in json.loads(out or "[]"):
        if p["id"] in ids:
            res[p["id"]] = (p.get("name", ""), int(p.get("run_time_ns", 0)), int(p.get("run_cnt", 0)))
    return res


def gone_or_wait(ids, timeout=10):
    """Wait until these programs are freed (the kernel releases them a little
    after their last fd closes), so the next measurement starts clean."""
    deadline = time.monotonic() + timeout
    while ids and time.monotonic() < deadline:
        if not prog_stats(ids):
            return True
        time.sleep(0.05)
    return not ids or not prog_stats(ids)


def block_progs_of_others(own_ids=()):
    """Programs on block tracepoints that are not ours (they would add noise)."""
    out = sh("bpftool", "-j", "prog", "show", check=False)
    try:
        progs = json.loads(out or "[]")
    except json.JSONDecodeError:
        return []
    names = ("tracepoint__block", "block_rq_", "block_io_")
    return [f"{p['id']}:{p.get('name', '')}" for p in progs
            if p["id"] not in own_ids and str(p.get("name", "")).startswith(names)]


# ---------------------------------------------------------------- cgroups

def cgroup2_root():
    """The cgroup v2 mount point (the unified hierarchy of a hybrid host)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split(" - ")
            if len(parts) == 2 and parts[1].split()[0] == "cgroup2":
                return parts[0].split()[4]
    raise BenchError("no cgroup v2 mount (looked in /proc/self/mountinfo)")


def remove_cgroup(path, timeout=10):
    """Move any process left in it to the parent, then rmdir (retrying while
    the kernel finishes releasing exited tasks)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pids = Path(path, "cgroup.procs").read_text().split()
            for pid in pids:
                with contextlib.suppress(OSError):
                    Path(os.path.dirname(path), "cgroup.procs").write_text(pid)
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                print(f"WARNING: could not remove cgroup {path}", file=sys.stderr)
                return False
            time.sleep(0.1)


@contextlib.contextmanager
def cgroups(tags, what):
    root = cgroup2_root()
    made = []
    try:
        for tag in tags:
            path = os.path.join(root, f"ioltrace-{what}-{os.getpid()}-{tag}")
            os.mkdir(path)
            made.append(path)
        yield root, made
    finally:
        for path in reversed(made):
            remove_cgroup(path)


# ---------------------------------------------------------------- what a process holds

def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def map_ids_of(pid):
    """BPF map ids held open by a process, from /proc/PID/fdinfo."""
    ids = set()
    for fdinfo in glob.glob(f"/proc/{pid}/fdinfo/*"):
        try:
            m = re.search(r"^map_id:\s*(\d+)", Path(fdinfo).read_text(), re.M)
        except OSError:
            continue
        if m:
            ids.add(int(m.group(1)))
    return ids


def maps_by_name(pid, names):
    """{name: {"id", "type", "max_entries", "bytes_memlock"}} of the process's maps."""
    ids = map_ids_of(pid)
    out = {}
    for m in json.loads(sh("bpftool", "-j", "map", "show") or "[]"):
        if m["id"] in ids and m.get("name") in names:
            if m["name"] in out:
                raise BenchError(f"two maps named {m['name']} in pid {pid}: {out[m['name']]['id']}, {m['id']}")
            out[m["name"]] = {k: m.get(k) for k in ("id", "type", "max_entries", "bytes_memlock")}
    missing = [n for n in names if n not in out]
    if missing:
        raise BenchError(f"maps {missing} not found among pid {pid}'s maps {sorted(ids)}")
    return out


def map_entries(map_id):
    """Distinct keys in a map. A dump walks the map key by key, and when the
    key it stands on is deleted meanwhile (folding) the walk starts over, so
    the same entry can be listed twice: count each key once."""
    dump = json.loads(sh("bpftool", "-j", "map", "dump", "id", str(map_id)) or "[]")
    return len({json.dumps(e.get("key", e.get("formatted", {}).get("key")), sort_keys=True) for e in dump})


# ---------------------------------------------------------------- tracers

class Tracer:
    """A tracer process started in the background and stopped with SIGINT."""

    label = "tracer"

    def __init__(self):
        self.proc = None
        self.prog_ids = set()
        self._out = None
        self.stderr = b""
        self.env = None  # extra environment variables

    def _spawn(self, argv, cwd=None):
        self._out = tempfile.TemporaryFile()
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.PIPE, env=dict(os.environ, **(self.env or {})))

    def stop(self, timeout=30):
        """SIGINT, as a user would; SIGKILL if it does not exit. Returns rc."""
        p = self.proc
        if p is None:
            return None
        rc = None
        try:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            try:
                _, err = p.communicate(timeout=timeout)
                self.stderr += err or b""
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
            rc = p.returncode
            gone_or_wait(self.prog_ids)
        finally:
            if self._out is not None:
                self._out.close()
                self._out = None
            self.proc = None
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class Ioltrace(Tracer):
    """`ioltrace hist ARGS` from the working tree; ready once the banner is out."""

    def __init__(self, *args, label=None):
        super().__init__()
        self.args = [str(a) for a in args]
        self.label = label or "ioltrace hist " + " ".join(self.args)
        self.argv = IOLTRACE + ["hist", *self.args]

    def start(self, timeout=90):
        """Start and wait for the banner; returns seconds from Popen to banner."""
        self._spawn(self.argv, cwd=REPO)
        sel = selectors.DefaultSelector()
        fd = self.proc.stderr.fileno()
        sel.register(fd, selectors.EVENT_READ)
        buf = b""
        deadline = self.t_spawn + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"{self.label}: no banner within {timeout}s: {buf.decode(errors='replace')[-300:]}")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 65536)
                now = time.monotonic()
                if not chunk:
                    self.proc.wait()
                    raise BenchError(f"{self.label} exited ({self.proc.returncode}) before the banner: "
                                     f"{buf.decode(errors='replace')[-300:]}")
                buf += chunk
                if BANNER in buf:
                    self.stderr = buf
                    self.prog_ids = {i for i, (name, _, _) in prog_stats(prog_ids_of(self.proc.pid)).items()
                                     # bcc names raw tracepoint programs by the bare tracepoint at times
                                     if name.startswith(("tracepoint__block", "raw_tracepoint__block", "block_"))}
                    return now - self.t_spawn
        except BaseException:
            self.stop()
            raise
        finally:
            sel.close()


class Bpftrace(Tracer):
    """The bpftrace one-liner; ready once both of its programs are loaded."""

    label = "bpftrace one-liner"
    names = ("block_rq_issue", "block_rq_comple")  # kernel names are cut at 15 chars

    def start(self, timeout=60, settle=1.0):
        self._spawn(["bpftrace", "-e", BPFTRACE_ONELINER])
        deadline = self.t_spawn + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    _, err = self.proc.communicate()
                    raise BenchError(f"bpftrace exited ({self.proc.returncode}): {err.decode(errors='replace')[-300:]}")
                ids = prog_ids_of(self.proc.pid)
                if len(ids) >= 2:
                    st = prog_stats(ids)
                    if sorted(n for n, _, _ in st.values()) == sorted(self.names):
                        self.prog_ids = set(st)
                        # Loaded comes just before attached: give it a moment.
                        time.sleep(settle)
                        return time.monotonic() - self.t_spawn
                time.sleep(0.1)
            raise BenchError(f"bpftrace programs did not appear within {timeout}s")
        except BaseException:
            self.stop()
            raise


# ---------------------------------------------------------------- fio

def fio(dev, *, ioengine, iodepth, runtime, rw="randread", bs="4k", extra=()):
    """Run one fio job on dev; returns the parsed JSON job (first job)."""
    argv = ["fio", "--name=bench", f"--filename={dev}", "--direct=1", f"--rw={rw}", f"--bs={bs}",
            f"--ioengine={ioengine}", f"--iodepth={iodepth}", "--numjobs=1", "--time_based",
            f"--runtime={runtime}", "--norandommap", "--randrepeat=0", "--group_reporting",
            "--output-format=json", *extra]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"fio failed ({r.returncode}): {r.stderr.strip()[:300]}")
    text = r.stdout[r.stdout.index("{"):]
    job = json.loads(text)["jobs"][0]
    if job.get("error"):
        raise BenchError(f"fio job error {job['error']}")
    return job


def fio_ios(job):
    return int(job["read"]["total_ios"]) + int(job["write"]["total_ios"])


def fio_iops(job):
    return float(job["read"]["iops"]) + float(job["write"]["iops"])


# ---------------------------------------------------------------- reporting

def median(xs):
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else float("nan")


def table(headers, rows, left=1):
    """A Markdown pipe table, aligned so it also reads well in a terminal.

    The first `left` columns (labels) are left-aligned, the rest (figures) right-aligned.
    """
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "| " + " | ".join(c.rjust(w) if i >= left else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "| " + " | ".join(("-" * (w - 1) + ":") if i >= left else "-" * w for i, w in enumerate(widths)) + " |"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def loadavg():
    """The 1-minute load average, a hint of how busy the shared machine was."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def environment():
    """Facts to record next to every figure."""
    def version(*cmd):
        try:
            r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    head = version("git", "-C", str(REPO), "rev-parse", "--short", "HEAD")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "fio": version("fio", "--version"),
        "bpftrace": version("bpftrace", "--version"),
        "commit": f"{head} (plus uncommitted changes in the working tree, if any)",
    }


def command_line():
    return " ".join(["/usr/bin/python3" if sys.executable == "/usr/bin/python3" else sys.executable,
                     os.path.relpath(sys.argv[0], REPO) if os.path.isabs(sys.argv[0]) else sys.argv[0],
                     *sys.argv[1:]])


def update_results(name, title, body, env):
    """Replace (or append) this script's section of RESULTS.md."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    meta = (f"- date: {env['date']}\n- kernel: {env['kernel']}, {env['cpus']} CPUs; {env['fio']}; {env['bpftrace']}\n"
            f"- commit: {env['commit']}\n- command: `{command_line()}`, from the repository root\n")
    section = f"{begin}\n## {title}\n\n{meta}\n{body.rstrip()}\n{end}\n"
    try:
        text = RESULTS.read_text()
    except FileNotFoundError:
        text = ("# Benchmark results\n\nWritten by the scripts in this directory; each script replaces "
                "its own section. See README.md for what each one measures.\n\n")
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pat.sub(lambda m: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, RESULTS)


def final_checks(tracers=()):
    """Warn about anything of ours left behind; returns True when clean."""
    clean = True
    for t in tracers:
        if t.proc is not None and t.proc.poll() is None:
            t.stop()
    loops, files = leftovers()
    if loops or files:
        clean = False
        print(f"WARNING: left behind: {loops} {files}", file=sys.stderr)
    return clean
