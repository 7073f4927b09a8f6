/* request.bpf.c: the typed request path: raw block tracepoints reading the
 * struct request itself.
 *
 * Same events, same maps and same key/value structs as block.bpf.c (stats,
 * hist, errs, counters), so nothing downstream knows which path ran. What
 * differs:
 *   - in-flight state is keyed by the request pointer, so two requests to one
 *     (dev, sector) (flushes all have sector 0) never collide; the slot array
 *     and its sets work as in block.bpf.c, hashed by the pointer;
 *   - a completion in parts (blk_update_request with nr_bytes below what the
 *     request has left) adds its bytes and keeps the request in flight; the
 *     request counts once, when its last bytes complete, as the disk's own
 *     statistics do;
 *   - the cgroup the request's bio is charged to (bio->bi_blkg->blkcg) is
 *     read at the start: a v2 one keys --by cgroup (writeback lands on the
 *     cgroup that dirtied the pages, as in io.stat), a v1 blkio one goes in
 *     the key's blkcg field (a name for --by cgroup-v1 after the process is
 *     gone).
 * No raw tracepoint builds a record before the program runs, which is most
 * of what this path saves per event.
 *
 * bcc here cannot relocate field accesses (no CO-RE) and generic headers do
 * not match a custom kernel, so every struct field is read with
 * bpf_probe_read_kernel at an offset loader.py found in the running kernel's
 * BTF (ioltrace/btf.py) and passes as a validated -D integer (IOLT_OFF_*).
 * Other -D options as in block.bpf.c.
 */
#include "ioltrace.h"
#include "filter.h"
#ifdef IOLT_SNOOP
#include "snoop.h"
#endif

BPF_ARRAY(inflight, struct iolt_rqp, IOLT_INFLIGHT_SLOTS);
BPF_F_TABLE("hash", struct iolt_stat_key, struct iolt_stat, stats, IOLT_STATS_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct iolt_hist_key, u64, hist, IOLT_HIST_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct iolt_err_key, u64, errs, IOLT_ERRS_ENTRIES, BPF_F_NO_PREALLOC);
BPF_ARRAY(counters, u64, IOLT_NCOUNTERS);
/* Bios of requests the flush machinery takes (IOLT_FLUSH_BIOS, below);
 * declared on every kernel so that the map set is one. */
BPF_F_TABLE("lru_hash", u64, struct iolt_rqp, flushbios, 1024, 0);
/* Requests in flight per disk, for IOLT_SIZE_DEPTH (as in block.bpf.c). */
BPF_F_TABLE("hash", u32, u64, disk_depth, IOLT_DEPTH_DISKS, BPF_F_NO_PREALLOC);

#define READ(dst, base, off) bpf_probe_read_kernel(&(dst), sizeof(dst), (const char *)(base) + (off))

static __always_inline void count(u32 idx)
{
	u64 *c = counters.lookup(&idx);
	if (c)
		__sync_fetch_and_add(c, 1);
}

#include "depth.h"

/* The struct request fields read where a request is first seen. */
struct rq_fields {
	void *q;
	void *bio;
	u64 sector;
	u32 flags;
};

#ifdef IOLT_RQ_WIN_SIZE
/* They lie within IOLT_RQ_WIN_SIZE bytes from IOLT_RQ_WIN_BASE (offsets
 * 0..64 on 6.18; probepath.rq_window checks it at start-up): one
 * bpf_probe_read_kernel of the window instead of one per field. */
struct rq_window {
	u64 w[(IOLT_RQ_WIN_SIZE + 7) / 8];
};
#define WIN(type, win, off) (*(type *)((char *)(win).w + (off) - IOLT_RQ_WIN_BASE))
#endif

