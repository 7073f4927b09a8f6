"""Folding exited processes (fold.py, maps.refold): a simulated kernel whose
processes do I/O, exit and have their pids reused. The ground truth is the
I/O the simulation generated; whatever is folded when, the deltas between
snapshots must add up to it per cgroup and disk, never go negative, and the
keys kept must stay bounded."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ioltrace import fold, layout, maps
from ioltrace.records import Key, Snapshot, SysKey, SysTotals, Totals


class FakeKernel:
    """Cumulative maps as the kernel keeps them: only adds, and deletes
    only what take() is asked to."""

    def __init__(self):
        self.totals, self.hists, self.errors, self.sys = {}, {}, {}, {}
        self.sys_hists = {}

    def io(self, tgid, cgid, dev, nbytes, bucket, errno=0):
        k = Key(cgid, tgid, 0, dev, 1)
        t = self.totals.get(k, Totals(0, 0, 0, 0, 0, f"p{tgid}"))
        self.totals[k] = Totals(t.ios + 1, t.bytes + (0 if errno else nbytes), t.errors + bool(errno),
                                t.queue_ns + 1, t.device_ns + bucket, t.comm)
        arr = self.hists.get((k, 1), np.zeros(layout.NBUCKETS, dtype=np.uint64)).copy()
        arr[bucket] += 1
        self.hists[(k, 1)] = arr
        if errno:
            self.errors[(k, errno)] = self.errors.get((k, errno), 0) + 1
        sk = SysKey(cgid, tgid, 0, 0)
        s = self.sys.get(sk, SysTotals(0, 0, 0, 0, f"p{tgid}"))
        self.sys[sk] = SysTotals(s.calls + 1, s.bytes + nbytes, s.errors, s.sum_ns + bucket, s.comm)
        sarr = self.sys_hists.get(sk, np.zeros(layout.NBUCKETS, dtype=np.uint64)).copy()
        sarr[bucket] += 1
        self.sys_hists[sk] = sarr

    def snapshot(self, now):
        return Snapshot(now, dict(self.totals), dict(self.hists), dict(self.errors), {}, dict(self.sys),
                        dict(self.sys_hists), {})

    def take(self, tgids):
        def pop(d, tgid_of):
            return {c: d.pop(c) for c in [c for c in d if tgid_of(c) in tgids]}

        return Snapshot(0, pop(self.totals, lambda k: k.tgid), pop(self.hists, lambda c: c[0].tgid),
                        pop(self.errors, lambda c: c[0].tgid), {}, pop(self.sys, lambda k: k.tgid),
                        pop(self.sys_hists, lambda k: k.tgid), {})


def by_cgroup_disk(snap):
    """(cgid, dev) -> [ios, bytes, errors, device_ns, hist count, errno count, calls, sys bytes, sys hist]"""
    out = {}

    def row(cgid, dev):
        return out.setdefault((cgid, dev), [0] * 9)

    for k, t in snap.totals.items():
        r = row(k.cgid, k.dev)
        r[0] += t.ios
        r[1] += t.bytes
        r[2] += t.errors
        r[3] += t.device_ns
    for (k, _), arr in snap.hists.items():
        row(k.cgid, k.dev)[4] += int(arr.sum())
    for (k, _), n in snap.errors.items():
        row(k.cgid, k.dev)[5] += n
    for k, t in snap.sys_totals.items():
        r = row(k.cgid, -1)
        r[6] += t.calls
        r[7] += t.bytes
    for k, arr in snap.sys_hists.items():
        row(k.cgid, -1)[8] += int(arr.sum())
    return {c: r for c, r in out.items() if any(r)}


def assert_no_negative(d):
    for t in list(d.totals.values()) + list(d.sys_totals.values()):
        assert min(v for f, v in zip(t._fields, t) if f != "comm") >= 0, t
    for arr in list(d.hists.values()) + list(d.sys_hists.values()):
        assert arr.dtype == np.uint64 and int(arr.max(initial=0)) < 1 << 62, "wrapped below zero"
    assert min(list(d.errors.values()) + [0]) >= 0


# One step: (tgid, cgroup, disk, bytes, bucket, errno) I/Os, then which
# tgids exit, then how far the clock moves.
IO = st.tuples(st.integers(1, 12), st.integers(1, 3), st.integers(1, 2), st.integers(1, 8).map(lambda n: n * 512),
               st.integers(0, 40), st.sampled_from([0, 0, 0, 5, 28]))
STEP = st.tuples(st.lists(IO, max_size=6), st.sets(st.integers(1, 12), max_size=4), st.floats(0, 4))


@settings(max_examples=150, deadline=None)
@given(st.lists(IO, max_size=6), st.lists(STEP, min_size=1, max_size=25), st.sampled_from([0.0, 1.0, 3.0, None]))
def test_deltas_add_up_whatever_is_folded(before, steps, grace):
    kernel = FakeKernel()
    for tgid, cgid, dev, nbytes, bucket, errno in before:  # in the baseline, not in any delta
        kernel.io(tgid, cgid, dev, nbytes, bucket, errno)
    alive = set(range(1, 13))
    clock = [0.0]
    folder = fold.Folder(grace, alive=lambda t: t in alive, clock=lambda: clock[0])

    def snapshot():
        return folder.apply(kernel.snapshot(int(clock[0] * 1e9)), kernel.take)

    first = prev = snapshot()
    whole = FakeKernel()  # every I/O, never folded: the ground truth
    for ios, exits, dt in steps:
        step = FakeKernel()
        for tgid, cgid, dev, nbytes, bucket, errno in ios:
            alive.add(tgid)  # a new process may take the pid of one folded before
            for k in (kernel, step, whole):
                k.io(tgid, cgid, dev, nbytes, bucket, errno)
        alive.difference_update(exits)
        clock[0] += dt
        cur = snapshot()
        d = maps.delta(cur, prev)
        assert_no_negative(d)
        assert by_cgroup_disk(d) == by_cgroup_disk(step.snapshot(0))
        first = maps.refold(first, cur)
        assert by_cgroup_disk(maps.delta(cur, first)) == by_cgroup_disk(whole.snapshot(0))
        prev = cur
        # Bounded: a process's own keys only while alive or within grace.
        own = {k.tgid for k in cur.totals if k.tgid != layout.EXITED_TGID}
        if grace is not None:
            assert own <= alive | set(folder.gone_since), (own, alive, folder.gone_since)


def test_a_process_is_folded_only_after_the_grace_period():
    alive = {7}
    clock = [100.0]
    folder = fold.Folder(5.0, alive=lambda t: t in alive, clock=lambda: clock[0])
    assert folder.due({7}) == set()
    alive.clear()
    assert folder.due({7}) == set()       # seen gone at 100
    clock[0] = 104.9
    assert folder.due({7}) == set()
    clock[0] = 105.0
    assert folder.due({7}) == {7}
    assert folder.gone_since == {}


def test_never_folded_keys():
    folder = fold.Folder(0.0, alive=lambda t: False, clock=lambda: 0.0)
    assert folder.due({0, layout.OTHER_TGID, layout.EXITED_TGID, 9}) == {9}
    assert fold.Folder(None, alive=lambda t: False).due({9}) == set()


def test_folded_counts_land_in_the_cgroups_exited_key():
    kernel = FakeKernel()
    kernel.io(42, cgid=3, dev=8, nbytes=4096, bucket=10)
    kernel.io(43, cgid=3, dev=8, nbytes=512, bucket=11)
    folder = fold.Folder(0.0, alive=lambda t: t == 43, clock=lambda: 0.0)
    snap = folder.apply(kernel.snapshot(1), kernel.take)
    exited = Key(3, layout.EXITED_TGID, layout.EXITED_TGID, 8, 1)
    assert set(snap.totals) == {exited, Key(3, 43, 0, 8, 1)}
    assert snap.totals[exited] == Totals(1, 4096, 0, 1, 10, layout.EXITED_COMM)
    assert int(snap.hists[(exited, 1)][10]) == 1
    assert folder.processes == 1
    assert Key(3, 42, 0, 8, 1) not in kernel.totals  # deleted from the kernel


def test_refold_moves_a_vanished_key_and_keeps_the_rest():
    a, b = Key(1, 5, 0, 8, 1), Key(1, 6, 0, 8, 1)
    f = maps.folded_key(a)
    prev = Snapshot(0, {a: Totals(2, 10, 0, 1, 1, "a"), b: Totals(1, 1, 0, 1, 1, "b")}, {}, {}, {})
    cur = Snapshot(1, {b: Totals(1, 1, 0, 1, 1, "b"), f: Totals(3, 15, 0, 2, 2, layout.EXITED_COMM)}, {}, {}, {})
    got = maps.refold(prev, cur)
    assert got.totals == {b: prev.totals[b], f: Totals(2, 10, 0, 1, 1, layout.EXITED_COMM)}
    assert maps.delta(cur, prev).totals == {f: Totals(1, 5, 0, 1, 1, layout.EXITED_COMM)}
    assert maps.folded_key(Key(1, layout.OTHER_TGID, 0, 0, 1)) is None
