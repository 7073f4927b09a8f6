"""What the live commands share: typed options, kernel options, tracer and
outputs, and one interval's groups per traced layer.

Options are frozen dataclasses whose field names are the argparse dests;
cli.py builds them once (cli.options_of) and a caller such as `demo` builds
them directly. Nothing here renders text: that is views/, and the bytes of
CSV and JSON lines are export/'s.
"""

import os
from dataclasses import dataclass

from .. import bykeys, group, layers, layout, loader, probepath
from ..errors import BadInput
from ..export.paths import STDOUT, same_output
from . import refuse_unused


@dataclass(frozen=True)
class TaskFilters:
    """Filters of tasks applied in the kernel (cli.filter_options) and -v."""

    pid: int = None
    children: bool = False  # with pid: its descendants too
    cgroup: str = None      # path below the cgroup v2 mount
    comm: bytes = None
    verbose: bool = False

    def __post_init__(self):
        if self.children and self.pid is None:
            raise BadInput("--children", "follows the descendants of --pid, and no --pid is given", "add --pid PID")


@dataclass(frozen=True)
class Filters(TaskFilters):
    """Task filters and the disk filter (the block layer's)."""

    disk: str = None


# Options that only some layers use: field -> the layers that use it (the
# disk filter is in block.bpf.c only, --op names block ops, --stage block
# stages, --syscalls the syscall layer's). Given when none of those layers is
# traced, they are refused. tests/unit/test_commands.py checks the filter
# against the C programs and the ops against layers.Layer.op_filter.
LAYER_ONLY = {"disk": ("block",), "op": ("block",), "stage": ("block",), "syscalls": ("syscall",),
              "size_depth": ("block",)}


def layer_names(layer):
    """The --layer choice as layer names."""
    return ("block", "syscall") if layer == "both" else (layer,)


@dataclass(frozen=True)
class Traced(Filters):
    """What every command on the block/syscall tracer has (cli.tracer_options)."""

    keep_exited: float = layout.DEFAULT_KEEP_EXITED_S
    probes: str = "auto"    # block probes: auto, raw or classic (probepath.MODES)
    layer: str = "block"    # block, syscall or both
    syscalls: tuple = layout.DEFAULT_SYSCALLS
    by: str = "process"
    op: tuple = None        # op names to keep; None: all
    csv: str = None         # "-": stdout
    json: str = None        # "-": stdout
    size_depth: bool = False  # also the block stages size and depth (layers.BLOCK.optional)

    def __post_init__(self):
        super().__post_init__()
        chosen = layer_names(self.layer)
        refuse_unused(self, [(name, f"is for the {' and '.join(users)} layer, and --layer {self.layer} does not trace it",
                              f"leave it out, or use --layer {users[0] if self.layer != 'both' else 'both'}")
                             for name, users in LAYER_ONLY.items()
                             if hasattr(self, name) and not set(users) & set(chosen)])


def kernel_options(opts, resolver, **extra):
    """Filters -> loader.Options of validated integers, checking each names something real."""
    kw = dict(extra)
    if getattr(opts, "disk", None):
        kw["dev"], kw["sector_lo"], kw["sector_hi"] = resolver.disk_filter(opts.disk)
    if opts.cgroup:
        kw["cgid"], kw["cglevel"] = resolver.cgroup_filter(opts.cgroup)
    if opts.pid:
        if not resolver.pid_exists(opts.pid):
            raise BadInput(f"--pid {opts.pid}", "no such process", "check the pid with ps")
        kw["tgid"] = opts.pid
        kw["children"] = opts.children
    if opts.comm:
        kw["comm"] = opts.comm
    return loader.Options(**kw)


def chosen_layers(opts):
    """The --layer choice as layer names, checked against --by."""
    chosen = layer_names(opts.layer)
    by = bykeys.of(opts.by)
    if "syscall" in chosen and by is not None and "disk" in by:
        # A syscall is not tied to one disk (a write may never reach one,
        # an fsync several): its rows would all read "*", so refuse rather
        # than show a disk column that says nothing.
        raise BadInput(f"--by {by.text}", "the syscall layer knows processes and cgroups, not disks",
                       "use --by process, cgroup or a pair with op (process,op) with --layer "
                       + opts.layer + ("; or --layer block" if by.second == "disk" else ""))
    return chosen


