"""Command line: argument parsing and dispatch only.

main(argv=None) -> int. Every IoltraceError becomes one line on stderr and
exit code 2; nothing else here knows how tracing, grouping or output work.
Parsed arguments become each command's frozen Options here (options_of) and
nowhere else. Over 400 lines for one reason: the whole option tree with its
help texts and EXAMPLES sections, kept in one file so that one file answers
"what can I type".
"""

import argparse
import os
import re
import sys
import time

from . import __version__
from .errors import BadInput, IoltraceError

EPILOG_HIST = """examples:
  ioltrace hist                      # per-disk device-time histograms until Ctrl-C
  ioltrace hist 1 10                 # ten 1-second intervals
  ioltrace hist --by process -T 5    # per process, every 5 s, with timestamps
  ioltrace hist --by cgroup --stage queue --op write
  ioltrace hist --by cgroup,disk     # one histogram per cgroup and disk
  ioltrace hist --disk sda1 --csv run.csv 1   # one partition, recorded to CSV
  ioltrace hist --by process --json - 10      # JSON lines on stdout, no text
"""


EPILOG_TOP = """keys while running:
  r w i l b   sort by read, write, IOPS, device p99 latency, bytes
  n p         sort by name, id;  R reverses;  o toggles only-active;  q quits
examples:
  ioltrace top                       # per process, refreshed every second
  ioltrace top --by cgroup -o        # cgroups with their io.weight / io.max
  ioltrace top --by process,disk     # a row per process and disk
  ioltrace top -b -n 5 --csv top.csv # five plain tables, also recorded
  ioltrace top --json - -n 60        # JSON lines only (batch mode), a minute
"""

EPILOG_RUN = """The command runs in a fresh cgroup v2 child; ioltrace traces exactly that
cgroup (its threads and children included), prints per-process and total
latency when the command exits, removes the cgroup, and exits with the
command's exit code.
examples:
  ioltrace run -- dd if=/dev/zero of=/dev/sdb bs=1M count=100 oflag=direct
  ioltrace run --csv fio.csv -- fio job.fio
  ioltrace run --json - -- make      # JSON lines on stdout; report on stderr
"""


EPILOG_LOOP = """Tracepoints are CATEGORY:NAME as in tracefs (ls /sys/kernel/tracing/events);
the syscalls: category may be left out (sys_enter_fsync). A thread's chain
starts at each --from (first) event; each next event in order records a step.
examples:
  ioltrace loop --from sys_exit_io_getevents --to sys_enter_io_submit   # event-loop turn
  ioltrace loop --from sys_enter_io_submit --to sys_exit_io_submit      # submit cost
  ioltrace loop --chain kvm:kvm_exit,sys_exit_ppoll,sys_enter_io_submit 5
"""


EPILOG_REPORT = """Reads recordings made with --csv (no root, no bcc needed); several files and
the intervals inside them merge by summing. Rates are over the recorded time.
examples:
  ioltrace report run.csv                        # every key and stage
  ioltrace report run.csv --by disk --stage device
  ioltrace report run.csv --by cgroup,disk       # per cgroup and disk, ops merged
  ioltrace report a.csv b.csv --interval 10      # percentiles per 10 s window
  ioltrace report run.csv --format json          # the schema in docs/FORMATS.md
"""

EPILOG_COMPARE = """Process and thread recordings are compared by command name (--by comm),
cgroups by path. p-values: permutation test on the bucket counts; ratios
B/A with bootstrap intervals; the footer states the method.
examples:
  ioltrace compare before.csv after.csv
  ioltrace compare before.csv after.csv --stage device --plot ab.png
  ioltrace compare --runs a1.csv,a2.csv,a3.csv --runs b1.csv,b2.csv,b3.csv
"""

EPILOG_SNOOP = """One line per completed request whose start-to-completion time is at or above
--min-latency, filtered in the kernel: the requests below it cost only the
histogram update. Events the ring buffer could not take are counted
(snoop_lost) and shown at the end and in --csv/--json.
examples:
  ioltrace snoop                             # every request, until Ctrl-C
  ioltrace snoop --min-latency 10ms          # only the slow ones
  ioltrace snoop --disk nvme0n1 --duration 30 --csv slow.csv
  ioltrace snoop --cgroup system.slice/nginx.service --min-latency 250us
"""

