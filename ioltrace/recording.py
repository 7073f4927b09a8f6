"""Recordings read back for offline use: load, check, regroup, filter, merge.

Turns the rows of one or more CSV recordings (export.csv.read) into Series:
one per key, disk, op and layer, with counters and bucket counts summed over
every interval of every file, and optionally per time window. Stage names
are labels: block rows (queue, device, total), syscall rows (latency) and
any later layer are handled alike. Must not import bcc, read the running
system, or know how anything is shown.
"""

import csv
import functools
import math
from datetime import datetime
from typing import NamedTuple

from . import bykeys, hist, layers, layout
from .errors import BadInput
from .export import csv as rec
from .records import GroupId

# Recorded key kind -> the kinds its rows can be reported by. Every row has
# a disk column, so any recording can be seen per disk; a process or thread
# recording names its comm, so it can be seen per command name ("comm"),
# which is how runs whose pids differ are matched. Nothing else is derivable.
# Any of these can be paired with disk or op (--by cgroup,disk): every row
# has both columns, whatever --by the recording was made with.
REGROUP = {
    "process": ("process", "comm", "disk"),
    "thread": ("thread", "comm", "disk"),
    "cgroup": ("cgroup", "disk"),
    "cgroup-v1": ("cgroup-v1", "disk"),
    "disk": ("disk",),
}
BY_CHOICES = ("process", "thread", "comm", "cgroup", "cgroup-v1", "disk")
STAGE_ORDER = ("queue", "device", "total", "latency", "size", "depth")  # others follow, sorted


class Loaded(NamedTuple):
    """One recording read and checked (load)."""

    path: str
    kind: str        # its key_kind (kernel rows aside); "" when it holds none
    rows: list       # (CsvRow, start_ts, end_ts) of every non-kernel row
    start: float     # first interval_start, epoch seconds
    end: float       # last interval_end
    interval: float  # longest recorded interval, seconds
    counters: dict   # kernel diagnostic counters, summed
    cut: str = ""    # one line when the file was cut short (export.csv.Rows.cut)
    by: str = ""     # the two-key --by it was made with (export.csv.Rows.by), "" for its kind alone


class Filters(NamedTuple):
    """What a report keeps; empty tuples and None keep everything."""

    by: str = None       # key kind, or a pair (bykeys: "cgroup,disk"), to group by; None: the recorded one
    ops: tuple = ()
    stages: tuple = ()
    layer: str = None
    keys: tuple = ()     # key ids or names
    disk: str = None


class Series(NamedTuple):
    """One key's data in a set of recordings (aggregate)."""

    id: GroupId
    layer: str
    counters: dict   # ios, bytes, errors, <stage>_sum_ns, errno:NAME -> total
    hists: dict      # histogram stage -> numpy bucket counts
    windows: dict    # window index -> (counters, hists); empty without a window


class Selection(NamedTuple):
    """Everything a report, comparison or plot shows (aggregate)."""

    paths: tuple
    by: str
    seconds: float   # recorded time (span_seconds)
    window: float    # window width in seconds, or None
    window_seconds: dict  # window index -> recorded seconds inside it (files summed)
    series: list     # Series, sorted by key, disk, op, layer
    counters: dict   # kernel diagnostic counters, summed
    seen: dict       # "op", "stage", "layer", "key", "disk" -> set of values in the recordings


def _line_of(path, index):
    """The line a data row ends on, as export.csv.read counts; only asked
    when reporting an error (quoted names may span lines)."""
    with open(path, newline="", encoding="utf-8", errors="backslashreplace") as f:
        f.readline()
        reader = csv.reader(f)
        for i, _ in enumerate(reader):
            if i == index + 1:
                return reader.line_num + 1
    return index + 3


@functools.lru_cache(maxsize=4096)
def _bucket(low, high):
    """Bucket index of a row's bounds; None unless they are one of this layout's buckets."""
    try:
        lo = int(low)
        hi = math.inf if high == "inf" else int(high)
    except ValueError:
        return None
    if lo < 0:
        return None
    idx = layout.bucket_of(lo)
    return idx if layout.BUCKET_LOW[idx] == lo and layout.BUCKET_HIGH[idx] == hi else None


