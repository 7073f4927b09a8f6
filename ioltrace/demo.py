"""The pieces of `ioltrace demo`: the cgroup I/O controls, on a private
scratch device, and the verdict on each.

Two experiments, each on a loop device over a file in /dev/shm and two new
cgroups; commands/demo.py runs them in order with `top --by cgroup` live
and prints the verdict built here:

- weights (default): BFQ weights 1000 and 500, a reader in each group; the
  verdict says whether the device was shared as the weights ask (within
  SHARE_TOLERANCE points), judged against the kernel's own per-cgroup byte
  count, and when it was not, or cannot be, why (no BFQ, no weight file,
  a group not backlogged);
- --throttle: one group limited to THROTTLE_BPS of reads, the other free;
  the verdict says whether the limited group was held at its limit.

Everything made here (readers, cgroups, loop device, file, a v2 root's io
controller it had to enable) has a way out (LoopDevice.close, Groups.remove,
stop), which the command takes also on Ctrl-C, SIGTERM and errors. Nothing
here touches an existing device or cgroup, attaches probes, or prints a
share as the weights' result when the kernel could not have applied them.

Over 400 lines for one reason: both experiments' set-up and clean-up
(loop device, bfq tunables, cgroups in v1 or v2, throttle rules, readers at
real-time priority) and the verdicts with every reason a weight cannot be
honoured belong together, and none of it is used elsewhere.
"""

import os
import shutil
import subprocess
import time

from . import fmt, group, layers, maps
from .cgroups import ScratchCgroup
from .errors import BadInput, IoltraceError

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


def write_value(path, text):
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
        return write_value(f"{self.queue}/scheduler", name)

    def tune(self, settings):
        """Write iosched tunables; returns the names the kernel refused."""
        return [k for k, v in settings if not write_value(f"{self.queue}/iosched/{k}", v)]

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
                        if write_value(os.path.join(root, "cgroup.subtree_control"), "+io"):
                            self.root_io_enabled = root
                write_value(os.path.join(self.parent.v2, "cgroup.subtree_control"), "+io")
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
            write_value(os.path.join(self.root_io_enabled, "cgroup.subtree_control"), "-io")
            self.root_io_enabled = None


def fio_argv(device, seconds, engine, depth, part, parts):
    """A reader going round its own 1/parts of the device: reads of two
    readers never share a sector, which ioltrace could not tell apart in
    flight (its in-flight table is keyed by device and sector)."""
    share = 100 // parts
    return ["fio", "--name=reader", f"--filename={device}", "--rw=read", f"--bs={READ_SIZE}", "--direct=1",
            f"--ioengine={engine}", f"--iodepth={depth}", f"--offset={part * share}%", f"--size={share}%",
            "--time_based", f"--runtime={seconds}", "--thread", "--invalidate=0", "--output=/dev/null"]


def start_reader(argv, cg, realtime):
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


def is_realtime(pid):
    """True when the kernel let the reader run at SCHED_FIFO (start_reader)."""
    try:
        return os.sched_getscheduler(pid) == os.SCHED_FIFO
    except OSError:
        return False


class Samples:
    """The kernel's per-group byte counts read at the live view's baseline
    (start, top's on_start) and at the end of every interval (interval,
    top's on_interval), beside each interval's delta, so that the verdict
    can look at each second and at the kernel's own figures over exactly
    the traced window."""

    def __init__(self, kernel_counts):
        self._kernel_counts = kernel_counts
        self.counts = []  # kernel bytes per group (None: unreadable) at the baseline, then per interval
        self.times = []   # when each of counts was read (time.monotonic_ns)
        self.deltas = []  # each interval's delta snapshot

    def _read(self):
        # Timed by their own read, not by the snapshot's time: reading the
        # maps comes first and takes from 1 ms to over half a second (an
        # emulated guest beside stress-ng), which would stretch or shrink
        # a window of the kernel's counts by as much.
        self.counts.append(self._kernel_counts())
        self.times.append(time.monotonic_ns())

    def start(self):
        self._read()

    def interval(self, delta, start, end, final):
        self._read()
        self.deltas.append(delta)

    def rate(self, i):
        """Group i's kernel byte rate over the whole run, or None."""
        c0, c1 = self.counts[0][i], self.counts[-1][i]
        span = (self.times[-1] - self.times[0]) / 1e9
        return (c1 - c0) / span if c0 is not None and c1 is not None and c1 > c0 and span > 0 else None

    def steady_rate(self, i):
        """Group i's kernel byte rate from its second second of reads to the
        end, or None when that leaves under two seconds: the reader starts a
        moment after tracing does (on a loaded machine, seconds after), and the
        throttle lets a first burst through before it holds the group, so the
        whole window understates or overstates the rate the limit keeps."""
        series = [(t, c[i]) for t, c in zip(self.times, self.counts) if c[i] is not None]
        moving = [k for k in range(1, len(series)) if series[k][1] > series[0][1]]
        if not moving:
            return None
        window = series[moving[0]:]
        span = (window[-1][0] - window[0][0]) / 1e9 if len(window) >= 2 else 0
        return (window[-1][1] - window[0][1]) / span if span >= 2 else None


