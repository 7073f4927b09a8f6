"""`ioltrace loop`: per-thread latency between consecutive tracepoint events."""

import os
import sys
from dataclasses import dataclass

from .. import layers, loader, session
from ..errors import BadInput
from ..resolve import Resolver
from . import common


@dataclass(frozen=True)
class Options(common.TaskFilters):
    interval: float = None   # None: one interval, until Ctrl-C
    count: int = None
    from_tp: str = None
    to_tp: str = None
    chain: tuple = None
    milliseconds: bool = False


def main(opts: Options) -> int:
    from ..views import loop as view

    events = list(opts.chain or ()) or [e for e in (opts.from_tp, opts.to_tp) if e]
    if opts.chain and (opts.from_tp or opts.to_tp):
        raise BadInput("loop", "--chain excludes --from/--to")
    if len(events) < 2:
        raise BadInput("loop", "give --from and --to, or --chain A,B[,...]")
    root = loader.tracefs()
    if root is not None:
        _check_tracepoints(events, root)
    resolver = Resolver()
    tracer = loader.Tracer(common.kernel_options(opts, resolver), verbose=opts.verbose, layers=("loop",),
                           events=events)
    try:
        def on_interval(delta, start, end, final):
            sys.stdout.write("\n".join(view.interval_lines(delta, events, resolver, layers.LOOP.alarms,
                                                                 opts.milliseconds)) + "\n")
            sys.stdout.flush()

        session.live(tracer, opts.interval, opts.count, on_interval, opts.verbose, what="events")
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
