/* syscall.bpf.c: latency of I/O syscalls per (process, cgroup, syscall).
 *
 * Two raw tracepoints, sys_enter and sys_exit, see every syscall; the
 * syscall number picks the index in layout.SYSCALLS (sc_index), and only the
 * syscalls in the IOLT_SC_WANTED bit mask (a validated -D integer, bit =
 * index) are timed. Two attach points instead of a pair per syscall: each
 * syscalls:sys_* tracepoint is a perf event whose close waits for an RCU
 * grace period (about 70 ms each, 2.5 s for the default set), where closing
 * a raw tracepoint does not wait. A thread is in at most one syscall at a
 * time, so the start time is keyed by thread id and the exit needs no number.
 * Filters are the same validated -D integers as in block.bpf.c;
 * IOLT_SNOOP_SYSCALL adds per-call events for `snoop --layer syscall`.
 */
#include "ioltrace.h"
#include "filter.h"
#ifdef IOLT_SNOOP_SYSCALL
#include "sc_snoop.h"
#endif
#include <asm/unistd.h>

#ifndef IOLT_SC_WANTED
#define IOLT_SC_WANTED 0ULL
#endif

BPF_HASH(sc_start, u32, struct iolt_sc_start, IOLT_SC_THREADS);
BPF_F_TABLE("hash", struct iolt_sc_key, struct iolt_sc_stat, sc_stats, IOLT_STATS_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct iolt_sc_hist_key, u64, sc_hist, IOLT_HIST_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct iolt_sc_err_key, u64, sc_errs, IOLT_ERRS_ENTRIES, BPF_F_NO_PREALLOC);
BPF_ARRAY(sc_counters, u64, IOLT_SC_NCOUNTERS);

static __always_inline void sc_count(u32 idx)
{
	u64 *c = sc_counters.lookup(&idx);
	if (c)
		__sync_fetch_and_add(c, 1);
}

/* Index in layout.SYSCALLS of the 64-bit syscall number nr, or -1; the
 * numbers come from the kernel headers of this architecture. */
#define IOLT_SC(n, name) case __NR_##name: return n;
static __always_inline int sc_index(long nr)
{
	switch (nr) {
	IOLT_SC(0, read) IOLT_SC(1, write) IOLT_SC(2, pread64) IOLT_SC(3, pwrite64)
	IOLT_SC(4, readv) IOLT_SC(5, writev) IOLT_SC(6, preadv) IOLT_SC(7, pwritev)
	IOLT_SC(8, preadv2) IOLT_SC(9, pwritev2) IOLT_SC(10, fsync) IOLT_SC(11, fdatasync)
	IOLT_SC(12, sync_file_range) IOLT_SC(13, io_submit) IOLT_SC(14, io_getevents)
	IOLT_SC(15, io_pgetevents) IOLT_SC(16, io_uring_enter) IOLT_SC(17, openat)
	IOLT_SC(18, close)
	}
	return -1;
}

/* sys_enter(struct pt_regs *regs, long id) */
RAW_TRACEPOINT_PROBE(sys_enter)
{
	int sc = sc_index((long)ctx->args[1]);
	if (sc < 0 || !((IOLT_SC_WANTED >> sc) & 1))
		return 0;
	u64 id = bpf_get_current_pid_tgid();
	if (!iolt_task_wanted(id >> 32, 0))
		return 0;
	u32 tid = (u32)id;
	struct iolt_sc_start st = {.ts = bpf_ktime_get_ns(), .sc = sc};
	if (sc_start.update(&tid, &st) != 0)
		sc_count(IOLT_SC_CNT_DROPPED);
	return 0;
}

/* sys_exit(struct pt_regs *regs, long ret): the exit of the syscall this
 * thread entered last, if that one was timed. */
RAW_TRACEPOINT_PROBE(sys_exit)
{
	s64 ret = (s64)ctx->args[1];
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = (u32)id;
	struct iolt_sc_start *st = sc_start.lookup(&tid);
	if (!st)
		return 0;
	u32 sc = st->sc;
	u64 now = bpf_ktime_get_ns();
	u64 ns = now - st->ts;
	sc_start.delete(&tid);
#ifdef IOLT_SNOOP_SYSCALL
	iolt_sc_snoop(now, ns, ret, sc, id);
#endif

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
		else
			sc_count(IOLT_SC_CNT_ERRS_FULL);
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
