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
from .export.paths import same_output
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


def layers(args):
    """The --layer choice as the Tracer's layers, checked against --by."""
    layer = getattr(args, "layer", "block")
    chosen = ("block", "syscall") if layer == "both" else (layer,)
    if "syscall" in chosen and getattr(args, "by", None) == "disk":
        raise BadInput("--by disk", "the syscall layer knows processes and cgroups, not disks",
                       "use --by process or --by cgroup with --layer syscall")
    return chosen


def interval_groups(delta, args, resolver, split_disk=True, split_op=True):
    """(block Groups, syscall Groups) of one interval for the chosen layers."""
    ops = _ops(args)
    chosen = layers(args)
    block = group.by_key(delta, args.by, resolver, split_disk=split_disk, split_op=split_op, ops=ops) \
        if "block" in chosen else []
    sys_ = group.by_key_sys(delta, args.by, resolver, split_op=split_op, syscalls=set(args.syscalls)) \
        if "syscall" in chosen else []
    return block, sys_


def write_csv(writer, delta, args, resolver, start, end):
    from .export.csv import rows

    block, sys_ = interval_groups(delta, args, resolver)
    writer.write_interval(block, start, end, delta.counters, extra_rows=rows(sys_, start, end, layer="syscall"))


def write_json(writer, delta, args, resolver, start, end):
    """One interval as JSON lines: the same keys as the CSV rows of write_csv."""
    from .recording import from_group

    block, sys_ = interval_groups(delta, args, resolver)
    series = [from_group(g) for g in block] + [from_group(g, "syscall") for g in sys_]
    writer.write_interval(series, start, end, delta.counters)


def close_all(*things):
    """Detach the tracer and close the outputs, whichever were opened."""
    for thing in things:
        if thing is not None:
            thing.close()


def open_outputs(args):
    """(CsvWriter or None, LinesWriter or None) for --csv and --json, created
    now, before tracing; if --json cannot be opened, the CSV file just made
    is removed again, so a bad command line leaves no file."""
    from .export.csv import CsvWriter
    from .export.json import LinesWriter

    same_output(getattr(args, "csv", None), getattr(args, "json", None))
    writer = CsvWriter(args.csv) if getattr(args, "csv", None) else None
    try:
        jwriter = LinesWriter(args.json) if getattr(args, "json", None) else None
    except BaseException:
        if writer is not None:
            writer.close()
            try:
                if not writer.stdout:
                    os.unlink(args.csv)
            except OSError:
                pass
        raise
    return writer, jwriter


def json_to_stdout(args):
    """--json - or --csv -: stdout carries JSON lines (or CSV) only; text output is left out."""
    return "-" in (getattr(args, "json", None), getattr(args, "csv", None))


def open_tracer(args, resolver, **extra):
    """Options from the filters, then the tracer for the chosen layers."""
    chosen = layers(args)
    opts = kernel_options(args, resolver, by_thread=getattr(args, "by", None) == "thread", **extra)
    return Tracer(opts, verbose=args.verbose, layers=chosen, syscalls=getattr(args, "syscalls", None),
                  keep_exited=args.keep_exited)


def hist(args):
    from .views import hist as view

    resolver = Resolver()
    stages = list(layout.STAGES[:2]) + ["total"] if args.stage == "all" else [args.stage]
    if args.layer == "syscall":
        stages = ["latency"]
    tracer = writer = jwriter = None
    try:
        layers(args)
        writer, jwriter = open_outputs(args)
        tracer = open_tracer(args, resolver, total_hist=args.stage in ("total", "all"))
        out = sys.stdout

        def on_interval(delta, start, end, final):
            if writer is not None:
                write_csv(writer, delta, args, resolver, start, end)
            if jwriter is not None:
                write_json(jwriter, delta, args, resolver, start, end)
            if json_to_stdout(args):
                return
            # Several disks are never merged into one histogram without a label: split by disk.
            several = len({k.dev for k in delta.totals}) > 1
            block, sys_ = interval_groups(delta, args, resolver, split_disk=args.by == "disk" or bool(args.disk) or several)
            lines = []
            if args.timestamp:
                lines.append(time.strftime("%H:%M:%S", time.localtime(end)))
            lines.extend(view.render(block + sys_, stages, end - start, args.milliseconds))
            if not block and not sys_:
                lines.append(f"(no {'syscall' if args.layer == 'syscall' else 'block'} I/O in this interval)")
            foot = view.footer(delta.counters, layout.ALARM_COUNTERS + layout.SC_COUNTERS)
            if foot:
                lines.append(foot)
            out.write("\n".join(lines) + "\n")
            out.flush()

        with session.Stopper() as stopper:
            session.run(tracer, args.interval, args.count, on_interval, stopper,
                        announce=lambda: session.banner(tracer, args.verbose,
                                                        end_line=session.ending(args.interval, args.count)))
    finally:
        close_all(tracer, writer, jwriter)
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
        self.layer = getattr(args, "layer", "block")
        if self.layer == "syscall" and self.sort == "latency":
            self.sort = "sp99"
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
            if self.sort == "latency" and self.layer == "syscall":
                self.sort = "sp99"
        return True


