/* snoop.h: per-request events of `ioltrace snoop`, shared by block.bpf.c and
 * request.bpf.c and compiled in only with -DIOLT_SNOOP, so hist, top, run
 * and serve carry none of it.
 *
 * A completed request whose start -> completion time is at or above
 * IOLT_SNOOP_MIN_NS goes to the ring buffer "snoop_events" (one buffer for
 * all CPUs, so events arrive in the order they were reserved); a request
 * below it costs one comparison beside the histogram update (snoop builds
 * with IOLT_TOTAL_ONLY: the total-time histogram alone, whose buckets the
 * rows' queue_ns + device_ns fall in, as both come from the same start,
 * issue and now). An event the
 * buffer cannot take (the reader fell behind) is counted in
 * snoop_counters[IOLT_SNOOP_CNT_LOST], never dropped silently.
 * Ring buffers: Linux 5.8. Like filter.h it declares maps, so loader.py
 * pastes it into the program text rather than #including it.
 *
 * -D options (validated integers from loader.py):
 *   IOLT_SNOOP_MIN_NS  threshold in ns (0: every request)
 *   IOLT_SNOOP_PAGES   ring buffer size in pages: a power of two, 1..65536
 *   IOLT_SNOOP_DYNAMIC the threshold is snoop_threshold[0], which user space
 *                      sets while tracing (--slowest-pct learns it from the
 *                      total-time histogram); one array lookup per completion
 */
#ifndef IOLTRACE_SNOOP_H
#define IOLTRACE_SNOOP_H

#ifndef IOLT_SNOOP_MIN_NS
#define IOLT_SNOOP_MIN_NS 0
#endif
#ifndef IOLT_SNOOP_PAGES
#define IOLT_SNOOP_PAGES 256
#endif

BPF_RINGBUF_OUTPUT(snoop_events, IOLT_SNOOP_PAGES);
BPF_ARRAY(snoop_counters, u64, IOLT_SNOOP_NCOUNTERS);

#ifdef IOLT_SNOOP_DYNAMIC
BPF_ARRAY(snoop_threshold, u64, 1);

static __always_inline int iolt_snoop_wanted(u64 start, u64 now)
{
	u32 zero = 0;
	u64 *min = snoop_threshold.lookup(&zero);
	return min && now - start >= *min;
}
#else
static __always_inline int iolt_snoop_wanted(u64 start, u64 now)
{
	return now - start >= (u64)IOLT_SNOOP_MIN_NS;
}
#endif

/* Room for one event, with the parts both paths fill the same way, or NULL
 * (counted lost). The caller fills sector, bytes, err and rwbs, then
 * submits: reserving in place keeps the 88 bytes off the BPF stack. */
static __always_inline struct iolt_snoop_event *iolt_snoop_reserve(u64 start, u64 issue, u64 now, u64 cgid,
								    const char *comm, u32 tgid, u32 tid, u32 dev)
{
	struct iolt_snoop_event *ev = snoop_events.ringbuf_reserve(sizeof(struct iolt_snoop_event));
	if (!ev) {
		u32 idx = IOLT_SNOOP_CNT_LOST;
		u64 *c = snoop_counters.lookup(&idx);
		if (c)
			__sync_fetch_and_add(c, 1);
		return 0;
	}
	/* The clock may go backwards between CPUs (IOLT_CNT_NEGATIVE): 0, as the histograms. */
	ev->ts_ns = now;
	ev->queue_ns = issue > start ? issue - start : 0;
	ev->device_ns = now > issue ? now - issue : 0;
	ev->cgid = cgid;
	__builtin_memcpy(ev->comm, comm, sizeof(ev->comm));
	ev->tgid = tgid;
	ev->tid = tid;
	ev->dev = dev;
	return ev;
}

#endif
