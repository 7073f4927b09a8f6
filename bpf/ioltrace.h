/* ioltrace.h: the structs and constants the kernel side writes and the Python
 * side reads. This is the single definition of the map layouts and of the
 * histogram bucket layout; ioltrace/layout.py mirrors it and
 * tests/unit/test_layout.py compiles this header with the host C compiler to
 * check that both agree. It must stay free of kernel includes so that the
 * host compiler can build it: the few fixed-width types come from the
 * includer (bcc's helpers.h in the kernel build, <stdint.h> in the test). */
#ifndef IOLTRACE_H
#define IOLTRACE_H

/* Histogram buckets: log-linear in nanoseconds, 2^IOLT_SUB_BITS buckets per
 * power of two. A value v < 2^IOLT_SUB_BITS has its own bucket; above that a
 * bucket spans 1/32 of its power of two, so the bucket midpoint is within
 * 1/64 (1.6%) of any value in it. IOLT_MAX_LOG2 = 35 covers values below
 * 2^36 ns (68.7 s); larger values go to the overflow bucket. */
#define IOLT_SUB_BITS 5                     /* 5 -> 32 sub-buckets; range 4..8 */
#define IOLT_SUB_COUNT (1 << IOLT_SUB_BITS)
#define IOLT_MAX_LOG2 35                    /* 2^36 ns = 68.7 s; range 30..62 */
#define IOLT_OVERFLOW_BUCKET ((IOLT_MAX_LOG2 - IOLT_SUB_BITS + 2) * IOLT_SUB_COUNT)
#define IOLT_NBUCKETS (IOLT_OVERFLOW_BUCKET + 1)  /* 1025 with the values above */

/* Operations, decoded from the tracepoints' rwbs string. */
#define IOLT_OP_READ 0
#define IOLT_OP_WRITE 1
#define IOLT_OP_FLUSH 2
#define IOLT_OP_DISCARD 3
#define IOLT_OP_OTHER 4
#define IOLT_NOPS 5

/* Stages of a block request. */
#define IOLT_STAGE_QUEUE 0   /* start (io_start or rq_insert) -> rq_issue */
#define IOLT_STAGE_DEVICE 1  /* rq_issue -> rq_complete */
#define IOLT_STAGE_TOTAL 2   /* start -> rq_complete; recorded only with IOLT_TOTAL_HIST */
/* Not times: the same buckets hold a count of bytes or of requests. Both
 * recorded only with IOLT_SIZE_DEPTH, at the completion, as the others. */
#define IOLT_STAGE_SIZE 3    /* request bytes at issue (0 for an empty flush) */
#define IOLT_STAGE_DEPTH 4   /* requests in flight on the disk when it was issued, itself not included */

/* Diagnostic counters, indexes into the "counters" array. */
#define IOLT_CNT_UNMATCHED 0      /* completion with no start and no issue seen */
#define IOLT_CNT_ISSUE_NO_START 1 /* issued without a start event: queue time 0 */
#define IOLT_CNT_DROPPED 2        /* an issued request's slot was taken by another: it is not counted */
#define IOLT_CNT_COLLISION 3      /* start for a (dev, sector) already in flight: the older is not counted */
#define IOLT_CNT_NEGATIVE 4       /* clock went backwards between two events */
#define IOLT_CNT_STATS_FULL 5     /* stats map full: I/O counted under "other" */
#define IOLT_CNT_HIST_FULL 6      /* histogram map full: sample not recorded */
/* Requests a filter excluded, counted at their start event under the first
 * filter that excluded them: index IOLT_CNT_FILTERED_CGROUP - 1 + IOLT_FILTERED_*.
 * Disk-excluded requests are counted only when the task filters passed them. */
#define IOLT_CNT_FILTERED_CGROUP 7
#define IOLT_CNT_FILTERED_PID 8
#define IOLT_CNT_FILTERED_CHILDREN 9
#define IOLT_CNT_FILTERED_COMM 10
#define IOLT_CNT_FILTERED_DISK 11
#define IOLT_CNT_ERRS_FULL 12     /* errno map full: the error counts in stats, its errno is not recorded */
#define IOLT_CNT_DEPTH_FULL 13    /* per-disk depth map full: that disk's requests recorded at depth 0 */
#define IOLT_NCOUNTERS 14