def _idle_row(key, name):
    from .records import TopRow

    nan = float("nan")
    return TopRow(key, name, 0.0, 0.0, 0.0, nan, nan, nan, nan, 0, 0.0, "")


def top(args):
    resolver = Resolver()
    layers(args)
    writer, jwriter = open_outputs(args)
    tracer = None
    try:
        tracer = open_tracer(args, resolver)
        first, last = live_view(tracer, resolver, args, writer, jwriter)
    finally:
        close_all(tracer, writer, jwriter)
    if json_to_stdout(args):
        return 0
    _print_summary(first, last, args, resolver, _ops(args), _controls_lookup(args, resolver))
    return 0


def _ops(args):
    return set(args.op) if getattr(args, "op", None) else None


def live_view(tracer, resolver, args, writer=None, jwriter=None):
    """The top loop on an attached tracer: screen or batch tables every
    interval until stopped, q, or args.iterations. Returns (first, last).
    With --json - it is batch mode printing only the JSON lines."""
    from .views import top as view

    ops = _ops(args)
    only_json = json_to_stdout(args)
    batch = args.batch or only_json or not sys.stdout.isatty()
    controls_of = _controls_lookup(args, resolver)
    state = TopState(args)
    screen = None
    try:
        if not batch:
            from .views.screen import Screen

            screen = Screen()

        layer = getattr(args, "layer", "block")

        def on_interval(delta, start, end, final):
            if writer is not None:
                write_csv(writer, delta, args, resolver, start, end)
            if jwriter is not None:
                write_json(jwriter, delta, args, resolver, start, end)
            if only_json:
                return
            block, sys_ = interval_groups(delta, args, resolver, split_disk=False)
            rows = view.rows(block, end - start, controls_of, sys_, sys_bytes=layer == "syscall")
            header = view.header_lines(rows, session.alarm_counters(delta.counters),
                                       time.strftime("%H:%M:%S", time.localtime(end)), args.interval,
                                       args.by, state.sort)
            state.update(rows, header)
            if batch:
                _print_top(state, view, controls_of is not None, width=args.width, layer=layer)
            else:
                screen.draw(state, view, controls_of is not None)

        wait = None
        with session.Stopper() as stopper:
            if screen is not None:
                def wait(deadline):
                    return screen.wait(deadline, state, view, controls_of is not None, stopper)

            return session.run(tracer, args.interval, args.iterations, on_interval, stopper, wait=wait,
                               announce=(lambda: session.banner(tracer, args.verbose, end_line=session.ending(
                                   args.interval, args.iterations))) if batch else None)
    finally:
        if screen is not None:
            screen.close()


def _print_top(state, view, with_controls, width=80, layer="block"):
    lines = view.fit_lines(state.header, width)
    lines += view.table_lines(view.sort_rows(state.rows, state.sort, state.reverse), width=width,
                              with_controls=with_controls, layer=layer)
    sys.stdout.write("\n".join(lines) + "\n\n")
    sys.stdout.flush()


