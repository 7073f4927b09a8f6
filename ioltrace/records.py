"""Typed records, all in one place; each says what produces it.

Records are plain NamedTuples so that views and exporters can read fields by
name and CSV headers can come from the fields.
"""

from typing import NamedTuple


class Key(NamedTuple):
    """One kernel stats key (maps.decode_*): who did I/O to which disk."""

    cgid: int
    tgid: int
    tid: int
    dev: int
    op: int
    blkcg: int = 0  # v1 blkio cgroup the kernel charged (typed path only); 0: unknown


class Totals(NamedTuple):
    """Counters of one Key (maps.decode_stats), cumulative or a delta."""

    ios: int
    bytes: int
    errors: int
    queue_ns: int
    device_ns: int
    comm: str
    size_sum: int = 0     # sum of request bytes at issue (kernel built with size_depth)
    depth_sum: int = 0    # sum of in-flight depths at issue (likewise)


class SysKey(NamedTuple):
    """One syscall-layer key (maps.with_syscalls): who called which syscall."""

    cgid: int
    tgid: int
    tid: int
    sc: int


class SysTotals(NamedTuple):
    """Counters of one SysKey (maps.with_syscalls), cumulative or a delta."""

    calls: int
    bytes: int
    errors: int
    sum_ns: int
    comm: str


class LoopKey(NamedTuple):
    """One loop-layer key (maps.decode_layer): a process and a step of its
    chain (layout.LOOP_WHOLE_STEP: the whole chain)."""

    tgid: int
    step: int


class LoopTotals(NamedTuple):
    """Counters of one LoopKey, cumulative or a delta (min_ns and max_ns are
    since the start: layers.LOOP.gauges)."""

    count: int
    sum_ns: int
    min_ns: int
    max_ns: int
    comm: str


class Snapshot(NamedTuple):
    """Everything read from the kernel maps at one moment (maps.snapshot).

    Each layer of layers.py owns three fields (its Layer.fields): totals by
    key, hists by (key, stage) (by key alone for a layer with one stage),
    errors by (key, errno). Block: totals, hists, errors keyed by Key;
    syscall: sys_* keyed by SysKey; loop: loop_* keyed by LoopKey. counters
    maps every traced layer's counter names -> count. A layer that is not
    traced has empty fields. Every totals record has its count of
    completions first and a field "comm"; every other field is a count
    (maps.delta subtracts them by name).
    """

    time_ns: int
    totals: dict
    hists: dict
    errors: dict
    counters: dict
    sys_totals: dict = {}
    sys_hists: dict = {}
    sys_errors: dict = {}
    loop_totals: dict = {}
    loop_hists: dict = {}


class GroupId(NamedTuple):
    """What a row of output is about (group.by_key): key kind, key, and the
    disk and op it covers ("*" when merged)."""

    kind: str
    key: str
    name: str
    disk: str
    op: str


class Group(NamedTuple):
    """Aggregated data of one GroupId over an interval (group.by_key)."""

    id: GroupId
    ios: int
    bytes: int
    errors: int
    queue_ns: int
    device_ns: int
    hists: dict      # stage name -> numpy bucket counts
    errnos: dict     # errno (positive int) -> count
    sums: dict = None  # stage name -> exact sum of ns, for stages other than queue/device


class CsvRow(NamedTuple):
    """One line of a recording (export.csv); the header is these field names."""

    interval_start: str
    interval_end: str
    key_kind: str
    key: str
    name: str
    disk: str
    op: str
    layer: str
    stage: str
    bucket_low_ns: str
    bucket_high_ns: str
    count: int


class Check(NamedTuple):
    """One requirement checked by doctor.run_checks."""

    name: str
    ok: bool      # None: not checked (needs privileges that are missing)
    detail: str
    fix: str


class TopRow(NamedTuple):
    """One line of `ioltrace top` (views.top.rows): a key over an interval,
    all disks and ops merged; rates per second, latencies in ns (nan: none)."""

    key: str
    name: str
    read_bps: float
    write_bps: float
    iops: float
    q_p50: float
    q_p99: float
    d_p50: float
    d_p99: float
    errors: int
    share: float      # of all bytes in the interval, 0..1
    controls: str     # cgroup I/O controls (--by cgroup), else ""
    calls: float = 0.0                # syscalls per second (syscall layer)
    s_p50: float = float("nan")       # syscall latency percentiles (ns)
    s_p99: float = float("nan")
    sys_errors: int = 0               # syscalls that returned an error (`errors`: block requests)
    workload: str = ""                # unit, container or pod a cgroup path names (cgnames)
    second: str = ""                  # disk or op of a two-key --by (cgroup,disk), else ""


class SnoopEvent(NamedTuple):
    """One request of the snoop stream as the kernel sent it
    (maps.decode_snoop_event): numbers, with comm and rwbs as text."""

    ts_ns: int       # completion, CLOCK_MONOTONIC
    sector: int
    queue_ns: int
    device_ns: int
    cgid: int
    comm: str
    tgid: int
    tid: int
    dev: int
    bytes: int
    err: int         # negative errno; 0: success
    rwbs: str


class SnoopRow(NamedTuple):
    """One request as `snoop` shows and exports it (commands.snoop, from a
    SnoopEvent with names resolved); the CSV header is these field names."""

    time: str        # completion, ISO 8601 UTC with microseconds
    seconds: float   # completion, seconds since tracing started
    comm: str
    pid: int
    tid: int
    cgroup: str      # cgroup v2 path, or cgroup:ID
    disk: str
    rwbs: str        # as blk_fill_rwbs: R, W, F, D, N, then F (FUA), A, S, M
    op: str          # read, write, flush, discard, other (layout.OPS)
    sector: int
    bytes: int
    queue_ns: int
    device_ns: int
    total_ns: int
    error: str       # errno name (EIO), or "" for success


class ScSnoopEvent(NamedTuple):
    """One syscall of the syscall snoop stream (maps.decode_sc_snoop_event)."""

    ts_ns: int       # exit, CLOCK_MONOTONIC
    lat_ns: int
    cgid: int
    ret: int         # bytes, or a negative errno
    comm: str
    tgid: int
    tid: int
    sc: int          # index in layout.SYSCALLS


class SnoopSyscallRow(NamedTuple):
    """One syscall as `snoop --layer syscall` shows and exports it
    (commands.snoop); the CSV header is these field names."""

    time: str        # exit, ISO 8601 UTC with microseconds
    seconds: float   # exit, seconds since tracing started
    comm: str
    pid: int
    tid: int
    cgroup: str
    syscall: str     # layout.SYSCALLS name
    ret: int         # the return value
    bytes: int       # ret of a successful read or write family call, else 0
    latency_ns: int  # enter to exit
    error: str       # errno name of a negative return, or ""
