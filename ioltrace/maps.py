"""Raw kernel map entries -> typed records, and deltas between snapshots.

Pure: takes the (key, value) pairs loader.py read (bcc's ctypes objects or
layout.py's, which have the same fields) and never touches bcc itself.
"""

import numpy as np

from . import layout
from .records import Key, Snapshot, SysKey, SysTotals, Totals


def _key(k):
    return Key(int(k.cgid), int(k.tgid), int(k.tid), int(k.dev), int(k.op))


def comm_text(raw):
    """Kernel comm bytes -> str; undecodable bytes are kept as \\x escapes."""
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).split(b"\0", 1)[0]
        return raw.decode("utf-8", "backslashreplace")
    return str(raw)


def decode_stats(pairs):
    out = {}
    for k, v in pairs:
        out[_key(k)] = Totals(
            int(v.ios), int(v.bytes), int(v.errors), int(v.queue_ns), int(v.device_ns), comm_text(v.comm)
        )
    return out


def decode_hists(pairs):
    out = {}
    for k, v in pairs:
        cell = (_key(k.k), int(k.stage))
        arr = out.get(cell)
        if arr is None:
            arr = out[cell] = np.zeros(layout.NBUCKETS, dtype=np.uint64)
        b = int(k.bucket)
        if 0 <= b < layout.NBUCKETS:
            arr[b] += int(v.value if hasattr(v, "value") else v)
    return out


def decode_errors(pairs):
    out = {}
    for k, v in pairs:
        cell = (_key(k.k), -int(k.err))
        out[cell] = out.get(cell, 0) + int(v.value if hasattr(v, "value") else v)
    return out


def decode_counters(values):
    vals = [int(v.value if hasattr(v, "value") else v) for v in values]
    vals += [0] * (len(layout.COUNTERS) - len(vals))
    return dict(zip(layout.COUNTERS, vals))


def snapshot(time_ns, stats_pairs, hist_pairs, err_pairs, counter_values):
    return Snapshot(
        time_ns,
        decode_stats(stats_pairs),
        decode_hists(hist_pairs),
        decode_errors(err_pairs),
        decode_counters(counter_values),
    )


def empty_snapshot(time_ns):
    return Snapshot(time_ns, {}, {}, {}, dict.fromkeys(layout.COUNTERS, 0))


def _sys_key(k):
    return SysKey(int(k.cgid), int(k.tgid), int(k.tid), int(k.sc))


def _value(v):
    return int(v.value if hasattr(v, "value") else v)


def with_syscalls(snap, stats_pairs, hist_pairs, err_pairs, counter_values):
    """snap with the syscall layer's map entries added."""
    totals = {_sys_key(k): SysTotals(int(v.calls), int(v.bytes), int(v.errors), int(v.sum_ns), comm_text(v.comm))
              for k, v in stats_pairs}
    hists = {}
    for k, v in hist_pairs:
        key = _sys_key(k.k)
        arr = hists.get(key)
        if arr is None:
            arr = hists[key] = np.zeros(layout.NBUCKETS, dtype=np.uint64)
        if 0 <= int(k.bucket) < layout.NBUCKETS:
            arr[int(k.bucket)] += _value(v)
    errors = {}
    for k, v in err_pairs:
        cell = (_sys_key(k.k), -int(k.err))
        errors[cell] = errors.get(cell, 0) + _value(v)
    vals = [_value(v) for v in counter_values] + [0] * len(layout.SC_COUNTERS)
    counters = dict(snap.counters, **dict(zip(layout.SC_COUNTERS, vals)))
    return snap._replace(counters=counters, sys_totals=totals, sys_hists=hists, sys_errors=errors)


def loop_snapshot(time_ns, stats_pairs, hist_pairs):
    """(time_ns, {(tgid, step): (count, sum_ns, min_ns, max_ns, comm)},
    {(tgid, step): bucket counts}) from the loop maps."""
    stats = {(int(k.tgid), int(k.step)): (int(v.count), int(v.sum_ns), int(v.min_ns), int(v.max_ns),
                                          comm_text(v.comm)) for k, v in stats_pairs}
    hists = {}
    for k, v in hist_pairs:
        cell = (int(k.k.tgid), int(k.k.step))
        arr = hists.get(cell)
        if arr is None:
            arr = hists[cell] = np.zeros(layout.NBUCKETS, dtype=np.uint64)
        if 0 <= int(k.bucket) < layout.NBUCKETS:
            arr[int(k.bucket)] += _value(v)
    return time_ns, stats, hists


