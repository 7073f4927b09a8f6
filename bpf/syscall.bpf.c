/* syscall.bpf.c: latency of I/O syscalls per (process, cgroup, syscall).
 *
 * Enter and exit programs exist for every known syscall; loader.py attaches
 * only those asked for, so other syscalls run no program. A thread is in at
 * most one syscall at a time, so the start time is keyed by thread id.
 * Filters are the same validated -D integers as in block.bpf.c.
 */
#include "ioltrace.h"
#include "filter.h"

BPF_HASH(sc_start, u32, struct iolt_sc_start, IOLT_SC_THREADS);
BPF_F_TABLE("hash", struct iolt_sc_key, struct iolt_sc_stat, sc_stats, IOLT_STATS_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct iolt_sc_hist_key, u64, sc_hist, IOLT_HIST_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct iolt_sc_err_key, u64, sc_errs, 4096, BPF_F_NO_PREALLOC);
BPF_ARRAY(sc_counters, u64, IOLT_SC_NCOUNTERS);

static __always_inline void sc_count(u32 idx)
{
	u64 *c = sc_counters.lookup(&idx);
	if (c)
		__sync_fetch_and_add(c, 1);
}

static __always_inline int sc_enter(u32 sc)
{
	u64 id = bpf_get_current_pid_tgid();
	if (!iolt_task_wanted(id >> 32, 0))
		return 0;
	u32 tid = (u32)id;
	struct iolt_sc_start st = {.ts = bpf_ktime_get_ns(), .sc = sc};
	if (sc_start.update(&tid, &st) != 0)
		sc_count(IOLT_SC_CNT_DROPPED);
	return 0;
}

static __always_inline int sc_exit(u32 sc, s64 ret)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = (u32)id;
	struct iolt_sc_start *st = sc_start.lookup(&tid);
	if (!st)
		return 0;
	if (st->sc != sc) {
		/* An enter whose exit we never saw (e.g. attached mid-call). */
		sc_start.delete(&tid);
		return 0;
	}
	u64 ns = bpf_ktime_get_ns() - st->ts;
	sc_start.delete(&tid);

	struct iolt_sc_key key = {};
	key.cgid = bpf_get_current_cgroup_id();
	key.tgid = id >> 32;
#ifdef IOLT_BY_THREAD
	key.tid = tid;
#endif
	key.sc = sc;
	struct iolt_sc_stat *s = sc_stats.lookup(&key);
	if (!s) {
		struct iolt_sc_stat init = {};
		bpf_get_current_comm(&init.comm, sizeof(init.comm));
		sc_stats.insert(&key, &init);
		s = sc_stats.lookup(&key);
		if (!s) {
			sc_count(IOLT_SC_CNT_STATS_FULL);
			return 0;
		}
	}
	__sync_fetch_and_add(&s->calls, 1);
	__sync_fetch_and_add(&s->sum_ns, ns);
	if (ret < 0) {
		__sync_fetch_and_add(&s->errors, 1);
		struct iolt_sc_err_key ek = {.k = key, .err = (s32)ret};
		u64 zero = 0;
		u64 *e = sc_errs.lookup_or_try_init(&ek, &zero);
		if (e)
			__sync_fetch_and_add(e, 1);
	} else if (sc < IOLT_SC_BYTES_FAMILY) {
		__sync_fetch_and_add(&s->bytes, (u64)ret);
	}
	struct iolt_sc_hist_key hk = {.k = key, .bucket = iolt_bucket(ns)};
	u64 zero = 0;
	u64 *c = sc_hist.lookup_or_try_init(&hk, &zero);
	if (c)
		__sync_fetch_and_add(c, 1);
	else
		sc_count(IOLT_SC_CNT_HIST_FULL);
	return 0;
}

/* Plain functions attached by name (attach_tracepoint), one pair per index
 * of layout.SYSCALLS; the exit record's layout is struct iolt_sys_exit. */
#define IOLT_SC_PAIR(n) \
int sc_enter_##n(void *ctx) { return sc_enter(n); } \
int sc_exit_##n(struct iolt_sys_exit *ctx) { return sc_exit(n, ctx->ret); }

IOLT_SC_PAIR(0) IOLT_SC_PAIR(1) IOLT_SC_PAIR(2) IOLT_SC_PAIR(3) IOLT_SC_PAIR(4)
IOLT_SC_PAIR(5) IOLT_SC_PAIR(6) IOLT_SC_PAIR(7) IOLT_SC_PAIR(8) IOLT_SC_PAIR(9)
IOLT_SC_PAIR(10) IOLT_SC_PAIR(11) IOLT_SC_PAIR(12) IOLT_SC_PAIR(13) IOLT_SC_PAIR(14)
IOLT_SC_PAIR(15) IOLT_SC_PAIR(16) IOLT_SC_PAIR(17) IOLT_SC_PAIR(18)
