"""`ioltrace snoop`: one line per completed block request at or above a
latency threshold, as biosnoop -Q, filtered in the kernel.

The block programs are compiled with the snoop stream (layers.SNOOP,
bpf/snoop.h): requests below --min-latency cost only the histogram update
they always had; the others come through a ring buffer, and those it could
not take are counted (snoop_lost), shown at the end and in every export.
--slowest-pct sets the threshold while tracing, from the total-time
histogram; --layer syscall reads the syscall layer's stream instead
(layers.SNOOP_SYSCALL, bpf/sc_snoop.h), one line per traced syscall.

The block programs keep the total-time histogram (the one `hist --stage
total` reads) and no queue or device one (IOLT_TOTAL_ONLY): the rows carry
those parts, and one histogram update per request keeps a request below the
threshold at what `hist` costs. The run's histogram, summed over its keys
(the kernel applied the filters), ends the text summary, --csv and --json:
the requests below the threshold are counted there, and a user (or a test)
can check each row's total against its bucket, both taken from the same two
timestamps in the same program. A fixed --min-latency is compiled in as a
constant (one comparison per completion); only --slowest-pct reads the
threshold from a map.
"""

import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from .. import hist, layers, layout, loader, maps, probepath, session
from ..errors import BadInput
from ..fmt import errno_name
from ..records import SnoopRow, SnoopSyscallRow
from ..resolve import Resolver
from . import common, refuse_unused

# ms between two reads of the ring buffer while idle; a read returns at once
# when events wait. range 10..1000: Ctrl-C and --duration are seen within it.
POLL_MS = 100
# --slowest-pct: seconds between two learnings of the threshold from the
# total-time histogram (since the start); range 0.1..60.
LEARN_EVERY_S = 1.0
NOTHING_YET = (1 << 64) - 1   # the threshold until the histogram holds enough requests


@dataclass(frozen=True)
class Options(common.Filters):
    probes: str = "auto"       # block probes: auto, raw or classic (probepath.MODES)
    min_latency: int = 0       # ns; 0: every request
    buffer_pages: int = layout.DEFAULT_SNOOP_PAGES
    slowest_pct: float = None  # keep the slowest pct% by a threshold learned while tracing; None: min_latency
    duration: float = None     # seconds; None: until Ctrl-C
    csv: str = None            # "-": stdout
    json: str = None           # "-": stdout
    layer: str = "block"       # block: requests; syscall: the traced I/O syscalls

    def __post_init__(self):
        super().__post_init__()
        if self.layer == "syscall":
            why = "is for block requests, and --layer syscall traces syscalls"
            refuse_unused(self, [(name, why, "leave it out, or use --layer block")
                                 for name in ("disk", "probes", "slowest_pct")])
        p = self.buffer_pages
        if not (1 <= p <= layout.MAX_SNOOP_PAGES) or p & (p - 1):
            raise BadInput(f"--buffer-pages {p}", f"must be a power of two from 1 to {layout.MAX_SNOOP_PAGES}",
                           "the kernel sizes ring buffers so: 1, 2, 4, ... 256")
        if self.slowest_pct is not None:
            if not 0 < self.slowest_pct < 100:
                raise BadInput(f"--slowest-pct {self.slowest_pct:g}", "must be above 0 and below 100", "e.g. 1")
            if self.min_latency:
                raise BadInput("--slowest-pct", "and --min-latency both set the threshold", "give one of them")


