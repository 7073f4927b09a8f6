"""`ioltrace demo`: the cgroup I/O controls, shown live on a private scratch device.

Two experiments, each on a loop device over a file in /dev/shm and two new
cgroups, with `top --by cgroup` live and a verdict at the end:

- weights (default): BFQ weights 1000 and 500, a reader in each group; the
  verdict says whether the device was shared as the weights ask (within
  SHARE_TOLERANCE points), judged against the kernel's own per-cgroup byte
  count, and when it was not, or cannot be, why (no BFQ, no weight file,
  a group not backlogged);
- --throttle: one group limited to THROTTLE_BPS of reads, the other free;
  the verdict says whether the limited group was held at its limit.

Everything it creates (readers, cgroups, loop device, file, a v2 root's io
controller it had to enable) is removed on the way out, also on Ctrl-C,
SIGTERM and errors. It touches no existing device or cgroup, and prints no
share as the weights' result when the kernel could not have applied them.
"""

import os
import shutil
import subprocess
import sys
from argparse import Namespace

from . import group, hist, maps
from .cgroups import ScratchCgroup
from .errors import BadInput, IoltraceError
from .loader import Options, Tracer
from .resolve import Resolver

WEIGHTS = (1000, 500)
SHARE_TOLERANCE = 5.0  # points of the device's bytes either side of the share asked for
MIN_MB, MAX_MB = 64, 512  # scratch file size range; 1/8 of MemAvailable within it

# Why the weights set-up looks the way it does (measured on 2 CPUs with
# `stress-ng --cpu 2` beside it: benchmarks/demo_shares.py). BFQ divides the
# device by weight only among queues that have requests waiting; a queue that
# runs dry loses its turn after slice_idle, and the other group takes the
# time. A loop device over tmpfs serves a 1 MiB read in a fraction of a
# millisecond, so a reader that waits a few milliseconds for a CPU lets its
# queue run dry, and the shares measure the CPU scheduler, not BFQ (49-73%
# for weight 1000 with one `dd iflag=direct bs=1M` per group). So:
# - strict_guarantees=1: BFQ hands the device one request at a time. Without
#   it BFQ dispatches whole batches to the loop driver, which serves each
#   cgroup in its own worker thread, and the CPU scheduler picks the order.
#   With it the device, one request at a time, is the bottleneck.
# - READER_DEPTH requests in flight per reader (fio, libaio): while one is
#   served, the rest wait in BFQ, enough for tens of milliseconds.
# - readers at SCHED_FIFO priority 1: they sleep on completions and use
#   little CPU, but must resubmit the moment one arrives; at normal priority
#   beside two CPU hogs the shares fell to 46-53%. RT throttling keeps 5% of
#   each CPU for everything else.
# - low_latency=0: no weight raising of newly started queues, so the first
#   seconds are shared by the weights too.
# A loop device over a filled file on the real disk also held the shares
# (65-69% beside the hogs) but writes a scratch file to the user's disk and
# takes that disk's noise (one run in six gave 81%).
# Weight 1000's share by the kernel's count in 3-6 runs of 5 s, tmpfs, fio
# depth 16, low_latency=0: without strict_guarantees 57-71% (no extra load);
# with it 65-67% alone but 46-53% beside `stress-ng --cpu 2`; with the
# readers at nice -10 as well 66-72%, at SCHED_FIFO 64-69% beside it.
READER_DEPTH = 16  # 2..64: requests each reader keeps submitted
# Bytes per read: 512 KiB, one request: the loop queue takes at most 128
# segments, and a reader's buffer is in 4 KiB pages, so 1 MiB would be split.
READ_SIZE = 512 << 10
BFQ_TUNABLES = (("strict_guarantees", "1"), ("low_latency", "0"))
# A group counts as backlogged in a second when on average at least this
# many of its reads waited in the scheduler (Little's law on ioltrace's
# queue-time sums): a reader whose queue runs dry for part of a second
# shows a lower figure. Measured here: readers at normal priority beside
# two CPU hogs showed 0.4-1.3 in their worst second, the demo's set-up 4.9
# and more. Range 1..READER_DEPTH.
MIN_WAITING = 2

