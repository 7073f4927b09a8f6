"""Raw kernel map entries -> typed records, and deltas between snapshots.

Pure: takes the (key, value) pairs loader.py read (bcc's ctypes objects or
layout.py's, which have the same fields) and never touches bcc itself.
"""

import struct

import numpy as np

from . import layers, layout
from .records import ScSnoopEvent, Snapshot, SnoopEvent


def value_int(v):
    """A map value as an int: bcc hands u64 values over as ctypes integers
    (with .value), tests and fold.py as plain ints."""
    return int(getattr(v, "value", v))


def comm_text(raw):
    """Kernel comm bytes -> str; undecodable bytes are kept as \\x escapes."""
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).split(b"\0", 1)[0]
        return raw.decode("utf-8", "backslashreplace")
    return str(raw)


def decode_key(layer, k):
    """A kernel key struct -> the layer's key record, field by field."""
    return layer.key(*(int(getattr(k, f)) for f in layer.key._fields))


def decode_totals(layer, pairs):
    """The layer's stats map -> {key record: totals record}."""
    names = layer.totals._fields
    return {decode_key(layer, k): layer.totals(*(comm_text(v.comm) if f == "comm" else int(getattr(v, f))
                                                 for f in names))
            for k, v in pairs}


def decode_hists(pairs, layer=layers.BLOCK):
    """The layer's histogram map -> {(key, stage) or key: bucket counts}.

    The cells' arrays are rows of one array: one allocation per snapshot
    rather than one of 8 KiB per cell, which glibc's heap kept after the
    cells of exited processes were dropped. A row keeps the whole array
    alive: whatever keeps a cell beyond the next snapshot copies it."""
    index, rows, buckets, counts = {}, [], [], []
    for k, v in pairs:
        key = decode_key(layer, k.k)
        cell = (key, int(k.stage)) if layer.staged else key
        row = index.setdefault(cell, len(index))
        b = int(k.bucket)
        if 0 <= b < layout.NBUCKETS:
            rows.append(row)
            buckets.append(b)
            counts.append(value_int(v))
    grid = np.zeros((len(index), layout.NBUCKETS), dtype=np.uint64)
    if rows:
        np.add.at(grid, (np.array(rows), np.array(buckets)), np.array(counts, dtype=np.uint64))
    return {cell: grid[row] for cell, row in index.items()}


def decode_errors(pairs, layer=layers.BLOCK):
    """The layer's errno map -> {(key, positive errno): count}."""
    out = {}
    for k, v in pairs:
        cell = (decode_key(layer, k.k), -int(k.err))
        out[cell] = out.get(cell, 0) + value_int(v)
    return out


def decode_counters(values, layer=layers.BLOCK):
    """The layer's counter array -> {name: count}; missing ones are 0."""
    vals = [value_int(v) for v in values]
    vals += [0] * (len(layer.counters) - len(vals))
    return dict(zip(layer.counters, vals))


def decode_stats(pairs):
    return decode_totals(layers.BLOCK, pairs)


def decode_layer(layer, raw):
    """The Snapshot fields of one layer from raw (map name -> pairs)."""
    totals_f, hists_f, errors_f = layer.fields
    out = {totals_f: decode_totals(layer, raw.get(layer.stats, [])),
           hists_f: decode_hists(raw.get(layer.hist, []), layer)}
    if errors_f is not None:
        out[errors_f] = decode_errors(raw.get(layer.errs, []), layer)
    return out


def decode(time_ns, traced, raw, counter_values):
    """A Snapshot of the traced layers: raw is map name -> (key, value)
    pairs, counter_values layer name -> the values of its counter array."""
    fields, counters = {}, {}
    for layer in traced:
        fields.update(decode_layer(layer, raw))
        counters.update(decode_counters(counter_values.get(layer.name, []), layer))
    return Snapshot(time_ns, {}, {}, {}, counters)._replace(**fields)


def snapshot(time_ns, stats_pairs, hist_pairs, err_pairs, counter_values):
    """A Snapshot of the block layer alone."""
    b = layers.BLOCK
    return decode(time_ns, (b,), {b.stats: stats_pairs, b.hist: hist_pairs, b.errs: err_pairs},
                  {b.name: counter_values})


def empty_snapshot(time_ns):
    return Snapshot(time_ns, {}, {}, {}, dict.fromkeys(layout.COUNTERS, 0))


def _delta_counts(cur, prev):
    out = {}
    for cell, n in cur.items():
        d = n - prev.get(cell, 0)
        if d:
            out[cell] = d
    return out


def _delta_totals(cur, prev, gauges=()):
    """Field-wise differences of a layer's totals records (count first,
    comm kept; `gauges` are kept from cur); keys whose count did not move
    are left out."""
    out = {}
    for k, t in cur.items():
        p = prev.get(k)
        if p is None:
            if t[0]:
                out[k] = t
        elif t[0] != p[0]:
            d = type(t)(*(a if f == "comm" else a - b for f, a, b in zip(t._fields, t, p)))
            out[k] = d._replace(**{g: getattr(t, g) for g in gauges}) if gauges else d
    return out


