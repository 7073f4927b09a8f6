"""`ioltrace top` text: rows per key, header with totals, 80-column layout.

Takes Groups (group.by_key) and returns lines; it knows nothing of curses or
the kernel, so batch mode, the live screen and tests share it.
"""

import math

from .. import bykeys, cgnames, fmt, hist, layout
from ..records import TopRow

# (column, header, width, right-aligned); name takes what is left.
COLUMNS = (
    ("key", "ID", 8, True),
    ("name", "NAME", 0, False),
    ("read_bps", "READ/s", 8, True),
    ("write_bps", "WRITE/s", 8, True),
    ("iops", "IOPS", 6, True),
    ("q_p50", "Qp50", 6, True),
    ("q_p99", "Qp99", 6, True),
    ("d_p50", "Dp50", 6, True),
    ("d_p99", "Dp99", 6, True),
)
# The cgroup view trades the id and queue p50 for what the group was allowed
# (weight, limits) and what it got (share of bytes), to stay in 80 columns.
CGROUP_COLUMNS = (
    ("name", "CGROUP", 0, False),
    ("read_bps", "READ/s", 8, True),
    ("write_bps", "WRITE/s", 8, True),
    ("iops", "IOPS", 6, True),
    ("q_p99", "Qp99", 6, True),
    ("d_p50", "Dp50", 6, True),
    ("d_p99", "Dp99", 6, True),
    ("share", "SHARE", 5, True),
    ("controls", "CONTROLS", 11, False),
)
# The syscall layer: calls and their latency, bytes from the calls' returns.
SYSCALL_COLUMNS = (
    ("key", "ID", 8, True),
    ("name", "NAME", 0, False),
    ("calls", "CALLS/s", 8, True),
    ("read_bps", "READ/s", 8, True),
    ("write_bps", "WRITE/s", 8, True),
    ("s_p50", "Sp50", 6, True),
    ("s_p99", "Sp99", 6, True),
)
# Both layers on one row: syscall latency next to queue and device latency,
# so the layer where time goes stands out; bytes are the block layer's.
BOTH_COLUMNS = (
    ("key", "ID", 8, True),
    ("name", "NAME", 0, False),
    ("read_bps", "READ/s", 8, True),
    ("write_bps", "WRITE/s", 8, True),
    ("s_p50", "Sp50", 6, True),
    ("s_p99", "Sp99", 6, True),
    ("q_p50", "Qp50", 6, True),
    ("d_p50", "Dp50", 6, True),
    ("d_p99", "Dp99", 6, True),
)
SORT_KEYS = {"id": "key", "name": "name", "read": "read_bps", "write": "write_bps", "iops": "iops",
             "qp50": "q_p50", "qp99": "q_p99", "dp50": "d_p50", "dp99": "d_p99", "latency": "d_p99",
             "errors": "errors", "ioerr": "errors", "scerr": "sys_errors", "share": "share", "bytes": "share",
             "calls": "calls", "sp50": "s_p50", "sp99": "s_p99"}
MIN_NAME = 10
SECOND_WIDTH = 8   # DISK (nvme0n1, loop12) or OP (discard, pwrite64): 8 columns, longer names cut
# Columns dropped whole, first to last, while a table is wider than the
# terminal (as iotop does); the name, bytes and device p99 always stay.
DROP_ORDER = ("q_p50", "s_p50", "d_p50", "controls", "q_p99", "iops", "calls", "share", "key",
              "sys_errors", "errors", "s_p99")
ERROR_COLUMNS = {
    # Which layer's failures a column counts: block requests the device
    # completed with an error, or syscalls that returned one (EAGAIN included).
    "errors": ("errors", "IOERR", 5, True),
    "sys_errors": ("sys_errors", "SCERR", 5, True),
}


