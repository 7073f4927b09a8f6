"""Recordings: the long-format CSV every live command can write, and its reader.

One row per (interval, key, disk, op, layer, stage, bucket) with a count, plus
counter rows (stage ios, bytes, errors, queue_sum_ns, device_sum_ns, the
exact sums of other stages as layers.sum_name says, errno:NAME) and the kernel's diagnostic counters (key_kind "kernel").
Intervals hold deltas, so summing rows of several intervals merges them.
Each interval is appended with one write() of whole lines, so a crash or
kill -9 never leaves a broken row. Knows nothing of terminals.
"""

import csv
import io
import os
import sys
from datetime import datetime, timezone

from .. import layers, layout
from ..errors import BadInput
from ..records import CsvRow
from ..fmt import errno_name, spell

# 2 added the layer column; version 1 files are read as layer "block". 3:
# stages that are not times (size: bucket bounds in bytes; depth: in
# requests) and their sum rows (size_sum_bytes, depth_sum_requests), which a
# reader of 2 would take for latencies; 2 and 1 files are read as they were.
FORMAT_VERSION = 3
READS = ("1", "2", "3")
MAGIC = "# ioltrace-csv"
PREAMBLE = (f"{MAGIC} {FORMAT_VERSION} buckets=log-linear sub_bits={layout.SUB_BITS} "
            f"max_log2={layout.MAX_LOG2}\n")
HEADER = list(CsvRow._fields)
HEADER_V1 = [f for f in HEADER if f != "layer"]
COUNTER_STAGES = ("ios", "bytes", "errors", "queue_sum_ns", "device_sum_ns")


def iso(ts):
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="microseconds")


def rows(groups, start_ts, end_ts, counters=None, layer="block"):
    """CsvRows for one interval of Groups (wall-clock epoch seconds)."""
    a, b = iso(start_ts), iso(end_ts)
    for g in groups:
        gid = g.id
        base = (a, b, gid.kind, gid.key, gid.name, gid.disk, gid.op, layer)
        decl = layers.BY_NAME.get(layer, layers.BLOCK)
        totals = [("ios", g.ios), ("bytes", g.bytes), ("errors", g.errors)]
        if "queue" in decl.stage_sums:
            totals += [("queue_sum_ns", g.queue_ns), ("device_sum_ns", g.device_ns)]
        # A stage the kernel records only when asked (size, depth) has a sum
        # row only when it was recorded.
        totals += [(layers.sum_name(stage), v) for stage, v in (g.sums or {}).items()
                   if stage not in decl.optional or v or stage in g.hists]
        for stage, value in totals:
            yield CsvRow(*base, stage, "", "", value)
        for e, n in sorted(g.errnos.items()):
            yield CsvRow(*base, f"errno:{errno_name(e)}", "", "", n)
        for stage, counts in g.hists.items():
            for idx in counts.nonzero()[0]:
                high = layout.BUCKET_HIGH[idx]
                yield CsvRow(*base, stage, str(int(layout.BUCKET_LOW[idx])),
                             "inf" if high == float("inf") else str(int(high)), int(counts[idx]))
    for name, value in (counters or {}).items():
        yield CsvRow(a, b, "kernel", name, name, "*", "*", layer, "counter", "", "", value)


