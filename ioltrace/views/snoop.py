"""snoop's text: a header, one line per request (as biosnoop -Q), a summary.

Records in (records.SnoopRow), text out. Latencies in milliseconds with
microsecond digits; the cgroup shows the end of its path, where groups
differ. Lines are about 110 columns, as biosnoop -Q's.
"""

import math

from .. import hist
from ..fmt import cut, truncate
from ..fmt import ns as fmt_ns

COLUMNS = (("TIME(s)", "<11"), ("COMM", "<15"), ("PID", ">7"), ("CGROUP", "<18"), ("DISK", "<8"),
           ("RWBS", "<4"), ("SECTOR", ">12"), ("BYTES", ">8"), ("QUE(ms)", ">8"), ("DEV(ms)", ">8"),
           ("TOT(ms)", ">8"))


def header():
    return " ".join(f"{name:{spec}}" for name, spec in COLUMNS)


def _ms(ns):
    return f"{ns / 1e6:.3f}"


def line(r):
    """One request's line, without its newline."""
    return Lines().line(r)[:-1]


class Lines:
    """Lines of requests, each ending in a newline; the fitted comm, cgroup
    and disk texts are kept per name (fitting one to its columns costs more
    than the rest of the line)."""

    def __init__(self):
        self._comm, self._cgroup, self._disk = {}, {}, {}

    def _names(self, r):
        """The row's comm and cgroup, fitted to their columns."""
        comm = self._comm.get(r.comm)
        if comm is None:
            comm = self._comm[r.comm] = f'{cut("".join(c if c.isprintable() else "?" for c in r.comm), 15):<15}'
        cg = self._cgroup.get(r.cgroup)
        if cg is None:
            cg = self._cgroup[r.cgroup] = f"{truncate(r.cgroup, 18):<18}"
        return comm, cg

    def line(self, r):
        comm, cg = self._names(r)
        disk = self._disk.get(r.disk)
        if disk is None:
            disk = self._disk[r.disk] = f"{truncate(r.disk, 8):<8}"
        end = f" {r.error}\n" if r.error else "\n"
        return (f"{r.seconds:<11.6f} {comm} {r.pid:>7} {cg} {disk} {r.rwbs:<4} {r.sector:>12} {r.bytes:>8} "
                f"{r.queue_ns / 1e6:>8.3f} {r.device_ns / 1e6:>8.3f} {r.total_ns / 1e6:>8.3f}{end}")


def ending(opts, syscalls):
    """The banner's last line: what is traced, above which threshold, and
    how the run ends (as session.ending)."""
    what = "I/O syscalls" if syscalls else "block I/O"
    if opts.min_latency:
        what += f" at or above {threshold_text(opts.min_latency)}"
    elif opts.slowest_pct is not None:
        what += f" in the slowest {opts.slowest_pct:g}%"
    if opts.duration is not None:
        return f"Tracing {what} for {opts.duration:g}s."
    return f"Tracing {what}... Hit Ctrl-C to end."


def summary(shown, counters, alarms, min_ns, slowest=None, noun="requests", lost="snoop_lost"):
    """The closing lines: how many requests (noun) were shown (at or above
    the threshold; slowest: (pct, learned threshold ns or None) of
    --slowest-pct), the lost counter always, and the other non-zero alarm
    counters."""
    what = noun if not min_ns else f"{noun} at or above {threshold_text(min_ns)}"
    if slowest:
        pct, th = slowest
        what = (f"{noun} in the slowest {pct:g}% (threshold "
                + (f"{threshold_text(th)} at the end)" if th is not None else f"not learned: too few {noun})"))
    out = [f"{shown} {what} shown; {lost}={int(counters.get(lost, 0))}"
           + (" (the ring buffer was full: raise --buffer-pages)" if counters.get(lost) else "")]
    bad = [(n, counters[n]) for n in alarms if n != lost and counters.get(n)]
    if bad:
        out.append("kernel counters: " + "  ".join(f"{n}={v}" for n, v in bad))
    return out


def histogram_line(counts):
    """The run's total-time histogram in one line: how many requests it
    counted (those below the threshold too) and where they lay."""
    d = hist.summary(counts)
    if not d["count"]:
        return "total time (kernel histogram): no requests"
    high = "overflow" if math.isinf(d["max_high"]) else fmt_ns(d["max_high"])
    return (f"total time (kernel histogram) of all {d['count']} requests: p50 {fmt_ns(d['p50'])}  "
            f"p99 {fmt_ns(d['p99'])}  max < {high}")


def threshold_text(ns):
    for scale, unit in ((1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")):
        if ns >= scale and ns % scale == 0:
            return f"{ns // scale}{unit}"
    return f"{ns}ns" if ns < 1000 else fmt_ns(ns)


SYSCALL_COLUMNS = (("TIME(s)", "<11"), ("COMM", "<15"), ("PID", ">7"), ("CGROUP", "<18"), ("SYSCALL", "<16"),
                   ("BYTES", ">10"), ("LAT(ms)", ">9"))


def syscall_header():
    return " ".join(f"{name:{spec}}" for name, spec in SYSCALL_COLUMNS)


class SyscallLines(Lines):
    """Lines of syscalls (records.SnoopSyscallRow), as Lines."""

    def line(self, r):
        comm, cg = self._names(r)
        end = f" {r.error}\n" if r.error else "\n"
        return (f"{r.seconds:<11.6f} {comm} {r.pid:>7} {cg} {r.syscall:<16} {r.bytes:>10} "
                f"{r.latency_ns / 1e6:>9.3f}{end}")
