/* sc_snoop.h: per-syscall events of `ioltrace snoop --layer syscall`,
 * compiled into syscall.bpf.c only with -DIOLT_SNOOP_SYSCALL (as snoop.h is
 * into the block programs): a traced syscall whose enter -> exit time is at
 * or above IOLT_SNOOP_MIN_NS goes to the ring buffer "sc_snoop_events"; one
 * the buffer cannot take is counted in sc_snoop_counters. Pasted into the
 * program text by loader.py, since it declares maps.
 *
 * -D options (validated integers from loader.py): IOLT_SNOOP_MIN_NS and
 * IOLT_SNOOP_PAGES, as in snoop.h.
 */
#ifndef IOLTRACE_SC_SNOOP_H
#define IOLTRACE_SC_SNOOP_H

#ifndef IOLT_SNOOP_MIN_NS
#define IOLT_SNOOP_MIN_NS 0
#endif
#ifndef IOLT_SNOOP_PAGES
#define IOLT_SNOOP_PAGES 256
#endif

BPF_RINGBUF_OUTPUT(sc_snoop_events, IOLT_SNOOP_PAGES);
BPF_ARRAY(sc_snoop_counters, u64, IOLT_SC_SNOOP_NCOUNTERS);

/* At the exit of syscall index sc, in the caller's context. */
static __always_inline void iolt_sc_snoop(u64 now, u64 ns, s64 ret, u32 sc, u64 id)
{
	if (ns < (u64)IOLT_SNOOP_MIN_NS)
		return;
	struct iolt_sc_snoop_event *ev = sc_snoop_events.ringbuf_reserve(sizeof(struct iolt_sc_snoop_event));
	if (!ev) {
		u32 idx = IOLT_SC_SNOOP_CNT_LOST;
		u64 *c = sc_snoop_counters.lookup(&idx);
		if (c)
			__sync_fetch_and_add(c, 1);
		return;
	}
	ev->ts_ns = now;
	ev->lat_ns = ns;
	ev->cgid = bpf_get_current_cgroup_id();
	ev->ret = ret;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ev->tgid = id >> 32;
	ev->tid = (u32)id;
	ev->sc = sc;
	ev->_pad = 0;
	sc_snoop_events.ringbuf_submit(ev, 0);
}

#endif