static __always_inline void rq_read(void *rq, struct rq_fields *f)
{
#ifdef IOLT_RQ_WIN_SIZE
	struct rq_window win = {};
	bpf_probe_read_kernel(&win, sizeof(win), (const char *)rq + IOLT_RQ_WIN_BASE);
	f->q = WIN(void *, win, IOLT_OFF_RQ_Q);
	f->bio = WIN(void *, win, IOLT_OFF_RQ_BIO);
	f->sector = WIN(u64, win, IOLT_OFF_RQ_SECTOR);
	f->flags = WIN(u32, win, IOLT_OFF_RQ_CMD_FLAGS);
#else
	READ(f->q, rq, IOLT_OFF_RQ_Q);
	READ(f->bio, rq, IOLT_OFF_RQ_BIO);
#ifdef IOLT_FILTER_SECTOR_HI
	READ(f->sector, rq, IOLT_OFF_RQ_SECTOR);
#endif
	READ(f->flags, rq, IOLT_OFF_RQ_CMD_FLAGS);
#endif
}

/* dev_t as the classic tracepoints give it: disk_devt(rq->q->disk). */
static __always_inline u32 rq_dev(struct rq_fields *f)
{
	void *disk = 0;
	int mm[2] = {};
	if (!f->q)
		return 0;
	READ(disk, f->q, IOLT_OFF_Q_DISK);
	if (!disk)
		return 0;
#if IOLT_OFF_DISK_FIRST_MINOR == IOLT_OFF_DISK_MAJOR + 4
	READ(mm, disk, IOLT_OFF_DISK_MAJOR);   /* both ints in one read */
#else
	READ(mm[0], disk, IOLT_OFF_DISK_MAJOR);
	READ(mm[1], disk, IOLT_OFF_DISK_FIRST_MINOR);
#endif
	return ((u32)mm[0] << 20) | (u32)mm[1];
}

static __always_inline int dev_wanted(u32 dev, struct rq_fields *f)
{
#ifdef IOLT_FILTER_DEV
	if (dev != IOLT_FILTER_DEV)
		return 0;
#endif
#ifdef IOLT_FILTER_SECTOR_HI
	if (f->sector < IOLT_FILTER_SECTOR_LO || f->sector >= IOLT_FILTER_SECTOR_HI)
		return 0;
#endif
	return 1;
}

/* Operation as iolt_op_from_rwbs() decodes blk_fill_rwbs()'s letters:
 * REQ_OP_* is the low byte of cmd_flags (REQ_OP_BITS = 8 since 4.10). */
static __always_inline u32 rq_op(struct rq_fields *f)
{
	switch (f->flags & 0xff) {
	case 0: return IOLT_OP_READ;
	case 1: return IOLT_OP_WRITE;
	case 2: return IOLT_OP_FLUSH;
	case 3:                        /* REQ_OP_DISCARD */
	case 5: return IOLT_OP_DISCARD; /* REQ_OP_SECURE_ERASE: "DE" */
	default: return IOLT_OP_OTHER;
	}
}

/* blk_status_to_errno() for the statuses whose numbers have not moved
 * since 4.13 (include/linux/blk_types.h); later ones read as -EIO. */
static __always_inline s32 status_errno(u8 st)
{
	switch (st) {
	case 0: return 0;
	case 1: return -95;   /* NOTSUPP: EOPNOTSUPP */
	case 2: return -110;  /* TIMEOUT: ETIMEDOUT */
	case 3: return -28;   /* NOSPC */
	case 4: return -67;   /* TRANSPORT: ENOLINK */
	case 5: return -121;  /* TARGET: EREMOTEIO */
	case 6: return -52;   /* NEXUS / RESV_CONFLICT: EBADE */
	case 7: return -61;   /* MEDIUM: ENODATA */
	case 8: return -84;   /* PROTECTION: EILSEQ */
	case 9: return -12;   /* RESOURCE: ENOMEM */
	case 11: return -78;  /* DM_REQUEUE: EREMCHG */
	case 12: return -11;  /* AGAIN */
	case 13: return -16;  /* DEV_RESOURCE: EBUSY */
	default: return -5;   /* IOERR and newer statuses */
	}
}

/* The cgroup rq's first bio is charged to. With IOLT_BLKCG_V1 (the io
 * controller is bound to a v1 hierarchy: loader.py reads /proc/cgroups at
 * start-up; a controller is on one hierarchy at a time) it goes to p->blkcg.
 * Else it is a v2 cgroup and replaces the submitter's unless the submitter
 * sits inside it (then the submitter's own, deeper cgroup is the more
 * precise answer: the charge goes to the nearest ancestor with the io
 * controller). Flush requests have no bio and keep the submitter's. */
