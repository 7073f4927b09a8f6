"""Raw kernel map entries -> typed records, and deltas between snapshots.

Pure: takes the (key, value) pairs loader.py read (bcc's ctypes objects or
layout.py's, which have the same fields) and never touches bcc itself.
"""

import numpy as np

from . import layout
from .records import Key, Snapshot, Totals


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


def delta(cur, prev):
    """What happened between two cumulative snapshots; keys with no change
    are left out. The kernel only adds, so every difference is >= 0; a key
    missing from `prev` is new and counts in full."""
    totals = {}
    for k, t in cur.totals.items():
        p = prev.totals.get(k)
        if p is None:
            if t.ios:
                totals[k] = t
            continue
        if t.ios != p.ios:
            totals[k] = Totals(
                t.ios - p.ios, t.bytes - p.bytes, t.errors - p.errors,
                t.queue_ns - p.queue_ns, t.device_ns - p.device_ns, t.comm,
            )
    hists = {}
    for cell, arr in cur.hists.items():
        p = prev.hists.get(cell)
        d = arr if p is None else arr - p
        if d.any():
            hists[cell] = d
    errors = {}
    for cell, n in cur.errors.items():
        d = n - prev.errors.get(cell, 0)
        if d:
            errors[cell] = d
    counters = {name: cur.counters.get(name, 0) - prev.counters.get(name, 0) for name in layout.COUNTERS}
    return Snapshot(cur.time_ns, totals, hists, errors, counters)
