"""Folding exited processes: bounded maps under process churn.

The kernel keeps one entry per (process, cgroup, disk, op), so 20,000
short-lived processes would leave 20,000 keys (and their histograms) in the
maps and in every snapshot. A process gone for `grace` seconds is folded:
take() deletes its kernel entries (through the map objects loader.Tracer
hands it) and Folder adds their counts to the key maps.folded_key gives it (tgid EXITED_TGID, same cgroup, disk and op),
kept here in user space. Per-cgroup and per-disk totals do not change, and
maps.refold keeps every delta exact across the fold.

Pure but for the default liveness check (/proc/PID), which tests replace.
"""

import os
import time

from . import layers, layout, maps
from .records import Snapshot

_TOTALS = tuple(layer.fields[0] for layer in layers.ALL if layer.folds)
_NEVER = (0, layout.OTHER_TGID, layout.EXITED_TGID)  # tgid 0: I/O with no process (kernel threads' idle)


def proc_alive(tgid, proc="/proc"):
    return os.path.exists(f"{proc}/{tgid}")


class Folder:
    """Which tgids to fold at each snapshot, and the folded counts so far."""

    def __init__(self, grace_s=layout.DEFAULT_KEEP_EXITED_S, alive=proc_alive, clock=time.monotonic, on_fold=()):
        self.grace = grace_s
        self.on_fold = tuple(on_fold)  # each called with the set of tgids just folded
        self.alive = alive
        self.clock = clock
        self.gone_since = {}  # tgid -> when it was first seen gone
        self.folded = Snapshot(0, {}, {}, {}, {})
        self.processes = 0    # processes folded so far

    def due(self, tgids):
        """The tgids among `tgids` (those in the maps now) gone for at least
        the grace period; forgets the rest."""
        if self.grace is None:
            return set()
        now = self.clock()
        seen = {}
        due = set()
        for tgid in tgids:
            if tgid in _NEVER or self.alive(tgid):
                continue
            since = seen[tgid] = self.gone_since.get(tgid, now)
            if now - since >= self.grace:
                due.add(tgid)
        self.gone_since = {t: s for t, s in seen.items() if t not in due}
        return due

    def add(self, part):
        """Fold `part` (a Snapshot of the deleted entries) into the folded
        counts."""
        f = self.folded
        self.folded = f._replace(**{n: maps.fold_into(getattr(f, n), getattr(part, n)) for n in maps.CELL_FIELDS})
        self.processes += len(_tgids(part))

    def apply(self, snap, take):
        """`snap` (just read from the kernel) with the due processes folded.

        take(tgids) deletes those processes' kernel entries and returns their
        counts, read as they were deleted, as a Snapshot."""
        due = self.due(_tgids(snap))
        if due:
            self.add(take(due))
            for fn in self.on_fold:
                fn(due)
        f = self.folded
        if not (due or any(getattr(f, n) for n in _TOTALS)):
            return snap
        return snap._replace(**{n: {**_without(getattr(snap, n), due), **getattr(f, n)} for n in maps.CELL_FIELDS})


def _tgids(snap):
    return {k.tgid for n in _TOTALS for k in getattr(snap, n)}


def take(tables, raw, tgids, traced):
    """Delete the entries of these processes from the kernel maps and return
    their counts as a Snapshot, each read just before its deletion (a late
    completion between the two is lost: after the grace period there is none
    left to come). tables: map name -> map (bcc's, or any dict-like); raw:
    map name -> the (key, value) pairs just read; traced: the layers."""
    taken = {}
    for name, table in tables.items():
        out = taken.setdefault(name, [])
        for k, _ in raw.get(name, []):
            if getattr(k, "k", k).tgid in tgids:   # histogram and errno keys hold the stats key in .k
                try:
                    v = table[k]
                    del table[k]
                except KeyError:
                    continue
                out.append((k, v))
    return maps.decode(0, traced, taken, {})


def _without(cells, tgids):
    """cells (a Snapshot field) without the entries of these tgids."""
    if not tgids:
        return cells
    return {c: v for c, v in cells.items() if maps.cell_key(c).tgid not in tgids}