class CsvWriter:
    """Appends intervals to a recording; the file is created (and checked
    writable) at construction, before any tracing starts."""

    def __init__(self, path, by=None):
        # A recording made with a two-key --by (cgroup,disk) says so in its
        # first line (" by=cgroup,disk"): its rows are those of the first key
        # (disk and op are columns of every row), and report groups by the
        # pair unless told otherwise. Every reader so far ignores fields of
        # that line it does not know, so this needs no new version.
        self.path = path
        self.fd = None
        self.stdout = path == "-"
        first = PREAMBLE if not by or "," not in by else PREAMBLE[:-1] + f" by={by}\n"
        if self.stdout:     # as --json -: the recording on stdout, no text beside it
            self._write(first + ",".join(HEADER) + "\r\n")
            return
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o664)  # never world-writable, whatever the umask
        except OSError as e:
            raise BadInput(f"--csv {path}", e.strerror.lower(), "choose a writable path") from None
        self._write(first + ",".join(HEADER) + "\r\n")

    def _write(self, text):
        if self.stdout:
            sys.stdout.write(spell(text))
            sys.stdout.flush()
            return
        data = spell(text).encode("utf-8")
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def write_interval(self, groups, start_ts, end_ts, counters=None, extra_rows=()):
        """One interval: block Groups and their counters, plus any rows of
        other layers, in a single write."""
        self._write_rows(rows(groups, start_ts, end_ts, counters), extra_rows)

    def write_layers(self, layer_groups, start_ts, end_ts, counters=None):
        """One interval of [(layer name, Groups)], all in a single write;
        each kernel counter follows the rows of the layer that counts it
        (layers.COUNTER_LAYER), one of no listed layer the first layer's."""
        names = [name for name, _ in layer_groups]
        owned = {name: {} for name in names}
        for k, v in (counters or {}).items() if names else ():
            owner = layers.COUNTER_LAYER.get(k)
            owned[owner if owner in owned else names[0]][k] = v
        self._write_rows(*(rows(groups, start_ts, end_ts, owned[name], layer=name) for name, groups in layer_groups))

    def _write_rows(self, *row_lists):
        buf = io.StringIO()
        # RFC 4180 line ends: with "\n" alone, csv leaves a lone "\r" in a
        # name (a comm may hold one) unquoted, and the row splits on reading.
        w = csv.writer(buf, lineterminator="\r\n")
        for r in row_lists:
            w.writerows(r)
        self._write(buf.getvalue())

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read(path):
    """Rows of a recording as CsvRows (count as int). Raises BadInput naming
    the file and line for anything that is not a complete v1 recording."""
    try:
        f = open(path, newline="", encoding="utf-8", errors="backslashreplace")
    except OSError as e:
        raise BadInput(str(path), e.strerror.lower()) from None
    with f:
        text = f.read()
    tail = ""
    if text and not text.endswith("\n"):
        # Writers end every row with a newline: anything after the last one
        # is a row cut short (a run killed mid-write), never data to trust.
        # The whole interval it belongs to goes with it (below).
        cut_at = text.rfind("\n") + 1
        if text.count("\n") < 2:
            raise BadInput(f"{path}:{text.count(chr(10)) + 1}",
                           "truncated row (no line end): the recording was cut short")
        text, tail = text[:cut_at], text[cut_at:]
    f = io.StringIO(text, newline="")
    with f:
        first = f.readline()
        if not first.startswith(MAGIC):
            raise BadInput(f"{path}:1", "not an ioltrace recording (no '# ioltrace-csv' first line)")
        parts = first.split()
        version = parts[2] if len(parts) > 2 else ""
        if version not in READS:
            raise BadInput(f"{path}:1", f"recording format version {version!r} is not one this ioltrace reads "
                           f"({', '.join(READS)}): upgrade ioltrace")
        fields = dict(p.split("=", 1) for p in parts[3:] if "=" in p)
        if fields.get("sub_bits") != str(layout.SUB_BITS) or fields.get("max_log2") != str(layout.MAX_LOG2):
            raise BadInput(f"{path}:1", f"bucket layout {fields} differs from this ioltrace's "
                           f"(sub_bits={layout.SUB_BITS} max_log2={layout.MAX_LOG2})")
        reader = csv.reader(f)
        header = next(reader, None)
        expected = HEADER_V1 if version == "1" else HEADER
        if header != expected:
            raise BadInput(f"{path}:2", "unexpected header: expected " + ",".join(expected))
        out = Rows()
        out.by = fields.get("by", "")
        for row in reader:
            if len(row) != len(expected):
                raise BadInput(f"{path}:{reader.line_num + 1}", f"expected {len(expected)} fields, got {len(row)}")
            if version == "1":
                row.insert(HEADER.index("layer"), "block")
            try:
                count = int(row[-1])
            except ValueError:
                raise BadInput(f"{path}:{reader.line_num + 1}", f"count {row[-1]!r} is not an integer") from None
            out.append(CsvRow(*row[:-1], count))
        if tail:
            by, out = out.by, _without_cut_interval(path, out, tail)
            out.by = by
        return out


class Rows(list):
    """read()'s rows; `cut` is one line saying what was left out of a
    recording cut short, "" for a whole one; `by` the two-key --by it was
    made with ("cgroup,disk"), "" for one key."""

    cut = ""
    by = ""


def _without_cut_interval(path, rows, tail):
    """Rows without the interval a run killed mid-write left incomplete.

    Each interval is one write() of whole rows, so the cut row is in the
    last interval written: the rows of the last complete one are kept
    unless the cut row's own interval fields match theirs (or are cut too
    short to tell; then the last interval goes as well, as half an interval
    would pass for a whole one)."""
    out = Rows(rows)
    if not rows:
        out.cut = "cut short in its first interval"
        return out
    last = rows[-1]
    prefix = f"{last.interval_start},{last.interval_end},"
    if tail.startswith(prefix) or prefix.startswith(tail):
        out[:] = [r for r in rows if (r.interval_start, r.interval_end) != (last.interval_start, last.interval_end)]
        dropped = f"the interval {last.interval_start} .. {last.interval_end} was cut"
    else:
        dropped = "a row of a new interval was cut"
    n = len({r.interval_start for r in out})
    out.cut = (f"{path}: the recording was cut short (a run killed mid-write): {dropped} and is left out; "
               f"{n} complete interval{'s' if n != 1 else ''} read")
    return out