def rows(groups, seconds, controls_of=None, sys_groups=(), sys_bytes=False, second=None):
    """Merge each key's disks and ops (and syscalls) into one TopRow; with
    `second` ("disk" or "op": a two-key --by) one TopRow per key and disk
    (or op), the Groups' disk (or op) in TopRow.second.

    sys_bytes: READ/WRITE come from the read/write syscalls' returns (the
    syscall layer alone) instead of the block layer."""
    secs = max(seconds, 1e-9)
    by = {}

    def slot(g):
        return by.setdefault((g.id.key, getattr(g.id, second) if second else ""),
                             {"name": g.id.name, "read": 0, "write": 0, "ios": 0, "errors": 0,
                              "calls": 0, "sys_errors": 0, "kind": g.id.kind, "queue": hist.empty(), "device": hist.empty(),
                              "latency": hist.empty()})

    for g in groups:
        s = slot(g)
        if g.id.op == "read":
            s["read"] += g.bytes
        elif g.id.op == "write":
            s["write"] += g.bytes
        s["ios"] += g.ios
        s["errors"] += g.errors
        for stage in ("queue", "device"):
            if stage in g.hists:
                s[stage] += g.hists[stage]
    for g in sys_groups:
        s = slot(g)
        s["calls"] += g.ios
        s["sys_errors"] += g.errors
        if "latency" in g.hists:
            s["latency"] += g.hists["latency"]
        if sys_bytes:
            s["read" if g.id.op in layout.READ_SYSCALLS else "write"] += g.bytes
    total = sum(s["read"] + s["write"] for s in by.values()) or 1
    out = []
    for (key, sub), s in by.items():
        out.append(TopRow(
            key, s["name"], s["read"] / secs, s["write"] / secs, s["ios"] / secs,
            hist.percentile(s["queue"], 50), hist.percentile(s["queue"], 99),
            hist.percentile(s["device"], 50), hist.percentile(s["device"], 99),
            s["errors"], (s["read"] + s["write"]) / total,
            controls_of(key, s["name"]) if controls_of else "",
            s["calls"] / secs, hist.percentile(s["latency"], 50), hist.percentile(s["latency"], 99),
            s["sys_errors"], cgnames.name_of(s["name"]) if s["kind"] in ("cgroup", "cgroup-v1") else "", sub))
    return out


def sort_rows(rows_, sort="write", reverse=True):
    field = SORT_KEYS.get(sort, sort)

    def k(r):
        if field == "errors" and sort == "errors":
            return (1, r.errors + r.sys_errors)   # either layer's, whichever columns show
        v = getattr(r, field)
        if isinstance(v, float) and math.isnan(v):
            return (0, 0)  # no data sorts last when descending
        return (1, v) if not isinstance(v, str) else (1, v.lower())

    if field in ("key", "name"):
        return sorted(rows_, key=lambda r: _natural(getattr(r, field)), reverse=not reverse)
    return sorted(rows_, key=k, reverse=reverse)


def _natural(text):
    return (0, int(text), "") if text.isdigit() else (1, 0, text.lower())


def header_lines(rows_, counters, when, interval, by, sort, width=None):
    read = sum(r.read_bps for r in rows_)
    write = sum(r.write_bps for r in rows_)
    iops = sum(r.iops for r in rows_)
    lines = [f"ioltrace top - {when}  every {interval:g}s  by {by}  sort {sort}",
             f"Total DISK READ: {fmt.rate(read):>10} | Total DISK WRITE: {fmt.rate(write):>10} | IOPS: {iops:,.0f}"]
    bad = {k: v for k, v in counters.items() if v}
    if bad:
        lines.append("kernel counters: " + "  ".join(f"{k}={v}" for k, v in bad.items()))
    return lines if width is None else fit_lines(lines, width)


def fit_lines(lines, width):
    """Header lines within `width` columns: whole fields (" | " or two
    spaces apart) are dropped from the end, never a figure cut in two."""
    out = []
    for text in lines:
        sep = " | " if " | " in text else "  "
        fields = text.split(sep)
        while len(fields) > 1 and fmt.columns(sep.join(fields)) > width:
            fields.pop()
        out.append(fmt.cut(sep.join(fields), width))
    return out


