"""What each live command does, from parsed arguments to output.

Builds kernel options from validated arguments, opens outputs before
attaching probes, and wires session -> group -> views/export. Parsing lives
in cli.py; formatting lives in views/ and export/.
"""

import os
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


def _controls_lookup(args, resolver):
    """key -> controls text for the cgroup views, read once per interval."""
    from . import cgroups

    if args.by not in ("cgroup", "cgroup-v1"):
        return None
    return lambda key, name: cgroups.format_controls(cgroups.read_controls(resolver, name))


class TopState:
    """What the live view remembers between intervals and key presses."""

    KEYS = {"r": "read", "w": "write", "i": "iops", "l": "latency", "b": "bytes", "n": "name", "p": "id",
            "q": None}
    SEEN_MAX = 4096  # idle keys kept on screen without -o; range 0..1M

    def __init__(self, args):
        self.sort = args.sort
        self.reverse = True
        self.only = args.only
        self.seen = {}          # key -> name, for keys idle in this interval
        self.rows = []
        self.header = []

    def update(self, rows, header):
        for r in rows:
            self.seen.pop(r.key, None)
            self.seen[r.key] = r.name
        while len(self.seen) > self.SEEN_MAX:
            del self.seen[next(iter(self.seen))]
        if not self.only:
            have = {r.key for r in rows}
            rows = rows + [_idle_row(k, n) for k, n in self.seen.items() if k not in have]
        self.rows = rows
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
        return True


def _idle_row(key, name):
    from .records import TopRow

    nan = float("nan")
    return TopRow(key, name, 0.0, 0.0, 0.0, nan, nan, nan, nan, 0, 0.0, "")


def top(args):
    from .export.csv import CsvWriter

    resolver = Resolver()
    opts = kernel_options(args, resolver, by_thread=args.by == "thread")
    writer = CsvWriter(args.csv) if args.csv else None
    tracer = None
    try:
        tracer = Tracer(opts, verbose=args.verbose)
        first, last = live_view(tracer, resolver, args, writer)
    finally:
        if tracer is not None:
            tracer.close()
        if writer is not None:
            writer.close()
    _print_summary(first, last, args, resolver, _ops(args), _controls_lookup(args, resolver))
    return 0


def _ops(args):
    return set(args.op) if getattr(args, "op", None) else None


def live_view(tracer, resolver, args, writer=None):
    """The top loop on an attached tracer: screen or batch tables every
    interval until stopped, q, or args.iterations. Returns (first, last)."""
    from .views import top as view

    ops = _ops(args)
    batch = args.batch or not sys.stdout.isatty()
    controls_of = _controls_lookup(args, resolver)
    state = TopState(args)
    screen = None
    try:
        if batch:
            session.banner(tracer, args.verbose)
        else:
            from .views.screen import Screen

            screen = Screen()

        def on_interval(delta, start, end, final):
            if writer is not None:
                writer.write_interval(group.by_key(delta, args.by, resolver, ops=ops), start, end, delta.counters)
            groups = group.by_key(delta, args.by, resolver, split_disk=False, ops=ops)
            rows = view.rows(groups, end - start, controls_of)
            header = view.header_lines(rows, session.alarm_counters(delta.counters),
                                       time.strftime("%H:%M:%S", time.localtime(end)), args.interval,
                                       args.by, state.sort)
            state.update(rows, header)
            if batch:
                _print_top(state, view, controls_of is not None, width=args.width)
            else:
                screen.draw(state, view, controls_of is not None)

        wait = None
        with session.Stopper() as stopper:
            if screen is not None:
                def wait(deadline):
                    return screen.wait(deadline, state, view, controls_of is not None, stopper)

            return session.run(tracer, args.interval, args.iterations, on_interval, stopper, wait=wait)
    finally:
        if screen is not None:
            screen.close()


def _print_top(state, view, with_controls, width=80):
    lines = list(state.header)
    lines += view.table_lines(view.sort_rows(state.rows, state.sort, state.reverse), width=width,
                              with_controls=with_controls)
    sys.stdout.write("\n".join(lines) + "\n\n")
    sys.stdout.flush()