static __always_inline void charged_cgroup(struct rq_fields *f, struct iolt_rqp *p)
{
	void *bio = f->bio, *blkg = 0, *blkcg = 0, *cgrp = 0, *kn = 0;
	u64 id = 0;
	if (!bio)
		return;
	READ(blkg, bio, IOLT_OFF_BIO_BLKG);
	if (!blkg)
		return;
	READ(blkcg, blkg, IOLT_OFF_BLKG_BLKCG);
	if (!blkcg)
		return;
	READ(cgrp, blkcg, IOLT_OFF_BLKCG_CGROUP);
	if (!cgrp)
		return;
	READ(kn, cgrp, IOLT_OFF_CGROUP_KN);
	if (!kn)
		return;
	READ(id, kn, IOLT_OFF_KN_ID);
#ifdef IOLT_BLKCG_V1
	p->blkcg = id;
#else
	int level = 0;
	READ(level, cgrp, IOLT_OFF_CGROUP_LEVEL);
	if (level > 0 && bpf_get_current_ancestor_cgroup_id(level) != id)
		p->cgid = id;
#endif
}

/* Fills attribution from current; 0 if the task filters reject it. */
/* Fills attribution from current; returns 0, or why the request is not
 * traced (IOLT_FILTERED_*): the first task filter that excludes it, else
 * the disk filter (as attribute() in block.bpf.c). */
static __always_inline u32 attribute(struct rq_fields *f, struct iolt_rqp *p, int dev_ok)
{
	u64 id = bpf_get_current_pid_tgid();
	p->tgid = id >> 32;
	p->tid = (u32)id;
	bpf_get_current_comm(p->comm, sizeof(p->comm));
	u32 why = iolt_task_filter(p->tgid, p->comm);
	if (!why && !dev_ok)
		why = IOLT_FILTERED_DISK;
	if (why)
		return why;
	p->cgid = bpf_get_current_cgroup_id();
	charged_cgroup(f, p);
	return 0;
}

static __always_inline int busy(struct iolt_rqp *r)
{
	return (r->start_ns | r->issue_ns) != 0;
}

#define WAYS (IOLT_INFLIGHT_SLOTS < IOLT_INFLIGHT_WAYS ? IOLT_INFLIGHT_SLOTS : IOLT_INFLIGHT_WAYS)

static __always_inline struct iolt_rqp *find(u64 ptr)
{
	u32 base = iolt_slot(0, ptr);
#pragma unroll
	for (u32 w = 0; w < WAYS; w++) {
		u32 idx = base + w;
		struct iolt_rqp *r = inflight.lookup(&idx);
		if (r && busy(r) && r->rq == ptr)
			return r;
	}
	return 0;
}

/* As claim() in block.bpf.c. The same pointer still busy means the kernel
 * reused a request whose completion was never seen: counted as collision. */
static __always_inline void claim(struct iolt_rqp *p)
{
	u32 base = iolt_slot(0, p->rq);
	struct iolt_rqp *free = 0, *first = 0;
#pragma unroll
	for (u32 w = 0; w < WAYS; w++) {
		u32 idx = base + w;
		struct iolt_rqp *r = inflight.lookup(&idx);
		if (!r)
			continue;
		if (!first)
			first = r;
		if (!busy(r)) {
			if (!free)
				free = r;
		} else if (r->rq == p->rq) {
			count(IOLT_CNT_COLLISION);
			*r = *p;
			return;
		}
	}
	if (!free) {
		if (!first)
			return;
		if (first->issue_ns)
			count(IOLT_CNT_DROPPED);
		free = first;
	}
	*free = *p;
}

static __always_inline int on_start(void *rq)
{
	struct rq_fields f = {};
	rq_read(rq, &f);
	u32 dev = rq_dev(&f);
	int dev_ok = dev_wanted(dev, &f);
	struct iolt_rqp p = {.rq = (u64)rq, .dev = dev};
	/* As on_start() in block.bpf.c: a request a filter excludes is counted
	 * once, here, under that filter, and takes no slot. */
	u32 why = attribute(&f, &p, dev_ok);
	if (why) {
		if (dev_ok || why == IOLT_FILTERED_DISK)
			count(IOLT_CNT_FILTERED_CGROUP - 1 + why);
		return 0;
	}
	p.op = rq_op(&f);
	p.start_ns = bpf_ktime_get_ns();
	claim(&p);
	return 0;
}

