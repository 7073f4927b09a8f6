"""`ioltrace demo`: the cgroup weight experiment (ioltrace/demo.py), shown
live through `top`'s typed options.

Makes the scratch device and two weighted cgroups, starts a reader in each
once the probes are attached, shows `top --by cgroup`, then reports the
share each group received. Everything it made is removed on the way out.
"""

import os
import subprocess
import sys
from dataclasses import dataclass

from .. import demo as experiment
from .. import maps
from ..cgroups import ScratchCgroup
from ..resolve import Resolver
from . import top


@dataclass(frozen=True)
class Options:
    duration: int = 20
    batch: bool = False
    verbose: bool = False


def main(opts: Options) -> int:
    resolver = Resolver()
    out = sys.stdout
    made = []
    readers = []
    try:
        loop = experiment.LoopDevice(experiment.scratch_size_mb())
        made.append(loop)
        bfq = loop.set_scheduler("bfq")
        kind, how = experiment.weight_mechanism(resolver, bfq)
        parent = ScratchCgroup(resolver, f"ioltrace-demo-{os.getpid()}", v1_blkio=kind == "v1")
        made.append(parent)
        groups = [ScratchCgroup(resolver, f"weight{w}", v1_blkio=kind == "v1", parent=parent) for w in experiment.WEIGHTS]
        made[1:1] = groups  # removed before their parent
        applied = kind is not None and all(experiment.set_weight(cg, kind, how, w) for cg, w in zip(groups, experiment.WEIGHTS))
        out.write(f"demo: scratch device {loop.path} ({loop.file}), scheduler "
                  f"{'bfq' if bfq else 'unchanged (bfq not available)'}\n")
        if applied:
            out.write(f"demo: weights {experiment.WEIGHTS[0]} and {experiment.WEIGHTS[1]} set with cgroup {kind} {how}"
                      f"{'' if bfq else '; without bfq, weights may not take effect'}\n")
        else:
            out.write(f"demo: weights cannot take effect on this host ({how if kind is None else 'writing ' + how + ' failed'}); "
                      "the readers run unweighted\n")
        view = top.Options(by="cgroup", cgroup=parent.rel, interval=1.0, iterations=opts.duration,
                           batch=opts.batch, verbose=opts.verbose)
        # The readers start once the probes are attached (on_start), so
        # their first I/O is counted.
        first, last = top.watch(view, resolver, on_start=lambda: readers.extend(
            subprocess.Popen(experiment.reader_argv(loop.path, opts.duration + 5), preexec_fn=cg.join,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for cg in groups))
        top.print_summary(first, last, view, resolver,
                          title=f"demo: the whole {(last.time_ns - first.time_ns) / 1e9:.0f}s by cgroup")
        experiment.report_shares(maps.delta(last, first), resolver, groups, out, applied)
    finally:
        for p in readers:
            if p.poll() is None:
                p.kill()
            p.wait()
        for thing in made:
            (thing.remove if isinstance(thing, ScratchCgroup) else thing.close)()
    return 0
