"""The only module that imports bcc: picks probes, compiles, attaches, reads.

It turns validated options into -D flags (never pasting user text into C),
chooses the start tracepoint by what this kernel has, and hands raw map
entries to maps.py. It does not format or aggregate anything.
Over 400 lines for one reason: it is the one place that touches bcc, so
both probe paths of the block layer, the syscall layer's raw tracepoints,
fork following, the in-flight sweep and the bpf() program-info reads all
live here rather than leak bcc objects into other modules.
"""

import ctypes
import errno
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import bpfsys, fold, headers, layout, maps, memory, probepath
from . import layers as layer_decls
from .errors import BccMissing, CompileFailed, HeadersMissing, KernelUnsupported, NotPermitted

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
CAP_PERFMON, CAP_BPF, CAP_SYS_ADMIN = 38, 39, 21


def _env_size(name, default, low, high):
    """Map sizes for tests of overload behaviour (IOLTRACE_INFLIGHT_ENTRIES
    and friends); not a user option. Out-of-range values are ignored."""
    try:
        v = int(os.environ.get(name, default))
    except ValueError:
        return default
    return v if low <= v <= high else default


class Options(NamedTuple):
    """What the kernel side is built for; every field is an int or None."""

    by_thread: bool = False
    total_hist: bool = False
    total_only: bool = False   # with total_hist: no queue or device histogram (snoop)
    size_depth: bool = False   # also request-size and in-flight-depth histograms (block)
    dev: int = None            # kernel dev_t encoding (major << 20 | minor)
    sector_lo: int = None      # partition filter: [lo, hi) in 512-byte sectors
    sector_hi: int = None
    tgid: int = None
    children: bool = False     # with tgid: its descendants too
    cgid: int = None
    cglevel: int = None
    comm: bytes = None         # at most 15 bytes
    probes: int = 0            # index into probepath.MODES: auto (by what BTF gives), raw, classic
    # Slots are a power of two; IOLTRACE_INFLIGHT_ENTRIES rounds up to one.
    inflight_bits: int = max(0, (_env_size("IOLTRACE_INFLIGHT_ENTRIES", 1 << layout.DEFAULT_INFLIGHT_BITS, 1,
                                           1 << 20) - 1).bit_length())
    stats_entries: int = _env_size("IOLTRACE_STATS_ENTRIES", layout.DEFAULT_STATS_ENTRIES, 8, 1 << 20)
    hist_entries: int = _env_size("IOLTRACE_HIST_ENTRIES", layout.DEFAULT_HIST_ENTRIES, 8, 1 << 22)
    errs_entries: int = _env_size("IOLTRACE_ERRS_ENTRIES", layout.DEFAULT_ERRS_ENTRIES, 1, 1 << 20)
    # The layers.Stream of this name compiled in (snoop: per-request events),
    # with its threshold in ns and ring buffer size in pages (a power of two).
    snoop: bool = False
    snoop_min_ns: int = 0
    snoop_pages: int = layout.DEFAULT_SNOOP_PAGES
    snoop_knob: bool = False    # the threshold is set while tracing (Tracer.set_stream_knob)
    snoop_syscall: bool = False  # the syscall layer's stream, with the same threshold and pages


