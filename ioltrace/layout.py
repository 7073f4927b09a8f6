"""The one Python mirror of bpf/ioltrace.h: constants, struct layouts, buckets.

tests/unit/test_layout.py compiles the header with the host C compiler and
checks every constant, struct size and bucket boundary here against it. This
module must not import bcc: the ctypes structs below are what maps.py decodes
raw map bytes with.
"""

import ctypes

import numpy as np

SUB_BITS = 5
SUB_COUNT = 1 << SUB_BITS
MAX_LOG2 = 35
OVERFLOW_BUCKET = (MAX_LOG2 - SUB_BITS + 2) * SUB_COUNT
NBUCKETS = OVERFLOW_BUCKET + 1

OPS = ("read", "write", "flush", "discard", "other")
STAGES = ("queue", "device", "total", "size", "depth")
STAGE_QUEUE, STAGE_DEVICE, STAGE_TOTAL, STAGE_SIZE, STAGE_DEPTH = 0, 1, 2, 3, 4
LATENCY_STAGES = STAGES[:3]
# Recorded only when the kernel side is built for them (Options.size_depth).
SIZE_DEPTH_STAGES = STAGES[3:]

# Block requests excluded by each filter, counted at their start event, in
# the order of IOLT_FILTERED_*: a request counts under the first filter that
# excluded it (cgroup, pid, children, comm; disk only for tasks the others pass).
FILTERED_COUNTERS = ("filtered_cgroup", "filtered_pid", "filtered_children", "filtered_comm", "filtered_disk")
COUNTERS = (
    "unmatched",       # completion with no start and no issue seen
    "issue_no_start",  # issued without a start event: queue time 0
    "dropped",         # an issued request's slot was taken by another: it is not counted
    "collision",       # start for a (dev, sector) already in flight: the older is not counted
    "negative",        # clock went backwards between two events
    "stats_full",      # stats map full: I/O counted under "other"
    "hist_full",       # histogram map full: sample not recorded
) + FILTERED_COUNTERS + (
    "errs_full",       # errno map full: the error counts in stats, its errno is not recorded
    "depth_full",      # per-disk depth map full: that disk's requests recorded at depth 0
)
# Read by user space from the kernel's per-program recursion_misses: times
# the kernel skipped one of our programs because another BPF program was
# running on that CPU. A missed completion is a lost request (and leaves its
# in-flight entry behind, which a later request to that sector replaces: a
# collision); a missed start or issue only loses that stage's time.
MISSED_COUNTERS = ("missed_start", "missed_issue", "missed_complete")
# The completions a device reported that ioltrace did not count: with
# --disk (no other disk's completions in `unmatched`), for the traced time,
#   ios counted = device's completed requests - unmatched - missed_complete.
# dropped and collision are not subtracted again: they say why a later
# completion found no request, and that completion counts in `unmatched`.
UNCOUNTED_COUNTERS = ("unmatched", "missed_complete")
# Found by user space in the in-flight slots (loader.Tracer.snapshot), on
# either probe path: "lost" counts requests still in flight LOST_AFTER_S
# after their last event (a completion the kernel never reported), each once;
# "in_flight_at_stop" counts those the final snapshot found in flight: the
# disk completes them after tracing ended and counts them, ioltrace cannot.
SWEEP_COUNTERS = ("lost", "in_flight_at_stop")
LOST_AFTER_S = 30    # the SCSI layer's default request timeout; range 1..3600
# Counters that mean lost or degraded data; issue_no_start is normal on
# kernels that issue directly without inserting into a scheduler queue.
ALARM_COUNTERS = (("unmatched", "dropped", "collision", "negative", "stats_full", "hist_full", "errs_full",
                   "depth_full")
                  + MISSED_COUNTERS + SWEEP_COUNTERS)

OTHER_TGID = 0xFFFFFFFF
# User space only (fold.py): the key that holds, per cgroup, disk and op, the
# counts of processes that exited and were folded. pid_max is at most 2^22,
# so no process has this tgid.
EXITED_TGID = 0xFFFFFFFE
EXITED_COMM = "[exited]"
# Seconds an exited process keeps its own keys before fold.py folds them
# (range 0 .. 86400; None: never). Long enough for a 1-10 s refresh to show
# who just finished.
DEFAULT_KEEP_EXITED_S = 10.0

DEFAULT_INFLIGHT_BITS = 16  # 65536 in-flight slots
INFLIGHT_WAYS = 4           # slots a request may take in its set
DEFAULT_STATS_ENTRIES = 16384
DEFAULT_HIST_ENTRIES = 262144
DEFAULT_ERRS_ENTRIES = 4096
DEPTH_DISKS = 4096          # disks with an in-flight counter (bpf: IOLT_DEPTH_DISKS)