def load(path):
    """Read and check one recording; BadInput names the file and line."""
    path = str(path)
    rows = rec.read(path)
    times, out, counters, kind = {}, [], {}, ""
    start, end, longest = math.inf, -math.inf, 0.0

    def ts(text, i, field):
        try:
            return times[text]
        except KeyError:
            pass
        try:
            t = times[text] = datetime.fromisoformat(text).timestamp()
        except ValueError:
            raise BadInput(f"{path}:{_line_of(path, i)}", f"{field} {text!r} is not an ISO 8601 time") from None
        return t

    for i, r in enumerate(rows):
        a, b = ts(r.interval_start, i, "interval_start"), ts(r.interval_end, i, "interval_end")
        if b - a > longest or a < start or b > end:
            if b < a:
                raise BadInput(f"{path}:{_line_of(path, i)}", "interval ends before it starts")
            start, end, longest = min(start, a), max(end, b), max(longest, b - a)
        if r.count < 0:
            raise BadInput(f"{path}:{_line_of(path, i)}", f"negative count {r.count}")
        if (r.bucket_low_ns or r.bucket_high_ns) and _bucket(r.bucket_low_ns, r.bucket_high_ns) is None:
            raise BadInput(f"{path}:{_line_of(path, i)}",
                           f"bucket [{r.bucket_low_ns}, {r.bucket_high_ns}) is not one of this ioltrace's "
                           f"buckets (sub_bits={layout.SUB_BITS}): a different bucket layout")
        if r.key_kind != kind:
            if r.key_kind == "kernel":
                counters[r.key] = counters.get(r.key, 0) + r.count
                continue
            if r.key_kind not in REGROUP:
                raise BadInput(f"{path}:{_line_of(path, i)}", f"unknown key_kind {r.key_kind!r}")
            if kind:
                raise BadInput(f"{path}:{_line_of(path, i)}", f"key_kind {r.key_kind!r} in a recording of "
                               f"{kind!r}: rows of two recordings mixed in one file")
            kind = r.key_kind
        out.append((r, a, b))
    if not rows:
        if getattr(rows, "cut", ""):
            raise BadInput(path, "cut short (a run killed mid-write) in its first interval: no complete interval")
        raise BadInput(f"{path}:3", "no intervals recorded (stopped before the first one ended?)")
    by = getattr(rows, "by", "")
    try:
        by = by and bykeys.parse(by, REGROUP.get(kind, ())).text
    except bykeys.Invalid:
        by = ""   # a pair this version does not know: report by the recorded kind
    return Loaded(path, kind, out, start, end, longest, counters, getattr(rows, "cut", ""), by)


def by_kind(loaded, by):
    """The key kind (or pair, "cgroup,disk") to report by: `by` if every
    recording can give its first key, else BadInput saying which cannot;
    None means the one kind they share."""
    kinds = {x.kind for x in loaded if x.kind}
    if by is None:
        if len(kinds) > 1:
            raise BadInput("recordings", f"keyed by {' and '.join(sorted(kinds))}",
                           "choose a --by every one can give, e.g. --by disk")
        pairs = {x.by for x in loaded if x.kind}
        if len(pairs) == 1 and "" not in pairs:
            return pairs.pop()   # all made with the same two-key --by
        return kinds.pop() if kinds else "disk"
    kind = bykeys.of(by).kind
    for x in loaded:
        if x.kind and kind not in REGROUP[x.kind]:
            raise BadInput(f"--by {by}", f"{x.path} was recorded by {x.kind}, which gives only "
                           f"{', '.join(REGROUP[x.kind])} (each alone or with disk or op)",
                           f"record with --by {kind}" if kind != "comm" else None)
    return by


def _gid(r, by, split_disk, split_op):
    """A row's GroupId under a bykeys.By (as group.group_id for live keys)."""
    disk = r.disk if split_disk else "*"
    op = r.op if split_op else "*"
    if by.kind == "disk":
        return GroupId("disk", r.disk, r.disk, disk, op)
    if by.kind == "comm":
        return GroupId("comm", r.name, r.name, disk, op)
    return GroupId(by.kind, r.key, r.name, disk, op)


