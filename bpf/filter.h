/* filter.h: the task filters every kernel program applies, in one place.
 *
 * The values are validated integers loader.py passes as -D flags: a tgid, a
 * cgroup v2 id and its level (ancestors count as matches, so a subtree is
 * selected), and a comm as two little-endian u64. With a tgid, the fork
 * probe below keeps the set of its descendants (seeded by loader.py from
 * /proc with those alive at start): with IOLT_FILTER_CHILDREN they are
 * traced, without it their requests are counted as excluded "children".
 * Kernel-side only (it calls BPF helpers), unlike ioltrace.h, which the host
 * compiler also builds.
 */
#ifndef IOLTRACE_FILTER_H
#define IOLTRACE_FILTER_H

#if defined(IOLT_FILTER_TGID) || defined(IOLT_FILTER_CGID) || defined(IOLT_FILTER_COMM_LO)
#define IOLT_TASK_FILTER 1
#endif

#ifdef IOLT_FILTER_TGID
/* Descendants of IOLT_FILTER_TGID: their tgids, and (harmlessly) the tids of
 * threads they start, which the fork record cannot tell from processes;
 * 65536 entries, range 1..1M. A full set leaves later descendants "pid". */
BPF_HASH(iolt_family, u32, u8, 65536);

/* sched:sched_process_fork, attached by loader.py by name: the record's
 * layout changed in 6.x (comm became __data_loc), so the child_pid offset
 * comes from tracefs as IOLT_FORK_CHILD_OFF (validated int). The fork runs
 * in the parent's context. */
int iolt_fork(void *ctx)
{
	u32 parent = bpf_get_current_pid_tgid() >> 32;
	if (parent != IOLT_FILTER_TGID && !iolt_family.lookup(&parent))
		return 0;
	s32 child = 0;
	bpf_probe_read_kernel(&child, sizeof(child), (char *)ctx + IOLT_FORK_CHILD_OFF);
	u32 key = (u32)child;
	u8 one = 1;
	iolt_family.update(&key, &one);
	return 0;
}
#endif

/* 0 if the current task passes the filters, else the first filter that
 * excludes it (IOLT_FILTERED_*). comm: the task's comm already copied to
 * memory we own (8-byte aligned), or 0 to ask the kernel. */
static __always_inline u32 iolt_task_filter(u32 tgid, const char *comm)
{
#ifdef IOLT_FILTER_CGID
	if (bpf_get_current_ancestor_cgroup_id(IOLT_FILTER_CGLEVEL) != IOLT_FILTER_CGID)
		return IOLT_FILTERED_CGROUP;
#endif
#ifdef IOLT_FILTER_TGID
	if (tgid != IOLT_FILTER_TGID) {
		if (!iolt_family.lookup(&tgid))
			return IOLT_FILTERED_PID;
#ifndef IOLT_FILTER_CHILDREN
		return IOLT_FILTERED_CHILDREN;
#endif
	}
#endif
#ifdef IOLT_FILTER_COMM_LO
	u64 own[2];
	const u64 *c = (const u64 *)comm;
	if (!comm) {
		bpf_get_current_comm(own, sizeof(own));
		c = own;
	}
	if (c[0] != IOLT_FILTER_COMM_LO || c[1] != IOLT_FILTER_COMM_HI)
		return IOLT_FILTERED_COMM;
#endif
	return 0;
}

/* 1 if the current task passes the filters. */
static __always_inline int iolt_task_wanted(u32 tgid, const char *comm)
{
	return iolt_task_filter(tgid, comm) == 0;
}

#endif
