"""One declaration per traced layer: the only place that says what a layer is.

A Layer names its C program, every map of it (key and value ctypes from
layout.py, and the counter that says the map was full), its counters and
which of them are alarms, its histogram stages, its record types and the
Snapshot fields that hold it, and how Prometheus exports it. loader.py
(compile, attach, check every map, read), maps.py (decode, delta), group.py,
session.py, the CSV, JSON and Prometheus exporters loop over these
declarations and never name a layer. A new layer is a declaration here,
its C program and its attach function in loader.py (docs/ARCHITECTURE.md).

Must not import bcc; the constants shared with C are checked against
bpf/ioltrace.h by tests/unit/test_layout.py.
"""

import ctypes
from dataclasses import dataclass

from . import layout
from .records import Key, LoopKey, LoopTotals, SysKey, SysTotals, Totals

U32, U64 = ctypes.c_uint32, ctypes.c_uint64


@dataclass(frozen=True)
class Map:
    """One kernel map: its name in the C source, its key and value layout,
    and the counter that counts updates it refused (None: an array, which
    cannot fill; the reason is given where it is declared)."""

    name: str
    key: type
    value: type
    full: str = None


@dataclass(frozen=True)
class ProbeSet:
    """A second probe path of a layer: another C program that fills the
    same maps (stats, hist, errs, counters keep their layout, so nothing
    downstream knows which ran), chosen by loader._PROBES. `maps` are the
    maps whose layout differs from the layer's own (its in-flight slots);
    they replace the layer's maps of the same name in check_layout."""

    name: str     # --probes value
    source: str   # bpf/<source>
    maps: tuple = ()


@dataclass(frozen=True)
class Level:
    """One Prometheus aggregation of a layer: metric prefix, labels, the
    wording of HELP texts; per_process levels only with --per-process."""

    name: str
    prefix: str
    labels: tuple
    what: str
    per_process: bool = False


@dataclass(frozen=True)
class Unit:
    """What a histogram stage counts and how every output shows it. Stages
    are latencies in ns unless their layer names another unit (request
    size, in-flight depth): the same fine buckets of layout.py hold any
    non-negative integer, so maps, grouping, recordings and percentiles
    treat them alike; only the words, the figures' format and the
    Prometheus family differ, and they come from here."""

    name: str          # "ns", "bytes", "requests": a recording's exact sum row is <stage>_sum_<name>
    what: str          # title words in hist and report ("{stage}" is replaced by the stage)
    heading: str       # hist rows' column heading; "" for times (usecs or msecs)
    family: str        # Prometheus family, after the level's prefix
    prom_unit: str     # OpenMetrics UNIT; "" for none
    scale: float       # Prometheus le and _sum are value / scale
    edges: tuple       # exported bucket edges, each a fine-bucket boundary (layout.py)
    whole: bool        # whole counts: edge e is exported as le="e - 1" (at most), exact under
    #                    Prometheus' "less or equal", and a bucket stands for its low bound
    #                    (sizes are whole sectors); times: le = e / scale, a bucket its midpoint
    help: str = ""     # HELP of its family, with {what}; "" : the layer's latency help


# Exported latency edges: powers of two of nanoseconds, 2^10 ns (1.024 us)
# to 2^36 ns (68.7 s), where the kernel's overflow bucket starts: 27 edges.
LATENCY = Unit("ns", "{stage} time", "", "latency_seconds", "seconds", 1e9,
               tuple(1 << e for e in range(10, layout.MAX_LOG2 + 2)), False)
# Sizes: le 0 (empty flushes), then 1023, 2047, 4095 .. 2^32 - 1 bytes: a
# row per power of two as bitesize draws them ([4 KiB, 8 KiB) is le="8191"
# less le="4095"); __data_len is 32 bits, so nothing is above. 24 edges.
SIZE = Unit("bytes", "request size", "bytes", "request_size_bytes", "bytes", 1,
            (1,) + tuple(1 << e for e in range(10, 33)), True,
            "Block I/O request size in bytes at issue, {what}; le is at most, so 4 KiB requests count from "
            "le=\"8191\" on.")