THROTTLE_BPS = 20 << 20  # --throttle limit: 20 MiB/s, far below a loop device's rate; 40 reads/s
FREE_RATE = 10 * THROTTLE_BPS  # bytes/s the free group's reader asks for in --throttle
THROTTLE_TOLERANCE = 0.10  # the limited group counts as held at its limit within 10% of it

# Cgroup files per hierarchy: (weight, weight's stat, read limit, limit's stat).
# On v1 the weights are judged by blkio.throttle.io_service_bytes, not by
# blkio.bfq.io_service_bytes: the throttle counts every bio when it is
# submitted, before any scheduler, and its two groups summed to exactly the
# bytes the loop device's own stat counted in every run measured here, while
# the bfq count (taken when bfq inserts a request) missed up to 46% of one
# group's bytes in about one run in three. It counts only on a device with a
# throttle rule, so the demo sets a read limit too high to bind (NO_LIMIT).
# On v2, io.stat counts bios at submission too.
FILES = {
    "v2": ("io.bfq.weight", "io.stat", "io.max", "io.stat"),
    "v1": ("blkio.bfq.weight", "blkio.throttle.io_service_bytes", "blkio.throttle.read_bps_device",
           "blkio.throttle.io_service_bytes"),
}
BFQ_V1_STAT = "blkio.bfq.io_service_bytes"  # shown beside, where it disagrees
NO_LIMIT = 1 << 40  # bytes/s: 1 TiB/s, far above any loop device, so the rule never delays a read


class NeedsRoot(IoltraceError):
    def __init__(self):
        super().__init__("demo needs root: it makes a loop device and cgroups and attaches probes "
                         "(run it as root or with sudo)")


