/* In-flight depth of a disk, for IOLT_SIZE_DEPTH: both block probe paths
 * (block.bpf.c, request.bpf.c) paste this after their disk_depth map and
 * count(), which it uses (pasted, not #included: bcc rewrites map calls in
 * the main file only; loader._main_text). */
#ifndef IOLT_DEPTH_H
#define IOLT_DEPTH_H
#ifdef IOLT_SIZE_DEPTH
/* In-flight depth of a disk: every request issued to it counts, traced or
 * not (another cgroup's requests deepen the queue all the same), until its
 * completion or requeue. Returns how many were in flight before this one. */
static __always_inline u32 depth_issue(u32 dev)
{
	u64 zero = 0;
	u64 *c = disk_depth.lookup_or_try_init(&dev, &zero);
	if (!c) {
		count(IOLT_CNT_DEPTH_FULL);
		return 0;
	}
	s64 before = (s64)__sync_fetch_and_add(c, 1);
	return before > 0 ? (u32)before : 0;
}

/* A request left the disk. Requests issued before tracing started were
 * never counted: the count stops at 0 (a race of two CPUs may take it to
 * -1, which the next issue reads as 0), so it is exact again once the disk
 * has been idle. */
static __always_inline void depth_done(u32 dev)
{
	u64 *c = disk_depth.lookup(&dev);
	if (c && (s64)*c > 0)
		__sync_fetch_and_add(c, -1);
}
#endif
#endif /* IOLT_DEPTH_H */