def ops_of(opts):
    return set(opts.op) if opts.op else None


def interval_groups(delta, opts, resolver, split_disk=True, split_op=True, by=None):
    """[(layer name, Groups)] of one interval for every grouped layer, in
    declaration order; a layer that is not chosen has no Groups. Each
    layer's ops are filtered by its option (Layer.op_filter: --op, --syscalls)."""
    chosen = chosen_layers(opts)
    out = []
    for layer in layers.GROUPED:
        groups = []
        if layer.name in chosen:
            wanted = getattr(opts, layer.op_filter)
            ops = set(wanted) if wanted else None
            groups = group.by_key(delta, by or opts.by, resolver, split_disk=split_disk, split_op=split_op,
                                  ops=ops, layer=layer)
        out.append((layer.name, groups))
    return out


def all_groups(layer_groups):
    return [g for _, groups in layer_groups for g in groups]


def recorded_groups(delta, opts, resolver):
    """What --csv and --json record: the first key's rows with every disk
    and op apart (their own columns), so a recording made with a pair
    (cgroup,disk) is one of its first key and reports by any pair of it."""
    return interval_groups(delta, opts, resolver, by=bykeys.of(opts.by).kind)


def write_csv(writer, delta, opts, resolver, start, end):
    writer.write_layers(recorded_groups(delta, opts, resolver), start, end, delta.counters)


def write_json(writer, delta, opts, resolver, start, end):
    """One interval as JSON lines: the same keys as the CSV rows of write_csv."""
    from ..recording import from_group

    # One Series at a time: each holds its own histograms (8 KiB a stage),
    # and under process churn an interval has thousands of keys.
    series = (from_group(g, name) for name, groups in recorded_groups(delta, opts, resolver) for g in groups)
    writer.write_interval(series, start, end, delta.counters)


def write_outputs(outputs, delta, opts, resolver, start, end):
    """The interval to --csv and --json, whichever are open."""
    writer, jwriter = outputs
    if writer is not None:
        write_csv(writer, delta, opts, resolver, start, end)
    if jwriter is not None:
        write_json(jwriter, delta, opts, resolver, start, end)


def close_all(*things):
    """Detach the tracer and close the outputs, whichever were opened."""
    for thing in things:
        if thing is not None:
            thing.close()


def open_outputs(opts):
    """(CsvWriter or None, LinesWriter or None) for --csv and --json, created
    now, before tracing; if --json cannot be opened, the CSV file just made
    is removed again, so a bad command line leaves no file."""
    from ..export.csv import CsvWriter
    from ..export.json import LinesWriter

    same_output(opts.csv, opts.json)
    writer = CsvWriter(opts.csv, by=opts.by) if opts.csv else None
    try:
        jwriter = LinesWriter(opts.json) if opts.json else None
    except BaseException:
        if writer is not None:
            writer.close()
            try:
                if not writer.stdout:
                    os.unlink(opts.csv)
            except OSError:
                pass
        raise
    return writer, jwriter


def json_to_stdout(opts):
    """--json - or --csv -: stdout carries JSON lines (or CSV) only; text output is left out."""
    return STDOUT in (opts.json, opts.csv)


def open_tracer(opts, resolver, **extra):
    """Options from the filters, then the tracer for the chosen layers."""
    chosen = chosen_layers(opts)
    extra.setdefault("size_depth", opts.size_depth and "block" in chosen)
    kopts = kernel_options(opts, resolver, by_thread=bykeys.of(opts.by).kind == "thread",
                           probes=probepath.MODES.index(opts.probes), **extra)
    return loader.Tracer(kopts, verbose=opts.verbose, layers=chosen, syscalls=opts.syscalls,
                         keep_exited=opts.keep_exited, on_fold=(resolver.forget,))


def controls_lookup(by, resolver):
    """key -> controls text for the cgroup views, read once per interval."""
    from .. import cgroups

    if bykeys.of(by).kind not in ("cgroup", "cgroup-v1"):
        return None
    return lambda key, name: cgroups.format_controls(cgroups.read_controls(resolver, name))