def scratch_size_mb(meminfo="/proc/meminfo"):
    try:
        with open(meminfo) as f:
            avail_kb = next(int(l.split()[1]) for l in f if l.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return MIN_MB
    return max(MIN_MB, min(MAX_MB, avail_kb // 1024 // 8))


def _write(path, text):
    """True when the kernel took the value."""
    try:
        with open(path, "w") as f:
            f.write(text)
        return True
    except OSError:
        return False


class LoopDevice:
    """A loop device with direct I/O over a new sparse file in /dev/shm."""

    def __init__(self, size_mb):
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
            raise BadInput("demo", f"losetup failed: {err}", "is the loop module loaded? modprobe loop")
        self.name = os.path.basename(self.path)
        st = os.stat(self.path)
        self.dev = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        self.queue = f"/sys/block/{self.name}/queue"

    def set_scheduler(self, name):
        try:
            with open(f"{self.queue}/scheduler") as f:
                if name not in f.read().replace("[", " ").replace("]", " ").split():
                    return False
        except OSError:
            return False
        return _write(f"{self.queue}/scheduler", name)

    def tune(self, settings):
        """Write iosched tunables; returns the names the kernel refused."""
        return [k for k, v in settings if not _write(f"{self.queue}/iosched/{k}", v)]

    def close(self):
        # Also a device attached by a losetup whose reply an interrupt cut off.
        paths = {self.path} if self.path else set()
        p = subprocess.run(["losetup", "-j", self.file], capture_output=True, text=True)
        paths |= {line.split(":", 1)[0] for line in p.stdout.splitlines() if line.strip()}
        for path in paths:
            subprocess.run(["losetup", "-d", path], capture_output=True)
        self.path = None
        if os.path.exists(self.file):
            os.unlink(self.file)


def io_hierarchy(resolver):
    """("v2" | "v1", None) for where the io controller is, or (None, why)."""
    v2 = resolver.cgroup_v2_root()
    try:
        with open(os.path.join(v2, "cgroup.controllers")) as f:
            if "io" in f.read().split():
                return "v2", None
    except (OSError, TypeError):
        pass
    if resolver.cgroup_v1_root("blkio"):
        return "v1", None
    return None, "no io controller on cgroup v2 and no v1 blkio hierarchy"


def parse_read_bytes(text, dev):
    """Bytes read from `dev` ("MAJ:MIN") in a v1 blkio.*io_service_bytes
    ("7:0 Read 123") or v2 io.stat ("7:0 rbytes=123 wbytes=0 ...") text;
    0 when the device has no line yet (no I/O)."""
    for line in text.splitlines():
        f = line.split()
        if not f or f[0] != dev:
            continue
        if len(f) == 3 and f[1] == "Read":
            return int(f[2])
        for kv in f[1:]:
            if kv.startswith("rbytes="):
                return int(kv[7:])
    return 0


class Groups:
    """The demo's parent cgroup and its two children, in the hierarchy that
    has the io controller; remove() undoes everything, the v2 root's io
    controller included when this enabled it."""

    def __init__(self, resolver, kind, names):
        self.kind = kind
        self.root_io_enabled = None
        self.parent = ScratchCgroup(resolver, f"ioltrace-demo-{os.getpid()}", v1_blkio=kind == "v1")
        self.children = []
        try:
            if kind == "v2":
                root = resolver.cgroup_v2_root()
                with open(os.path.join(root, "cgroup.subtree_control")) as f:
                    if "io" not in f.read().split():
                        if _write(os.path.join(root, "cgroup.subtree_control"), "+io"):
                            self.root_io_enabled = root
                _write(os.path.join(self.parent.v2, "cgroup.subtree_control"), "+io")
            for n in names:
                self.children.append(ScratchCgroup(resolver, n, v1_blkio=kind == "v1", parent=self.parent))
        except BaseException:
            self.remove()
            raise

    def dir(self, cg):
        return cg.v2 if self.kind == "v2" else cg.v1

    def read_bytes(self, cg, stat, dev):
        """Kernel's count of bytes `cg` read from `dev`; None if unreadable."""
        d = self.dir(cg)
        try:
            with open(os.path.join(d, stat)) as f:
                return parse_read_bytes(f.read(), dev)
        except (OSError, TypeError, ValueError):
            return None

    def remove(self):
        for cg in self.children:
            cg.remove()
        self.parent.remove()
        if self.root_io_enabled:
            _write(os.path.join(self.root_io_enabled, "cgroup.subtree_control"), "-io")
            self.root_io_enabled = None


def fio_argv(device, seconds, engine, depth, part, parts):
    """A reader going round its own 1/parts of the device: reads of two
    readers never share a sector, which ioltrace could not tell apart in
    flight (its in-flight table is keyed by device and sector)."""
    share = 100 // parts
    return ["fio", "--name=reader", f"--filename={device}", "--rw=read", f"--bs={READ_SIZE}", "--direct=1",
            f"--ioengine={engine}", f"--iodepth={depth}", f"--offset={part * share}%", f"--size={share}%",
            "--time_based", f"--runtime={seconds}", "--thread", "--invalidate=0", "--output=/dev/null"]


def _start_reader(argv, cg, realtime):
    def prepare():
        cg.join()
        if realtime:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            except OSError:
                try:
                    os.nice(-10)
                except OSError:
                    pass

    return subprocess.Popen(argv, preexec_fn=prepare, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _realtime(pid):
    try:
        return os.sched_getscheduler(pid) == os.SCHED_FIFO
    except OSError:
        return False


class Recorder:
    """The tracer, recording every snapshot the live view takes together
    with the kernel's per-group byte counts read at the same moment, so the
    verdict can look at each second and at the kernel's own figures over
    exactly the traced window."""

    def __init__(self, tracer, kernel_counts):
        self._tracer = tracer
        self._kernel_counts = kernel_counts
        self.snaps = []  # (snapshot, [kernel bytes per group or None])

    def __getattr__(self, name):
        return getattr(self._tracer, name)

    def snapshot(self):
        snap = self._tracer.snapshot()
        self.snaps.append((snap, self._kernel_counts()))
        return snap


def _need_root_and_tools(tools):
    if os.geteuid() != 0:
        raise NeedsRoot()
    for t in tools:
        if not shutil.which(t):
            pkg = {"losetup": "util-linux"}.get(t, t)
            raise BadInput("demo", f"{t} is not installed", f"apt-get install {pkg} (scripts/setup.sh installs it)")


def _view_args(args, layer="block", syscalls=()):
    return Namespace(by="cgroup", interval=1.0, iterations=args.duration, sort="bytes", only=False, op=None,
                     batch=args.batch, width=80, verbose=args.verbose, layer=layer, syscalls=list(syscalls))


def run(args):
    if getattr(args, "throttle", False):
        return run_throttle(args)
    return run_weights(args)


def run_weights(args):
    from .commands import _print_summary, live_view

    _need_root_and_tools(("losetup", "fio"))
    resolver = Resolver()
    out = sys.stdout
    loop = groups = tracer = None
    readers = []
    try:
        kind, why_not = io_hierarchy(resolver)
        loop = LoopDevice(scratch_size_mb())
        bfq = loop.set_scheduler("bfq")
        obstacles = []  # why the weights cannot take effect, each one line
        if kind is None:
            obstacles.append(why_not)
        if not bfq:
            obstacles.append("the bfq I/O scheduler is not available on this kernel (CONFIG_IOSCHED_BFQ), "
                             "and only bfq applies io weights to a loop device")
        refused = loop.tune(BFQ_TUNABLES) if bfq else []
        groups = Groups(resolver, kind or "v2", [f"weight{w}" for w in WEIGHTS])
        weight_file, stat = FILES[kind][:2] if kind else (None, None)
        if kind and bfq:
            for cg, w in zip(groups.children, WEIGHTS):
                if not os.path.exists(os.path.join(groups.dir(cg), weight_file)):
                    obstacles.append(f"the cgroup has no {weight_file} file")
                    break
                if not _write(os.path.join(groups.dir(cg), weight_file), str(w)):
                    obstacles.append(f"the kernel refused {w} in {weight_file}")
                    break
        if kind == "v1" and not _write(os.path.join(groups.parent.v1, FILES["v1"][2]), f"{loop.dev} {NO_LIMIT}"):
            stat = BFQ_V1_STAT  # no throttling in this kernel: the bfq count is the one left
        out.write(f"demo: scratch device {loop.path} over {loop.file}\ndemo: scheduler "
                  f"{'bfq' if bfq else 'unchanged'}"
                  + (f" ({', '.join(f'{k}={v}' for k, v in BFQ_TUNABLES if k not in refused)})" if bfq else "")
                  + "\n")
        if refused:
            out.write(f"demo: bfq refused {', '.join(refused)}: shares may drift with CPU load\n")
        if obstacles:
            out.write("\n".join(wrap([f"demo: weights cannot take effect here: {obstacles[0]}"])) + "\n")
        else:
            out.write(f"demo: weights {WEIGHTS[0]} and {WEIGHTS[1]} in cgroup {kind} {weight_file}\n")
        out.flush()
        cgid, level = resolver.cgroup_filter(groups.parent.rel)
        tracer = Tracer(Options(cgid=cgid, cglevel=level), verbose=args.verbose)
        stats = [stat] + ([BFQ_V1_STAT] if kind == "v1" and stat != BFQ_V1_STAT else [])
        rec = Recorder(tracer, lambda: {name: [groups.read_bytes(cg, name, loop.dev) for cg in groups.children]
                                        for name in stats if name})
        for i, cg in enumerate(groups.children):
            readers.append(_start_reader(fio_argv(loop.path, args.duration + 30, "libaio", READER_DEPTH, i, 2), cg,
                                         realtime=True))
        rt = all(_realtime(p.pid) for p in readers)
        out.write(f"demo: one fio reader per group, each keeping {READER_DEPTH} reads of {READ_SIZE >> 10} KiB "
                  f"in flight, at {'real-time' if rt else 'normal (real-time refused)'} priority\n")
        out.flush()
        view_args = _view_args(args)
        first, last = live_view(rec, resolver, view_args)
        _stop(readers)
        _print_summary(first, last, view_args, resolver, None, lambda k, n: _controls(resolver, n),
                       title=f"demo: the whole {(last.time_ns - first.time_ns) / 1e9:.0f}s by cgroup")
        _, lines = weights_result(rec.snaps, resolver, groups, obstacles, stat if kind else None)
        out.write("\n" + "\n".join(wrap(lines)) + "\n")
        out.flush()
    finally:
        _stop(readers)
        if tracer is not None:
            tracer.close()
        if groups is not None:
            groups.remove()
        if loop is not None:
            loop.close()
    return 0


def run_throttle(args):
    from .commands import _print_summary, live_view

    _need_root_and_tools(("losetup", "fio"))
    resolver = Resolver()
    out = sys.stdout
    loop = groups = tracer = None
    readers = []
    try:
        kind, why_not = io_hierarchy(resolver)
        if kind is None:
            raise BadInput("demo --throttle", why_not, "mount the v1 blkio hierarchy or enable io on cgroup v2")
        loop = LoopDevice(scratch_size_mb())
        groups = Groups(resolver, kind, ["limited", "free"])
        limit_file, stat = FILES[kind][2:]
        rule = f"{loop.dev} {THROTTLE_BPS}" if kind == "v1" else f"{loop.dev} rbps={THROTTLE_BPS}"
        if not _write(os.path.join(groups.dir(groups.children[0]), limit_file), rule):
            raise BadInput("demo --throttle", f"the kernel refused a read limit in {limit_file}",
                           "it needs CONFIG_BLK_DEV_THROTTLING")
        out.write(f"demo: scratch device {loop.path} over {loop.file}\n"
                  f"demo: group limited: {limit_file} {THROTTLE_BPS >> 20} MiB/s; group free: no limit\n"
                  f"demo: one fio reader per group, pread64 of {READ_SIZE >> 10} KiB; the free one asks for "
                  f"{FREE_RATE >> 20} MiB/s\n")
        out.flush()
        cgid, level = resolver.cgroup_filter(groups.parent.rel)
        tracer = Tracer(Options(cgid=cgid, cglevel=level), verbose=args.verbose, layers=("block", "syscall"),
                        syscalls=("pread64",))
        rec = Recorder(tracer, lambda: [groups.read_bytes(cg, stat, loop.dev) for cg in groups.children])
        # The limited reader at real-time priority, so that a late wake-up
        # never makes it read less than its limit; the free one asks for a
        # fixed FREE_RATE, far above the limit, so that it does not take
        # every CPU cycle from the throttle's own dispatch worker.
        readers.append(_start_reader(fio_argv(loop.path, args.duration + 30, "psync", 1, 0, 2), groups.children[0],
                                     realtime=True))
        readers.append(_start_reader(fio_argv(loop.path, args.duration + 30, "psync", 1, 1, 2)
                                     + [f"--rate={FREE_RATE}"], groups.children[1], realtime=False))
        view_args = _view_args(args, layer="both", syscalls=("pread64",))
        first, last = live_view(rec, resolver, view_args)
        _stop(readers)
        _print_summary(first, last, view_args, resolver, None, lambda k, n: _controls(resolver, n),
                       title=f"demo: the whole {(last.time_ns - first.time_ns) / 1e9:.0f}s by cgroup")
        _, lines = throttle_result(rec.snaps, resolver, groups, stat)
        out.write("\n" + "\n".join(wrap(lines)) + "\n")
        out.flush()
    finally:
        _stop(readers)
        if tracer is not None:
            tracer.close()
        if groups is not None:
            groups.remove()
        if loop is not None:
            loop.close()
    return 0


def throttle_result(snaps, resolver, groups_, stat):
    """(held: bool, lines): rates against the limit and where the reads'
    time went, then the verdict."""
    from .views import fmt

    (s0, k0), (s1, k1) = snaps[0], snaps[-1]
    seconds = (s1.time_ns - s0.time_ns) / 1e9
    whole = maps.delta(s1, s0)
    per = _per_group(whole, resolver, groups_)
    sys_ = {g.id.name: g for g in group.by_key_sys(whole, "cgroup", resolver, split_op=False,
                                                     syscalls={"pread64"})}
    lines = [f"read rates over {seconds:.0f}s, and the mean time of a read at each level:",
             f"  {'GROUP':<9}{'LIMIT':>10}{'TRACED':>11}{'KERNEL':>11}{'SYSCALL':>10}{'QUEUE':>9}{'DEVICE':>9}"]
    rates, traced_rates = [], []
    for i, cg in enumerate(groups_.children):
        g = per.get(cg)
        traced = (g.bytes if g else 0) / seconds if seconds > 0 else 0.0
        kb = k1[i] - k0[i] if k0[i] is not None and k1[i] is not None else None
        kernel = kb / seconds if kb and seconds > 0 else None  # v1: stays 0 without a throttle rule
        rates.append(kernel if kernel is not None else traced)
        traced_rates.append(traced)
        sc = sys_.get(cg.rel)
        # Means, not medians: the throttle lets a burst through, then holds
        # reads for a long while, so the median read does not wait at all.
        sc_mean = fmt.ns(sc.sums["latency"] / sc.ios) if sc and sc.ios else "-"
        q_mean = fmt.ns(g.queue_ns / g.ios) if g and g.ios else "-"
        d_mean = fmt.ns(g.device_ns / g.ios) if g and g.ios else "-"
        lines.append(f"  {os.path.basename(cg.rel):<9}{fmt.rate(THROTTLE_BPS) if i == 0 else '-':>10}"
                     f"{fmt.rate(traced):>11}{fmt.rate(kernel) if kernel is not None else '-':>11}"
                     f"{sc_mean:>10}{q_mean:>9}{d_mean:>9}")
    if k0[0] is not None and rates[0] and traced_rates[0] < 0.9 * rates[0]:
        lines.append("  (ioltrace's count of the limited group misses the reads the throttle held: its worker "
                     "thread submits them later, and ioltrace takes the cgroup from the submitting thread)")
    held = abs(rates[0] - THROTTLE_BPS) <= THROTTLE_TOLERANCE * THROTTLE_BPS
    source = f"the kernel's {stat}" if k0[0] is not None else "ioltrace's count"
    if held:
        verdict = (f"demo: the limited group was HELD at its limit: {fmt.rate(rates[0])} by {source}, limit "
                   f"{fmt.rate(THROTTLE_BPS)} (within {THROTTLE_TOLERANCE:.0%}), while the free group read "
                   f"{fmt.rate(rates[1])}. The throttle holds a read before it becomes a request, so the wait "
                   "shows in the syscall time, not in the block queue.")
    else:
        verdict = (f"demo: the limited group was NOT held at its limit: {fmt.rate(rates[0])} by {source}, "
                   f"limit {fmt.rate(THROTTLE_BPS)}"
                   + (": its reader read less than the limit allows (CPU-starved?)" if rates[0] < THROTTLE_BPS
                      else ": the kernel let more through than the limit"))
    return held, lines + [verdict]


def wrap(lines, width=79):
    """Long sentences folded to the terminal's 80 columns; table rows kept."""
    import textwrap

    out = []
    for line in lines:
        indent = "  " if line.startswith("  ") else ""
        out += textwrap.wrap(line, width, subsequent_indent=indent + "  ") if len(line) > width else [line]
    return out


def _stop(readers):
    for p in readers:
        if p.poll() is None:
            p.kill()
    for p in readers:
        p.wait()


def _controls(resolver, name):
    from .cgroups import format_controls, read_controls

    return format_controls(read_controls(resolver, name))


def _per_group(snap, resolver, groups_):
    """{child cgroup: Group} of a (delta) snapshot; a child with no I/O is absent."""
    by = {g.id.name: g for g in group.by_key(snap, "cgroup", resolver, split_disk=False, split_op=False)}
    return {cg: by[cg.rel] for cg in groups_.children if cg.rel in by}


def weights_result(snaps, resolver, groups_, obstacles, stat):
    """(matches, lines): the table of shares and queues, then the verdict."""
    (s0, c0), (s1, c1) = snaps[0], snaps[-1]
    per = _per_group(maps.delta(s1, s0), resolver, groups_)
    got = [per[cg].bytes if cg in per else 0 for cg in groups_.children]
    traced = got[0] / sum(got) * 100 if sum(got) else None

    def split(name):
        """(bytes per group, share of the first %) by one kernel stat file."""
        if name not in c0:
            return None, None
        b = [y - x if x is not None and y is not None else None for x, y in zip(c0[name], c1[name])]
        return b, (b[0] / sum(b) * 100 if None not in b and sum(b) else None)

    kbytes, kernel = split(stat)
    bfq_bytes, bfq_share = split(BFQ_V1_STAT) if stat != BFQ_V1_STAT else (None, None)
    # Little's law per second: the sum of the queue times of the reads that
    # completed in it, over its length, is how many waited on average.
    waits = [[] for _ in groups_.children]
    for (a, _), (b, _) in zip(snaps, snaps[1:]):
        dt = b.time_ns - a.time_ns
        if dt <= 0:
            continue
        d = _per_group(maps.delta(b, a), resolver, groups_)
        for i, cg in enumerate(groups_.children):
            waits[i].append(d[cg].queue_ns / dt if cg in d else 0.0)
    seconds = (s1.time_ns - s0.time_ns) / 1e9
    lines = [f"shares of the {sum(got) / 2**20:,.0f} MiB read in {seconds:.0f}s, and the reads waiting in the "
             "scheduler:",
             f"  {'GROUP':<12}{'WEIGHT':>7}{'ASKED':>8}{'TRACED':>8}{'KERNEL':>8}   WAITING (FEWEST IN A SECOND)"]
    for i, (cg, w) in enumerate(zip(groups_.children, WEIGHTS)):
        t = got[i] / sum(got) * 100 if sum(got) else 0.0
        k = f"{kbytes[i] / sum(kbytes) * 100:7.1f}%" if kernel is not None else "       ?"
        wt = (f"{sum(waits[i]) / len(waits[i]):.1f} ({min(waits[i]):.1f}) of {READER_DEPTH}"
              if waits[i] else "?")
        lines.append(f"  {os.path.basename(cg.rel):<12}{w:>7}{w / sum(WEIGHTS) * 100:7.1f}%{t:7.1f}%{k}   {wt}")
    if kernel is not None and traced is not None and abs(kernel - traced) > 1:
        lines.append(f"  (ioltrace's share differs from the kernel's by {traced - kernel:+.1f} points)")
    if bfq_share is not None and kernel is not None and abs(bfq_share - kernel) > 1:
        lines.append(f"  ({BFQ_V1_STAT} says {bfq_share:.1f}%: it counted {sum(bfq_bytes) / sum(kbytes):.0%} "
                     f"of the bytes; it misses requests now and then, so {stat} is the judge)")
    matches, verdict = judge_shares(traced, kernel, [min(w) if w else None for w in waits], obstacles,
                                    stat or "count")
    return matches, lines + verdict


def judge_shares(traced, kernel, waiting, obstacles, stat_name):
    """The verdict on a weights run, as (matches: bool | None, lines).

    traced, kernel: the share (0..100) of the first group (weight
    WEIGHTS[0]) by ioltrace's and by the kernel's count (kernel None when
    unreadable); waiting: per group, the fewest reads waiting in the
    scheduler on average in any whole second (None: no whole second).
    matches is None when the weights could not take effect. Pure.
    """
    asked = WEIGHTS[0] / sum(WEIGHTS) * 100
    judged = kernel if kernel is not None else traced
    source = f"the kernel's {stat_name}" if kernel is not None else "ioltrace's count (kernel's unreadable)"
    if obstacles:
        return None, [f"demo: no verdict: weights cannot take effect here ({obstacles[0]}); the split above is "
                      "what unweighted readers got, not the weights' result"]
    if judged is None:
        return False, ["demo: does NOT match: no bytes were read"]
    off = judged - asked
    dry = [(i, w) for i, w in enumerate(waiting) if w is None or w < MIN_WAITING]
    if abs(off) <= SHARE_TOLERANCE and not dry:
        return True, [f"demo: MATCHES the weights: weight {WEIGHTS[0]} got {judged:.1f}% of the bytes read "
                      f"by {source}, asked {asked:.1f}% (within {SHARE_TOLERANCE:g} points); both groups had "
                      f"reads waiting every second"]
    if dry:
        i, w = dry[0]
        why = (f"group weight{WEIGHTS[i]} was not backlogged: in its worst second only "
               f"{w:.1f} of its {READER_DEPTH} reads waited on average (under {MIN_WAITING})" if w is not None
               else f"group weight{WEIGHTS[i]} read nothing in some second")
        head = "does NOT match" if abs(off) > SHARE_TOLERANCE else "matches only by chance"
        return False, [f"demo: {head}: weight {WEIGHTS[0]} got {judged:.1f}%, asked {asked:.1f}% "
                       f"({off:+.1f} points): {why}; BFQ divides the device by weight only among groups "
                       "with reads waiting, so this split is not the weights' result"]
    return False, [f"demo: does NOT match: weight {WEIGHTS[0]} got {judged:.1f}%, asked {asked:.1f}% "
                   f"({off:+.1f} points) although both groups had reads waiting every second: "
                   "the device, not BFQ, decided the order (a device queue deeper than one request?)"]
