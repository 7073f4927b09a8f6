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


def delta(cur, prev):
    """What happened between two cumulative snapshots; keys with no change
    are left out. The kernel only adds, so every difference is >= 0; a key
    missing from `prev` is new and counts in full."""
    counters = {name: cur.counters.get(name, 0) - prev.counters.get(name, 0) for name in cur.counters}
    return Snapshot(cur.time_ns, _delta_totals(cur.totals, prev.totals), _delta_hists(cur.hists, prev.hists),
                    _delta_counts(cur.errors, prev.errors), counters,
                    _delta_totals(cur.sys_totals, prev.sys_totals), _delta_hists(cur.sys_hists, prev.sys_hists),
                    _delta_counts(cur.sys_errors, prev.sys_errors))
