"""What each offline command does (report, compare, plot), from typed options to output.

These read recordings only: they need neither root nor bcc and must never
import loader, commands or anything that does. Parsing lives in cli.py;
reading and merging in recording.py; figures and tests in stats.py;
formatting in views/, export/json.py and plot.py.
"""

import os
import sys

from . import bykeys, recording, stats
from .errors import BadInput


def filters(args, by=None):
    return recording.Filters(by=by or args.by, ops=tuple(args.op or ()), stages=tuple(args.stage or ()),
                             layer=args.layer, keys=tuple(args.key or ()), disk=args.disk)


def _write(text):
    sys.stdout.write(text)
    sys.stdout.flush()


def _note(text):
    if text:
        sys.stderr.write(f"ioltrace: {text}\n")


def report(args):
    from .views import report as view

    loaded = [recording.load(p) for p in args.files]
    for x in loaded:
        _note(x.cut)
    sel = recording.aggregate(loaded, filters(args), args.interval)
    stages = tuple(args.stage or ())
    if args.format == "json":
        from .export import json

        _write(json.dumps(json.document(sel, stages)))
    elif args.format == "csv":
        _write(view.csv_text(sel, stages))
    else:
        _write("\n".join(view.render(sel, stages, args.milliseconds)) + "\n")
    return 0


def _sides(args):
    """(paths of A, paths of B, whether they are groups of runs)."""
    if args.runs:
        if args.files or len(args.runs) != 2:
            raise BadInput("compare", "give two recordings, or --runs twice (A1.csv,A2.csv,... then B1.csv,...)")
        groups = [[p for p in r.split(",") if p] for r in args.runs]
        if not all(groups):
            raise BadInput("compare --runs", "an empty list of recordings")
        return groups[0], groups[1], True
    if len(args.files) != 2:
        raise BadInput("compare", f"needs two recordings, got {len(args.files)}",
                       "ioltrace compare A.csv B.csv, or --runs A1.csv,A2.csv --runs B1.csv,B2.csv")
    return [args.files[0]], [args.files[1]], False


def _label(paths):
    return paths[0] if len(paths) == 1 else f"{len(paths)} runs: " + ", ".join(paths)


def compare(args):
    paths_a, paths_b, runs = _sides(args)
    if args.plot:
        from . import plot

        plot.check_output(args.plot)
        plot.require()
    loaded_a = [recording.load(p) for p in paths_a]
    loaded_b = [recording.load(p) for p in paths_b]
    for x in loaded_a + loaded_b:
        _note(x.cut)
    kinds = {x.kind for x in loaded_a + loaded_b if x.kind}
    # Pids differ from run to run; command names are what two runs share
    # (with the second key of recordings made with a pair: comm,disk).
    pairs = {x.by for x in loaded_a + loaded_b if x.kind}
    second = bykeys.of(pairs.pop()).second if len(pairs) == 1 and "" not in pairs else None
    by = args.by or ((f"comm,{second}" if second else "comm") if kinds and kinds <= {"process", "thread"} else None)
    f = filters(args, recording.by_kind(loaded_a + loaded_b, by))
    sel_a = recording.aggregate(loaded_a, f, check=False)
    sel_b = recording.aggregate(loaded_b, f, check=False)
    recording.check_filters(f, sel_a.seen, sel_b.seen)
    pairs = recording.pair(sel_a, sel_b)
    per_run = None
    if runs:
        def each(loaded):
            out = []
            for x in loaded:
                sel = recording.aggregate([x], f, check=False)
                out.append(({recording.match_id(s): s for s in sel.series}, sel.seconds))
            return out

        per_run = (each(loaded_a), each(loaded_b))
    comparisons = stats.compare(pairs, f.stages, sel_a.seconds, sel_b.seconds, *(per_run or (None, None)))
    if args.format == "json":
        from .export import json

        _write(json.dumps(json.compare_document(comparisons, sel_a, sel_b, f.stages)))
    else:
        from .views import compare as view

        _write("\n".join(view.render(comparisons, _label(paths_a), _label(paths_b), sel_a.counters, sel_b.counters,
                                     (len(paths_a), len(paths_b)) if runs else None)) + "\n")
    if args.plot:
        from . import plot

        _note(plot.overlay(pairs, f.stages, ("A: " + _short(paths_a), "B: " + _short(paths_b)), args.plot, args.size))
    return 0


def _short(paths):
    return os.path.basename(paths[0]) if len(paths) == 1 else f"{len(paths)} runs"


def plot(args):
    from . import plot as draw

    draw.check_output(args.output)
    draw.require()
    loaded = [recording.load(p) for p in args.files]
    for x in loaded:
        _note(x.cut)
    window = args.interval
    if args.heatmap and window is None:
        longest = max(x.interval for x in loaded)
        span = max(x.end - x.start for x in loaded)
        window = float(f"{max(longest, span / draw.HEAT_COLUMNS):.3g}")
        window = max(window, longest)  # rounding must not cut below one interval
    sel = recording.aggregate(loaded, filters(args), window if args.heatmap else None)
    stages = tuple(args.stage or ())
    if args.heatmap:
        _note(draw.heatmap(sel, stages, args.output, args.size))
    else:
        _note(draw.histograms(sel, stages, args.output, args.size))
    return 0
