"""The pieces of `ioltrace demo`, the cgroup weight experiment on a private
scratch device: a loop device over a file in /dev/shm, I/O weights on two
cgroups, a direct-I/O reader for each, and the report of the share each
group received. commands/demo.py runs them in order and removes everything
they create, also on Ctrl-C and errors. Nothing here touches an existing
device or cgroup, or knows how tracing works.
"""

import os
import shutil
import subprocess

from . import group
from .errors import BadInput

WEIGHTS = (1000, 500)
MIN_MB, MAX_MB = 64, 512  # scratch file size range; 1/8 of MemAvailable within it


def scratch_size_mb(meminfo="/proc/meminfo"):
    try:
        with open(meminfo) as f:
            avail_kb = next(int(l.split()[1]) for l in f if l.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return MIN_MB
    return max(MIN_MB, min(MAX_MB, avail_kb // 1024 // 8))


class LoopDevice:
    """A loop device with direct I/O over a new file in /dev/shm."""

    def __init__(self, size_mb):
        if not shutil.which("losetup"):
            raise BadInput("demo", "losetup is not installed", "apt-get install util-linux")
        self.file = f"/dev/shm/ioltrace-demo-{os.getpid()}.img"
        self.path = None
        with open(self.file, "wb") as f:
            f.truncate(size_mb << 20)
        # tmpfs takes O_DIRECT only since Linux 6.6: before that the loop
        # device goes through the page cache, which the readers' direct I/O
        # on the loop device itself does not change.
        err = ""
        for direct in (["--direct-io=on"], []):
            p = subprocess.run(["losetup", "-f", "--show", *direct, self.file], capture_output=True, text=True)
            if p.returncode == 0:
                self.path = p.stdout.strip()
                break
            err = p.stderr.strip()
        else:
            self.close()
            raise BadInput("demo", f"losetup failed: {err}", "is the loop module available?")
        self.name = os.path.basename(self.path)

    def set_scheduler(self, name):
        path = f"/sys/block/{self.name}/queue/scheduler"
        try:
            with open(path) as f:
                if name not in f.read().replace("[", " ").replace("]", " ").split():
                    return False
            with open(path, "w") as f:
                f.write(name)
            return True
        except OSError:
            return False

    def close(self):
        if self.path:
            subprocess.run(["losetup", "-d", self.path], capture_output=True)
            self.path = None
        if os.path.exists(self.file):
            os.unlink(self.file)


def weight_mechanism(resolver, bfq):
    """(kind, how to write a weight) available on this host, or (None, why)."""
    v2 = resolver.cgroup_v2_root()
    try:
        with open(os.path.join(v2, "cgroup.controllers")) as f:
            v2_io = "io" in f.read().split()
    except (OSError, TypeError):
        v2_io = False
    if v2_io:
        return "v2", ("io.bfq.weight" if bfq else "io.weight")
    if resolver.cgroup_v1_root("blkio"):
        return "v1", ("blkio.bfq.weight" if bfq else "blkio.weight")
    return None, "no io controller on cgroup v2 and no v1 blkio hierarchy"


def set_weight(cg, kind, filename, weight):
    d = cg.v2 if kind == "v2" else cg.v1
    if not d:
        return False
    try:
        with open(os.path.join(d, filename), "w") as f:
            f.write(str(weight))
        return True
    except OSError:
        return False


def reader_argv(device, seconds):
    if shutil.which("fio"):
        return ["fio", "--name=reader", f"--filename={device}", "--rw=randread", "--bs=64k", "--direct=1",
                "--ioengine=psync", "--iodepth=1", "--time_based", f"--runtime={seconds}", "--thread",
                "--invalidate=0", "--output=/dev/null"]
    # Without fio: dd re-reading the device until killed.
    return ["sh", "-c", f'while :; do dd if="{device}" of=/dev/null bs=64k iflag=direct 2>/dev/null || exit; done']


def report_shares(whole, resolver, groups_, out, applied):
    from . import fmt, hist

    by = {g.id.name: g for g in group.by_key(whole, "cgroup", resolver, split_disk=False, split_op=False)}
    total = sum(g.bytes for g in by.values()) or 1
    out.write("\nshare of bytes read, against the share the weights ask for:\n")
    for cg, w in zip(groups_, WEIGHTS):
        g = by.get(cg.rel)
        got = (g.bytes if g else 0) / total
        d = g.hists.get("device") if g else None
        lat = (f"device p50 {fmt.ns(hist.percentile(d, 50))} p99 {fmt.ns(hist.percentile(d, 99))}"
               if d is not None else "no I/O")
        out.write(f"  {cg.rel:<40} weight {w:>4}: got {got * 100:5.1f}% (asked {w / sum(WEIGHTS) * 100:.1f}%)  {lat}\n")
    if not applied:
        out.write("  (weights were not applied on this host, so equal shares are expected)\n")
    out.flush()
