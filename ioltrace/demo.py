"""`ioltrace demo`: the cgroup weight experiment, on a private scratch device.

Makes a loop device over a file in /dev/shm, two cgroups with I/O weights
1000 and 500, runs a direct-I/O reader in each, shows `top --by cgroup`
live, then reports the share each group received and its latency. Everything
it creates (readers, cgroups, loop device, file) is removed on the way out,
also on Ctrl-C and errors. It does not touch any existing device or cgroup.
"""

import os
import shutil
import subprocess
import sys
import time
from . import group, maps
from .cgroups import ScratchCgroup
from .errors import BadInput
from .resolve import Resolver

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


def run(opts):
    """The experiment; opts: commands.demo.Options."""
    from .commands import top

    resolver = Resolver()
    out = sys.stdout
    made = []
    readers = []
    try:
        loop = LoopDevice(scratch_size_mb())
        made.append(loop)
        bfq = loop.set_scheduler("bfq")
        kind, how = weight_mechanism(resolver, bfq)
        parent = ScratchCgroup(resolver, f"ioltrace-demo-{os.getpid()}", v1_blkio=kind == "v1")
        made.append(parent)
        groups = [ScratchCgroup(resolver, f"weight{w}", v1_blkio=kind == "v1", parent=parent) for w in WEIGHTS]
        made[1:1] = groups  # removed before their parent
        applied = kind is not None and all(set_weight(cg, kind, how, w) for cg, w in zip(groups, WEIGHTS))
        out.write(f"demo: scratch device {loop.path} ({loop.file}), scheduler "
                  f"{'bfq' if bfq else 'unchanged (bfq not available)'}\n")
        if applied:
            out.write(f"demo: weights {WEIGHTS[0]} and {WEIGHTS[1]} set with cgroup {kind} {how}"
                      f"{'' if bfq else '; without bfq, weights may not take effect'}\n")
        else:
            out.write(f"demo: weights cannot take effect on this host ({how if kind is None else 'writing ' + how + ' failed'}); "
                      "the readers run unweighted\n")
        view = top.Options(by="cgroup", cgroup=parent.rel, interval=1.0, iterations=opts.duration,
                           batch=opts.batch, verbose=opts.verbose)
        # The readers start once the probes are attached (on_start), so
        # their first I/O is counted.
        first, last = top.watch(view, resolver, on_start=lambda: readers.extend(
            subprocess.Popen(reader_argv(loop.path, opts.duration + 5), preexec_fn=cg.join,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for cg in groups))
        top.print_summary(first, last, view, resolver,
                          title=f"demo: the whole {(last.time_ns - first.time_ns) / 1e9:.0f}s by cgroup")
        report_shares(maps.delta(last, first), resolver, groups, out, applied)
    finally:
        for p in readers:
            if p.poll() is None:
                p.kill()
            p.wait()
        for thing in made:
            (thing.remove if isinstance(thing, ScratchCgroup) else thing.close)()
    return 0


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