EPILOG_PLOT = """Needs matplotlib: pip install 'ioltrace[plot]' (or apt-get install python3-matplotlib).
examples:
  ioltrace plot run.csv -o run.png               # histogram per key, p50/p99 marked
  ioltrace plot run.csv -o run.svg --heatmap --interval 5 --stage device
"""


EPILOG_SERVE = """Counters are cumulative since start; latency histograms are in seconds, with
buckets at powers of two of nanoseconds (1.024us .. 68.7s). Prometheus gets
OpenMetrics when it asks for it, anything else the text format 0.0.4.
examples:
  ioltrace serve                                # http://127.0.0.1:9435/metrics
  ioltrace serve --listen 0.0.0.0:9435          # every interface: explicit only
  ioltrace serve --textfile /var/lib/prometheus/node-exporter/ioltrace.prom
  ioltrace serve --per-process --max-series 200 --disk nvme0n1
  ioltrace serve --layer both                   # and syscalls per cgroup
  ioltrace serve --by cgroup,disk               # only cgroup and device labels
  ioltrace serve --listen 0.0.0.0:9435 --web-config web.yml --user ioltrace
"""


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (BadInput) instead of usage + exit."""

    def error(self, message):
        raise BadInput(self.prog.split(" ", 1)[-1] if " " in self.prog else "usage", message,
                       f"see '{self.prog} --help'")


def seconds_arg(text, low, also=""):
    """A float number of seconds in [low, 86400]; `also` names what else the
    option accepts, for the error messages."""
    try:
        v = float(text)
    except ValueError:
        what = f"a number of seconds or {also}" if also else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not (low <= v <= 86400):
        more = f", or {also}" if also else ""
        raise argparse.ArgumentTypeError(f"{text!r} must be between {low:g} and 86400 seconds{more}")
    return v


def positive_float(text):
    return seconds_arg(text, 0.05)


def latency_arg(text):
    from .fmt import parse_ns

    try:
        return parse_ns(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def pct_arg(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < v < 100:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0 and below 100")
    return v


def whole_arg(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1 or v > 10**9:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive whole number")
    return v


def pid_arg(text):
    v = positive_int(text)
    if v > 4194304:  # PID_MAX_LIMIT on 64-bit kernels
        raise argparse.ArgumentTypeError(f"{text!r} is larger than any Linux pid")
    return v


def keep_exited_arg(text):
    return None if text == "forever" else seconds_arg(text, 0, also="'forever'")


def comm_arg(text):
    raw = text.encode("utf-8", "surrogateescape")
    if not raw or len(raw) > 15 or b"\0" in raw:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 to 15 bytes, as the kernel stores comm")
    return raw


def syscalls_arg(text):
    from .layout import DEFAULT_SYSCALLS, OPT_IN_SYSCALLS, SYSCALLS

    names = [n.strip() for n in text.split(",") if n.strip()]
    out = []
    for n in names:
        if n == "all":
            out += SYSCALLS
        elif n == "default":
            out += DEFAULT_SYSCALLS
        elif n in SYSCALLS:
            out.append(n)
        else:
            raise argparse.ArgumentTypeError(
                f"unknown syscall {n!r}; known: {', '.join(SYSCALLS)} (all, default; opt-in: {', '.join(OPT_IN_SYSCALLS)})")
    if not out:
        raise argparse.ArgumentTypeError("empty syscall list")
    return tuple(dict.fromkeys(out))


def tracepoint_arg(text):
    if ":" not in text and re.fullmatch(r"sys_(enter|exit)_\w+", text):
        text = "syscalls:" + text
    if not re.fullmatch(r"[A-Za-z0-9_]+:[A-Za-z0-9_]+", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not CATEGORY:NAME (e.g. syscalls:sys_enter_fsync)")
    return text


def chain_arg(text):
    from .layout import LOOP_MAX_EVENTS

    events = [tracepoint_arg(t.strip()) for t in text.split(",") if t.strip()]
    if not 2 <= len(events) <= LOOP_MAX_EVENTS:
        raise argparse.ArgumentTypeError(f"a chain has 2 to {LOOP_MAX_EVENTS} tracepoints")
    return events


def layer_options(p, choices, default):
    from .layout import DEFAULT_SYSCALLS

    p.add_argument("--layer", choices=choices, default=default,
                   help=f"block: queue and device time; syscall: I/O syscalls' latency (default {default})")
    p.add_argument("--syscalls", type=syscalls_arg, default=DEFAULT_SYSCALLS, metavar="LIST",
                   help="syscalls to trace with the syscall layer (comma list, 'all'; default: the I/O "
                        "syscalls without openat and close)")


def pixel_size(text):
    from .plot import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def recording_options():
    from . import bykeys
    from .recording import BY_CHOICES

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("selection (of what the recordings hold)")
    g.add_argument("--by", type=bykeys.argtype(BY_CHOICES), metavar="KEY[,KEY2]",
                   help=f"key to group by: {', '.join(BY_CHOICES)}, or two (cgroup,disk, process,op, disk,op) "
                   "(default: the recorded one; comm and disk can be derived from process recordings)")
    g.add_argument("--op", action="append", metavar="OP", help="only this op: read, write, ... or a syscall (repeatable)")
    g.add_argument("--stage", action="append", metavar="STAGE",
                   help="only this latency: queue, device, total, latency (syscalls) (repeatable; default all)")
    g.add_argument("--layer", choices=("block", "syscall"), help="only this layer (default both)")
    g.add_argument("--key", action="append", metavar="KEY", help="only this key: pid, comm, cgroup id or path, disk (repeatable)")
    g.add_argument("--disk", metavar="NAME", help="only this disk (as recorded: whole disks)")
    return p


class Refused(argparse.Action):
    """An option a command does not use, kept on its parser (hidden from
    --help) only to refuse it with one line saying why, never to ignore it."""

    def __init__(self, option_strings, dest, why="", **kw):
        kw.update(dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        super().__init__(option_strings, **kw)
        self.why = why

    def __call__(self, parser, namespace, values, option_string=None):
        raise BadInput(f"{parser.prog.split(' ', 1)[-1]} {option_string}", self.why, "leave it out")


def filter_options(disk=True):
    """The kernel filters; disk=False for a command whose program sees no
    disk (loop): --disk is refused there."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("filters (applied in the kernel)")
    g.add_argument("--pid", type=pid_arg, help="only this process (tgid); its children only with --children")
    g.add_argument("--children", action="store_true", help="with --pid: also the processes it forks, and theirs")
    g.add_argument("--cgroup", metavar="PATH", help="only this cgroup v2 subtree (path below the v2 mount)")
    if disk:
        g.add_argument("--disk", metavar="NAME", help="only this disk or partition (sda, sda1, nvme0n1, loop0); "
                       "block layer only")
    else:
        p.add_argument("--disk", action=Refused, why="the traced events are not block I/O: no disk to filter by")
    g.add_argument("--comm", type=comm_arg, help="only tasks with this comm (exact, as in /proc/PID/comm)")
    p.add_argument("-v", "--verbose", action="store_true", help="say why probes and headers were chosen")
    return p