# Depths: le 0, 1, 3, 7 .. 65535 requests in flight before this one: 17 edges.
DEPTH = Unit("requests", "in flight at issue", "in flight", "inflight_depth", "", 1,
             tuple(1 << e for e in range(0, 17)), True,
             "Block I/O requests in flight on the disk when each request was issued, itself not included, "
             "{what}; le is at most.")


@dataclass(frozen=True)
class Layer:
    name: str                 # "block": --layer value, CSV/JSON "layer"
    source: str               # bpf/<source>
    maps: tuple               # every Map of the program, checked at start-up
    stats: str                # the map of totals per key
    hist: str                 # the map of histogram cells
    errs: str                 # the map of (key, errno) counts; None: none
    counters_map: str         # array of counters; None: none
    counters: tuple           # counter names, index = place in counters_map
    alarms: tuple             # counters that mean lost or degraded data
    key: type                 # records NamedTuple of a decoded key
    totals: type              # records NamedTuple of decoded totals
    stages: tuple             # histogram stage number -> name
    op_field: str             # key field shown as "op"; None: none
    op_names: tuple           # op_field value -> name
    op_filter: str            # the option (commands.common.Traced field) naming the ops to keep; None: none
    fields: tuple             # Snapshot fields: totals, hists, errors (None: none)
    stage_sums: dict          # stage name -> totals fields whose sum is its exact ns
    gauges: tuple = ()        # totals fields that a delta keeps rather than subtracts
    folds: bool = True        # exited processes fold (fold.py); needs key.tgid
    levels: tuple = ()        # Prometheus levels; () exports nothing
    helps: tuple = ()         # (count, bytes, errors, latency) HELP texts, with {what}
    stage_label: bool = True  # Prometheus stage="..." label on its histograms
    probe_sets: tuple = ()    # other C programs for the same maps (ProbeSet); the layer's own is `source`
    inflight: str = None      # array of in-flight slots (start_ns, issue_ns) user space sweeps for
    #                           the SWEEP_COUNTERS; None: none
    derived: tuple = ()       # counters user space derives (not in counters_map), shown and recorded alike
    units: dict = None        # stage name -> Unit, for stages that are not times (LATENCY)
    optional: tuple = ()      # stages the kernel records only when built for them (loader.Options)

    @property
    def staged(self):
        """Histogram cells carry a stage (several stages) or not (one)."""
        return len(self.stages) > 1

    @property
    def count_field(self):
        return self.totals._fields[0]

    def op_name(self, key):
        """The op_field of a key as a name; its number when out of range."""
        v = getattr(key, self.op_field)
        return self.op_names[v] if v < len(self.op_names) else str(v)

    def unit(self, stage):
        return (self.units or {}).get(stage, LATENCY)

    def map(self, name):
        return next(m for m in self.maps if m.name == name)

    def probe_set(self, name):
        return next(p for p in self.probe_sets if p.name == name)

    def maps_of(self, source=None):
        """Every map as the C program `source` declares it (None: the
        layer's own): the layer's maps, with those a probe set redeclares
        replaced, then the probe set's own."""
        if source in (None, self.source):
            return self.maps
        changed = {m.name: m for m in next(p for p in self.probe_sets if p.source == source).maps}
        own = {m.name for m in self.maps}
        added = tuple(m for m in changed.values() if m.name not in own)
        return tuple(changed.get(m.name, m) for m in self.maps) + added


