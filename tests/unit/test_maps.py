"""maps.py on map entries built from layout.py's ctypes structs, as bcc hands them over."""

import ctypes
import errno

import numpy as np
import pytest

from ioltrace import layout, maps
from ioltrace.records import Key, Totals

U64 = ctypes.c_uint64
K1 = dict(cgid=11, tgid=100, tid=0, dev=(8 << 20) | 0, op=0)
K2 = dict(cgid=12, tgid=200, tid=0, dev=(259 << 20) | 1, op=1)


def skey(**kw):
    return layout.StatKey(**kw)


def stat(ios, nbytes, errors, q, d, comm):
    return layout.Stat(ios, nbytes, errors, q, d, comm)


def hkey(k, stage, bucket):
    return layout.HistKey(skey(**k), stage, bucket)


def ekey(k, err):
    return layout.ErrKey(skey(**k), err, 0)


@pytest.mark.parametrize("raw, text", [
    (b"postgres", "postgres"),
    (b"kworker/u8:2", "kworker/u8:2"),
    ("dé".encode() + b"\xff\xfe", "dé\\xff\\xfe"),
    (b"ab\0junk", "ab"),
    (b"a" * 15, "a" * 15),
    (b"", ""),
])
def test_comm_text(raw, text):
    assert maps.comm_text(raw) == text
    # Through the ctypes field too (c_char arrays stop at the first NUL).
    assert maps.decode_stats([(skey(**K1), stat(1, 0, 0, 0, 0, raw[:16]))])[Key(**K1)].comm == text


def snap(t, stats=(), hists=(), errs=(), counters=()):
    return maps.snapshot(
        t,
        [(skey(**k), stat(*v)) for k, v in stats],
        [(hkey(k, s, b), U64(n)) for k, s, b, n in hists],
        [(ekey(k, e), U64(n)) for k, e, n in errs],
        [U64(c) for c in counters],
    )


def test_snapshot_decodes_every_map():
    s = snap(
        5,
        stats=[(K1, (3, 12288, 1, 300, 900, b"dd")), (K2, (1, 4096, 0, 5, 7, b"fio"))],
        hists=[(K1, layout.STAGE_QUEUE, 3, 2), (K1, layout.STAGE_DEVICE, 700, 3), (K1, layout.STAGE_QUEUE, 40, 1),
               (K2, layout.STAGE_DEVICE, layout.OVERFLOW_BUCKET, 1)],
        errs=[(K1, -errno.EIO, 1), (K2, -errno.ENOSPC, 4)],
        counters=list(range(1, len(layout.COUNTERS) + 1)),
    )
    k1, k2 = Key(**K1), Key(**K2)
    assert s.time_ns == 5
    assert s.totals == {k1: Totals(3, 12288, 1, 300, 900, "dd"), k2: Totals(1, 4096, 0, 5, 7, "fio")}
    assert set(s.hists) == {(k1, 0), (k1, 1), (k2, 1)}
    assert {c: np.nonzero(a)[0].tolist() for c, a in s.hists.items()} == {
        (k1, 0): [3, 40], (k1, 1): [700], (k2, 1): [layout.OVERFLOW_BUCKET]}
    assert s.hists[(k1, 0)][[3, 40]].tolist() == [2, 1] and s.hists[(k1, 1)][700] == 3
    assert all(a.shape == (layout.NBUCKETS,) for a in s.hists.values())
    assert s.errors == {(k1, errno.EIO): 1, (k2, errno.ENOSPC): 4}
    assert s.counters == dict(zip(layout.COUNTERS, range(1, len(layout.COUNTERS) + 1)))


def test_short_counter_array_pads_with_zeros():
    assert maps.snapshot(0, [], [], [], [U64(9)]).counters == {n: 9 if i == 0 else 0 for i, n in enumerate(layout.COUNTERS)}


def test_delta():
    k3 = dict(K1, op=2)
    prev = snap(1, stats=[(K1, (3, 300, 1, 30, 60, b"a")), (K2, (5, 500, 0, 50, 90, b"b"))],
                hists=[(K1, 1, 10, 3), (K2, 1, 20, 5)], errs=[(K1, -errno.EIO, 1), (K2, -errno.ENOSPC, 2)],
                counters=[1, 0, 0, 0, 0, 0, 0] + [0] * (len(layout.COUNTERS) - 7))
    cur = snap(2, stats=[(K1, (7, 700, 2, 71, 160, b"a")), (K2, (5, 500, 0, 50, 90, b"b")),
                         (k3, (2, 0, 2, 4, 6, b"c"))],
               hists=[(K1, 1, 10, 4), (K1, 1, 11, 3), (K2, 1, 20, 5), (k3, 0, 1, 2)],
               errs=[(K1, -errno.EIO, 2), (K2, -errno.ENOSPC, 2), (k3, -errno.ENOSPC, 2)],
               counters=[4, 2, 0, 0, 0, 0, 1] + [0] * (len(layout.COUNTERS) - 7))
    d = maps.delta(cur, prev)
    k1, k3k = Key(**K1), Key(**k3)
    assert d.time_ns == 2
    assert d.totals == {k1: Totals(4, 400, 1, 41, 100, "a"), k3k: Totals(2, 0, 2, 4, 6, "c")}
    assert set(d.hists) == {(k1, 1), (k3k, 0)}
    assert {b: int(d.hists[(k1, 1)][b]) for b in np.nonzero(d.hists[(k1, 1)])[0]} == {10: 1, 11: 3}
    assert np.nonzero(d.hists[(k3k, 0)])[0].tolist() == [1] and d.hists[(k3k, 0)][1] == 2
    assert d.errors == {(k1, errno.EIO): 1, (k3k, errno.ENOSPC): 2}
    assert d.counters == dict(zip(layout.COUNTERS, [3, 2, 0, 0, 0, 0, 1] + [0] * (len(layout.COUNTERS) - 7)))
    # Nothing happened: nothing left.
    same = maps.delta(cur, cur)
    assert (same.totals, same.hists, same.errors) == ({}, {}, {})
    assert set(same.counters.values()) == {0}
    # From nothing: everything counts in full.
    full = maps.delta(cur, maps.empty_snapshot(0))
    assert full.totals == cur.totals and full.errors == cur.errors and full.counters == cur.counters
