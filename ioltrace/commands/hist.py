"""`ioltrace hist`: latency histograms per key, every interval or once."""

import sys
import time
from dataclasses import dataclass

from .. import bykeys, layers, layout, session
from ..resolve import Resolver
from . import common


@dataclass(frozen=True)
class Options(common.Traced):
    interval: float = None   # None: one interval, until Ctrl-C
    count: int = None
    by: str = "disk"
    stage: str = "device"    # queue, device, total, size, depth or all
    timestamp: bool = False
    milliseconds: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.json == "-":
            common.refuse_unused(self, [(name, "shapes the text output, and --json - prints none",
                                         "leave it out, or write JSON to a file")
                                        for name in ("timestamp", "milliseconds")])


def main(opts: Options) -> int:
    from ..views import hist as view

    resolver = Resolver()
    by = bykeys.of(opts.by)
    # size and depth need the kernel built for them: --stage size asks for it.
    size_depth = opts.size_depth or opts.stage in layout.SIZE_DEPTH_STAGES
    stages = list(layout.LATENCY_STAGES) if opts.stage == "all" else [opts.stage]
    if opts.size_depth:
        stages += [s for s in layout.SIZE_DEPTH_STAGES if s not in stages]
    if opts.layer == "syscall":
        stages = list(layers.SYSCALL.stages)
    tracer = outputs = None
    try:
        common.chosen_layers(opts)
        outputs = common.open_outputs(opts)
        tracer = common.open_tracer(opts, resolver, total_hist=opts.stage in ("total", "all"),
                                    size_depth=size_depth and opts.layer != "syscall")
        out = sys.stdout

        def on_interval(delta, start, end, final):
            common.write_outputs(outputs, delta, opts, resolver, start, end)
            if common.json_to_stdout(opts):
                return
            # Several disks are never merged into one histogram without a
            # label: split by disk, unless a pair (cgroup,op) asks to merge.
            several = len({k.dev for k in delta.totals}) > 1
            if by.pair:
                split, split_op = False, False   # exactly the two keys
            else:
                split, split_op = opts.by == "disk" or bool(opts.disk) or several, True
            groups = common.all_groups(common.interval_groups(delta, opts, resolver, split_disk=split,
                                                              split_op=split_op))
            lines = []
            if opts.timestamp:
                lines.append(time.strftime("%H:%M:%S", time.localtime(end)))
            lines.extend(view.render(groups, stages, end - start, opts.milliseconds))
            if not groups:
                lines.append(f"(no {'syscall' if opts.layer == 'syscall' else 'block'} I/O in this interval)")
            # What the filters left out: when nothing passed them, or when
            # --pid left out its children (fio's workers, make's compilers).
            if not groups or delta.counters.get("filtered_children"):
                note = view.filter_note(delta.counters, opts.pid, opts.children)
                if note:
                    lines.append(note)
            foot = view.footer(delta.counters, layers.ALARM_COUNTERS)
            if foot:
                lines.append(foot)
            out.write("\n".join(lines) + "\n")
            out.flush()

        session.live(tracer, opts.interval, opts.count, on_interval, opts.verbose)
    finally:
        common.close_all(tracer, *(outputs or ()))
    return 0