class Rows:
    """SnoopEvents -> SnoopRows, names resolved once per id; times as
    seconds since t0_ns (monotonic) and wall-clock ISO, whose date and
    second are formatted once per second (a busy disk completes a request
    every few microseconds)."""

    def __init__(self, resolver, t0_ns, wall0):
        self.resolver, self.t0_ns, self.wall0 = resolver, t0_ns, wall0
        self._cgroups, self._disks = {}, {}
        self._second, self._prefix = None, ""

    def iso(self, wall):
        us = round(wall * 1e6)
        second, frac = divmod(us, 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{frac:06d}+00:00"

    def of(self, e):
        cg = self._cgroups.get(e.cgid)
        if cg is None:
            cg = self._cgroups[e.cgid] = self.resolver.cgroup_path(e.cgid)
        disk = self._disks.get(e.dev)
        if disk is None:
            disk = self._disks[e.dev] = self.resolver.disk_name(e.dev)
        since = (e.ts_ns - self.t0_ns) / 1e9
        return row_of(e, since, self.iso(self.wall0 + since), cg, disk)


class SyscallRows(Rows):
    """ScSnoopEvents -> SnoopSyscallRows, as Rows."""

    def of(self, e):
        cg = self._cgroups.get(e.cgid)
        if cg is None:
            cg = self._cgroups[e.cgid] = self.resolver.cgroup_path(e.cgid)
        since = (e.ts_ns - self.t0_ns) / 1e9
        name = layout.SYSCALLS[e.sc] if e.sc < len(layout.SYSCALLS) else str(e.sc)
        nbytes = e.ret if e.ret > 0 and e.sc < layout.SC_BYTES_FAMILY else 0
        return SnoopSyscallRow(self.iso(self.wall0 + since), round(since, 6), e.comm, e.tgid, e.tid, cg, name,
                               e.ret, nbytes, e.lat_ns, errno_name(-e.ret) if e.ret < 0 else "")


def row_of(e, since, when, cgroup, disk):
    """records.SnoopEvent and its resolved names -> records.SnoopRow."""
    return SnoopRow(when, round(since, 6), e.comm, e.tgid, e.tid, cgroup, disk, e.rwbs,
                    layout.OPS[maps.op_of_rwbs(e.rwbs)], e.sector, e.bytes, e.queue_ns, e.device_ns,
                    e.queue_ns + e.device_ns, errno_name(-e.err) if e.err else "")


def total_counts(snap):
    """The snapshot's total-time histograms, all keys together (bucket counts)."""
    counts = hist.empty()
    for (key, stage), c in snap.hists.items():
        if stage == layout.STAGE_TOTAL:
            counts += c
    return counts


def slowest(snap, pct):
    """The threshold (ns) that keeps the slowest pct% of the requests in the
    snapshot's total-time histograms, all keys together; None: too few yet."""
    return hist.slowest_threshold(total_counts(snap), pct)


def kernel_options(opts, resolver):
    """loader.Options of a run: a fixed --min-latency is a -D constant (one
    comparison per completion), --slowest-pct's threshold a map (the knob)
    read at each completion; the block layer keeps only its total-time
    histogram (IOLT_TOTAL_ONLY)."""
    syscalls = opts.layer == "syscall"
    return common.kernel_options(opts, resolver, probes=probepath.MODES.index(opts.probes),
                                 snoop=not syscalls, snoop_syscall=syscalls, snoop_min_ns=opts.min_latency,
                                 snoop_pages=opts.buffer_pages, snoop_knob=opts.slowest_pct is not None,
                                 total_hist=not syscalls, total_only=not syscalls)


def main(opts: Options) -> int:
    from ..export import snoop as export
    from ..views import snoop as view

    resolver = Resolver()
    tracer = None
    outputs = []
    syscalls = opts.layer == "syscall"
    stream = layers.SNOOP_SYSCALL if syscalls else layers.SNOOP
    try:
        outputs = export.open_outputs(opts.csv, opts.json, (SnoopSyscallRow if syscalls else SnoopRow)._fields,
                                      opts.layer)
        learning = opts.slowest_pct is not None
        tracer = loader.Tracer(kernel_options(opts, resolver), verbose=opts.verbose, layers=(stream.layer,))
        threshold = None
        if learning:
            tracer.set_stream_knob(stream.name, NOTHING_YET)
        text = not common.json_to_stdout(opts)
        out = sys.stdout
        shown = 0
        rows = None

        lines = view.SyscallLines() if syscalls else view.Lines()
        decode = maps.decode_sc_snoop_event if syscalls else maps.decode_snoop_event

        def on_event(raw):
            nonlocal shown
            r = rows.of(decode(raw))
            shown += 1
            if text:
                out.write(lines.line(r))
            for o in outputs:
                o.row(r)

        with session.Stopper() as stopper:
            first = tracer.snapshot()
            rows = (SyscallRows if syscalls else Rows)(resolver, time.monotonic_ns(), time.time())
            tracer.open_stream(stream.name, on_event)
            session.banner(tracer, opts.verbose, end_line=view.ending(opts, syscalls))
            if text:
                out.write((view.syscall_header() if syscalls else view.header()) + "\n")
                out.flush()
            deadline = None if opts.duration is None else time.monotonic() + opts.duration
            learn_at = time.monotonic() + LEARN_EVERY_S
            while not stopper.stopped and (deadline is None or time.monotonic() < deadline):
                if learning and time.monotonic() >= learn_at:
                    learn_at += LEARN_EVERY_S
                    learned = slowest(tracer.snapshot(), opts.slowest_pct)
                    if learned is not None and learned != threshold:
                        threshold = learned
                        tracer.set_stream_knob(stream.name, threshold)
                left_ms = POLL_MS if deadline is None else int((deadline - time.monotonic()) * 1000)
                wait = max(1, min(POLL_MS, left_ms))
                tracer.poll_stream(stream.name, wait)
                if text:
                    out.flush()
                for o in outputs:
                    o.flush()
            tracer.poll_stream(stream.name, 0)     # what came before the stop
            tracer.stopping()
            last = tracer.snapshot()
        counters = dict(tracer.stream_counters(stream.name))
        counters.update(layers.alarms(maps.delta(last, first).counters))
        closing = view.summary(shown, counters, layers.ALARM_COUNTERS, opts.min_latency,
                               slowest=(opts.slowest_pct, threshold) if learning else None,
                               noun="syscalls" if syscalls else "requests", lost=stream.counters[0])
        # The whole run's histogram, not a delta from `first`: the ring buffer
        # kept the events from before it, and the rows include them.
        totals = None if syscalls else total_counts(last)
        if totals is not None:
            closing.insert(1, view.histogram_line(totals))
        (out if text else sys.stderr).write("\n".join(closing) + "\n")
        for o in outputs:
            o.finish(counters, totals)
    finally:
        common.close_all(tracer, *outputs)
    return 0