def _delta_counts(cur, prev):
    out = {}
    for cell, n in cur.items():
        d = n - prev.get(cell, 0)
        if d:
            out[cell] = d
    return out


def _delta_totals(cur, prev):
    """Field-wise differences of Totals or SysTotals (counts first, comm
    last); keys whose count (the first field) did not move are left out."""
    out = {}
    for k, t in cur.items():
        p = prev.get(k)
        if p is None:
            if t[0]:
                out[k] = t
        elif t[0] != p[0]:
            out[k] = type(t)(*(a - b for a, b in zip(t[:-1], p[:-1])), t.comm)
    return out


def _delta_hists(cur, prev):
    out = {}
    for cell, arr in cur.items():
        p = prev.get(cell)
        d = arr if p is None else arr - p
        if d.any():
            out[cell] = d
    return out


# The Snapshot fields keyed by process (Key, SysKey, or a (key, x) pair):
# the ones folding and refolding touch.
CELL_FIELDS = ("totals", "hists", "errors", "sys_totals", "sys_hists", "sys_errors")


def cell_key(cell):
    """The Key or SysKey of a Snapshot dict key: itself, or the first of a
    (key, stage/errno) pair."""
    return cell if isinstance(cell, (Key, SysKey)) else cell[0]


def folded_key(key):
    """The key a process's key is folded into when it has exited (fold.py):
    same cgroup, disk and op (or syscall), tgid and tid EXITED_TGID. None for
    keys that are never folded: the kernel's catch-all and the folded ones."""
    if key.tgid in (layout.OTHER_TGID, layout.EXITED_TGID):
        return None
    return key._replace(tgid=layout.EXITED_TGID, tid=layout.EXITED_TGID)


def _folded_cell(cell):
    """folded_key for a dict key that is a Key/SysKey or a (key, x) pair."""
    key = cell_key(cell)
    f = folded_key(key)
    return f if f is None or key is cell else (f, cell[1])


def add_totals(a, b):
    """Field-wise sum of two Totals or SysTotals (either may be None); the
    comm is the folded key's."""
    if a is None:
        return b._replace(comm=layout.EXITED_COMM)
    return type(a)(*(x + y for x, y in zip(a[:-1], b[:-1])), layout.EXITED_COMM)


def _add(a, b):
    if isinstance(b, tuple):
        return add_totals(a, b)
    return b if a is None else a + b  # a new array or int: never in place


def fold_into(dest, part):
    """dest (a dict of one Snapshot field) with the entries of `part` added
    under their folded keys. Returns a new dict; values are never changed in
    place, so Snapshots already handed out keep their counts."""
    out = dict(dest)
    for cell, v in part.items():
        f = _folded_cell(cell)
        if f is not None:
            out[f] = _add(out.get(f), v)
    return out


def _refold_field(prev, cur):
    gone = {c: v for c, v in prev.items() if c not in cur and _folded_cell(c) is not None}
    if not gone:
        return prev
    kept = {c: v for c, v in prev.items() if c not in gone}
    return fold_into(kept, gone)


def refold(prev, cur):
    """`prev` as it reads after the folds that happened before `cur`.

    Only folding (fold.py) removes keys from the kernel maps, and a folded
    key's counts move to its folded_key; so a key in `prev` that `cur` lacks
    was folded, and moving its counts the same way in `prev` makes every
    difference between the two exact again. Keep a baseline refolded against
    each new snapshot (session.run does): then a pid that is reused after its
    fold starts from zero, as its kernel entry does."""
    return prev._replace(**{f: _refold_field(getattr(prev, f), getattr(cur, f)) for f in CELL_FIELDS})


def delta(cur, prev):
    """What happened between two cumulative snapshots; keys with no change
    are left out. The kernel only adds, so every difference is >= 0; a key
    missing from `prev` is new and counts in full, and one missing from `cur`
    was folded (refold)."""
    prev = refold(prev, cur)
    counters = {name: cur.counters.get(name, 0) - prev.counters.get(name, 0) for name in cur.counters}
    return Snapshot(cur.time_ns, _delta_totals(cur.totals, prev.totals), _delta_hists(cur.hists, prev.hists),
                    _delta_counts(cur.errors, prev.errors), counters,
                    _delta_totals(cur.sys_totals, prev.sys_totals), _delta_hists(cur.sys_hists, prev.sys_hists),
                    _delta_counts(cur.sys_errors, prev.sys_errors))
