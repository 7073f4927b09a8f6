/* block.bpf.c: block-layer probes, start -> issue -> complete.
 *
 * Attribution (pid, tid, comm, cgroup) is taken in the submitter's context at
 * the start event, or at issue when there was none, and carried to the
 * completion, which runs in interrupt or kworker context where `current` is
 * someone else. Only tracepoint arguments are read; bcc takes their layout from
 * the running kernel's tracefs format files, never from kernel headers, which
 * is why generic distribution headers are safe to compile this with.
 *
 * Compile-time options, all validated integers passed as -D by loader.py:
 *   IOLT_START_IO_START  start event is block_io_start (6.5+), else block_rq_insert
 *   IOLT_BY_THREAD       keep thread ids in the stats key
 *   IOLT_TOTAL_HIST      also keep a start -> complete histogram per key
 *   IOLT_TOTAL_ONLY      with IOLT_TOTAL_HIST: that histogram alone, no queue or device one
 *                        (snoop: its rows carry both parts; one histogram update per request)
 *   IOLT_SIZE_DEPTH      also keep request-size and in-flight-depth histograms per key
 *   IOLT_FILTER_DEV, IOLT_FILTER_SECTOR_LO/HI  one disk, optionally a sector range
 *   IOLT_FILTER_TGID     one process; IOLT_FILTER_CHILDREN: and its descendants
 *   IOLT_FILTER_CGID, IOLT_FILTER_CGLEVEL      one cgroup v2 subtree
 *   IOLT_FILTER_COMM_LO/HI                     comm as two little-endian u64
 *   IOLT_SNOOP           per-request events for `snoop` (snoop.h)
 */
#include "ioltrace.h"
#include "filter.h"
#ifdef IOLT_SNOOP
#include "snoop.h"
#endif


BPF_ARRAY(inflight, struct iolt_rq, IOLT_INFLIGHT_SLOTS);
BPF_F_TABLE("hash", struct iolt_stat_key, struct iolt_stat, stats, IOLT_STATS_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct iolt_hist_key, u64, hist, IOLT_HIST_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct iolt_err_key, u64, errs, IOLT_ERRS_ENTRIES, BPF_F_NO_PREALLOC);
BPF_ARRAY(counters, u64, IOLT_NCOUNTERS);
/* Requests in flight per disk (dev_t -> count), for IOLT_SIZE_DEPTH;
 * declared on every build so that the map set is one. */
BPF_F_TABLE("hash", u32, u64, disk_depth, IOLT_DEPTH_DISKS, BPF_F_NO_PREALLOC);

static __always_inline void count(u32 idx)
{
	u64 *c = counters.lookup(&idx);
	if (c)
		__sync_fetch_and_add(c, 1);
}

#include "depth.h"

static __always_inline int dev_wanted(u32 dev, u64 sector)
{
#ifdef IOLT_FILTER_DEV
	if (dev != IOLT_FILTER_DEV)
		return 0;
#endif
#ifdef IOLT_FILTER_SECTOR_HI
	if (sector < IOLT_FILTER_SECTOR_LO || sector >= IOLT_FILTER_SECTOR_HI)
		return 0;
#endif
	return 1;
}

/* Fills the attribution fields from current and the tracepoint's own comm
 * field (filled by the kernel from current: cheaper than asking again);
 * returns 0, or why the request is not traced (IOLT_FILTERED_*): the first
 * task filter that excludes it, else the disk filter. */
static __always_inline u32 attribute(struct iolt_rq *rq, const char *comm, int dev_ok)
{
	u64 id = bpf_get_current_pid_tgid();
	rq->tgid = id >> 32;
	rq->tid = (u32)id;
	__builtin_memcpy(rq->comm, comm, sizeof(rq->comm));
	u32 why = iolt_task_filter(rq->tgid, rq->comm);
	if (!why && !dev_ok)
		why = IOLT_FILTERED_DISK;
	if (!why)
		rq->cgid = bpf_get_current_cgroup_id();
	return why;
}

static __always_inline int busy(struct iolt_rq *r)
{
	return (r->start_ns | r->issue_ns) != 0;
}

static __always_inline int same(struct iolt_rq *r, u32 dev, u64 sector)
{
	return r->sector == sector && r->dev == dev;
}

#define WAYS (IOLT_INFLIGHT_SLOTS < IOLT_INFLIGHT_WAYS ? IOLT_INFLIGHT_SLOTS : IOLT_INFLIGHT_WAYS)