#ifdef IOLT_START_IO_START
RAW_TRACEPOINT_PROBE(block_io_start)
{
	return on_start((void *)ctx->args[0]);
}
#else
RAW_TRACEPOINT_PROBE(block_rq_insert)
{
	return on_start((void *)ctx->args[0]);
}
#endif

#ifdef IOLT_FLUSH_BIOS
/* REQ_FUA | REQ_PREFLUSH: their bit numbers in enum req_flag_bits come
 * from the running kernel's BTF (ioltrace/probepath.py). */
#define IOLT_REQ_FLUSHING ((1u << IOLT_REQ_FUA_BIT) | (1u << IOLT_REQ_PREFLUSH_BIT))
/* Before block_io_start (6.5), a request carrying a flush (REQ_PREFLUSH or
 * REQ_FUA) goes from blk_mq_submit_bio() straight into the flush machinery
 * (blk_insert_flush()): it is neither inserted nor issued (the queue's
 * flush_rq is, and counts as the flush), yet it completes and the disk
 * counts it (an empty flush as a write of 0 bytes). Its bio is noted at
 * block_getrq, just before blk_mq_bio_to_request() binds it to the
 * request, and found again at completion through rq->bio. */

RAW_TRACEPOINT_PROBE(block_getrq)
{
	void *bio = (void *)ctx->args[0];
	u32 opf = 0;
	if (!bio)
		return 0;
	READ(opf, bio, IOLT_OFF_BIO_OPF);
	if (!(opf & IOLT_REQ_FLUSHING))
		return 0;
	struct rq_fields f = {.bio = bio, .flags = opf};
	struct iolt_rqp p = {};
	/* The disk is checked at completion, where rq->q is known. */
	if (attribute(&f, &p, 1))
		return 0;
	p.op = rq_op(&f);
	p.start_ns = bpf_ktime_get_ns();
	u64 key = (u64)bio;
	flushbios.update(&key, &p);
	return 0;
}

/* RQF_FLUSH_SEQ: (1 << 4) in include/linux/blk-mq.h up to 6.4 (before
 * block_io_start, the kernels this part is built for). */
#define IOLT_RQF_FLUSH_SEQ (1u << 4)

/* A completion of the data step of a flush sequence (a write with REQ_FUA
 * or REQ_PREFLUSH on a disk that needs the flush machinery: data, then a
 * post-flush). Its request completes again, with 0 bytes, when the
 * sequence ends (blk_flush_complete_seq, REQ_FSEQ_DONE), and only then
 * does the disk count it (blk_account_io_done skips RQF_FLUSH_SEQ): the
 * slot is kept for that completion, whose bio (restored by then) was
 * noted at block_getrq and is forgotten here. */
static __always_inline int flush_data_step(void *rqptr, u32 nr_bytes)
{
	u32 rqf = 0;
	if (!nr_bytes)
		return 0;
	READ(rqf, rqptr, IOLT_OFF_RQ_RQ_FLAGS);
	if (!(rqf & IOLT_RQF_FLUSH_SEQ))
		return 0;
	void *bio = 0;
	READ(bio, rqptr, IOLT_OFF_RQ_BIO);
	if (bio) {
		u64 key = (u64)bio;
		flushbios.delete(&key);
	}
	return 1;
}

/* The slot of a flush-machinery request at its completion, or 0. */
static __always_inline struct iolt_rqp *flush_seq(void *rqptr, struct rq_fields *f, u32 dev)
{
	if (!f->bio)
		return 0;
	u64 key = (u64)f->bio;
	struct iolt_rqp *noted = flushbios.lookup(&key);
	if (!noted)
		return 0;
	struct iolt_rqp p = *noted;
	flushbios.delete(&key);
	p.rq = (u64)rqptr;
	p.dev = dev;
	p.left = 0;
	claim(&p);
	return find((u64)rqptr);
}
#endif

