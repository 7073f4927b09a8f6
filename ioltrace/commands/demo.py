"""`ioltrace demo`: the cgroup I/O controls (ioltrace/demo.py), shown live
through `top`'s typed options.

Checks root and tools, makes the scratch device and two cgroups, starts a
fio reader in each once the probes are attached, shows `top --by cgroup`,
then prints top's summary and the verdict: weights shared as asked, or
(--throttle) the limited group held at its limit, by the kernel's own
per-cgroup count. Everything it made is removed on the way out, also on
Ctrl-C, SIGTERM and errors.
"""

import os
import sys
from dataclasses import dataclass

from .. import demo as experiment
from ..errors import BadInput
from ..resolve import Resolver
from . import top


@dataclass(frozen=True)
class Options:
    duration: int = 20
    throttle: bool = False
    batch: bool = False
    verbose: bool = False


def main(opts: Options) -> int:
    experiment.need_root_and_tools(("losetup", "fio"))
    return (_throttle if opts.throttle else _weights)(opts, Resolver(), sys.stdout)


def _view(opts, groups, **layer):
    return top.Options(by="cgroup", cgroup=groups.parent.rel, interval=1.0, iterations=opts.duration,
                       batch=opts.batch, verbose=opts.verbose, **layer)


def _watch(view, resolver, samples, start_readers):
    """top live for --duration seconds. The kernel's counts are read at
    the baseline and the readers start right after it, so that their first
    I/O is counted by both; then every interval."""
    def on_start():
        samples.start()
        start_readers()

    return top.watch(view, resolver, on_start=on_start, on_interval=samples.interval)


def _summary(first, last, view, resolver):
    top.print_summary(first, last, view, resolver,
                      title=f"demo: the whole {(last.time_ns - first.time_ns) / 1e9:.0f}s by cgroup")


def _weights(opts, resolver, out):
    loop = groups = None
    readers = []
    try:
        kind, why_not = experiment.io_hierarchy(resolver)
        loop = experiment.LoopDevice(experiment.scratch_size_mb())
        bfq = loop.set_scheduler("bfq")
        obstacles = []  # why the weights cannot take effect, each one line
        if kind is None:
            obstacles.append(why_not)
        if not bfq:
            obstacles.append("the bfq I/O scheduler is not available on this kernel (CONFIG_IOSCHED_BFQ), "
                             "and only bfq applies io weights to a loop device")
        refused = loop.tune(experiment.BFQ_TUNABLES) if bfq else []
        groups = experiment.Groups(resolver, kind or "v2", [f"weight{w}" for w in experiment.WEIGHTS])
        weight_file, stat = experiment.FILES[kind][:2] if kind else (None, None)
        if kind and bfq:
            for cg, w in zip(groups.children, experiment.WEIGHTS):
                if not os.path.exists(os.path.join(groups.dir(cg), weight_file)):
                    obstacles.append(f"the cgroup has no {weight_file} file")
                    break
                if not experiment.write_value(os.path.join(groups.dir(cg), weight_file), str(w)):
                    obstacles.append(f"the kernel refused {w} in {weight_file}")
                    break
        if kind == "v1" and not experiment.write_value(os.path.join(groups.parent.v1, experiment.FILES["v1"][2]),
                                                       f"{loop.dev} {experiment.NO_LIMIT}"):
            stat = experiment.BFQ_V1_STAT  # no throttling in this kernel: the bfq count is the one left
        out.write(f"demo: scratch device {loop.path} over {loop.file}\ndemo: scheduler "
                  f"{'bfq' if bfq else 'unchanged'}"
                  + (f" ({', '.join(f'{k}={v}' for k, v in experiment.BFQ_TUNABLES if k not in refused)})"
                     if bfq else "")
                  + "\n")
        if refused:
            out.write(f"demo: bfq refused {', '.join(refused)}: shares may drift with CPU load\n")
        if obstacles:
            out.write("\n".join(experiment.wrap([f"demo: weights cannot take effect here: {obstacles[0]}"])) + "\n")
        else:
            out.write(f"demo: weights {experiment.WEIGHTS[0]} and {experiment.WEIGHTS[1]} in cgroup {kind} "
                      f"{weight_file}\n")
        out.flush()
        stats = [stat] + ([experiment.BFQ_V1_STAT] if kind == "v1" and stat != experiment.BFQ_V1_STAT else [])
        samples = experiment.Samples(lambda: {name: [groups.read_bytes(cg, name, loop.dev) for cg in groups.children]
                                              for name in stats if name})

        def start_readers():
            for i, cg in enumerate(groups.children):
                readers.append(experiment.start_reader(
                    experiment.fio_argv(loop.path, opts.duration + 30, "libaio", experiment.READER_DEPTH, i, 2),
                    cg, realtime=True))
            realtime.append(all(experiment.is_realtime(p.pid) for p in readers))

        realtime = []  # whether the kernel let the readers run at real-time priority
        view = _view(opts, groups)
        first, last = _watch(view, resolver, samples, start_readers)
        experiment.stop(readers)
        # Said after the live view, which a line in the middle of would garble.
        out.write(f"demo: one fio reader per group, each keeping {experiment.READER_DEPTH} reads of "
                  f"{experiment.READ_SIZE >> 10} KiB in flight, at "
                  f"{'real-time' if all(realtime) else 'normal (real-time refused)'} priority\n")
        _summary(first, last, view, resolver)
        _, lines = experiment.weights_result(first, last, samples, resolver, groups, obstacles,
                                             stat if kind else None)
        out.write("\n" + "\n".join(experiment.wrap(lines)) + "\n")
        out.flush()
    finally:
        _clean_up(readers, groups, loop)
    return 0