def _delta_hists(cur, prev):
    """The cells that moved; differences are rows of one array (as in
    decode_hists), new cells cur's own arrays."""
    out, changed = {}, []
    for cell, arr in cur.items():
        p = prev.get(cell)
        if p is None:
            if arr.any():
                out[cell] = arr
        elif p is not arr:
            changed.append((cell, arr, p))
    if changed:
        grid = np.empty((len(changed), layout.NBUCKETS), dtype=np.uint64)
        for row, (cell, arr, p) in enumerate(changed):
            d = np.subtract(arr, p, out=grid[row])
            if d.any():
                out[cell] = d
    return out


# The Snapshot fields keyed by process (a layer's key, or a (key, x) pair)
# of the layers that fold: the ones folding and refolding touch.
CELL_FIELDS = tuple(f for layer in layers.ALL if layer.folds for f in layer.fields if f)
_KEY_TYPES = tuple(layer.key for layer in layers.ALL)


def cell_key(cell):
    """The key record of a Snapshot dict key: itself, or the first of a
    (key, stage/errno) pair."""
    return cell if isinstance(cell, _KEY_TYPES) else cell[0]


def folded_key(key):
    """The key a process's key is folded into when it has exited (fold.py):
    same cgroup, disk and op (or syscall), tgid and tid EXITED_TGID. None for
    keys that are never folded: the kernel's catch-all and the folded ones."""
    if key.tgid in (layout.OTHER_TGID, layout.EXITED_TGID):
        return None
    return key._replace(tgid=layout.EXITED_TGID, tid=layout.EXITED_TGID)


def _folded_cell(cell):
    """folded_key for a dict key that is a key record or a (key, x) pair."""
    key = cell_key(cell)
    f = folded_key(key)
    return f if f is None or key is cell else (f, cell[1])


def add_totals(a, b):
    """Field-wise sum of two totals records of a layer (either may be None); the
    comm is the folded key's."""
    if a is None:
        return b._replace(comm=layout.EXITED_COMM)
    return type(a)(*(layout.EXITED_COMM if f == "comm" else x + y for f, x, y in zip(a._fields, a, b)))


def _add(a, b):
    if isinstance(b, tuple):
        return add_totals(a, b)
    if a is None:
        # A copy: a row of a snapshot's array would keep all of it (decode_hists).
        return b.copy() if isinstance(b, np.ndarray) else b
    return a + b  # a new array or int: never in place


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
    fields = {}
    for layer in layers.ALL:
        totals_f, hists_f, errors_f = layer.fields
        fields[totals_f] = _delta_totals(getattr(cur, totals_f), getattr(prev, totals_f), layer.gauges)
        fields[hists_f] = _delta_hists(getattr(cur, hists_f), getattr(prev, hists_f))
        if errors_f is not None:
            fields[errors_f] = _delta_counts(getattr(cur, errors_f), getattr(prev, errors_f))
    return Snapshot(cur.time_ns, {}, {}, {}, counters)._replace(**fields)


def op_of_rwbs(rwbs):
    """blk_fill_rwbs() letters -> op number (layout.OPS), as the kernel
    side's iolt_op_from_rwbs(): a leading F (preflush) before W, R, D or N
    is skipped; F alone is a flush."""
    c = rwbs[:1]
    if c == "F" and rwbs[1:2] in ("W", "R", "D", "N"):
        c = rwbs[1:2]
    return _OP_OF_LETTER.get(c, _OP_OTHER)


_OP_OF_LETTER = {c: layout.OPS.index(op) for c, op in (("R", "read"), ("W", "write"), ("F", "flush"),
                                                       ("D", "discard"))}
_OP_OTHER = layout.OPS.index("other")


# struct iolt_snoop_event as layout.SnoopEvent lays it out (tests/unit/test_snoop.py
# checks the two agree): one unpack per event, where the reader of a busy disk
# has a few microseconds for each.
SNOOP_EVENT = struct.Struct("<5Q16s4Ii12s")


def decode_snoop_event(raw):
    """The bytes of a struct iolt_snoop_event -> records.SnoopEvent."""
    ts, sector, q, d, cgid, comm, tgid, tid, dev, nbytes, err, rwbs = SNOOP_EVENT.unpack_from(raw)
    return SnoopEvent(ts, sector, q, d, cgid, comm_text(comm), tgid, tid, dev, nbytes, err,
                      rwbs.split(b"\0", 1)[0].decode("ascii", "replace"))


# struct iolt_sc_snoop_event as layout.ScSnoopEvent lays it out.
SC_SNOOP_EVENT = struct.Struct("<3Qq16s4I")


def decode_sc_snoop_event(raw):
    """The bytes of a struct iolt_sc_snoop_event -> records.ScSnoopEvent."""
    ts, lat, cgid, ret, comm, tgid, tid, sc, _ = SC_SNOOP_EVENT.unpack_from(raw)
    return ScSnoopEvent(ts, lat, cgid, ret, comm_text(comm), tgid, tid, sc)
