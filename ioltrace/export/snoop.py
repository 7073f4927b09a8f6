"""snoop's --csv and --json: one row per request (or syscall), then the
total-time histogram of the run (block requests), then the counters.

CSV: a first line "# ioltrace-snoop-csv 1", the header (records.SnoopRow's
fields), a row per request, a line "# histogram total LOW:HIGH=N ..." (the
non-empty buckets of the kernel's start -> completion histogram over the
same run, bounds in ns, HIGH "inf" for the overflow bucket), and a last line
"# counters NAME=N ..." with snoop_lost (requests at or above the threshold
the ring buffer could not take) and the block layer's alarm counters. JSON
lines: {"type": "request", SnoopRow fields} per request, then {"type":
"histogram", "stage": "total", "unit": "ns", "count": N, "buckets": [[low_ns,
high_ns | null, count], ...]}, then {"type": "counters", "counters": {...}}.
A row's total_ns lies in [low_ns, high_ns) of one bucket, and the rows per
bucket are that bucket's count for every bucket wholly at or above the
threshold, less snoop_lost (the histogram counts what the ring buffer could
not take); I/O still running when the run ends may add a few to the histogram.
With --layer syscall the rows are records.SnoopSyscallRow's and the first
line ends in " layer=syscall". A file is written beside its final name and renamed onto it when the run
ends, so no reader ever sees half of one; "-" streams to stdout.
Knows nothing of terminals.
"""

import csv
import io
import json
import math
import os
import sys

from .. import layout
from ..errors import BadInput
from ..fmt import spell
from ..records import SnoopRow
from .paths import STDOUT, same_output

CSV_MAGIC = "# ioltrace-snoop-csv"
CSV_VERSION = 1
HEADER = list(SnoopRow._fields)


class _Output:
    """A file written to a temporary name in its directory and renamed
    onto `path` by commit(); close() without commit removes it. "-": stdout."""

    def __init__(self, path, what):
        self.path = path
        self.stdout = path == STDOUT
        self.tmp = None
        if self.stdout:
            self.f = sys.stdout
            return
        d, base = os.path.split(os.path.abspath(path))
        if os.path.isdir(path):
            raise BadInput(f"{what} {path}", "is a directory", "give a file name")
        self.tmp = os.path.join(d, f".{base}.{os.getpid()}.tmp")
        try:
            self.f = open(self.tmp, "w", encoding="utf-8", newline="")
        except OSError as e:
            raise BadInput(f"{what} {path}", e.strerror or str(e), "choose a writable directory") from None

    def write(self, text):
        self.f.write(text)

    def flush(self):
        self.f.flush()

    def commit(self):
        """The file, complete, under its final name."""
        if self.stdout:
            self.f.flush()
            return
        self.f.close()
        os.replace(self.tmp, self.path)
        self.tmp = None

    def close(self):
        if self.stdout:
            return
        if not self.f.closed:
            self.f.close()
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


def _text(v):
    return spell(v) if isinstance(v, str) else v


def buckets(counts):
    """[(low_ns, high_ns or None for the overflow bucket, count)] of the non-empty buckets."""
    return [(int(layout.BUCKET_LOW[i]), None if math.isinf(layout.BUCKET_HIGH[i]) else int(layout.BUCKET_HIGH[i]),
             int(counts[i])) for i in counts.nonzero()[0]]


class CsvRows:
    """fields: the row record's fields (SnoopRow, or SnoopSyscallRow with
    layer "syscall", which the first line then names)."""

    def __init__(self, path, fields=HEADER, layer="block"):
        self.out = _Output(path, "--csv")
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, lineterminator="\r\n")
        self.out.write(f"{CSV_MAGIC} {CSV_VERSION}" + (f" layer={layer}" if layer != "block" else "") + "\n")
        self._csv.writerow(list(fields))
        self._emit()

    def _emit(self):
        self.out.write(self._buf.getvalue())
        self._buf.seek(0)
        self._buf.truncate()

    def row(self, r):
        self._csv.writerow([_text(v) for v in r])
        self._emit()

    def finish(self, counters, histogram=None):
        """histogram: bucket counts of the total time (layout's buckets); None: none (syscalls)."""
        if histogram is not None:
            self.out.write("# histogram total" + "".join(f" {lo}:{'inf' if hi is None else hi}={n}"
                                                         for lo, hi, n in buckets(histogram)) + "\n")
        self.out.write("# counters " + " ".join(f"{k}={int(v)}" for k, v in counters.items()) + "\n")
        self.out.commit()

    def flush(self):
        self.out.flush()

    def close(self):
        self.out.close()


class JsonRows:
    def __init__(self, path):
        self.out = _Output(path, "--json")

    def row(self, r):
        d = {"type": "request"}
        d.update({k: _text(v) for k, v in r._asdict().items()})
        self.out.write(json.dumps(d) + "\n")

    def finish(self, counters, histogram=None):
        if histogram is not None:
            self.out.write(json.dumps({"type": "histogram", "stage": "total", "unit": "ns",
                                       "count": int(histogram.sum()),
                                       "buckets": [list(b) for b in buckets(histogram)]}) + "\n")
        self.out.write(json.dumps({"type": "counters", "counters": {k: int(v) for k, v in counters.items()}}) + "\n")
        self.out.commit()

    def flush(self):
        self.out.flush()

    def close(self):
        self.out.close()


def open_outputs(csv_path, json_path, fields=HEADER, layer="block"):
    """[CsvRows, JsonRows] of those given, opened now (before tracing); if
    the second cannot be opened the first is removed again."""
    same_output(csv_path, json_path)
    outs = []
    try:
        if csv_path:
            outs.append(CsvRows(csv_path, fields, layer))
        if json_path:
            outs.append(JsonRows(json_path))
    except BaseException:
        for o in outs:
            o.close()
        raise
    return outs


def read_csv(path):
    """(rows as dicts of text, counters) of a snoop CSV file."""
    rows, counters = [], {}
    with open(path, newline="", encoding="utf-8") as f:
        first = f.readline()
        if not first.startswith(CSV_MAGIC):
            raise BadInput(path, "is not a snoop CSV file", f"its first line is not {CSV_MAGIC!r}")
        lines = f.read().splitlines()
    body = [line for line in lines if not line.startswith("#")]
    for line in lines:
        if line.startswith("# counters"):
            counters = {k: int(v) for k, v in (p.split("=", 1) for p in line.split()[2:])}
    rows = list(csv.DictReader(body))
    return rows, counters


def read_csv_histogram(path):
    """[(low_ns, high_ns or None, count)] of a snoop CSV file's "# histogram total" line; [] without one."""
    with open(path, newline="", encoding="utf-8") as f:
        for line in f:
            if line.startswith("# histogram total"):
                out = []
                for part in line.split()[3:]:
                    bounds, n = part.split("=")
                    lo, hi = bounds.split(":")
                    out.append((int(lo), None if hi == "inf" else int(hi), int(n)))
                return out
    return []
