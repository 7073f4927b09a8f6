"""What each live command does, from parsed arguments to output.

Builds kernel options from validated arguments, opens outputs before
attaching probes, and wires session -> group -> views/export. Parsing lives
in cli.py; formatting lives in views/ and export/.
"""

import sys
import time

from . import group, layout, session
from .errors import BadInput
from .loader import Options, Tracer
from .resolve import Resolver


def kernel_options(args, resolver, **extra):
    """Filters -> Options of validated integers, checking each names something real."""
    kw = dict(extra)
    if getattr(args, "disk", None):
        kw["dev"], kw["sector_lo"], kw["sector_hi"] = resolver.disk_filter(args.disk)
    if getattr(args, "cgroup", None):
        kw["cgid"], kw["cglevel"] = resolver.cgroup_filter(args.cgroup)
    if getattr(args, "pid", None):
        if not resolver.pid_exists(args.pid):
            raise BadInput(f"--pid {args.pid}", "no such process", "check the pid with ps")
        kw["tgid"] = args.pid
    if getattr(args, "comm", None):
        kw["comm"] = args.comm
    return Options(**kw)


def hist(args):
    from .export.csv import CsvWriter
    from .views import hist as view

    resolver = Resolver()
    stages = list(layout.STAGES[:2]) if args.stage == "all" else [args.stage]
    opts = kernel_options(args, resolver, by_thread=args.by == "thread",
                          total_hist=args.stage in ("total", "all"))
    ops = set(args.op) if args.op else None
    writer = CsvWriter(args.csv) if args.csv else None
    if args.stage == "all":
        stages.append("total")
    tracer = None
    try:
        tracer = Tracer(opts, verbose=args.verbose)
        session.banner(tracer, args.verbose)
        out = sys.stdout

        def on_interval(delta, start, end, final):
            if writer is not None:
                writer.write_interval(group.by_key(delta, args.by, resolver, ops=ops), start, end, delta.counters)
            groups = group.by_key(delta, args.by, resolver, split_disk=args.by == "disk" or bool(args.disk), ops=ops)
            lines = []
            if args.timestamp:
                lines.append(time.strftime("%H:%M:%S", time.localtime(end)))
            lines.extend(view.render(groups, stages, end - start, args.milliseconds))
            if not groups:
                lines.append("(no block I/O in this interval)")
            foot = view.footer(delta.counters, layout.ALARM_COUNTERS)
            if foot:
                lines.append(foot)
            out.write("\n".join(lines) + "\n")
            out.flush()

        with session.Stopper() as stopper:
            session.run(tracer, args.interval, args.count, on_interval, stopper)
    finally:
        if tracer is not None:
            tracer.close()
        if writer is not None:
            writer.close()
    return 0