def _print_summary(first, last, args, resolver, ops, controls_of, title=None):
    """One screen for the whole run, as top's final word on Ctrl-C."""
    from . import maps
    from .views import top as view

    whole = maps.delta(last, first)
    seconds = (last.time_ns - first.time_ns) / 1e9
    groups = group.by_key(whole, args.by, resolver, split_disk=False, ops=ops)
    rows = view.sort_rows(view.rows(groups, seconds, controls_of), "bytes")
    lines = [title or f"Summary of {seconds:.1f}s, by {args.by}, top {min(len(rows), 20)} of {len(rows)} by bytes:"]
    lines += view.header_lines(rows, session.alarm_counters(whole.counters), "whole run", seconds, args.by,
                               "bytes")[1:]
    lines += view.table_lines(rows, width=getattr(args, "width", 80), with_controls=controls_of is not None,
                              limit=20)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def run(args):
    """Trace exactly one command's cgroup from its first instruction."""
    import subprocess

    from .cgroups import ScratchCgroup
    from .export.csv import CsvWriter
    from .views import hist as hview

    if not args.command_argv:
        raise BadInput("ioltrace run", "no command given", "usage: ioltrace run [options] -- COMMAND [ARGS...]")
    resolver = Resolver()
    writer = CsvWriter(args.csv) if args.csv else None
    tracer = child = None
    ops = set(args.op) if args.op else None
    try:
        with ScratchCgroup(resolver, f"ioltrace-run-{os.getpid()}") as cg:
            cgid, level = resolver.cgroup_filter(cg.rel)
            opts = kernel_options(args, resolver, cgid=cgid, cglevel=level, total_hist=True)
            tracer = Tracer(opts, verbose=args.verbose)
            if args.verbose:
                session.banner(tracer, True)
            with session.Stopper() as stopper:
                started = []

                def start():
                    try:
                        started.append(subprocess.Popen(args.command_argv, preexec_fn=cg.join))
                    except OSError as e:
                        raise BadInput(f"command {args.command_argv[0]}", e.strerror.lower()) from None
                    return started[0]

                forward = _ForwardingStopper(stopper, started)
                first, last = session.run(tracer, None, None, lambda *a: None, forward, on_start=start)
                child = started[0]
                code = _wait_child(child)
            leftover = cg.procs()
    finally:
        if tracer is not None:
            tracer.close()
    from . import maps

    whole = maps.delta(last, first)
    seconds = (last.time_ns - first.time_ns) / 1e9
    if writer is not None:
        wall_end = time.time()
        writer.write_interval(group.by_key(whole, "process", resolver, ops=ops), wall_end - seconds, wall_end,
                              whole.counters)
        writer.close()
    _print_run_report(whole, seconds, args, resolver, ops, hview, leftover)
    return code


class _ForwardingStopper:
    """The stop flag of session.run, passing the first stop signal on to the
    traced command (which then ends the run by exiting)."""

    def __init__(self, stopper, started):
        self.stopper, self.started, self.sent = stopper, started, False

    @property
    def stopped(self):
        if self.stopper.stopped and not self.sent and self.started:
            self.sent = True
            if self.started[0].poll() is None:
                self.started[0].send_signal(self.stopper.signum)
        return False  # the run ends when the command does

    def sleep_until(self, deadline):
        return self.stopper.sleep_until(deadline)


def _wait_child(child):
    code = child.wait()
    return 128 - code if code < 0 else code


def _print_run_report(whole, seconds, args, resolver, ops, hview, leftover):
    from . import hist as H
    from .views import fmt

    out = sys.stderr if args.report_to_stderr else sys.stdout
    procs = group.by_key(whole, "process", resolver, split_disk=False, split_op=False, ops=ops)
    lines = ["", f" Block I/O of '{' '.join(args.command_argv)}' ({seconds:.2f}s, {len(procs)} process(es)):", ""]
    lines.append(f"{'PID':>8} {'COMM':<16} {'IOS':>8} {'READ':>9} {'WRITE':>9} {'Qp50':>7} {'Dp50':>7} {'Dp99':>7}")
    by_op = group.by_key(whole, "process", resolver, split_disk=False, ops=ops)
    rw = {}
    for g in by_op:
        rw.setdefault(g.id.key, {"read": 0, "write": 0})
        if g.id.op in ("read", "write"):
            rw[g.id.key][g.id.op] += g.bytes
    for g in procs:
        q, d = g.hists.get("queue", H.empty()), g.hists.get("device", H.empty())
        lines.append(f"{g.id.key:>8} {fmt.truncate(g.id.name, 16):<16} {g.ios:>8} {fmt.size(rw[g.id.key]['read']):>9} "
                     f"{fmt.size(rw[g.id.key]['write']):>9} {fmt.ns(H.percentile(q, 50)):>7} "
                     f"{fmt.ns(H.percentile(d, 50)):>7} {fmt.ns(H.percentile(d, 99)):>7}")
    total = group.by_key(whole, "disk", _AllOne(), split_disk=False, ops=ops)
    for g in total:
        for stage in ("queue", "device", "total"):
            lines += [""] + [f"total {g.id.op} {stage} time" if g.id.op != "*" else f"total {stage} time"]
            lines += hview.render_hist(g.hists.get(stage, H.empty()), 1e3, "usecs")
            lines += hview.stats_lines(g, stage, seconds)
    if not procs:
        lines.append("(no block I/O: page-cache hits and buffered writes not yet flushed do no block I/O)")
    foot = hview.footer(whole.counters, layout.ALARM_COUNTERS)
    if foot:
        lines.append(foot)
    if leftover:
        lines.append(f"note: {len(leftover)} process(es) outlived the command; moved out of its cgroup")
    out.write("\n".join(lines) + "\n")
    out.flush()


class _AllOne:
    """A resolver that names every disk the same, to total across disks."""

    def disk_name(self, dev):
        return "all disks"