RAW_TRACEPOINT_PROBE(block_rq_issue)
{
	void *rq = (void *)ctx->args[0];
	u64 now = bpf_ktime_get_ns();
	struct iolt_rqp *slot = find((u64)rq);
	if (slot) {
		/* Dispatched: no bio merges into it from here on, so its size
		 * is final (a requeue issues it again and reads it again). */
		READ(slot->left, rq, IOLT_OFF_RQ_DATA_LEN);
		slot->size = slot->left;
#ifdef IOLT_SIZE_DEPTH
		slot->depth = depth_issue(slot->dev);
#endif
		slot->issue_ns = now;
		return 0;
	}
	struct rq_fields f = {};
	rq_read(rq, &f);
	u32 dev = rq_dev(&f);
	if (!dev_wanted(dev, &f))
		return 0;
#ifdef IOLT_SIZE_DEPTH
	/* Untraced requests deepen the disk's queue too. */
	u32 depth = depth_issue(dev);
#endif
	struct iolt_rqp fresh = {.rq = (u64)rq, .dev = dev};
	if (attribute(&f, &fresh, 1))
		return 0;
	fresh.op = rq_op(&f);
	READ(fresh.left, rq, IOLT_OFF_RQ_DATA_LEN);
	fresh.size = fresh.left;
#ifdef IOLT_SIZE_DEPTH
	fresh.depth = depth;
#endif
	fresh.issue_ns = now;
	count(IOLT_CNT_ISSUE_NO_START);
	claim(&fresh);
	return 0;
}

#ifdef IOLT_RQ_MERGE
/* A request merged into another (attempt_merge(): its bytes join the
 * surviving request, which completes for both) is freed without a
 * completion: forget it, or it would look lost. Its submitter's bytes count
 * under the surviving request's submitter. */
RAW_TRACEPOINT_PROBE(block_rq_merge)
{
	struct iolt_rqp *slot = find((u64)ctx->args[0]);
	if (slot) {
#ifdef IOLT_SIZE_DEPTH
		if (slot->issue_ns)
			depth_done(slot->dev);
#endif
		slot->start_ns = 0;
		slot->issue_ns = 0;
	}
	return 0;
}
#endif

#ifdef IOLT_SNOOP
/* The event of a request whose last bytes complete now. cmd_flags are read
 * here, as blk_fill_rwbs() reads them for the classic record; rq->__sector
 * has moved past the parts completed before (blk_update_request), so the
 * first sector is it minus those. */
static __always_inline void snoop_rqp(void *rqptr, struct iolt_rqp *rq, u64 start, u64 issue, u64 now,
				      u32 nr_bytes, s32 err)
{
	struct iolt_snoop_event *ev = iolt_snoop_reserve(start, issue, now, rq->cgid, rq->comm, rq->tgid, rq->tid,
							 rq->dev);
	if (!ev)
		return;
	u32 flags = 0;
	u64 sector = 0;
	READ(flags, rqptr, IOLT_OFF_RQ_CMD_FLAGS);
	READ(sector, rqptr, IOLT_OFF_RQ_SECTOR);
	u32 size = rq->size ? rq->size : nr_bytes;
	/* A last completion of 0 bytes with nothing left ends a flush
	 * sequence (flush_data_step): its data completed whole, and the
	 * kernel does not move __sector for a request that completes whole. */
	u32 before = size > rq->left && nr_bytes ? size - rq->left : 0;
	/* As blk_rq_trace_sector(): a request whose position was never set
	 * (the flush machinery's flush_rq) holds (sector_t)-1; records say 0. */
	ev->sector = sector == (u64)-1 ? 0 : sector - (before >> 9);
	ev->bytes = size;
	ev->err = err;
	iolt_fill_rwbs(ev->rwbs, flags, 1u << IOLT_REQ_PREFLUSH_BIT, 1u << IOLT_REQ_FUA_BIT,
		       1u << IOLT_REQ_RAHEAD_BIT, 1u << IOLT_REQ_SYNC_BIT, 1u << IOLT_REQ_META_BIT);
	snoop_events.ringbuf_submit(ev, 0);
}
#endif

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

/* args: (struct request *rq, blk_status_t error, unsigned int nr_bytes),
 * fired by blk_update_request() before it consumes nr_bytes (so
 * rq->__data_len is still what was left) and by blk_complete_request() with
 * the whole request on batched completions. */