class Rq(ctypes.Structure):
    """One in-flight slot (struct iolt_rq)."""

    _fields_ = [
        ("sector", ctypes.c_uint64),
        ("dev", ctypes.c_uint32),
        ("tgid", ctypes.c_uint32),
        ("start_ns", ctypes.c_uint64),
        ("issue_ns", ctypes.c_uint64),
        ("cgid", ctypes.c_uint64),
        ("comm", ctypes.c_char * 16),
        ("tid", ctypes.c_uint32),
        ("depth", ctypes.c_uint32),
    ]


class Rqp(ctypes.Structure):
    """One in-flight slot of the typed request path (struct iolt_rqp)."""

    _fields_ = [
        ("rq", ctypes.c_uint64),
        ("start_ns", ctypes.c_uint64),
        ("issue_ns", ctypes.c_uint64),
        ("cgid", ctypes.c_uint64),
        ("blkcg", ctypes.c_uint64),
        ("comm", ctypes.c_char * 16),
        ("tgid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("dev", ctypes.c_uint32),
        ("op", ctypes.c_uint32),
        ("left", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("depth", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class StatKey(ctypes.Structure):
    _fields_ = [
        ("cgid", ctypes.c_uint64),
        ("tgid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("dev", ctypes.c_uint32),
        ("op", ctypes.c_uint32),
        ("blkcg", ctypes.c_uint64),  # charged v1 blkio cgroup id (typed path); 0: none
    ]


class Stat(ctypes.Structure):
    _fields_ = [
        ("ios", ctypes.c_uint64),
        ("bytes", ctypes.c_uint64),
        ("errors", ctypes.c_uint64),
        ("queue_ns", ctypes.c_uint64),
        ("device_ns", ctypes.c_uint64),
        ("comm", ctypes.c_char * 16),
        ("size_sum", ctypes.c_uint64),
        ("depth_sum", ctypes.c_uint64),
    ]


class HistKey(ctypes.Structure):
    _fields_ = [("k", StatKey), ("stage", ctypes.c_uint32), ("bucket", ctypes.c_uint32)]


class ErrKey(ctypes.Structure):
    _fields_ = [("k", StatKey), ("err", ctypes.c_int32), ("_pad", ctypes.c_uint32)]


def bucket_of(ns):
    """Bucket index of one value, exactly as iolt_bucket() in ioltrace.h."""
    ns = int(ns)
    if ns < SUB_COUNT:
        return ns
    e = ns.bit_length() - 1
    if e > MAX_LOG2:
        return OVERFLOW_BUCKET
    return (e - SUB_BITS + 1) * SUB_COUNT + (ns >> (e - SUB_BITS)) - SUB_COUNT


def _bounds():
    low = np.zeros(NBUCKETS, dtype=np.float64)
    high = np.zeros(NBUCKETS, dtype=np.float64)
    for b in range(NBUCKETS):
        if b < SUB_COUNT:
            low[b], high[b] = b, b + 1
        elif b == OVERFLOW_BUCKET:
            low[b], high[b] = float(1 << (MAX_LOG2 + 1)), np.inf
        else:
            e = b // SUB_COUNT + SUB_BITS - 1
            sub = b % SUB_COUNT + SUB_COUNT
            width = 1 << (e - SUB_BITS)
            low[b], high[b] = sub * width, (sub + 1) * width
    return low, high


# BUCKET_LOW[b] <= ns < BUCKET_HIGH[b] for every ns in bucket b (integers).
BUCKET_LOW, BUCKET_HIGH = _bounds()
# The value a bucket stands for: its midpoint, within 1/64 of any member.
# A single-integer bucket stands for its integer; the overflow bucket for its
# lower bound, the only finite thing known about it.
BUCKET_MID = np.where(
    BUCKET_HIGH - BUCKET_LOW <= 1,
    BUCKET_LOW,
    np.where(np.isinf(BUCKET_HIGH), BUCKET_LOW, (BUCKET_LOW + BUCKET_HIGH - 1) / 2.0),
)


def buckets_of(values):
    """Vectorised bucket_of for a numpy array of non-negative integers."""
    v = np.asarray(values, dtype=np.uint64)
    out = np.empty(v.shape, dtype=np.int64)
    small = v < SUB_COUNT
    out[small] = v[small].astype(np.int64)
    big = ~small
    if big.any():
        vb = v[big]
        # bit_length - 1, exact for uint64 (float log2 rounds near powers of 2).
        e = np.zeros(vb.shape, dtype=np.int64)
        x = vb.copy()
        for shift in (32, 16, 8, 4, 2, 1):
            m = x >= (np.uint64(1) << np.uint64(shift))
            e[m] += shift
            x[m] >>= np.uint64(shift)
        idx = (e - SUB_BITS + 1) * SUB_COUNT + (vb >> (e - SUB_BITS).astype(np.uint64)).astype(np.int64) - SUB_COUNT
        idx[e > MAX_LOG2] = OVERFLOW_BUCKET
        out[big] = idx
    return out


# ---- syscall layer (bpf/syscall.bpf.c) ----

# Index = the syscall's number in the kernel program (sc_index in syscall.bpf.c).
# The first SC_BYTES_FAMILY return a byte count; even ones of those read.
SYSCALLS = (
    "read", "write", "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2",
    "fsync", "fdatasync", "sync_file_range", "io_submit", "io_getevents", "io_pgetevents", "io_uring_enter",
    "openat", "close",
)
SC_BYTES_FAMILY = 10
OPT_IN_SYSCALLS = ("openat", "close")
DEFAULT_SYSCALLS = tuple(s for s in SYSCALLS if s not in OPT_IN_SYSCALLS)
READ_SYSCALLS = frozenset(SYSCALLS[0:SC_BYTES_FAMILY:2])
WRITE_SYSCALLS = frozenset(SYSCALLS[1:SC_BYTES_FAMILY:2])
DEFAULT_SC_THREADS = 65536
SC_COUNTERS = ("syscall_dropped", "syscall_stats_full", "syscall_hist_full", "syscall_errs_full")


class ScStart(ctypes.Structure):
    _fields_ = [("ts", ctypes.c_uint64), ("sc", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class ScKey(ctypes.Structure):
    _fields_ = [("cgid", ctypes.c_uint64), ("tgid", ctypes.c_uint32), ("tid", ctypes.c_uint32),
                ("sc", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class ScStat(ctypes.Structure):
    _fields_ = [("calls", ctypes.c_uint64), ("bytes", ctypes.c_uint64), ("errors", ctypes.c_uint64),
                ("sum_ns", ctypes.c_uint64), ("comm", ctypes.c_char * 16)]


class ScHistKey(ctypes.Structure):
    _fields_ = [("k", ScKey), ("bucket", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class ScErrKey(ctypes.Structure):
    _fields_ = [("k", ScKey), ("err", ctypes.c_int32), ("_pad", ctypes.c_uint32)]


class SysExit(ctypes.Structure):
    _fields_ = [("_common", ctypes.c_uint64), ("id", ctypes.c_int64), ("ret", ctypes.c_int64)]


# ---- event-loop latency (bpf/loop.bpf.c) ----

LOOP_MAX_EVENTS = 8
LOOP_WHOLE_STEP = LOOP_MAX_EVENTS  # the step number of "first event -> last event"
LOOP_RECORD, LOOP_WHOLE, LOOP_STORE, LOOP_DELETE = 1, 2, 4, 8  # iolt_loop_event() actions
LOOP_COUNTERS = ("loop_dropped", "loop_stats_full", "loop_hist_full")


class LoopState(ctypes.Structure):
    _fields_ = [("first_ns", ctypes.c_uint64), ("prev_ns", ctypes.c_uint64), ("expect", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32)]


class LoopKey(ctypes.Structure):
    _fields_ = [("tgid", ctypes.c_uint32), ("step", ctypes.c_uint32)]


class LoopStat(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint64), ("sum_ns", ctypes.c_uint64), ("min_ns", ctypes.c_uint64),
                ("max_ns", ctypes.c_uint64), ("comm", ctypes.c_char * 16)]


class LoopHistKey(ctypes.Structure):
    _fields_ = [("k", LoopKey), ("bucket", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


# ---- per-request events of `snoop` (bpf/snoop.h) ----

SNOOP_COUNTERS = ("snoop_lost",)
RWBS_LEN = 12
# Ring buffer pages: a power of two (the kernel's rule), 1..65536 (4 KiB .. 256 MiB);
# 256 pages (1 MiB) hold ~10,900 events (96 bytes each with the header) between two reads.
DEFAULT_SNOOP_PAGES = 256
MAX_SNOOP_PAGES = 65536


SC_SNOOP_COUNTERS = ("syscall_snoop_lost",)


class ScSnoopEvent(ctypes.Structure):
    """One syscall at or over the threshold (struct iolt_sc_snoop_event)."""

    _fields_ = [("ts_ns", ctypes.c_uint64), ("lat_ns", ctypes.c_uint64), ("cgid", ctypes.c_uint64),
                ("ret", ctypes.c_int64), ("comm", ctypes.c_char * 16), ("tgid", ctypes.c_uint32),
                ("tid", ctypes.c_uint32), ("sc", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class SnoopEvent(ctypes.Structure):
    """One request at or over the threshold (struct iolt_snoop_event)."""

    _fields_ = [("ts_ns", ctypes.c_uint64), ("sector", ctypes.c_uint64), ("queue_ns", ctypes.c_uint64),
                ("device_ns", ctypes.c_uint64), ("cgid", ctypes.c_uint64), ("comm", ctypes.c_char * 16),
                ("tgid", ctypes.c_uint32), ("tid", ctypes.c_uint32), ("dev", ctypes.c_uint32),
                ("bytes", ctypes.c_uint32), ("err", ctypes.c_int32), ("rwbs", ctypes.c_char * RWBS_LEN)]
