/* filter.h: the task filters every kernel program applies, in one place.
 *
 * The values are validated integers loader.py passes as -D flags: a tgid, a
 * cgroup v2 id and its level (ancestors count as matches, so a subtree is
 * selected), and a comm as two little-endian u64. Kernel-side only (it calls
 * BPF helpers), unlike ioltrace.h, which the host compiler also builds.
 */
#ifndef IOLTRACE_FILTER_H
#define IOLTRACE_FILTER_H

#if defined(IOLT_FILTER_TGID) || defined(IOLT_FILTER_CGID) || defined(IOLT_FILTER_COMM_LO)
#define IOLT_TASK_FILTER 1
#endif

/* 1 if the current task passes the filters. comm: the task's comm already
 * copied to memory we own (8-byte aligned), or 0 to ask the kernel. */
static __always_inline int iolt_task_wanted(u32 tgid, const char *comm)
{
#ifdef IOLT_FILTER_TGID
	if (tgid != IOLT_FILTER_TGID)
		return 0;
#endif
#ifdef IOLT_FILTER_CGID
	if (bpf_get_current_ancestor_cgroup_id(IOLT_FILTER_CGLEVEL) != IOLT_FILTER_CGID)
		return 0;
#endif
#ifdef IOLT_FILTER_COMM_LO
	u64 own[2];
	const u64 *c = (const u64 *)comm;
	if (!comm) {
		bpf_get_current_comm(own, sizeof(own));
		c = own;
	}
	if (c[0] != IOLT_FILTER_COMM_LO || c[1] != IOLT_FILTER_COMM_HI)
		return 0;
#endif
	return 1;
}

#endif