/* Why a request is not traced (iolt_task_filter, block.bpf.c attribute());
 * 0: traced. Filters are tried in this order. */
#define IOLT_FILTERED_CGROUP 1
#define IOLT_FILTERED_PID 2       /* not the --pid process, nor a descendant of it */
#define IOLT_FILTERED_CHILDREN 3  /* a descendant of the --pid process, without --children */
#define IOLT_FILTERED_COMM 4
#define IOLT_FILTERED_DISK 5

/* Map sizes; user space may override them with -D (validated integers). */
#ifndef IOLT_INFLIGHT_BITS
#define IOLT_INFLIGHT_BITS 16        /* 65536 slots of 64 bytes (4 MiB); range 0..20 */
#endif
#define IOLT_INFLIGHT_SLOTS (1 << IOLT_INFLIGHT_BITS)
#define IOLT_INFLIGHT_WAYS 4         /* slots per set a request may take; power of two <= slots */
#ifndef IOLT_STATS_ENTRIES
#define IOLT_STATS_ENTRIES 16384     /* (pid, cgroup, disk, op) keys; range 8..1M */
#endif
#ifndef IOLT_HIST_ENTRIES
#define IOLT_HIST_ENTRIES 262144     /* (stats key, stage, bucket) cells; range 8..4M */
#endif
#ifndef IOLT_ERRS_ENTRIES
#define IOLT_ERRS_ENTRIES 4096       /* (stats key, errno) pairs, block and syscall layers; range 1..1M */
#endif
#define IOLT_DEPTH_DISKS 4096        /* disks with an in-flight counter (IOLT_SIZE_DEPTH); range 1..1M */

/* tgid of the catch-all key that takes I/O once the stats map is full. */
#define IOLT_OTHER_TGID 0xffffffffU

/* In-flight requests live in a fixed array of slots, in sets of
 * IOLT_INFLIGHT_WAYS chosen by a hash of (dev, sector): the classic
 * tracepoints give no request pointer. A slot holds its own key; a request
 * takes a free slot of its set, and only when all are taken replaces one
 * (counted as dropped, or as collision for the same sector). No insert or
 * delete per I/O: that took a third off the programs' cost against a hash
 * map (benchmarks/RESULTS.md). One cache line per slot. */
struct iolt_rq {
	__u64 sector;
	__u32 dev;
	__u32 tgid;
	__u64 start_ns;  /* 0: no start event seen */
	__u64 issue_ns;  /* 0: not issued yet; both 0: slot free */
	__u64 cgid;
	char comm[16];
	__u32 tid;
	__u32 depth;     /* in flight on the disk at issue (IOLT_SIZE_DEPTH) */
};

/* In-flight request of the typed path (request.bpf.c), keyed by the struct
 * request pointer, in sets hashed by iolt_slot(0, rq). */
struct iolt_rqp {
	__u64 rq;        /* struct request *; the slot is free when both times are 0 */
	__u64 start_ns;
	__u64 issue_ns;
	__u64 cgid;      /* submitter's v2 cgroup, or the charged v2 cgroup */
	__u64 blkcg;     /* charged v1 blkio cgroup (iolt_stat_key.blkcg) */
	char comm[16];
	__u32 tgid;
	__u32 tid;
	__u32 dev;
	__u32 op;        /* IOLT_OP_* from cmd_flags at the start */
	__u32 left;      /* bytes not yet completed, from __data_len at issue */
	__u32 size;      /* request bytes at issue (__data_len); 0: issue not seen */
	__u32 depth;     /* in flight on the disk at issue (IOLT_SIZE_DEPTH) */
	__u32 _pad;
};

struct iolt_stat_key {
	__u64 cgid;
	__u32 tgid;
	__u32 tid;   /* 0 unless built with IOLT_BY_THREAD */
	__u32 dev;
	__u32 op;
	__u64 blkcg; /* v1 blkio cgroup the request was charged to (its kernfs id =
		      * inode under the blkio mount); 0: unknown, or charged in v2.
		      * Filled by the typed request path only (request.bpf.c). */
};

