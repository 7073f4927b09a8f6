/* loop.bpf.c: per-thread latency between consecutive events of a chain of
 * arbitrary tracepoints (ioltrace loop --from A --to B, or --chain A,B,C).
 *
 * Event i's tracepoint is attached to ev_i by loader.py; the tracepoint names
 * never reach this source. A thread's chain starts at event 0 (again at each
 * event 0), and each next expected event records one step; other events are
 * ignored. IOLT_LOOP_EVENTS (2..8) is the chain's length.
 */
#include "ioltrace.h"
#include "filter.h"

BPF_HASH(loop_state, u32, struct iolt_loop_state, 65536);
BPF_F_TABLE("hash", struct iolt_loop_key, struct iolt_loop_stat, loop_stats, 16384, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct iolt_loop_hist_key, u64, loop_hist, 262144, BPF_F_NO_PREALLOC);
BPF_ARRAY(loop_counters, u64, IOLT_LOOP_NCOUNTERS);

static __always_inline void loop_count(u32 idx)
{
	u64 *c = loop_counters.lookup(&idx);
	if (c)
		__sync_fetch_and_add(c, 1);
}

static __always_inline void record(u32 tgid, u32 step, u64 ns)
{
	struct iolt_loop_key key = {.tgid = tgid, .step = step};
	struct iolt_loop_stat *s = loop_stats.lookup(&key);
	if (!s) {
		struct iolt_loop_stat init = {.min_ns = ~0ULL};
		bpf_get_current_comm(&init.comm, sizeof(init.comm));
		loop_stats.insert(&key, &init);
		s = loop_stats.lookup(&key);
		if (!s) {
			loop_count(IOLT_LOOP_CNT_STATS_FULL);
			return;
		}
	}
	__sync_fetch_and_add(&s->count, 1);
	__sync_fetch_and_add(&s->sum_ns, ns);
	/* Racy min/max updates lose nothing that matters: the histogram is exact. */
	if (ns < s->min_ns)
		s->min_ns = ns;
	if (ns > s->max_ns)
		s->max_ns = ns;
	struct iolt_loop_hist_key hk = {.k = key, .bucket = iolt_bucket(ns)};
	u64 zero = 0;
	u64 *c = loop_hist.lookup_or_try_init(&hk, &zero);
	if (c)
		__sync_fetch_and_add(c, 1);
	else
		loop_count(IOLT_LOOP_CNT_HIST_FULL);
}

static __always_inline int on_event(u32 idx)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32, tid = (u32)id;
	if (!iolt_task_wanted(tgid, 0))
		return 0;
	struct iolt_loop_state st = {};
	struct iolt_loop_state *cur = loop_state.lookup(&tid);
	if (cur)
		st = *cur;
	u32 step = 0;
	u64 step_ns = 0, whole_ns = 0;
	u32 todo = iolt_loop_event(&st, cur != 0, idx, bpf_ktime_get_ns(), IOLT_LOOP_EVENTS,
				   &step, &step_ns, &whole_ns);
	if (todo & IOLT_LOOP_RECORD)
		record(tgid, step, step_ns);
	if (todo & IOLT_LOOP_WHOLE)
		record(tgid, IOLT_LOOP_MAX_EVENTS, whole_ns);
	if (todo & IOLT_LOOP_STORE) {
		if (loop_state.update(&tid, &st) != 0)
			loop_count(IOLT_LOOP_CNT_DROPPED);
	}
	if (todo & IOLT_LOOP_DELETE)
		loop_state.delete(&tid);
	return 0;
}

int ev_0(void *ctx) { return on_event(0); }
int ev_1(void *ctx) { return on_event(1); }
int ev_2(void *ctx) { return on_event(2); }
int ev_3(void *ctx) { return on_event(3); }
int ev_4(void *ctx) { return on_event(4); }
int ev_5(void *ctx) { return on_event(5); }
int ev_6(void *ctx) { return on_event(6); }
int ev_7(void *ctx) { return on_event(7); }
