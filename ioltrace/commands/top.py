"""`ioltrace top`: the live per-key view, full screen or batch tables."""

import sys
import time
from dataclasses import dataclass

from .. import bykeys, layers, maps, session
from ..resolve import Resolver
from . import common


@dataclass(frozen=True)
class Options(common.Traced):
    interval: float = 1.0
    sort: str = "bytes"
    only: bool = False
    batch: bool = False
    iterations: int = None
    width: int = 80


def main(opts: Options) -> int:
    resolver = Resolver()
    first, last = watch(opts, resolver)
    if not common.json_to_stdout(opts):
        print_summary(first, last, opts, resolver)
    return 0


def watch(opts, resolver, on_start=None, on_interval=None):
    """Attach, show every interval until stopped, q, or --iterations,
    detach. Returns the first and last snapshots. on_start() runs right
    after the baseline snapshot (demo starts its readers there);
    on_interval(delta, start, end, final) right after each interval's
    snapshot, before it is shown (demo reads the kernel's own counts there)."""
    common.chosen_layers(opts)
    outputs = common.open_outputs(opts)
    tracer = None
    try:
        tracer = common.open_tracer(opts, resolver)
        return _live_view(tracer, resolver, opts, outputs, on_start, on_interval)
    finally:
        common.close_all(tracer, *outputs)


def _rows(delta, opts, resolver, seconds, controls_of):
    from ..views import top as view

    # Ops stay apart (READ/s and WRITE/s), disks only for a pair with disk;
    # rows merge them down to the --by keys.
    groups = dict(common.interval_groups(delta, opts, resolver, split_disk=False))
    return view.rows(groups["block"], seconds, controls_of, groups["syscall"], sys_bytes=opts.layer == "syscall",
                     second=bykeys.of(opts.by).second)


def _live_view(tracer, resolver, opts, outputs, on_start, on_interval=None):
    """The top loop on an attached tracer: screen or batch tables every
    interval. With --json - it is batch mode printing only the JSON lines."""
    from ..views import top as view

    only_json = common.json_to_stdout(opts)
    batch = opts.batch or only_json or not sys.stdout.isatty()
    controls_of = common.controls_lookup(opts.by, resolver)
    with_controls = controls_of is not None
    state = view.TopState(opts.sort, opts.layer, opts.only, bykeys.of(opts.by).second)
    screen = None
    try:
        if not batch:
            from ..views.screen import Screen

            screen = Screen()

        def show(delta, start, end, final):
            if on_interval is not None:
                on_interval(delta, start, end, final)
            common.write_outputs(outputs, delta, opts, resolver, start, end)
            if only_json:
                return
            rows = _rows(delta, opts, resolver, end - start, controls_of)
            header = view.header_lines(rows, layers.alarms(delta.counters),
                                       time.strftime("%H:%M:%S", time.localtime(end)), opts.interval,
                                       opts.by, state.sort)
            state.update(rows, header)
            if batch:
                sys.stdout.write("\n".join(view.batch_lines(state, with_controls, opts.width)) + "\n\n")
                sys.stdout.flush()
            else:
                screen.draw(state, view, with_controls)

        def wait(stopper):
            return lambda deadline: screen.wait(deadline, state, view, with_controls, stopper)

        return session.live(tracer, opts.interval, opts.iterations, show, opts.verbose,
                            wait=wait if screen is not None else None, announce=batch, on_start=on_start)
    finally:
        if screen is not None:
            screen.close()


def print_summary(first, last, opts, resolver, title=None):
    """One screen for the whole run, as top's final word on Ctrl-C."""
    from ..views import top as view

    controls_of = common.controls_lookup(opts.by, resolver)
    whole = maps.delta(last, first)
    seconds = (last.time_ns - first.time_ns) / 1e9
    rows = _rows(whole, opts, resolver, seconds, controls_of)
    lines = view.summary_lines(rows, layers.alarms(whole.counters), seconds, opts.by, width=opts.width,
                               with_controls=controls_of is not None, layer=opts.layer, title=title)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