struct iolt_stat {
	__u64 ios;        /* completed requests, failed ones included */
	__u64 bytes;      /* bytes of successful completions */
	__u64 errors;     /* completions with error != 0 */
	__u64 queue_ns;   /* sum of queue times */
	__u64 device_ns;  /* sum of device times */
	char comm[16];    /* of the thread that submitted the first request */
	__u64 size_sum;   /* sum of request bytes at issue (IOLT_SIZE_DEPTH) */
	__u64 depth_sum;  /* sum of depths at issue (IOLT_SIZE_DEPTH) */
};

struct iolt_hist_key {
	struct iolt_stat_key k;
	__u32 stage;
	__u32 bucket;
};

struct iolt_err_key {
	struct iolt_stat_key k;
	__s32 err;   /* negative errno from block_rq_complete */
	__u32 _pad;
};

/* ---- per-request events of `snoop` (snoop.h) ---- */

/* Counters of the snoop stream, indexes into "snoop_counters". */
#define IOLT_SNOOP_CNT_LOST 0     /* a request at or over the threshold the ring buffer could not take */
#define IOLT_SNOOP_NCOUNTERS 1
#define IOLT_RWBS_LEN 12          /* >= RWBS_LEN of the block tracepoints: 10 on 6.18, 8 before */

/* One completed request at or over --min-latency, sent through the ring
 * buffer "snoop_events"; 88 bytes (+8 of ring buffer header each). */
struct iolt_snoop_event {
	__u64 ts_ns;      /* completion, CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 sector;     /* first sector of the request */
	__u64 queue_ns;   /* start -> issue */
	__u64 device_ns;  /* issue -> completion */
	__u64 cgid;       /* as the stats key's cgid */
	char comm[16];
	__u32 tgid;
	__u32 tid;
	__u32 dev;
	__u32 bytes;      /* the request's size */
	__s32 err;        /* negative errno; 0: success */
	char rwbs[IOLT_RWBS_LEN];
};

/* rwbs from a request's cmd_flags as the kernel's blk_fill_rwbs() writes it
 * (kernel/trace/blktrace.c): 'F' for a preflush, the op
 * letter (W, D, DE secure erase, F flush, R, N other; REQ_OP_* is the low
 * byte of the flags since 4.10), then F (FUA), A (readahead), S (sync), M
 * (meta); not U (REQ_ATOMIC, 6.11+: absent from older BTF). The flag masks come from the running kernel's BTF (enum
 * req_flag_bits). Pure, so tests/unit/test_snoop.py runs it natively. */
static inline void iolt_fill_rwbs(char *rwbs, __u32 opf, __u32 preflush, __u32 fua, __u32 rahead,
				  __u32 sync, __u32 meta)
{
	__u32 i = 0;
	if (opf & preflush)
		rwbs[i++] = 'F';
	switch (opf & 0xff) {
	case 1: rwbs[i++] = 'W'; break;
	case 3: rwbs[i++] = 'D'; break;
	case 5: rwbs[i++] = 'D'; rwbs[i++] = 'E'; break;
	case 2: rwbs[i++] = 'F'; break;
	case 0: rwbs[i++] = 'R'; break;
	default: rwbs[i++] = 'N';
	}
	if (opf & fua)
		rwbs[i++] = 'F';
	if (opf & rahead)
		rwbs[i++] = 'A';
	if (opf & sync)
		rwbs[i++] = 'S';
	if (opf & meta)
		rwbs[i++] = 'M';
	if (i < IOLT_RWBS_LEN)
		rwbs[i] = 0;
}

/* ---- per-syscall events of `snoop --layer syscall` (sc_snoop.h) ---- */

/* Counters of the syscall snoop stream, indexes into "sc_snoop_counters". */
#define IOLT_SC_SNOOP_CNT_LOST 0  /* a call at or over the threshold the ring buffer could not take */
#define IOLT_SC_SNOOP_NCOUNTERS 1