def _throttle(opts, resolver, out):
    loop = groups = None
    readers = []
    try:
        kind, why_not = experiment.io_hierarchy(resolver)
        if kind is None:
            raise BadInput("demo --throttle", why_not, "mount the v1 blkio hierarchy or enable io on cgroup v2")
        loop = experiment.LoopDevice(experiment.scratch_size_mb())
        groups = experiment.Groups(resolver, kind, ["limited", "free"])
        limit_file, stat = experiment.FILES[kind][2:]
        limit = experiment.THROTTLE_BPS
        rule = f"{loop.dev} {limit}" if kind == "v1" else f"{loop.dev} rbps={limit}"
        if not experiment.write_value(os.path.join(groups.dir(groups.children[0]), limit_file), rule):
            raise BadInput("demo --throttle", f"the kernel refused a read limit in {limit_file}",
                           "it needs CONFIG_BLK_DEV_THROTTLING")
        out.write(f"demo: scratch device {loop.path} over {loop.file}\n"
                  f"demo: group limited: {limit_file} {limit >> 20} MiB/s; group free: no limit\n"
                  f"demo: one fio reader per group, pread64 of {experiment.READ_SIZE >> 10} KiB; the free one "
                  f"asks for {experiment.FREE_RATE >> 20} MiB/s\n")
        out.flush()
        samples = experiment.Samples(lambda: [groups.read_bytes(cg, stat, loop.dev) for cg in groups.children])

        def start_readers():
            # The limited reader at real-time priority, so that a late
            # wake-up never makes it read less than its limit; the free one
            # asks for a fixed FREE_RATE, far above the limit, so that it
            # does not take every CPU cycle from the throttle's own
            # dispatch worker.
            argv = [experiment.fio_argv(loop.path, opts.duration + 30, "psync", 1, part, 2) for part in (0, 1)]
            readers.append(experiment.start_reader(argv[0], groups.children[0], realtime=True))
            readers.append(experiment.start_reader(argv[1] + [f"--rate={experiment.FREE_RATE}"],
                                                   groups.children[1], realtime=False))

        view = _view(opts, groups, layer="both", syscalls=("pread64",))
        first, last = _watch(view, resolver, samples, start_readers)
        experiment.stop(readers)
        _summary(first, last, view, resolver)
        _, lines = experiment.throttle_result(first, last, samples, resolver, groups, stat)
        out.write("\n" + "\n".join(experiment.wrap(lines)) + "\n")
        out.flush()
    finally:
        _clean_up(readers, groups, loop)
    return 0


def _clean_up(readers, groups, loop):
    """Readers, then their cgroups, then the device: whatever was made."""
    experiment.stop(readers)
    if groups is not None:
        groups.remove()
    if loop is not None:
        loop.close()