/* The busy slot of (dev, sector) in its set, or NULL. */
static __always_inline struct iolt_rq *find(u32 dev, u64 sector)
{
	u32 base = iolt_slot(dev, sector);
#pragma unroll
	for (u32 w = 0; w < WAYS; w++) {
		u32 idx = base + w;
		struct iolt_rq *r = inflight.lookup(&idx);
		if (r && busy(r) && same(r, dev, sector))
			return r;
	}
	return 0;
}

/* Put a new request in its set: its own old entry (a collision), else a
 * free slot, else the first slot of the set (evicting the request in it). */
static __always_inline void claim(struct iolt_rq *rq)
{
	u32 base = iolt_slot(rq->dev, rq->sector);
	struct iolt_rq *free = 0, *first = 0;
#pragma unroll
	for (u32 w = 0; w < WAYS; w++) {
		u32 idx = base + w;
		struct iolt_rq *r = inflight.lookup(&idx);
		if (!r)
			continue;
		if (!first)
			first = r;
		if (!busy(r)) {
			if (!free)
				free = r;
		} else if (same(r, rq->dev, rq->sector)) {
			count(IOLT_CNT_COLLISION);
			*r = *rq;
			return;
		}
	}
	if (!free) {
		if (!first)
			return;
		/* An evicted request that was not issued yet is not lost: its
		 * issue takes a slot again (issue_no_start, queue time lost). */
		if (first->issue_ns)
			count(IOLT_CNT_DROPPED);
		free = first;
	}
	*free = *rq;
}

/* A request a filter excludes is counted once, at its start event, under
 * that filter (requests issued without one are not counted), and takes no
 * slot. Another disk's requests count only for tasks the task filters pass:
 * what the disk filter took from the traced tasks. */
static __always_inline int on_start(u32 dev, u64 sector, const char *comm)
{
	struct iolt_rq rq = {.sector = sector, .dev = dev};
	int dev_ok = dev_wanted(dev, sector);
	u32 why = attribute(&rq, comm, dev_ok);
	if (why) {
		if (dev_ok || why == IOLT_FILTERED_DISK)
			count(IOLT_CNT_FILTERED_CGROUP - 1 + why);
		return 0;
	}
	rq.start_ns = bpf_ktime_get_ns();
	claim(&rq);
	return 0;
}

#ifdef IOLT_START_IO_START
TRACEPOINT_PROBE(block, block_io_start)
{
	return on_start(args->dev, args->sector, args->comm);
}
#else
TRACEPOINT_PROBE(block, block_rq_insert)
{
	return on_start(args->dev, args->sector, args->comm);
}
#endif

TRACEPOINT_PROBE(block, block_rq_issue)
{
	u32 dev = args->dev;
	u64 sector = args->sector;
	if (!dev_wanted(dev, sector))
		return 0;
	u64 now = bpf_ktime_get_ns();
#ifdef IOLT_SIZE_DEPTH
	u32 depth = depth_issue(dev);
#endif
	struct iolt_rq *slot = find(dev, sector);
	if (slot) {
#ifdef IOLT_SIZE_DEPTH
		slot->depth = depth;
#endif
		slot->issue_ns = now;
		return 0;
	}
	/* Issued without a start event (direct issue, flush machinery, or
	 * started before tracing): attribute here, queue time zero. */
	struct iolt_rq fresh = {.sector = sector, .dev = dev};
	if (attribute(&fresh, args->comm, 1))
		return 0;
#ifdef IOLT_SIZE_DEPTH
	fresh.depth = depth;
#endif
	fresh.issue_ns = now;
	count(IOLT_CNT_ISSUE_NO_START);
	claim(&fresh);
	return 0;
}

static __always_inline void add_sample(struct iolt_stat_key *sk, u32 stage, u64 ns)
{
	struct iolt_hist_key hk = {.k = *sk, .stage = stage, .bucket = iolt_bucket(ns)};
	u64 zero = 0;
	u64 *c = hist.lookup_or_try_init(&hk, &zero);
	if (c)
		__sync_fetch_and_add(c, 1);
	else
		count(IOLT_CNT_HIST_FULL);
}

#ifdef IOLT_SIZE_DEPTH
/* A requeued request left the disk; its next issue counts it again. */
TRACEPOINT_PROBE(block, block_rq_requeue)
{
	if (dev_wanted(args->dev, args->sector))
		depth_done(args->dev);
	return 0;
}
#endif