def table_lines(rows_, width=80, with_errors=None, with_controls=False, limit=None, layer="block", second=None):
    """Column header plus one line per row, each at most `width` columns;
    columns are dropped whole (DROP_ORDER) until the rest fit. second: the
    second key of a two-key --by ("disk", "op"), a column after the name."""
    if layer == "syscall":
        cols = list(SYSCALL_COLUMNS)
    elif layer == "both":
        cols = list(BOTH_COLUMNS)
    else:
        cols = list(CGROUP_COLUMNS if with_controls else COLUMNS)
    if second:
        cols.insert(next(i for i, c in enumerate(cols) if c[0] == "name") + 1,
                    ("second", bykeys.HEADINGS[second], SECOND_WIDTH, False))
    at = len(cols) - 2 if with_controls else len(cols)
    for field in ("errors", "sys_errors"):
        shown = with_errors if with_errors is not None else any(getattr(r, field) for r in rows_)
        if shown and (layer != "block" or field == "errors") and (layer != "syscall" or field == "sys_errors"):
            cols.insert(at, ERROR_COLUMNS[field])
            at += 1

    def fixed():
        return sum(w for _, _, w, _ in cols if w) + len(cols) - 1

    for field in DROP_ORDER:
        if fixed() + MIN_NAME <= width:
            break
        cols = [c for c in cols if c[0] != field]
    name_w = max(MIN_NAME, width - fixed())
    widths = [w or name_w for _, _, w, _ in cols]

    def line(values):
        cells = []
        for (field, _, _, right), w, v in zip(cols, widths, values):
            v = fmt.truncate(v, w)
            pad = " " * (w - fmt.columns(v))
            cells.append(pad + v if right else v + pad)
        return fmt.cut(" ".join(cells), width).rstrip()

    out = [line([h for _, h, _, _ in cols])]
    for r in rows_[:limit] if limit is not None else rows_:
        out.append(line([_cell(r, field) for field, _, _, _ in cols]))
    return out


def _cell(r, field):
    if field == "name" and r.workload:
        return r.workload   # the unit, container or pod; the path is in every export
    v = getattr(r, field)
    if field in ("read_bps", "write_bps"):
        return fmt.size(v)
    if field in ("iops", "calls"):
        return f"{v:.0f}"
    if field.startswith(("q_", "d_", "s_")):
        return fmt.ns(v)
    if field == "share":
        return f"{v * 100:.0f}%"
    return str(v)


class TopState:
    """What the live view remembers between intervals and key presses."""

    KEYS = {"r": "read", "w": "write", "i": "iops", "l": "latency", "b": "bytes", "n": "name", "p": "id",
            "q": None}
    SEEN_MAX = 4096  # idle keys kept on screen without -o; range 0..1M

    def __init__(self, sort, layer="block", only=False, second=None):
        self.sort = sort
        self.second = second    # the second key of a two-key --by: a column, part of a row's identity
        self.layer = layer
        if self.layer == "syscall" and self.sort == "latency":
            self.sort = "sp99"
        self.reverse = True
        self.only = only
        self.seen = {}          # (key, second) -> name, for keys idle in this interval
        self.rows = []
        self.header = []

    def update(self, rows_, header):
        for r in rows_:
            self.seen.pop((r.key, r.second), None)
            self.seen[(r.key, r.second)] = r.name
        while len(self.seen) > self.SEEN_MAX:
            del self.seen[next(iter(self.seen))]
        if not self.only:
            have = {(r.key, r.second) for r in rows_}
            rows_ = rows_ + [idle_row(k, n, sub) for (k, sub), n in self.seen.items() if (k, sub) not in have]
        self.rows = rows_
        self.header = header

    def press(self, ch):
        """Apply a key; returns False for quit."""
        if ch == "q":
            return False
        if ch == "o":
            self.only = not self.only
        elif ch == "R":
            self.reverse = not self.reverse
        elif ch in self.KEYS:
            self.sort = self.KEYS[ch]
            if self.sort == "latency" and self.layer == "syscall":
                self.sort = "sp99"
        return True


def idle_row(key, name, second=""):
    nan = float("nan")
    return TopRow(key, name, 0.0, 0.0, 0.0, nan, nan, nan, nan, 0, 0.0, "", second=second)


def batch_lines(state, with_controls, width=80):
    """One plain table of batch mode: the header, then every row."""
    lines = fit_lines(state.header, width)
    lines += table_lines(sort_rows(state.rows, state.sort, state.reverse), width=width,
                         with_controls=with_controls, layer=state.layer, second=state.second)
    return lines


def summary_lines(rows_, alarms, seconds, by, width=80, with_controls=False, layer="block", title=None):
    """One screen for a whole run (top's final word on Ctrl-C, demo's)."""
    second = bykeys.of(by).second
    rows_ = sort_rows(rows_, "bytes")
    lines = [title or f"Summary of {seconds:.1f}s, by {by}, top {min(len(rows_), 20)} of {len(rows_)} by bytes:"]
    lines += header_lines(rows_, alarms, "whole run", seconds, by, "bytes", width=width)[1:]
    lines += table_lines(rows_, width=width, with_controls=with_controls, limit=20, layer=layer, second=second)
    return lines