def aggregate(loaded, filters=Filters(), window=None, check=True):
    """Merge checked recordings into a Selection, by summing.

    window: seconds per time window (None: none); each recorded interval
    goes to the window holding its midpoint, counted from its own file's
    first interval_start, so repeated runs line up. check: filters naming
    an op, stage, layer, key or disk the recordings lack are BadInput.
    """
    by = by_kind(loaded, filters.by)
    if window is not None:
        longest = max(x.interval for x in loaded)
        if window < longest * 0.99:
            raise BadInput(f"--interval {window:g}", f"shorter than the recorded intervals ({longest:.3g}s): "
                           "windows can only join whole intervals")
    # A single key keeps ops apart (a report's rows are per op); a pair
    # keeps exactly its two keys apart.
    pair = bykeys.of(by)
    split_disk, split_op = pair.splits(filters.disk is not None and not pair.pair, not pair.pair)
    seen = {"op": set(), "stage": set(), "layer": set(), "key": set(), "disk": set()}
    acc, names, ids = {}, {}, {}
    for x in loaded:
        for r, a, b in x.rows:
            is_hist = r.bucket_low_ns != ""
            if is_hist:
                seen["stage"].add(r.stage)
                if filters.stages and r.stage not in filters.stages:
                    continue
            row_id = (r.key, r.name, r.disk, r.op, r.layer)
            ident = ids.get(row_id)
            if ident is None:
                gid = _gid(r, pair, split_disk, split_op)
                for field, v in (("op", r.op), ("layer", r.layer), ("disk", r.disk), ("key", gid.key),
                                 ("key", gid.name)):
                    seen[field].add(v)
                keep = not ((filters.ops and r.op not in filters.ops) or (filters.layer and r.layer != filters.layer)
                            or (filters.disk and r.disk != filters.disk)
                            or (filters.keys and gid.key not in filters.keys and gid.name not in filters.keys))
                ident = ids[row_id] = (gid._replace(name=""), r.layer) if keep else False
                if keep:
                    names[ident] = gid.name  # the latest name wins: a process may exec
            if not ident:
                continue
            s = acc.get(ident)
            if s is None:
                s = acc[ident] = ({}, {}, {})
            _add(s[0], s[1], r)
            if window is not None:
                w = int(((a + b) / 2 - x.start) // window)
                _add(*s[2].setdefault(w, ({}, {})), r)
    if check:
        check_filters(filters, seen)
    series = [Series(gid._replace(name=names[(gid, layer)]), layer, c, h, w) for (gid, layer), (c, h, w) in acc.items()]
    series.sort(key=lambda s: (_sortable(s.id.key), s.id.disk, s.id.op, s.layer))
    counters = {}
    for x in loaded:
        for k, v in x.counters.items():
            counters[k] = counters.get(k, 0) + v
    window_seconds = {}
    if window is not None:
        for x in loaded:
            for w in range(int(max(x.end - x.start, 0) // window) + 1):
                inside = min(x.end - x.start, (w + 1) * window) - w * window
                if inside > 0:
                    window_seconds[w] = window_seconds.get(w, 0.0) + inside
    return Selection(tuple(x.path for x in loaded), by, span_seconds(loaded), window, window_seconds,
                     series, counters, seen)


def _add(counters, hists, r):
    """One row into counters (stage -> total) or hists (stage -> bucket counts)."""
    if r.bucket_low_ns:
        h = hists.get(r.stage)
        if h is None:
            h = hists[r.stage] = hist.empty()
        h[_bucket(r.bucket_low_ns, r.bucket_high_ns)] += r.count
    else:
        counters[r.stage] = counters.get(r.stage, 0) + r.count


def check_filters(filters, *seen):
    """BadInput for a filter naming an op, stage, layer, key or disk that
    none of the recordings (seen sets of Selections) hold."""
    have = {f: set().union(*(s[f] for s in seen)) for f in seen[0]}
    for what, field, wanted in (("--op", "op", filters.ops), ("--stage", "stage", filters.stages),
                                ("--layer", "layer", (filters.layer,) if filters.layer else ()),
                                ("--key", "key", filters.keys), ("--disk", "disk", (filters.disk,) if filters.disk else ())):
        missing = [w for w in wanted if w not in have[field]]
        if missing:
            names = sorted(have[field])
            listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise BadInput(f"{what} {missing[0]}", f"not in the recordings (they have: {listed or 'nothing'})")


def span_seconds(loaded):
    """Recorded time: each file's first start to last end; files that
    overlap in time count once (the union), separate runs add up."""
    total, end = 0.0, -math.inf
    for s, e in sorted((x.start, x.end) for x in loaded):
        if e > end:
            total += e - max(s, end)
            end = e
    return total


def read(paths, filters=Filters(), window=None, check=True):
    """load + aggregate: the usual way in."""
    return aggregate([load(p) for p in paths], filters, window, check)


def stages_of(*series, wanted=()):
    """Histogram stages to show for Series (None ones skipped), in a stable order."""
    have = {st for s in series if s is not None for st in s.hists if not wanted or st in wanted}
    return sorted(have, key=lambda st: (STAGE_ORDER.index(st) if st in STAGE_ORDER else len(STAGE_ORDER), st))


def exact_sum(counters, stage):
    """The kernel's exact sum of a stage's latencies, if recorded (block
    total time is queue + device)."""
    v = counters.get(layers.sum_name(stage))
    if v is None and stage == "total" and "queue_sum_ns" in counters and "device_sum_ns" in counters:
        v = counters["queue_sum_ns"] + counters["device_sum_ns"]
    return v


def from_group(g, layer="block"):
    """A live Group (group.by_key) as a Series, through the same rows a
    recording holds, so live --json output and reports agree."""
    counters, hists = {}, {}
    for r in rec.rows([g], 0, 1, layer=layer):
        _add(counters, hists, r)
    return Series(g.id, layer, counters, hists, {})


def _sortable(key):
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def match_id(series):
    """What names the same key in two runs: a cgroup's id changes when it is
    made again, its path does not; pids are compared as they are."""
    gid = series.id
    return (gid.kind, gid.name if gid.kind == "cgroup" else gid.key, gid.disk, gid.op, series.layer)


def pair(a, b):
    """Series of two Selections matched by match_id: (a, b) pairs with None
    for a side that lacks the key; A's order, then keys only in B."""
    in_b = {match_id(s): s for s in b.series}
    out = [(s, in_b.pop(match_id(s), None)) for s in a.series]
    return out + [(None, s) for s in in_b.values()]