TRACEPOINT_PROBE(block, block_rq_complete)
{
	u32 dev = args->dev;
	u64 sector = args->sector;
	if (!dev_wanted(dev, sector))
		return 0;
#ifdef IOLT_SIZE_DEPTH
	/* The classic records do not say whether bytes are left: every
	 * completion ends its request here, as it is counted (a completion in
	 * parts undercounts the depth until the disk is idle). */
	depth_done(dev);
#endif
	struct iolt_rq *rq = find(dev, sector);
	if (!rq) {
#ifndef IOLT_TASK_FILTER
		/* With a task filter, other tasks' I/O lands here by design. */
		count(IOLT_CNT_UNMATCHED);
#endif
		return 0;
	}
	u64 now = bpf_ktime_get_ns();
	u64 issue = rq->issue_ns ? rq->issue_ns : now;
	u64 start = rq->start_ns ? rq->start_ns : issue;
	s64 qns = (s64)(issue - start), dns = (s64)(now - issue);
	if (qns < 0 || dns < 0) {
		count(IOLT_CNT_NEGATIVE);
		qns = qns < 0 ? 0 : qns;
		dns = dns < 0 ? 0 : dns;
	}
#ifdef IOLT_SNOOP
	if (iolt_snoop_wanted(start, now)) {
		struct iolt_snoop_event *ev = iolt_snoop_reserve(start, issue, now, rq->cgid, rq->comm, rq->tgid,
								 rq->tid, dev);
		if (ev) {
			ev->sector = sector;
			ev->bytes = args->nr_sector << 9;
			ev->err = args->error;
			bpf_probe_read_kernel(ev->rwbs, sizeof(args->rwbs), args->rwbs);
			ev->rwbs[sizeof(ev->rwbs) - 1] = 0;
			snoop_events.ringbuf_submit(ev, 0);
		}
	}
#endif

	struct iolt_stat_key sk = {};
	sk.cgid = rq->cgid;
	sk.tgid = rq->tgid;
#ifdef IOLT_BY_THREAD
	sk.tid = rq->tid;
#endif
	sk.dev = dev;
	sk.op = iolt_op_from_rwbs(args->rwbs);

	struct iolt_stat *st = stats.lookup(&sk);
	if (!st) {
		struct iolt_stat init = {};
		__builtin_memcpy(init.comm, rq->comm, sizeof(init.comm));
		if (stats.insert(&sk, &init) != 0 && !stats.lookup(&sk)) {
			count(IOLT_CNT_STATS_FULL);
			sk.cgid = 0;
			sk.tgid = IOLT_OTHER_TGID;
			sk.tid = 0;
			sk.dev = 0;
		}
		st = stats.lookup(&sk);
	}
#ifdef IOLT_SIZE_DEPTH
	u64 depth = rq->depth;
#endif
	/* Free the slot before the accounting: a new request may reuse it. */
	rq->start_ns = 0;
	rq->issue_ns = 0;
	if (!st)
		return 0;

	int err = args->error;
	__sync_fetch_and_add(&st->ios, 1);
	if (err) {
		__sync_fetch_and_add(&st->errors, 1);
		struct iolt_err_key ek = {.k = sk, .err = err};
		u64 zero = 0;
		u64 *e = errs.lookup_or_try_init(&ek, &zero);
		if (e)
			__sync_fetch_and_add(e, 1);
		else
			count(IOLT_CNT_ERRS_FULL);
	} else {
		__sync_fetch_and_add(&st->bytes, (u64)args->nr_sector << 9);
	}
	__sync_fetch_and_add(&st->queue_ns, (u64)qns);
	__sync_fetch_and_add(&st->device_ns, (u64)dns);
#ifndef IOLT_TOTAL_ONLY
	add_sample(&sk, IOLT_STAGE_QUEUE, (u64)qns);
	add_sample(&sk, IOLT_STAGE_DEVICE, (u64)dns);
#endif
#ifdef IOLT_TOTAL_HIST
	add_sample(&sk, IOLT_STAGE_TOTAL, (u64)(qns + dns));
#endif
#ifdef IOLT_SIZE_DEPTH
	/* The record's size is the request's: the classic path counts a
	 * request at its first completion, which carries all its bytes unless
	 * the driver completes it in parts. */
	u64 size = (u64)args->nr_sector << 9;
	__sync_fetch_and_add(&st->size_sum, size);
	__sync_fetch_and_add(&st->depth_sum, depth);
	add_sample(&sk, IOLT_STAGE_SIZE, size);
	add_sample(&sk, IOLT_STAGE_DEPTH, depth);
#endif
	return 0;
}