def bpf_dir():
    """bpf/ sources: inside the installed package, or beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "bpf", here.parent / "bpf"):
        if (cand / "block.bpf.c").is_file():
            return cand
    raise KernelUnsupported(["bpf/block.bpf.c"], "the ioltrace installation is incomplete: reinstall it")


def tracefs():
    for d in TRACEFS_CANDIDATES:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    return None


def tracepoint_exists(category, name, root=None):
    root = root or tracefs()
    return bool(root) and os.path.isdir(os.path.join(root, "events", category, name))


def effective_caps():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def missing_privileges():
    """[] when tracing is allowed; otherwise the capabilities to name."""
    if os.geteuid() == 0:
        return []
    caps = effective_caps()
    if caps & (1 << CAP_SYS_ADMIN):
        return []
    return [name for bit, name in ((CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")) if not caps & (1 << bit)]


def start_tracepoint(root=None):
    # block_io_start appeared in 6.5 (commit 5a80bd075f3b) with the request's
    # accounting start; older kernels have only block_rq_insert, which direct
    # issue skips (those requests count with queue time zero).
    if tracepoint_exists("block", "block_io_start", root):
        return "block_io_start"
    return "block_rq_insert"


def cflags(opts, start_tp):
    flags = [f"-DIOLT_INFLIGHT_BITS={int(opts.inflight_bits)}",
             f"-DIOLT_STATS_ENTRIES={int(opts.stats_entries)}",
             f"-DIOLT_HIST_ENTRIES={int(opts.hist_entries)}",
             f"-DIOLT_ERRS_ENTRIES={int(opts.errs_entries)}"]
    if start_tp == "block_io_start":
        flags.append("-DIOLT_START_IO_START")
    if opts.by_thread:
        flags.append("-DIOLT_BY_THREAD")
    if opts.total_hist:
        flags.append("-DIOLT_TOTAL_HIST")
        if opts.total_only:
            flags.append("-DIOLT_TOTAL_ONLY")
    if opts.size_depth:
        flags.append("-DIOLT_SIZE_DEPTH")
    if opts.dev is not None:
        flags.append(f"-DIOLT_FILTER_DEV={int(opts.dev)}U")
    if opts.sector_hi is not None:
        flags.append(f"-DIOLT_FILTER_SECTOR_LO={int(opts.sector_lo)}ULL")
        flags.append(f"-DIOLT_FILTER_SECTOR_HI={int(opts.sector_hi)}ULL")
    if opts.tgid is not None:
        flags.append(f"-DIOLT_FILTER_TGID={int(opts.tgid)}U")
        flags.append(f"-DIOLT_FORK_CHILD_OFF={int(fork_child_offset())}")
        if opts.children:
            flags.append("-DIOLT_FILTER_CHILDREN")
    if opts.cgid is not None:
        flags.append(f"-DIOLT_FILTER_CGID={int(opts.cgid)}ULL")
        flags.append(f"-DIOLT_FILTER_CGLEVEL={int(opts.cglevel)}")
    for stream in layer_decls.STREAMS:
        if getattr(opts, stream.name):
            flags.append(f"-D{stream.define}")
            if stream.knob and getattr(opts, f"{stream.name}_knob"):
                flags.append(f"-D{stream.knob_define}")
    if opts.snoop or opts.snoop_syscall:
        pages = int(opts.snoop_pages)
        if pages < 1 or pages > layout.MAX_SNOOP_PAGES or pages & (pages - 1):
            raise ValueError(f"snoop_pages {pages}: not a power of two in 1..{layout.MAX_SNOOP_PAGES}")
        flags.append(f"-DIOLT_SNOOP_MIN_NS={int(opts.snoop_min_ns)}ULL")
        flags.append(f"-DIOLT_SNOOP_PAGES={pages}")
    if opts.comm is not None:
        raw = bytes(opts.comm)[:15].ljust(16, b"\0")
        flags.append(f"-DIOLT_FILTER_COMM_LO={int.from_bytes(raw[:8], 'little')}ULL")
        flags.append(f"-DIOLT_FILTER_COMM_HI={int.from_bytes(raw[8:], 'little')}ULL")
    return flags


def fork_child_offset(root=None):
    """Offset of child_pid in the sched_process_fork record, from tracefs:
    the record changed in 6.x (its comms became __data_loc)."""
    root = root or tracefs()
    try:
        with open(os.path.join(root or "", "events", "sched", "sched_process_fork", "format")) as f:
            for line in f:
                if " child_pid;" in line:
                    return int(line.split("offset:")[1].split(";")[0])
    except (OSError, IndexError, ValueError):
        pass
    raise KernelUnsupported(["sched:sched_process_fork"], "--pid follows forks with this tracepoint (CONFIG_TRACEPOINTS)")


def descendants(tgid, proc="/proc"):
    """tgids of the live descendants of tgid, from the ppid in /proc/PID/stat."""
    children = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(proc, name, "stat"), "rb") as f:
                stat = f.read()
        except OSError:
            continue    # exited meanwhile
        fields = stat[stat.rfind(b")") + 2:].split()   # comm may hold spaces and parentheses
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [tgid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in out and child != tgid:
                out.append(child)
                todo.append(child)
    return out


def import_bcc():
    try:
        import bcc  # noqa: F401
        from bcc import BPF
    except ImportError as e:
        raise BccMissing(str(e)) from None
    return BPF


def bcc_version():
    """(bcc's version, the directory it is imported from), for doctor."""
    try:
        import bcc
    except ImportError as e:
        raise BccMissing(str(e)) from None
    return getattr(bcc, "__version__", "unknown"), os.path.dirname(bcc.__file__)


class Tracer:
    """Compiled and attached probes of the requested layers; close() detaches.

    layers: names of layers.py declarations. block: block.bpf.c with the
    start tracepoint this kernel has; syscall: syscall.bpf.c, attaching only
    the `syscalls` asked for that this kernel has; loop: loop.bpf.c with
    `events` (tracepoints CATEGORY:NAME) attached in order.
    """

    def __init__(self, opts=Options(), verbose=False, layers=("block",), syscalls=None,
                 keep_exited=layout.DEFAULT_KEEP_EXITED_S, events=(), on_fold=()):
        self.opts = opts
        self.layers = layer_decls.named(layers)
        self.trimmer = memory.Trimmer()
        # on_fold: more callbacks given the tgids folded (the resolver forgets their names).
        self.folder = fold.Folder(keep_exited, on_fold=(self.trimmer.folded, *on_fold))
        self.progs = {}           # layer name -> bcc BPF object
        self.streams = {}         # stream name -> layers.Stream compiled in
        self.tracepoints, self.skipped = [], []
        self.start_tp = None
        self.path = None          # probepath.ProbePath of the block layer
        self._lost_total, self._stale, self._swept_at = 0, set(), float("-inf")   # _sweep's state
        self._final = False
        self.syscalls = tuple(syscalls or layout.DEFAULT_SYSCALLS)
        self.events = list(events)
        root = _require_tracing()
        BPF = import_bcc()
        self.headers = use_headers()
        src = bpf_dir()
        flags = cflags(opts, start_tracepoint(root)) + [f"-I{src}"]
        t0 = time.monotonic()
        try:
            chosen = [(layer, _PROBES[layer.name](self, root)) for layer in self.layers]
            # One compile for all layers: clang's start and the kernel headers
            # cost about 0.7 s per BPF() whatever the program.
            b = compile_bpf(BPF, [src / (probes.source or layer.source) for layer, probes in chosen],
                            flags + [f for _, probes in chosen for f in probes.cflags], verbose)
            for layer, probes in chosen:
                self.progs[layer.name] = b
                check_layout(b, layer, probes.source)
                probes.attach(b)
            self.streams = {s.name: s for s in layer_decls.STREAMS if getattr(opts, s.name) and s.layer in self.progs}
            for stream in self.streams.values():
                check_stream(self.progs[stream.layer], stream)
            if "block" in self.progs:
                self._seed_other_keys()
            if opts.tgid is not None:
                self._follow_forks(b)
        except BaseException:
            self.close()
            raise
        self.compile_s = time.monotonic() - t0
        # The compile leaves about 30 MiB of freed heap behind (clang's ASTs).
        memory.trim()
        memory.fix_mmap_threshold()

    def _follow_forks(self, b):
        # Attach first, then read /proc: a fork in between is seen by both.
        b.attach_tracepoint(tp="sched:sched_process_fork", fn_name="iolt_fork")
        self.tracepoints.append("sched:sched_process_fork")
        family = b["iolt_family"]
        for pid in descendants(self.opts.tgid):
            family[family.Key(pid)] = family.Leaf(1)

    def _seed_other_keys(self):
        # The kernel falls back to these keys when the stats map is full, so
        # they must exist before it is.
        t = self.progs["block"]["stats"]
        for op in range(len(layout.OPS)):
            k = t.Key(cgid=0, tgid=layout.OTHER_TGID, tid=0, dev=0, op=op)
            t[k] = t.Leaf()

    def open_stream(self, name, on_event):
        """Call on_event(bytes of one event, laid out as the stream's event
        ctype) for each event of the stream, from poll_stream()."""
        stream = self.streams[name]
        size = ctypes.sizeof(stream.event)
        string_at = ctypes.string_at

        def callback(ctx, data, n):
            on_event(string_at(data, size))
            return 0

        self.progs[stream.layer][stream.buffer].open_ring_buffer(callback)

    def poll_stream(self, name, timeout_ms):
        """Hand every event waiting (up to timeout_ms for the first) to the
        stream's on_event; -1 waits without limit, 0 never waits."""
        b = self.progs[self.streams[name].layer]
        if timeout_ms == 0:
            b.ring_buffer_consume()
        else:
            b.ring_buffer_poll(timeout_ms)

    def set_stream_knob(self, name, value):
        """Set the stream's knob (snoop's threshold in ns) to a u64."""
        stream = self.streams[name]
        table = self.progs[stream.layer][stream.knob]
        table[table.Key(0)] = table.Leaf(int(value))

    def stream_counters(self, name):
        """The stream's counters (name -> value) now."""
        stream = self.streams[name]
        values = [v.value for _, v in self.progs[stream.layer][stream.counters_map].items()]
        return dict(zip(stream.counters, values))

    def describe(self):
        text = "probes: " + ", ".join(self.tracepoints) + " (tracepoints only)"
        if self.path is not None:
            text += f"; {'typed request path' if self.path.kind == 'raw' else 'classic tracepoint path'}"
        if self.skipped:
            text += "; not in this kernel, skipped: " + ", ".join(self.skipped)
        return text

    def _read(self):
        """(raw: map name -> pairs, counters: layer name -> values) now."""
        raw, counters = {}, {}
        for layer in self.layers:
            b = self.progs[layer.name]
            for name in (layer.stats, layer.hist, layer.errs):
                if name is not None:
                    raw[name] = _items(b[name])
            counters[layer.name] = [v for _, v in b[layer.counters_map].items()]
        return raw, counters

    def stopping(self):
        """The next snapshot is the run's last: it counts the requests still
        in flight as in_flight_at_stop."""
        self._final = True

    def snapshot(self):
        """Everything in the maps now (maps.decode), with the processes
        that exited more than keep_exited seconds ago folded (fold.py)."""
        final, self._final = self._final, False
        # The snapshots before the last fold are dropped by now (session.run
        # keeps the previous one only): their heap pages can go back.
        self.trimmer.maybe_trim()
        now = time.monotonic_ns()
        raw, counters = self._read()
        snap = maps.decode(now, self.layers, raw, counters)
        if "block" in self.progs:
            snap = snap._replace(counters=dict(snap.counters, **self._block_misses()))
            if self.opts.size_depth:
                self._resync_depth()
        for layer in self.layers:
            if layer.inflight:
                snap = snap._replace(counters=dict(snap.counters, **self._sweep(layer, final)))
        folding = [layer for layer in self.layers if layer.folds]
        tables = {name: self.progs[layer.name][name] for layer in folding
                  for name in (layer.stats, layer.hist, layer.errs) if name is not None}
        return self.folder.apply(snap, lambda tgids: fold.take(tables, raw, tgids, folding))

    def _sweep(self, layer, final):
        """lost and in_flight_at_stop (layout.SWEEP_COUNTERS) from the
        layer's in-flight slots: a request is lost once no event of it came
        for LOST_AFTER_S (counted once, by its slot and times), and in flight
        at stop if the final snapshot finds it busy and not already lost.
        bpf_ktime_get_ns is CLOCK_MONOTONIC, as time.monotonic_ns. Reading
        the slots takes ~17 ms for 64Ki of them, so between the final
        snapshot's sweeps one every SWEEP_EVERY_S is enough for a 30 s age."""
        if not final and time.monotonic() - self._swept_at < SWEEP_EVERY_S:
            return {"lost": self._lost_total, "in_flight_at_stop": 0}
        self._swept_at = time.monotonic()
        table = self.progs[layer.name][layer.inflight]
        slots = _array_words(table)
        leaf = table.Leaf
        start, issue = slots[:, leaf.start_ns.offset // 8], slots[:, leaf.issue_ns.offset // 8]
        busy = (start | issue) != 0
        last = np.maximum(start, issue).astype(np.int64)
        old = np.flatnonzero(busy & (time.monotonic_ns() - last > layout.LOST_AFTER_S * 1_000_000_000))
        stale = {(int(i), int(start[i]), int(issue[i])) for i in old}
        busy = int(busy.sum())
        self._lost_total += len(stale - self._stale)
        self._stale = stale
        return {"lost": self._lost_total, "in_flight_at_stop": busy - len(stale) if final else 0}

    def _resync_depth(self, sysfs="/sys/dev/block"):
        """Set a disk's in-flight count (size_depth) back to 0 when the
        kernel says nothing is in flight on it: a completion the kernel did
        not run our program for (missed_complete) leaves the count one too
        high for good, which no later event undoes. A request issued between
        the two reads is then counted one too low until the disk is idle
        again, when the count, which stops at 0, is exact again."""
        table = self.progs["block"]["disk_depth"]
        for k, v in list(table.items()):
            if not v.value:
                continue
            dev = int(k.value)
            try:
                with open(f"{sysfs}/{dev >> 20}:{dev & 0xFFFFF}/inflight") as f:
                    busy = sum(int(x) for x in f.read().split())
            except (OSError, ValueError):
                continue
            if busy == 0:
                try:
                    table[k] = table.Leaf(0)
                except Exception:  # bcc raises a bare Exception; a resync missed is not worth a failed scrape
                    pass

    def _block_misses(self):
        out = {}
        for name, fn in self.progs["block"].funcs.items():
            name = name.decode() if isinstance(name, bytes) else name
            for stage in ("start", "issue", "complete"):
                if name.endswith(("block_io_start", "block_rq_insert") if stage == "start" else f"rq_{stage}"):
                    out[f"missed_{stage}"] = out.get(f"missed_{stage}", 0) + bpfsys.recursion_misses(fn.fd)
        return out

    def descriptors(self):
        """(map fd, program fd or None) of the first layer: what a process
        must still be able to use after giving up privilege (privileges.drop)."""
        layer = self.layers[0]
        b = self.progs[layer.name]
        prog = next(iter(b.funcs.values()), None)
        return b[layer.stats or layer.counters_map].map_fd, None if prog is None else prog.fd

    def close(self):
        progs, self.progs = getattr(self, "progs", {}), {}
        for b in {id(b): b for b in progs.values()}.values():
            b.cleanup()


class Probes(NamedTuple):
    """What a layer's probe chooser picked on this kernel: extra compile
    flags, how to attach, and the C program when it is not the layer's own
    (a second probe path for the same maps, e.g. raw tracepoints)."""

    cflags: list
    attach: object      # BPF -> None
    source: str = None  # bpf/<source>; None: Layer.source


def _block_probes(tracer, root):
    tracer.start_tp = start_tracepoint(root)
    needed = [tracer.start_tp, "block_rq_issue", "block_rq_complete"]
    absent = [f"block:{tp}" for tp in needed if not tracepoint_exists("block", tp, root)]
    if absent:
        raise KernelUnsupported(absent, "ioltrace needs the block tracepoints (CONFIG_BLK_DEV_IO_TRACE or CONFIG_TRACEPOINTS)")
    # The typed request path (layers.BLOCK's probe set "raw") when the
    # kernel's BTF gives every offset it reads (or --probes raw); else the
    # classic tracepoint records. Either attaches itself (*TRACEPOINT_PROBE).
    tracer.path = probepath.choose(probepath.MODES[tracer.opts.probes or 0])
    # A requeued request leaves the disk's in-flight count until issued again.
    if tracer.opts.size_depth and tracepoint_exists("block", "block_rq_requeue", root):
        needed = needed + ["block_rq_requeue"]
    elif tracer.opts.size_depth:
        raise KernelUnsupported(["block:block_rq_requeue"], "--size-depth keeps each disk's in-flight count with it")
    if tracer.path.kind != "raw":
        tracer.tracepoints += [f"block:{tp}" for tp in needed]
        return Probes([], lambda b: None)
    flags = tracer.path.cflags()
    # block_rq_merge frees the slot of a request merged into another, which
    # never completes; kernels without it leave such slots to the lost sweep.
    if tracepoint_exists("block", "block_rq_merge", root):
        needed, flags = needed + ["block_rq_merge"], flags + ["-DIOLT_RQ_MERGE"]
    # Without block_io_start, a request sent into the flush machinery is
    # seen only at its completion: block_getrq notes its bio (request.bpf.c).
    if tracer.start_tp == "block_rq_insert" and tracepoint_exists("block", "block_getrq", root):
        needed, flags = needed + ["block_getrq"], flags + ["-DIOLT_FLUSH_BIOS"]
    tracer.tracepoints += [f"raw block:{tp}" for tp in needed]
    return Probes(flags, lambda b: None, layer_decls.BLOCK.probe_set("raw").source)


def _syscall_probes(tracer, root):
    syscalls = tracer.syscalls
    present = [sc for sc in syscalls if tracepoint_exists("syscalls", f"sys_enter_{sc}", root)
               and tracepoint_exists("syscalls", f"sys_exit_{sc}", root)]
    tracer.skipped = [sc for sc in syscalls if sc not in present]
    if not present:
        raise KernelUnsupported([f"syscalls:sys_enter_{sc}" for sc in syscalls],
                                "the kernel needs CONFIG_FTRACE_SYSCALLS")
    wanted = sum(1 << layout.SYSCALLS.index(sc) for sc in present)
    tracer.tracepoints.append(f"raw:sys_{{enter,exit}} for {','.join(present)}")
    # RAW_TRACEPOINT_PROBE attaches itself (raw tracepoints: Linux 4.17).
    return Probes([f"-DIOLT_SC_WANTED={int(wanted)}ULL"], lambda b: None)


def _loop_probes(tracer, root):
    events = tracer.events
    if not 2 <= len(events) <= layout.LOOP_MAX_EVENTS:
        raise KernelUnsupported([f"a chain of {len(events)} events"], f"give 2 to {layout.LOOP_MAX_EVENTS}")

    def attach(b):
        try:
            for i, tp in enumerate(events):
                b.attach_tracepoint(tp=tp, fn_name=f"ev_{i}")
        except Exception as e:
            raise KernelUnsupported([f"attach {', '.join(events)}"], str(e)) from None
        tracer.tracepoints += events

    return Probes([f"-DIOLT_LOOP_EVENTS={len(events)}"], attach)


# Layer name -> how its probes are chosen on this kernel (the only place
# that knows which tracepoints a layer needs).
_PROBES = {"block": _block_probes, "syscall": _syscall_probes, "loop": _loop_probes}


# bpf_map_type numbers (uapi/linux/bpf.h) of the maps that refuse an insert
# when full; LRU hashes evict instead, arrays never take a new key.
_REFUSING_MAPS = {1: "hash", 5: "percpu_hash"}


def check_layout(b, layer, source=None):
    """Every map of the layer as the C program `source` (None: the layer's
    own) compiled it has the key and value sizes layout.py decodes with (a
    header drift would misread every entry); every map that can refuse an
    insert has a counter of the refusals, and the counter array has a slot
    for each counter of the layer."""
    for m in layer.maps_of(source):
        table = b[m.name]
        for part, ctype in (("Key", m.key), ("Leaf", m.value)):
            got = ctypes.sizeof(getattr(table, part))
            if got != ctypes.sizeof(ctype):
                raise CompileFailed(f"map {m.name} {'value' if part == 'Leaf' else 'key'} is {got} bytes, "
                                    f"ioltrace expects {ctypes.sizeof(ctype)}")
        kind = _REFUSING_MAPS.get(getattr(table, "ttype", None))
        if kind and m.full is None:
            raise CompileFailed(f"map {m.name} is a {kind} map, which can fill, and layers.py names no counter "
                                "for its refused inserts")
    if layer.counters_map is not None:
        slots = getattr(b[layer.counters_map], "max_entries", len(layer.counters))
        if slots != len(layer.counters):
            raise CompileFailed(f"map {layer.counters_map} has {slots} counters, ioltrace expects "
                                f"{len(layer.counters)}")


def check_stream(b, stream):
    """The stream's counters array has the counters its declaration names
    (the event's size is checked against the header by tests/unit/test_layout.py:
    a ring buffer carries no type bcc could compare)."""
    table = b[stream.counters_map]
    if int(table.max_entries) != len(stream.counters):
        raise CompileFailed(f"map {stream.counters_map} has {table.max_entries} counters, "
                            f"ioltrace expects {len(stream.counters)}")


def use_headers():
    """Choose kernel headers and point bcc at them (BCC_KERNEL_SOURCE)."""
    choice = headers.choose()
    if choice.kind == "none":
        raise HeadersMissing(os.uname().release)
    os.environ.update(choice.env)
    return choice


def _require_tracing():
    missing = missing_privileges()
    if missing:
        raise NotPermitted(missing)
    root = tracefs()
    if root is None:
        raise KernelUnsupported(["tracefs"], "mount it: mount -t tracefs tracefs /sys/kernel/tracing")
    return root


def _main_text(path, pasted=("filter.h", "depth.h") + tuple(s.header for s in layer_decls.STREAMS)):
    out = [f'#line 1 "{path}"']
    for n, line in enumerate(path.read_text().splitlines(), 1):
        name = line.split('"')[1] if line.startswith("#include \"") else None
        if name in pasted:
            out += [f'#line 1 "{path.parent / name}"', (path.parent / name).read_text(), f'#line {n + 1} "{path}"']
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def compile_bpf(BPF, paths, flags, verbose):
    """bcc's BPF() of the C programs at paths as one source (their maps and
    functions have distinct names; headers have include guards), with its
    compiler errors kept for -v and turned into one line."""
    # bcc generates the records of TRACEPOINT_PROBE and turns BPF_HASH
    # declarations into maps only in the main file, so the programs are
    # joined as text, and filter.h (which declares a map) is pasted in, not
    # #included (depth.h and snoop.h alike); #line keeps the compiler's messages naming file and line.
    text = "".join(_main_text(Path(p)) for p in paths)
    # bcc prints compiler errors to fd 2 itself; keep them for -v only.
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            return BPF(text=text.encode(), cflags=flags)
        except Exception as e:  # bcc raises a bare Exception
            os.dup2(saved, 2)
            log.seek(0)
            text = log.read().decode("utf-8", "replace")
            if verbose and text:
                sys.stderr.write(text)
            if "Operation not permitted" in text or "Permission denied" in str(e):
                raise NotPermitted() from None
            first = next((l for l in text.splitlines() if "error" in l), str(e))
            raise CompileFailed(first.strip()[:200]) from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# Seconds between in-flight sweeps (Tracer._sweep); range 0.1..LOST_AFTER_S/2.
SWEEP_EVERY_S = 5.0


def _array_words(table):
    """The values of an array map as a (max_entries, value size / 8) uint64
    array: one BPF_MAP_LOOKUP_BATCH (Linux 5.6) into one buffer, as Python
    objects per slot cost ~0.1 s for 64Ki slots; else slot by slot."""
    from bcc.libbcc import lib

    n, size = int(table.max_entries), ctypes.sizeof(table.Leaf)
    keys, vals = (ctypes.c_uint32 * n)(), ctypes.create_string_buffer(size * n)
    out, cnt = ctypes.c_uint32(0), ctypes.c_uint32(n)
    lib.bpf_lookup_batch(table.map_fd, None, ctypes.byref(out), keys, vals, ctypes.byref(cnt))
    if cnt.value == n:
        return np.frombuffer(vals, dtype=np.uint64).reshape(n, size // 8)
    words = np.zeros((n, size // 8), dtype=np.uint64)
    for k, v in table.items():
        words[k.value] = np.frombuffer(bytes(v), dtype=np.uint64)
    return words


# Entries read per batch lookup; range 1..1M. bcc's items_lookup_batch
# sizes its buffers by the map's max_entries (12 MiB for the default
# histogram map, every interval, however few entries it holds).
BATCH_ENTRIES = 4096


def _items(table):
    try:
        return _batched(table, min(BATCH_ENTRIES, max(1, table.max_entries)))
    except Exception:
        # Batch lookups need Linux 5.6; fall back to one syscall per entry.
        return list(table.items())


def _batched(table, n):
    """Every (key, value) of a hash map, `n` entries per bpf_lookup_batch;
    each pair shares the buffer of its batch."""
    from bcc.libbcc import lib

    out = []
    token = ctypes.c_uint32(0)
    first = True
    while True:
        keys, values = (table.Key * n)(), (table.Leaf * n)()
        count = ctypes.c_uint32(n)
        res = lib.bpf_lookup_batch(table.map_fd, None if first else ctypes.byref(token), ctypes.byref(token),
                                   ctypes.byref(keys), ctypes.byref(values), ctypes.byref(count))
        err = ctypes.get_errno()
        out.extend(zip(keys[:count.value], values[:count.value]))
        if res != 0:
            if err == errno.ENOENT:   # the last batch
                return out
            raise OSError(err, os.strerror(err))
        if not count.value:
            raise OSError(errno.EAGAIN, "a batch lookup made no progress")
        first = False


