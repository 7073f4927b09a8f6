"""`ioltrace run -- CMD`: trace exactly one command's cgroup from its first
instruction, report when it exits, exit with its exit code."""

import os
import subprocess
import sys
from dataclasses import dataclass, replace

from .. import group, layers, maps, session
from ..errors import BadInput
from ..resolve import Resolver
from . import common, refuse_unused


@dataclass(frozen=True)
class Options(common.Traced):
    command_argv: tuple = ()
    layer: str = "both"
    report_to_stderr: bool = False

    def __post_init__(self):
        super().__post_init__()
        refuse_unused(self, [("cgroup", "run traces the command's own cgroup, which no other cgroup holds",
                              "leave it out: the command's children are traced already")])


def main(opts: Options) -> int:
    from ..cgroups import ScratchCgroup

    if not opts.command_argv:
        raise BadInput("run", "no command given", "usage: ioltrace run [options] -- COMMAND [ARGS...]")
    resolver = Resolver()
    opts = replace(opts, by="process")
    common.chosen_layers(opts)
    writer, jwriter = common.open_outputs(opts)
    # --json -: stdout is for JSON lines only; the report and the command's
    # own stdout go to stderr.
    child_stdout = 2 if common.json_to_stdout(opts) else None
    if child_stdout is not None:
        opts = replace(opts, report_to_stderr=True)
    tracer = child = None
    try:
        with ScratchCgroup(resolver, f"ioltrace-run-{os.getpid()}") as cg:
            cgid, level = resolver.cgroup_filter(cg.rel)
            tracer = common.open_tracer(opts, resolver, cgid=cgid, cglevel=level, total_hist=True)
            with session.Stopper() as stopper:
                started = []

                def start():
                    try:
                        started.append(subprocess.Popen(opts.command_argv, preexec_fn=cg.join, stdout=child_stdout))
                    except OSError as e:
                        raise BadInput(f"command {opts.command_argv[0]}", e.strerror.lower()) from None
                    return started[0]

                forward = _ForwardingStopper(stopper, started)
                # Recordings get intervals (time to plot against); the report covers the whole run.
                every = session.RUN_RECORD_S if writer is not None or jwriter is not None else None

                def record(delta, start_ts, end_ts, final):
                    common.write_outputs((writer, jwriter), delta, opts, resolver, start_ts, end_ts)

                first, last = session.run(tracer, every, None, record, forward, on_start=start,
                                          wait=session.until_exit(started, forward),
                                          announce=(lambda: session.banner(tracer, True, end_line=session.ending(
                                              command=True))) if opts.verbose else None)
                child = started[0]
                code = _wait_child(child)
            leftover = cg.procs()
    finally:
        common.close_all(tracer, writer, jwriter)
    whole = maps.delta(last, first)
    seconds = (last.time_ns - first.time_ns) / 1e9
    _print_report(whole, seconds, opts, resolver, leftover)
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


class _AllOne:
    """A resolver that names every disk the same, to total across disks."""

    def disk_name(self, dev):
        return "all disks"


def _print_report(whole, seconds, opts, resolver, leftover):
    from ..views import hist as hview
    from ..views import run as view

    out = sys.stderr if opts.report_to_stderr else sys.stdout
    chosen = common.chosen_layers(opts)
    block = "block" in chosen
    ops = common.ops_of(opts)
    procs = group.by_key(whole, "process", resolver, split_disk=False, split_op=False, ops=ops) if block else []
    rw = {}
    for g in group.by_key(whole, "process", resolver, split_disk=False, ops=ops):
        rw.setdefault(g.id.key, {"read": 0, "write": 0})
        if g.id.op in ("read", "write"):
            rw[g.id.key][g.id.op] += g.bytes
    totals = group.by_key(whole, "disk", _AllOne(), split_disk=False, ops=ops) if block else []
    sys_groups = None
    if "syscall" in chosen:
        sys_groups = group.by_key(whole, "process", resolver, ops=set(opts.syscalls), layer=layers.SYSCALL)
    excluded = hview.filter_note(whole.counters, opts.pid, opts.children, cgroup_is_ours=True) if block else None
    lines = view.report_lines(opts.command_argv, seconds, procs, rw, totals, sys_groups,
                              hview.footer(whole.counters, layers.ALARM_COUNTERS), leftover,
                              block=block, syscall=sys_groups is not None, excluded=excluded)
    out.write("\n".join(lines) + "\n")
    out.flush()