#ifdef IOLT_SIZE_DEPTH
/* A requeued request left the disk; its next issue counts it again. */
RAW_TRACEPOINT_PROBE(block_rq_requeue)
{
	void *rqptr = (void *)ctx->args[0];
	struct iolt_rqp *slot = find((u64)rqptr);
	if (slot) {
		depth_done(slot->dev);
		return 0;
	}
	struct rq_fields f = {};
	rq_read(rqptr, &f);
	u32 dev = rq_dev(&f);
	if (dev_wanted(dev, &f))
		depth_done(dev);
	return 0;
}
#endif

RAW_TRACEPOINT_PROBE(block_rq_complete)
{
	void *rqptr = (void *)ctx->args[0];
	struct iolt_rqp *rq = find((u64)rqptr);
	if (!rq) {
		struct rq_fields f = {};
		rq_read(rqptr, &f);
		u32 dev = rq_dev(&f);
		if (!dev_wanted(dev, &f))
			return 0;
#ifdef IOLT_SIZE_DEPTH
		/* Not traced (another task, or issued before tracing started):
		 * it leaves the disk with its last bytes. */
		u32 rest = 0;
		READ(rest, rqptr, IOLT_OFF_RQ_DATA_LEN);
		if ((u32)ctx->args[2] >= rest)
			depth_done(dev);
#endif
#ifdef IOLT_FLUSH_BIOS
		rq = flush_seq(rqptr, &f, dev);
#endif
		if (!rq) {
#ifndef IOLT_TASK_FILTER
			/* Classic path parity: only the wanted disk's strays count. */
			count(IOLT_CNT_UNMATCHED);
#endif
			return 0;
		}
	}
	u32 nr_bytes = (u32)ctx->args[2];
	/* left is 0 when the issue was not seen (a recursion miss): the
	 * request then counts at its first completion, as on the classic path. */
	int done = nr_bytes >= rq->left;
	s32 err = status_errno((u8)ctx->args[1]);
#ifdef IOLT_FLUSH_BIOS
	if (done && flush_data_step(rqptr, nr_bytes)) {
		done = 0;          /* counted at the sequence's end, as the disk counts it */
		rq->left = nr_bytes;
	}
#endif

	struct iolt_stat_key sk = {};
	sk.cgid = rq->cgid;
	sk.tgid = rq->tgid;
#ifdef IOLT_BY_THREAD
	sk.tid = rq->tid;
#endif
	sk.dev = rq->dev;
	sk.op = rq->op;
	sk.blkcg = rq->blkcg;

	u64 now = bpf_ktime_get_ns();
	u64 issue = rq->issue_ns ? rq->issue_ns : now;
	u64 start = rq->start_ns ? rq->start_ns : issue;
#ifdef IOLT_SNOOP
	if (done && iolt_snoop_wanted(start, now))
		snoop_rqp(rqptr, rq, start, issue, now, nr_bytes, err);
#endif

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
			sk.blkcg = 0;
		}
		st = stats.lookup(&sk);
	}
#ifdef IOLT_SIZE_DEPTH
	u64 size = rq->size, depth = rq->depth;
	if (done && rq->issue_ns)
		depth_done(rq->dev);
#endif
	if (done) {
		rq->start_ns = 0;
		rq->issue_ns = 0;
	} else {
		rq->left -= nr_bytes;
	}
	if (!st)
		return 0;
	if (!err)
		__sync_fetch_and_add(&st->bytes, (u64)(nr_bytes >> 9) << 9);
	if (!done)
		return 0;

	s64 qns = (s64)(issue - start), dns = (s64)(now - issue);
	if (qns < 0 || dns < 0) {
		count(IOLT_CNT_NEGATIVE);
		qns = qns < 0 ? 0 : qns;
		dns = dns < 0 ? 0 : dns;
	}
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
	__sync_fetch_and_add(&st->size_sum, size);
	__sync_fetch_and_add(&st->depth_sum, depth);
	add_sample(&sk, IOLT_STAGE_SIZE, size);
	add_sample(&sk, IOLT_STAGE_DEPTH, depth);
#endif
	return 0;
}