/* One traced syscall at or over --min-latency, through "sc_snoop_events". */
struct iolt_sc_snoop_event {
	__u64 ts_ns;      /* exit, CLOCK_MONOTONIC */
	__u64 lat_ns;     /* enter -> exit */
	__u64 cgid;
	__s64 ret;        /* the return value: bytes, or a negative errno */
	char comm[16];
	__u32 tgid;
	__u32 tid;
	__u32 sc;         /* index in layout.SYSCALLS */
	__u32 _pad;
};

/* ---- syscall layer (syscall.bpf.c) ---- */

/* Syscalls are numbered by their place in layout.SYSCALLS; indexes below
 * IOLT_SC_BYTES_FAMILY return a byte count. */
#define IOLT_SC_COUNT 19          /* known syscalls; range 1..64 */
#define IOLT_SC_BYTES_FAMILY 10   /* read .. pwritev2 */
#ifndef IOLT_SC_THREADS
#define IOLT_SC_THREADS 65536     /* threads inside a syscall at once; range 1..1M */
#endif

/* Syscall-layer diagnostic counters, indexes into "sc_counters". */
#define IOLT_SC_CNT_DROPPED 0     /* in-syscall map full: call not timed */
#define IOLT_SC_CNT_STATS_FULL 1  /* stats map full: call not counted */
#define IOLT_SC_CNT_HIST_FULL 2   /* histogram map full: sample not recorded */
#define IOLT_SC_CNT_ERRS_FULL 3   /* errno map full: the error counts in stats, its errno is not recorded */
#define IOLT_SC_NCOUNTERS 4

struct iolt_sc_start {
	__u64 ts;
	__u32 sc;
	__u32 _pad;
};

struct iolt_sc_key {
	__u64 cgid;
	__u32 tgid;
	__u32 tid;   /* 0 unless built with IOLT_BY_THREAD */
	__u32 sc;
	__u32 _pad;
};

struct iolt_sc_stat {
	__u64 calls;
	__u64 bytes;    /* sum of positive returns of the read/write family */
	__u64 errors;   /* negative returns */
	__u64 sum_ns;
	char comm[16];
};

struct iolt_sc_hist_key {
	struct iolt_sc_key k;
	__u32 bucket;
	__u32 _pad;
};

struct iolt_sc_err_key {
	struct iolt_sc_key k;
	__s32 err;
	__u32 _pad;
};

/* sys_exit_* tracepoint record: the layout of struct trace_event_raw_sys_exit,
 * unchanged since syscall tracepoints appeared (2.6.33). */
struct iolt_sys_exit {
	__u64 _common;
	__s64 id;
	__s64 ret;
};

/* ---- event-loop latency between any tracepoints (loop.bpf.c) ---- */

#define IOLT_LOOP_MAX_EVENTS 8    /* events in a --chain; range 2..8 */

/* Loop-layer diagnostic counters, indexes into "loop_counters". */
#define IOLT_LOOP_CNT_DROPPED 0     /* state map full: a chain not started */
#define IOLT_LOOP_CNT_STATS_FULL 1  /* stats map full: step not counted */
#define IOLT_LOOP_CNT_HIST_FULL 2   /* histogram map full: sample not recorded */
#define IOLT_LOOP_NCOUNTERS 3

struct iolt_loop_state {
	__u64 first_ns;
	__u64 prev_ns;
	__u32 expect;   /* index of the next event in the chain */
	__u32 _pad;
};

struct iolt_loop_key {
	__u32 tgid;
	__u32 step;     /* i: event i -> i+1; IOLT_LOOP_MAX_EVENTS: the whole chain */
};

struct iolt_loop_stat {
	__u64 count;
	__u64 sum_ns;
	__u64 min_ns;
	__u64 max_ns;
	char comm[16];
};

struct iolt_loop_hist_key {
	struct iolt_loop_key k;
	__u32 bucket;
	__u32 _pad;
};