def _print_summary(first, last, args, resolver, ops, controls_of, title=None):
    """One screen for the whole run, as top's final word on Ctrl-C."""
    from . import maps
    from .views import top as view

    whole = maps.delta(last, first)
    seconds = (last.time_ns - first.time_ns) / 1e9
    layer = getattr(args, "layer", "block")
    block, sys_ = interval_groups(whole, args, resolver, split_disk=False)
    rows = view.sort_rows(view.rows(block, seconds, controls_of, sys_, sys_bytes=layer == "syscall"), "bytes")
    lines = [title or f"Summary of {seconds:.1f}s, by {args.by}, top {min(len(rows), 20)} of {len(rows)} by bytes:"]
    lines += view.header_lines(rows, session.alarm_counters(whole.counters), "whole run", seconds, args.by,
                               "bytes", width=getattr(args, "width", 80))[1:]
    lines += view.table_lines(rows, width=getattr(args, "width", 80), with_controls=controls_of is not None,
                              limit=20, layer=layer)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def run(args):
    """Trace exactly one command's cgroup from its first instruction."""
    import subprocess

    from .cgroups import ScratchCgroup
    from .views import hist as hview

    if not args.command_argv:
        raise BadInput("run", "no command given", "usage: ioltrace run [options] -- COMMAND [ARGS...]")
    resolver = Resolver()
    args.by = "process"
    layers(args)
    writer, jwriter = open_outputs(args)
    # --json -: stdout is for JSON lines only; the report and the command's
    # own stdout go to stderr.
    child_stdout = 2 if json_to_stdout(args) else None
    if child_stdout is not None:
        args.report_to_stderr = True
    tracer = child = None
    ops = set(args.op) if args.op else None
    try:
        with ScratchCgroup(resolver, f"ioltrace-run-{os.getpid()}") as cg:
            cgid, level = resolver.cgroup_filter(cg.rel)
            tracer = open_tracer(args, resolver, cgid=cgid, cglevel=level, total_hist=True)
            with session.Stopper() as stopper:
                started = []

                def start():
                    try:
                        started.append(subprocess.Popen(args.command_argv, preexec_fn=cg.join, stdout=child_stdout))
                    except OSError as e:
                        raise BadInput(f"command {args.command_argv[0]}", e.strerror.lower()) from None
                    return started[0]

                forward = _ForwardingStopper(stopper, started)
                # Recordings get intervals (time to plot against); the report covers the whole run.
                every = session.RUN_RECORD_S if writer is not None or jwriter is not None else None

                def record(delta, start_ts, end_ts, final):
                    if writer is not None:
                        write_csv(writer, delta, args, resolver, start_ts, end_ts)
                    if jwriter is not None:
                        write_json(jwriter, delta, args, resolver, start_ts, end_ts)

                first, last = session.run(tracer, every, None, record, forward, on_start=start,
                                          wait=session.until_exit(started, forward),
                                          announce=(lambda: session.banner(tracer, True, end_line=session.ending(
                                              command=True))) if args.verbose else None)
                child = started[0]
                code = _wait_child(child)
            leftover = cg.procs()
    finally:
        if tracer is not None:
            tracer.close()
        if jwriter is not None and child is None:
            jwriter.close()     # nothing ran: no interval to write
    from . import maps

    whole = maps.delta(last, first)
    seconds = (last.time_ns - first.time_ns) / 1e9
    close_all(writer, jwriter)
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
    chosen = layers(args)
    procs = group.by_key(whole, "process", resolver, split_disk=False, split_op=False, ops=ops) \
        if "block" in chosen else []
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
    total = group.by_key(whole, "disk", _AllOne(), split_disk=False, ops=ops) if "block" in chosen else []
    for g in total:
        for stage in ("queue", "device", "total"):
            lines += [""] + [f"total {g.id.op} {stage} time" if g.id.op != "*" else f"total {stage} time"]
            lines += hview.render_hist(g.hists.get(stage, H.empty()), 1e3, "usecs")
            lines += hview.stats_lines(g, stage, seconds)
    if "block" in chosen and not procs:
        lines.append("(no block I/O: page-cache hits and buffered writes not yet flushed do no block I/O)")
    if "syscall" in chosen:
        lines += _syscall_table(group.by_key_sys(whole, "process", resolver, syscalls=set(args.syscalls)), seconds)
    foot = hview.footer(whole.counters, layout.ALARM_COUNTERS)
    if foot:
        lines.append(foot)
    if leftover:
        lines.append(f"note: {len(leftover)} process(es) outlived the command; moved out of its cgroup")
    out.write("\n".join(lines) + "\n")
    out.flush()