BLOCK = Layer(
    name="block", source="block.bpf.c",
    maps=(
        # An array of in-flight slots: it cannot fill; a request that finds
        # its set taken evicts one, counted as "dropped" or "collision".
        Map("inflight", U32, layout.Rq),
        Map("stats", layout.StatKey, layout.Stat, "stats_full"),
        Map("hist", layout.HistKey, U64, "hist_full"),
        # The errno split only refines stats' error count, which stays exact
        # when this map is full.
        Map("errs", layout.ErrKey, U64, "errs_full"),
        Map("counters", U32, U64),
        # Requests in flight per disk (size_depth builds only); a disk that
        # finds it full records depth 0.
        Map("disk_depth", U32, U64, "depth_full"),
    ),
    stats="stats", hist="hist", errs="errs", counters_map="counters",
    # The typed request path: raw tracepoints reading struct request at
    # offsets from the kernel's BTF (probepath.py), in-flight slots keyed by
    # the request pointer (struct iolt_rqp) and the charged cgroup in the key.
    # flushbios (kernels before block_io_start): an LRU hash of the bios of
    # requests the flush machinery takes, by bio pointer; it evicts, never
    # refuses, and a request it lost completes as "unmatched".
    probe_sets=(ProbeSet("raw", "request.bpf.c", maps=(Map("inflight", U32, layout.Rqp),
                                                       Map("flushbios", U64, layout.Rqp))),),
    inflight="inflight",
    counters=layout.COUNTERS, alarms=layout.ALARM_COUNTERS,
    derived=layout.MISSED_COUNTERS + layout.SWEEP_COUNTERS,
    key=Key, totals=Totals, stages=layout.STAGES, op_field="op", op_names=layout.OPS, op_filter="op",
    fields=("totals", "hists", "errors"),
    stage_sums={"queue": ("queue_ns",), "device": ("device_ns",), "total": ("queue_ns", "device_ns"),
                "size": ("size_sum",), "depth": ("depth_sum",)},
    # Request size and in-flight depth: the same maps, two more stages, each
    # its own Prometheus family; recorded only with --size-depth.
    units={"size": SIZE, "depth": DEPTH},
    optional=layout.SIZE_DEPTH_STAGES,
    levels=(
        # "device", as node_exporter's node_disk_* families, so the two join on it;
        # "workload": the unit, container or pod the cgroup path names (cgnames),
        # left out of a series when it names none.
        Level("disk", "ioltrace_block", ("device", "op"), "per disk and op"),
        Level("cgroup", "ioltrace_cgroup_block", ("cgroup", "workload", "device", "op"),
              "per cgroup v2, disk and op"),
        Level("process", "ioltrace_process_block", ("pid", "comm", "device", "op"),
              "per process (pid and comm), disk and op", per_process=True),
    ),
    helps=(
        "Completed block I/O requests, failed ones included, {what}.",
        "Bytes of successfully completed block I/O requests, {what}.",
        "Block I/O requests completed with an error, {what}, by errno.",
        "Block I/O latency {what}; stage queue is start to dispatch, device is dispatch to completion, "
        "total is start to completion.",
    ),
)

SYSCALL = Layer(
    name="syscall", source="syscall.bpf.c",
    maps=(
        Map("sc_start", U32, layout.ScStart, "syscall_dropped"),
        Map("sc_stats", layout.ScKey, layout.ScStat, "syscall_stats_full"),
        Map("sc_hist", layout.ScHistKey, U64, "syscall_hist_full"),
        Map("sc_errs", layout.ScErrKey, U64, "syscall_errs_full"),   # as block's errs
        Map("sc_counters", U32, U64),
    ),
    stats="sc_stats", hist="sc_hist", errs="sc_errs", counters_map="sc_counters",
    counters=layout.SC_COUNTERS, alarms=layout.SC_COUNTERS,
    key=SysKey, totals=SysTotals, stages=("latency",), op_field="sc", op_names=layout.SYSCALLS,
    op_filter="syscalls",
    fields=("sys_totals", "sys_hists", "sys_errors"),
    stage_sums={"latency": ("sum_ns",)},
    levels=(
        Level("cgroup_syscall", "ioltrace_cgroup_syscall", ("cgroup", "workload", "syscall"),
              "per cgroup v2 and syscall"),
        Level("process_syscall", "ioltrace_process_syscall", ("pid", "comm", "syscall"),
              "per process (pid and comm) and syscall", per_process=True),
    ),
    helps=(
        "Completed calls of the traced I/O syscalls, failed ones included, {what}.",
        "Bytes returned by successful read and write family syscalls, {what}.",
        "I/O syscalls that returned an error, {what}, by errno.",
        "I/O syscall latency {what}, from sys_enter to sys_exit.",
    ),
    stage_label=False,
)