/* What iolt_loop_event() asks its caller to do (a bit mask). */
#define IOLT_LOOP_RECORD 1   /* record *step_ns under step *step */
#define IOLT_LOOP_WHOLE 2    /* record *whole_ns under step IOLT_LOOP_MAX_EVENTS */
#define IOLT_LOOP_STORE 4    /* store the updated state */
#define IOLT_LOOP_DELETE 8   /* forget the thread's state */

/* One event `idx` of an n-event chain, at time `now`, for a thread whose
 * state is *st (have = 0: none). Event 0 (re)starts the chain; the next
 * expected event records one step; any other event changes nothing. Pure, so
 * tests/unit/test_loop_chain.py runs it natively on synthetic streams. */
static inline __u32 iolt_loop_event(struct iolt_loop_state *st, int have, __u32 idx, __u64 now, __u32 n,
				    __u32 *step, __u64 *step_ns, __u64 *whole_ns)
{
	if (idx == 0) {
		st->first_ns = now;
		st->prev_ns = now;
		st->expect = 1;
		return IOLT_LOOP_STORE;
	}
	if (!have || st->expect != idx)
		return 0;
	*step = idx - 1;
	*step_ns = now - st->prev_ns;
	if (idx + 1 >= n) {
		*whole_ns = now - st->first_ns;
		return IOLT_LOOP_RECORD | (n > 2 ? IOLT_LOOP_WHOLE : 0) | IOLT_LOOP_DELETE;
	}
	st->prev_ns = now;
	st->expect = idx + 1;
	return IOLT_LOOP_RECORD | IOLT_LOOP_STORE;
}

/* First slot of the set of (dev, sector): multiplicative (Fibonacci)
 * hashing, which spreads the multiples of 8 that 4 KiB I/O produces. */
static inline __u32 iolt_slot(__u32 dev, __u64 sector)
{
	__u64 h = (sector ^ ((__u64)dev << 40)) * 0x9E3779B97F4A7C15ULL;
	__u32 slot = IOLT_INFLIGHT_BITS ? (__u32)(h >> (64 - IOLT_INFLIGHT_BITS)) : 0;
	return IOLT_INFLIGHT_SLOTS > IOLT_INFLIGHT_WAYS ? slot & ~(__u32)(IOLT_INFLIGHT_WAYS - 1) : 0;
}

/* floor(log2(v)) for v > 0, without loops (the verifier prefers it). */
static inline __u32 iolt_log2(__u64 v)
{
	__u32 r, s;
	r = (v > 0xffffffffULL) << 5; v >>= r;
	s = (v > 0xffff) << 4; v >>= s; r |= s;
	s = (v > 0xff) << 3; v >>= s; r |= s;
	s = (v > 0xf) << 2; v >>= s; r |= s;
	s = (v > 0x3) << 1; v >>= s; r |= s;
	r |= (__u32)(v >> 1);
	return r;
}

static inline __u32 iolt_bucket(__u64 ns)
{
	__u32 e;
	if (ns < IOLT_SUB_COUNT)
		return (__u32)ns;
	e = iolt_log2(ns);
	if (e > IOLT_MAX_LOG2)
		return IOLT_OVERFLOW_BUCKET;
	return (e - IOLT_SUB_BITS + 1) * IOLT_SUB_COUNT
		+ (__u32)(ns >> (e - IOLT_SUB_BITS)) - IOLT_SUB_COUNT;
}

/* rwbs as the kernel's blk_fill_rwbs() writes it: an optional 'F' for a
 * preflush, then the op letter (W, D, F for a pure flush, R, N), then flags. */
static inline __u32 iolt_op_from_rwbs(const char *rwbs)
{
	char c = rwbs[0];
	if (c == 'F' && (rwbs[1] == 'W' || rwbs[1] == 'R' || rwbs[1] == 'D' || rwbs[1] == 'N'))
		c = rwbs[1];
	switch (c) {
	case 'R': return IOLT_OP_READ;
	case 'W': return IOLT_OP_WRITE;
	case 'F': return IOLT_OP_FLUSH;
	case 'D': return IOLT_OP_DISCARD;
	default: return IOLT_OP_OTHER;
	}
}

#endif