def tracer_options():
    """filter_options, and what only the block/syscall tracer has."""
    from .layout import DEFAULT_KEEP_EXITED_S

    p = argparse.ArgumentParser(add_help=False, parents=[filter_options()])
    p.add_argument("--keep-exited", type=keep_exited_arg, default=DEFAULT_KEEP_EXITED_S, metavar="SECONDS",
                   help="seconds an exited process keeps its own rows before its counts move to its cgroup's "
                        f"'exited' row, which bounds memory under process churn (default {DEFAULT_KEEP_EXITED_S:g}; "
                        "'forever': never)")
    p.add_argument("--probes", choices=("auto", "raw", "classic"), default="auto",
                   help="block probes: raw (typed struct request, offsets from the kernel's BTF), classic "
                        "tracepoints, or auto: raw when BTF gives every offset (default)")
    p.add_argument("--size-depth", action="store_true",
                   help="also keep, per key, histograms of request size and of the disk's in-flight depth at "
                        "issue (block stages size and depth; they cost more per I/O: docs/PERFORMANCE.md)")
    return p


def by_help(default, kinds):
    return (f"key to group by: {', '.join(kinds)}; or two, joined by a comma: a key with disk or op "
            f"(cgroup,disk, process,op) or disk,op (default {default})")


def build_parser():
    from . import bykeys, layout
    from .export.prometheus import SERVE_KINDS
    from .group import KINDS
    from .layout import OPS
    from .views.top import SORT_KEYS

    top = Parser(prog="ioltrace", description="Block I/O latency per process, cgroup and disk, "
                 "split into queue and device time, traced with eBPF tracepoints.")
    top.add_argument("--version", action="version", version=f"ioltrace {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    traced = tracer_options()

    h = sub.add_parser("hist", parents=[traced], help="latency histograms per key, like biolatency",
                       epilog=EPILOG_HIST, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_argument("interval", nargs="?", type=positive_float, help="seconds between outputs (default: once, at Ctrl-C)")
    h.add_argument("count", nargs="?", type=positive_int, help="number of outputs")
    h.add_argument("--by", type=bykeys.argtype(KINDS), default="disk", metavar="KEY[,KEY2]",
                   help=by_help("disk", KINDS))
    h.add_argument("--op", action="append", choices=OPS, help="only this operation (repeatable)")
    h.add_argument("--stage", choices=("queue", "device", "total", "size", "depth", "all"), default="device",
                   help="queue: start to issue; device: issue to completion; total: both; size: request bytes; "
                        "depth: requests in flight on the disk at issue (size and depth as with --size-depth); "
                        "all: the three times (default device)")
    h.add_argument("-T", "--timestamp", action="store_true", help="print a timestamp with each interval")
    h.add_argument("-m", "--milliseconds", action="store_true", help="histogram rows in milliseconds")
    h.add_argument("--csv", metavar="FILE", help="also record every interval to this CSV file; - for stdout")
    h.add_argument("--json", metavar="FILE", help="also write every interval as JSON lines to FILE; "
                   "- for stdout (then nothing else goes there)")
    layer_options(h, ("block", "syscall"), "block")

    t = sub.add_parser("top", parents=[traced], help="live iotop-like view with latency percentiles",
                       epilog=EPILOG_TOP, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("interval", nargs="?", type=positive_float, default=1.0, help="seconds between refreshes (default 1)")
    t.add_argument("--by", type=bykeys.argtype(KINDS), default="process", metavar="KEY[,KEY2]",
                   help=by_help("process", KINDS))
    t.add_argument("--sort", choices=sorted(SORT_KEYS), default="bytes", help="column to sort by (default bytes)")
    t.add_argument("-o", "--only", action="store_true", help="only keys with I/O in the interval")
    t.add_argument("--op", action="append", choices=OPS, help="only this operation (repeatable)")
    t.add_argument("-b", "--batch", action="store_true", help="plain successive tables (automatic when not a terminal)")
    t.add_argument("-n", "--iterations", type=positive_int, help="stop after this many refreshes")
    t.add_argument("--width", type=positive_int, default=80, help="batch-mode line width (default 80)")
    t.add_argument("--csv", metavar="FILE", help="also record every interval to this CSV file; - for stdout")
    t.add_argument("--json", metavar="FILE", help="also write every interval as JSON lines to FILE; "
                   "- for stdout (then batch mode, JSON only)")
    layer_options(t, ("block", "syscall", "both"), "block")

    r = sub.add_parser("run", parents=[traced], help="run a command in its own cgroup and report its block I/O",
                       epilog=EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--op", action="append", choices=OPS, help="only this operation (repeatable)")
    r.add_argument("--csv", metavar="FILE", help="record the run to this CSV file; - for stdout")
    r.add_argument("--json", metavar="FILE", help="write the run as JSON lines to FILE; - for stdout "
                   "(then the report and the command's stdout go to stderr)")
    r.add_argument("--report-to-stderr", action="store_true", help="print the report on stderr (keeps stdout for the command)")
    layer_options(r, ("block", "syscall", "both"), "both")
    r.add_argument("command_argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")

    lp = sub.add_parser("loop", parents=[filter_options(disk=False)], help="latency between two (or a chain of) tracepoints per thread",
                        epilog=EPILOG_LOOP, formatter_class=argparse.RawDescriptionHelpFormatter)
    lp.add_argument("interval", nargs="?", type=positive_float, help="seconds between outputs (default: once, at Ctrl-C)")
    lp.add_argument("count", nargs="?", type=positive_int, help="number of outputs")
    lp.add_argument("--from", dest="from_tp", type=tracepoint_arg, metavar="TRACEPOINT", help="start event")
    lp.add_argument("--to", dest="to_tp", type=tracepoint_arg, metavar="TRACEPOINT", help="end event")
    lp.add_argument("--chain", type=chain_arg, metavar="A,B,C", help="each consecutive step of a sequence")
    lp.add_argument("-m", "--milliseconds", action="store_true", help="histogram rows in milliseconds")

    sn = sub.add_parser("snoop", parents=[filter_options()], help="one line per slow request, like biosnoop -Q",
                        epilog=EPILOG_SNOOP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sn.add_argument("--min-latency", type=latency_arg, default=0, metavar="TIME",
                    help="only requests whose total time is at least this: 10ms, 250us, 1s (default 0: all)")
    sn.add_argument("--slowest-pct", type=pct_arg, metavar="PCT",
                    help="instead of --min-latency: the slowest PCT%% of requests, by a threshold learned every "
                         "second from the total-time histogram (nothing until 100 requests are seen)")
    sn.add_argument("--duration", type=positive_float, metavar="SECONDS", help="stop after this long "
                    "(default: at Ctrl-C)")
    sn.add_argument("--buffer-pages", type=whole_arg, default=layout.DEFAULT_SNOOP_PAGES, metavar="N",
                    help=f"ring buffer size in pages, a power of two (default {layout.DEFAULT_SNOOP_PAGES}: "
                         f"{layout.DEFAULT_SNOOP_PAGES * 4 // 1024} MiB)")
    sn.add_argument("--probes", choices=("auto", "raw", "classic"), default="auto",
                    help="block probes: raw (typed struct request, offsets from the kernel's BTF), classic "
                         "tracepoints, or auto: raw when BTF gives every offset (default)")
    sn.add_argument("--layer", choices=("block", "syscall"), default="block",
                    help="block: completed requests (default); syscall: the traced I/O syscalls (read, write, "
                         "fsync, ... as --layer syscall of hist), one line per call")
    sn.add_argument("--csv", metavar="FILE", help="also write every request to this CSV file (complete when "
                    "the run ends); - for stdout")
    sn.add_argument("--json", metavar="FILE", help="also write every request as a JSON line to FILE; - for "
                    "stdout (then nothing else goes there)")

    sel = recording_options()
    rp = sub.add_parser("report", parents=[sel], help="statistics and histograms of CSV recordings (no root)",
                        epilog=EPILOG_REPORT, formatter_class=argparse.RawDescriptionHelpFormatter)
    rp.add_argument("files", nargs="+", metavar="FILE.csv", help="recordings (merged)")
    rp.add_argument("--interval", type=positive_float, metavar="SECONDS", help="also show percentiles per time window")
    rp.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default table)")
    rp.add_argument("-m", "--milliseconds", action="store_true", help="histogram rows in milliseconds")

    cp = sub.add_parser("compare", parents=[sel], help="A/B comparison of recordings, with significance (no root)",
                        epilog=EPILOG_COMPARE, formatter_class=argparse.RawDescriptionHelpFormatter)
    cp.add_argument("files", nargs="*", metavar="A.csv B.csv", help="the two recordings")
    cp.add_argument("--runs", action="append", metavar="R1.csv,R2.csv,...",
                    help="a group of repeated runs; give it twice (A, then B)")
    cp.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    cp.add_argument("--plot", metavar="OUT.png", help="also draw A and B overlaid (.png, .svg, .pdf)")
    cp.add_argument("--size", type=pixel_size, metavar="WxH", help="picture size in pixels")

    pp = sub.add_parser("plot", parents=[sel], help="draw latency histograms or a heatmap of recordings (no root)",
                        epilog=EPILOG_PLOT, formatter_class=argparse.RawDescriptionHelpFormatter)
    pp.add_argument("files", nargs="+", metavar="FILE.csv", help="recordings (merged)")
    pp.add_argument("-o", "--output", required=True, metavar="OUT.png", help="picture to write (.png, .svg, .pdf)")
    pp.add_argument("--heatmap", action="store_true", help="latency over time instead of one histogram")
    pp.add_argument("--interval", type=positive_float, metavar="SECONDS", help="heatmap window (default: ~120 across)")
    pp.add_argument("--size", type=pixel_size, metavar="WxH", help="picture size in pixels")

    sv = sub.add_parser("serve", parents=[traced], help="export metrics for Prometheus: HTTP /metrics or a textfile",
                        epilog=EPILOG_SERVE, formatter_class=argparse.RawDescriptionHelpFormatter)
    sv.add_argument("--listen", metavar="ADDR:PORT", help="where to serve /metrics (default 127.0.0.1:9435, or "
                    "none with --textfile); 0.0.0.0:PORT or [::]:PORT for every interface; none: no HTTP")
    sv.add_argument("--textfile", metavar="PATH", help="also write the metrics to PATH (a .prom file for "
                    "node_exporter's textfile collector), replaced atomically every --interval")
    sv.add_argument("--interval", type=positive_float, default=15.0, metavar="SECONDS", help="seconds between textfile writes (default 15)")
    sv.add_argument("--per-process", action="store_true", help="also export per-process (pid, comm) series")
    sv.add_argument("--max-series", type=positive_int, default=1000, metavar="N",
                    help="label sets per level before the rest fold into \"other\" (default 1000)")
    sv.add_argument("--total", action="store_true", help="also export stage=\"total\" (start to completion) histograms")
    sv.add_argument("--by", type=bykeys.argtype(SERVE_KINDS), metavar="KEY[,KEY2]",
                    help="export only this grouping, one label per key (cgroup,disk: labels cgroup, workload "
                         "and device; process,op: pid, comm and op); keys: " + ", ".join(SERVE_KINDS)
                         + " (default: the disk and cgroup levels, and process with --per-process)")
    layer_options(sv, ("block", "syscall", "both"), "block")
    sv.add_argument("--web-config", metavar="FILE", help="TLS and basic auth for /metrics and /healthz: the "
                    "exporters' web config YAML (tls_server_config, basic_auth_users), as --web.config.file")
    sv.add_argument("--user", metavar="NAME", help="user to run as once the probes are attached (default "
                    "nobody when started as root; root keeps root); capabilities are dropped with it")

    d = sub.add_parser("demo", help="the cgroup weight experiment on a private loop device, shown live")
    d.add_argument("--duration", type=positive_int, default=20, help="seconds to run (default 20)")
    d.add_argument("--throttle", action="store_true", help="the other lever: one group limited to 20 MiB/s of "
                   "reads (blkio.throttle.read_bps_device or io.max), the other free")
    d.add_argument("-b", "--batch", action="store_true", help="plain tables (automatic when not a terminal)")
    d.add_argument("-v", "--verbose", action="store_true", help="say which probes and headers were chosen")

    sub.add_parser("doctor", help="check this host's requirements and say how to fix what is missing")
    return top


def one_line(text):
    """User text (a disk name, a path) may hold newlines or control
    characters; the error stays one printable line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Stopped(BaseException):
    """SIGTERM or SIGHUP before a command installed its own handling: unwind
    through every finally block (cgroups, loop devices, probes), like
    KeyboardInterrupt does for SIGINT."""

    def __init__(self, signum):
        self.signum = signum


def _stop(signum, frame):
    raise Stopped(signum)


def main(argv=None):
    import signal

    saved = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _main(argv)
    except Stopped as e:
        return 128 + e.signum
    except IoltraceError as e:
        sys.stderr.write(f"ioltrace: {one_line(str(e))}\n")
        return e.exit_code
    except SystemExit as e:
        # argparse's --help and --version: main() returns instead of exiting.
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into head or less that quit early.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def options_of(cls, args):
    """The command's frozen Options from the parsed arguments: the one place
    a Namespace becomes typed options (lists become tuples)."""
    from dataclasses import fields

    given = vars(args)
    return cls(**{f.name: tuple(given[f.name]) if isinstance(given[f.name], list) else given[f.name]
                  for f in fields(cls) if f.name in given})


def _main(argv):
    import importlib

    from .commands import NAMES

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        raise BadInput("usage", "no command given", "try 'ioltrace --help'")
    if args.command not in NAMES:
        raise BadInput("usage", f"unknown command {args.command}")
    if args.command == "run" and args.command_argv[:1] == ["--"]:
        args.command_argv = args.command_argv[1:]
    command = importlib.import_module(f".commands.{args.command}", __package__)
    return command.main(options_of(command.Options, args))


if __name__ == "__main__":
    sys.exit(main())
