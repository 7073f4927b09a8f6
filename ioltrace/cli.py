"""Command line: argument parsing and dispatch only.

main(argv=None) -> int. Every IoltraceError becomes one line on stderr and
exit code 2; nothing else here knows how tracing, grouping or output work.
"""

import argparse
import os
import sys
import time

from . import __version__
from .errors import BadInput, IoltraceError

EPILOG_HIST = """examples:
  ioltrace hist                      # per-disk device-time histograms until Ctrl-C
  ioltrace hist 1 10                 # ten 1-second intervals
  ioltrace hist --by process -T 5    # per process, every 5 s, with timestamps
  ioltrace hist --by cgroup --stage queue --op write
  ioltrace hist --disk sda1 --csv run.csv 1   # one partition, recorded to CSV
"""


EPILOG_TOP = """keys while running:
  r w i l b   sort by read, write, IOPS, device p99 latency, bytes
  n p         sort by name, id;  R reverses;  o toggles only-active;  q quits
examples:
  ioltrace top                       # per process, refreshed every second
  ioltrace top --by cgroup -o        # cgroups with their io.weight / io.max
  ioltrace top -b -n 5 --csv top.csv # five plain tables, also recorded
"""

EPILOG_RUN = """The command runs in a fresh cgroup v2 child; ioltrace traces exactly that
cgroup (its threads and children included), prints per-process and total
latency when the command exits, removes the cgroup, and exits with the
command's exit code.
examples:
  ioltrace run -- dd if=/dev/zero of=/dev/sdb bs=1M count=100 oflag=direct
  ioltrace run --csv fio.csv -- fio job.fio
"""


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (BadInput) instead of usage + exit."""

    def error(self, message):
        raise BadInput(self.prog.split(" ", 1)[-1] if " " in self.prog else "usage", message,
                       f"see '{self.prog} --help'")


def positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0.05 <= v <= 86400):
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0.05 and 86400 seconds")
    return v


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


def comm_arg(text):
    raw = text.encode("utf-8", "surrogateescape")
    if not raw or len(raw) > 15 or b"\0" in raw:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 to 15 bytes, as the kernel stores comm")
    return raw


def filter_options():
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("filters (applied in the kernel)")
    g.add_argument("--pid", type=pid_arg, help="only this process (tgid)")
    g.add_argument("--cgroup", metavar="PATH", help="only this cgroup v2 subtree (path below the v2 mount)")
    g.add_argument("--disk", metavar="NAME", help="only this disk or partition (sda, sda1, nvme0n1, loop0)")
    g.add_argument("--comm", type=comm_arg, help="only tasks with this comm (exact, as in /proc/PID/comm)")
    p.add_argument("-v", "--verbose", action="store_true", help="say why probes and headers were chosen")
    return p


def build_parser():
    from .group import KINDS
    from .layout import OPS
    from .views.top import SORT_KEYS

    top = Parser(prog="ioltrace", description="Block I/O latency per process, cgroup and disk, "
                 "split into queue and device time, traced with eBPF tracepoints.")
    top.add_argument("--version", action="version", version=f"ioltrace {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    filters = filter_options()

    h = sub.add_parser("hist", parents=[filters], help="latency histograms per key, like biolatency",
                       epilog=EPILOG_HIST, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_argument("interval", nargs="?", type=positive_float, help="seconds between outputs (default: once, at Ctrl-C)")
    h.add_argument("count", nargs="?", type=positive_int, help="number of outputs")
    h.add_argument("--by", choices=KINDS, default="disk", help="key to group by (default disk)")
    h.add_argument("--op", action="append", choices=OPS, help="only this operation (repeatable)")
    h.add_argument("--stage", choices=("queue", "device", "total", "all"), default="device",
                   help="queue: start to issue; device: issue to completion; total: both (default device)")
    h.add_argument("-T", "--timestamp", action="store_true", help="print a timestamp with each interval")
    h.add_argument("-m", "--milliseconds", action="store_true", help="histogram rows in milliseconds")
    h.add_argument("--csv", metavar="FILE", help="also record every interval to this CSV file")

    t = sub.add_parser("top", parents=[filters], help="live iotop-like view with latency percentiles",
                       epilog=EPILOG_TOP, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("interval", nargs="?", type=positive_float, default=1.0, help="seconds between refreshes (default 1)")
    t.add_argument("--by", choices=KINDS, default="process", help="key to group by (default process)")
    t.add_argument("--sort", choices=sorted(SORT_KEYS), default="bytes", help="column to sort by (default bytes)")
    t.add_argument("-o", "--only", action="store_true", help="only keys with I/O in the interval")
    t.add_argument("--op", action="append", choices=OPS, help="only this operation (repeatable)")
    t.add_argument("-b", "--batch", action="store_true", help="plain successive tables (automatic when not a terminal)")
    t.add_argument("-n", "--iterations", type=positive_int, help="stop after this many refreshes")
    t.add_argument("--width", type=positive_int, default=80, help="batch-mode line width (default 80)")
    t.add_argument("--csv", metavar="FILE", help="also record every interval to this CSV file")

    r = sub.add_parser("run", parents=[filters], help="run a command in its own cgroup and report its block I/O",
                       epilog=EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--op", action="append", choices=OPS, help="only this operation (repeatable)")
    r.add_argument("--csv", metavar="FILE", help="record the run to this CSV file")
    r.add_argument("--report-to-stderr", action="store_true", help="print the report on stderr (keeps stdout for the command)")
    r.add_argument("command_argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")

    d = sub.add_parser("demo", help="the cgroup weight experiment on a private loop device, shown live")
    d.add_argument("--duration", type=positive_int, default=20, help="seconds to run (default 20)")
    d.add_argument("-b", "--batch", action="store_true", help="plain tables (automatic when not a terminal)")
    d.add_argument("-v", "--verbose", action="store_true", help="say which probes and headers were chosen")

    sub.add_parser("doctor", help="check this host's requirements and say how to fix what is missing")
    return top


def one_line(text):
    """User text (a disk name, a path) may hold newlines or control
    characters; the error stays one printable line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv=None):
    try:
        return _main(argv)
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


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        raise BadInput("ioltrace", "no command given", "try 'ioltrace --help'")
    if args.command == "doctor":
        from . import doctor

        checks = doctor.run_checks()
        print(doctor.render(checks))
        return 0 if all(c.ok for c in checks if c.name != "BTF") else 2
    if args.command == "run" and args.command_argv[:1] == ["--"]:
        args.command_argv = args.command_argv[1:]
    if args.command == "demo":
        from . import demo

        return demo.run(args)
    if args.command in ("hist", "top", "run"):
        from . import commands

        return getattr(commands, args.command)(args)
    raise BadInput("ioltrace", f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