def _syscall_table(groups, seconds):
    from . import hist as H
    from .views import fmt

    lines = ["", f"{'PID':>8} {'COMM':<16} {'SYSCALL':<15} {'CALLS':>8} {'BYTES':>8} {'p50':>7} {'p99':>7}"
                 f" {'max':>7} ERRORS"]
    for g in groups:
        lat = g.hists.get("latency", H.empty())
        errs = ",".join(f"{fmt.errno_name(e)}={n}" for e, n in sorted(g.errnos.items()))
        lines.append(f"{g.id.key:>8} {fmt.truncate(g.id.name, 16):<16} {g.id.op:<15} {g.ios:>8} "
                     f"{fmt.size(g.bytes):>8} {fmt.ns(H.percentile(lat, 50)):>7} {fmt.ns(H.percentile(lat, 99)):>7}"
                     f" {fmt.ns(H.summary(lat)['max']):>7} {errs}")
    if not groups:
        lines.append("(no traced syscalls)")
    return lines


class _AllOne:
    """A resolver that names every disk the same, to total across disks."""

    def disk_name(self, dev):
        return "all disks"


def loop(args):
    """Per-thread latency between consecutive tracepoint events."""
    from . import hist as H
    from .loader import LoopTracer, tracefs
    from .views import fmt
    from .views import hist as hview

    events = args.chain or [e for e in (args.from_tp, args.to_tp) if e]
    if args.chain and (args.from_tp or args.to_tp):
        raise BadInput("loop", "--chain excludes --from/--to")
    if len(events) < 2:
        raise BadInput("loop", "give --from and --to, or --chain A,B[,...]")
    root = tracefs()
    if root is not None:
        _check_tracepoints(events, root)
    resolver = Resolver()
    tracer = LoopTracer(kernel_options(args, resolver), events, verbose=args.verbose)
    unit_ns, unit_name = (1e6, "msecs") if args.milliseconds else (1e3, "usecs")
    steps = [f"{a} -> {b}" for a, b in zip(events, events[1:])]
    try:
        prev = tracer.snapshot()  # the baseline, before anyone is told to start
        sys.stderr.write(f"probes: {', '.join(events)} (tracepoints)\n"
                         + session.ending(args.interval, args.count, what="events") + "\n")
        with session.Stopper() as stopper:
            n = 0
            t0 = time.monotonic()
            while True:
                n += 1
                if args.interval is None:
                    while not stopper.stopped:
                        time.sleep(0.05)
                    done = True
                else:
                    done = not stopper.sleep_until(t0 + n * args.interval) or (args.count and n >= args.count)
                cur = tracer.snapshot()
                lines = []
                for (tgid, step), arr in sorted(cur[2].items()):
                    d = arr - prev[2].get((tgid, step), 0)
                    if not d.any():
                        continue
                    count, sum_ns, _, _, comm = cur[1].get((tgid, step), (0, 0, 0, 0, ""))
                    pcount, psum = prev[1].get((tgid, step), (0, 0))[:2]
                    label = steps[step] if step < len(steps) else f"whole chain {events[0]} -> {events[-1]}"
                    s = H.summary(d, sum_ns - psum)
                    lines += ["", f"PID {tgid} ({resolver.comm(tgid, comm)})  {label}"]
                    lines += hview.render_hist(d, unit_ns, unit_name)
                    lines.append(f"  count {int(d.sum())}  mean {fmt.ns(s['mean'])}  median {fmt.ns(s['p50'])}  "
                                 f"stddev {fmt.ns(s['stddev'])}")
                    lines.append(f"  min {fmt.ns(s['min'])}  max {fmt.ns(s['max'])}  p90 {fmt.ns(s['p90'])}  "
                                 f"p99 {fmt.ns(s['p99'])}  p99.9 {fmt.ns(s['p99.9'])}")
                if not lines:
                    lines = ["(no complete steps in this interval)"]
                sys.stdout.write("\n".join(lines) + "\n")
                sys.stdout.flush()
                prev = cur
                if done:
                    break
    finally:
        tracer.close()
    return 0


def _check_tracepoints(events, root):
    """Every event must exist in tracefs; name close matches when not."""
    import difflib

    for ev in events:
        cat, name = ev.split(":", 1)
        if os.path.isdir(os.path.join(root, "events", cat, name)):
            continue
        try:
            with open(os.path.join(root, "available_events")) as f:
                known = f.read().split()
        except OSError:
            known = []
        close = difflib.get_close_matches(ev, known, n=3, cutoff=0.6)
        raise BadInput(f"tracepoint {ev}", "not in this kernel's tracefs",
                       ("did you mean " + ", ".join(close)) if close else "list them: ls " + root + "/events")