def need_root_and_tools(tools):
    """NeedsRoot or BadInput naming the missing tool's package, before anything is made."""
    if os.geteuid() != 0:
        raise NeedsRoot()
    for t in tools:
        if not shutil.which(t):
            pkg = {"losetup": "util-linux"}.get(t, t)
            raise BadInput("demo", f"{t} is not installed", f"apt-get install {pkg} (scripts/setup.sh installs it)")


def throttle_result(first, last, samples, resolver, groups_, stat):
    """(held: bool, lines): rates against the limit and where the reads'
    time went, then the verdict. first, last: the live view's snapshots."""
    readable = samples.counts[0][0] is not None   # the limited group's stat file
    seconds = (last.time_ns - first.time_ns) / 1e9
    whole = maps.delta(last, first)
    per = _per_group(whole, resolver, groups_)
    sys_ = {g.id.name: g for g in group.by_key(whole, "cgroup", resolver, split_disk=False, split_op=False,
                                                 ops={"pread64"}, layer=layers.SYSCALL)}
    lines = [f"read rates over {seconds:.0f}s (the limited group's KERNEL rate from its second second of reads),"
             " and the mean time of a read at each level:",
             f"  {'GROUP':<9}{'LIMIT':>10}{'TRACED':>11}{'KERNEL':>11}{'SYSCALL':>10}{'QUEUE':>9}{'DEVICE':>9}"]
    rates, traced_rates, whole_rates = [], [], []
    for i, cg in enumerate(groups_.children):
        g = per.get(cg)
        traced = (g.bytes if g else 0) / seconds if seconds > 0 else 0.0
        kernel = samples.rate(i)  # v1: stays 0 without a throttle rule
        whole_rates.append(kernel if kernel is not None else traced)
        if i == 0 and kernel is not None:
            kernel = samples.steady_rate(0) or kernel
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
    if readable and whole_rates[0] and traced_rates[0] < 0.9 * whole_rates[0]:
        lines.append("  (ioltrace's count of the limited group misses the reads the throttle held: its worker "
                     "thread submits them later, and ioltrace takes the cgroup from the submitting thread)")
    held = abs(rates[0] - THROTTLE_BPS) <= THROTTLE_TOLERANCE * THROTTLE_BPS
    source = f"the kernel's {stat}" if readable else "ioltrace's count"
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


def stop(readers):
    """Kill the readers still running and reap them all; safe to repeat."""
    for p in readers:
        if p.poll() is None:
            p.kill()
    for p in readers:
        p.wait()


def _per_group(snap, resolver, groups_):
    """{child cgroup: Group} of a (delta) snapshot; a child with no I/O is absent."""
    by = {g.id.name: g for g in group.by_key(snap, "cgroup", resolver, split_disk=False, split_op=False)}
    return {cg: by[cg.rel] for cg in groups_.children if cg.rel in by}


def weights_result(first, last, samples, resolver, groups_, obstacles, stat):
    """(matches, lines): the table of shares and queues, then the verdict.
    first, last: the live view's snapshots."""
    c0, c1 = samples.counts[0], samples.counts[-1]
    per = _per_group(maps.delta(last, first), resolver, groups_)
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
    ends = [first.time_ns] + [d.time_ns for d in samples.deltas]
    for t0, t1, delta in zip(ends, ends[1:], samples.deltas):
        dt = t1 - t0
        if dt <= 0:
            continue
        d = _per_group(delta, resolver, groups_)
        for i, cg in enumerate(groups_.children):
            waits[i].append(d[cg].queue_ns / dt if cg in d else 0.0)
    seconds = (last.time_ns - first.time_ns) / 1e9
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