LOOP = Layer(
    name="loop", source="loop.bpf.c",
    maps=(
        Map("loop_state", U32, layout.LoopState, "loop_dropped"),
        Map("loop_stats", layout.LoopKey, layout.LoopStat, "loop_stats_full"),
        Map("loop_hist", layout.LoopHistKey, U64, "loop_hist_full"),
        Map("loop_counters", U32, U64),
    ),
    stats="loop_stats", hist="loop_hist", errs=None, counters_map="loop_counters",
    counters=layout.LOOP_COUNTERS, alarms=layout.LOOP_COUNTERS,
    key=LoopKey, totals=LoopTotals, stages=("latency",), op_field="step", op_names=(), op_filter=None,
    fields=("loop_totals", "loop_hists", None),
    stage_sums={"latency": ("sum_ns",)}, gauges=("min_ns", "max_ns"),
    # `loop` runs for a while and shows chains per process; nothing to fold.
    folds=False,
)

@dataclass(frozen=True)
class Stream:
    """Per-event records a layer's programs send through a ring buffer
    beside its maps, compiled in only when asked (-D`define`, which
    includes bpf/`header`): the buffer, one event's ctype, and the counters
    of events the buffer could not take (its alarms). loader.Tracer opens,
    polls and counts a stream by this declaration alone."""

    name: str          # "snoop": the command that reads it
    layer: str         # the Layer whose programs emit it
    header: str        # bpf/<header>
    define: str        # -D that compiles the header in
    buffer: str        # the ring buffer map
    event: type        # layout ctype of one event
    counters_map: str  # array of counters
    counters: tuple    # counter names, index = place in counters_map
    alarms: tuple      # counters that mean lost events
    knob: str = None   # array of one u64 user space sets while tracing (-D`knob_define`); None: none
    knob_define: str = None


# Completed block requests at or above a latency threshold, one by one (`snoop`).
SNOOP = Stream(name="snoop", layer="block", header="snoop.h", define="IOLT_SNOOP", buffer="snoop_events",
               event=layout.SnoopEvent, counters_map="snoop_counters", counters=layout.SNOOP_COUNTERS,
               alarms=layout.SNOOP_COUNTERS,
               # --slowest-pct: the threshold, learned while tracing (bpf/snoop.h)
               knob="snoop_threshold", knob_define="IOLT_SNOOP_DYNAMIC")

# Traced syscalls at or above a latency threshold, one by one (`snoop --layer syscall`).
SNOOP_SYSCALL = Stream(name="snoop_syscall", layer="syscall", header="sc_snoop.h", define="IOLT_SNOOP_SYSCALL",
                       buffer="sc_snoop_events", event=layout.ScSnoopEvent, counters_map="sc_snoop_counters",
                       counters=layout.SC_SNOOP_COUNTERS, alarms=layout.SC_SNOOP_COUNTERS)

ALL = (BLOCK, SYSCALL, LOOP)
STREAMS = (SNOOP, SNOOP_SYSCALL)
BY_NAME = {layer.name: layer for layer in ALL}
# The layers whose keys are (cgroup, process, thread[, disk]) and that hist,
# top, run and serve group, record and export.
GROUPED = (BLOCK, SYSCALL)
ALARM_COUNTERS = tuple(n for layer in ALL for n in layer.alarms) + tuple(n for s in STREAMS for n in s.alarms)
# counter name -> the name of the layer that counts it (its counters_map, derived, or a stream's)
COUNTER_LAYER = {**{n: layer.name for layer in ALL for n in layer.counters + layer.derived},
                 **{n: s.layer for s in STREAMS for n in s.counters}}


_UNITS = {stage: unit for layer in ALL for stage, unit in (layer.units or {}).items()}


def unit_of(stage):
    """The Unit of a stage name of any layer (recordings name stages, not layers)."""
    return _UNITS.get(stage, LATENCY)


def sum_name(stage):
    """The name of a stage's exact-sum row in recordings: queue_sum_ns, size_sum_bytes."""
    return f"{stage}_sum_{unit_of(stage).name}"


def named(names):
    """The declarations of these layer names, in declaration order."""
    return tuple(layer for layer in ALL if layer.name in names)


def alarms(counters):
    """The counters that mean lost or degraded data, only the non-zero ones."""
    return {k: v for k, v in counters.items() if k in ALARM_COUNTERS and v}
