"""Kernel keys -> rows of output: aggregate a snapshot by the chosen key kind.

The kernel keeps one entry per (process, cgroup, disk, op) (per thread with
--by thread); per-cgroup and per-disk views are sums of those here, and so
are two-key views (cgroup,disk: bykeys.By says which of disk and op stay
apart; every command composes its rows here). Names
come from a resolve.Resolver; nothing here reads the system directly or
knows how rows are shown.
"""

from . import bykeys, layers, layout
from .records import Group, GroupId

KINDS = ("process", "thread", "cgroup", "cgroup-v1", "disk")
SYSCALL_KINDS = ("process", "thread", "cgroup", "cgroup-v1")


def group_id(key, comm, kind, resolver, split_disk=True, split_op=True, layer=layers.BLOCK):
    """What a kernel key of `layer` is shown as; a layer whose keys know no
    disk shows "*" for it."""
    has_disk = "dev" in layer.key._fields
    disk = resolver.disk_name(key.dev) if has_disk and (split_disk or kind == "disk") else "*"
    op = layer.op_name(key) if split_op and getattr(key, layer.op_field) < len(layer.op_names) else "*"
    if key.tgid == layout.OTHER_TGID:
        return GroupId(kind, "other", "other (stats map full)", disk, op)
    if key.tgid == layout.EXITED_TGID and kind in ("process", "thread"):
        return GroupId(kind, "exited", layout.EXITED_COMM, disk, op)
    if kind == "process":
        return GroupId(kind, str(key.tgid), process_name(key.tgid, comm, resolver), disk, op)
    if kind == "thread":
        return GroupId(kind, str(key.tid), comm, disk, op)
    if kind == "cgroup":
        return GroupId(kind, str(key.cgid), resolver.cgroup_path(key.cgid), disk, op)
    if kind == "cgroup-v1":
        # The charged group the kernel saw (typed path) names it even after
        # the process exited; else the process's group, read now.
        charged = getattr(key, "blkcg", 0)
        path = (charged and resolver.cgroup_v1_path(charged)) or resolver.cgroup_v1(key.tgid) or "?"
        return GroupId(kind, path, path, disk, op)
    name = resolver.disk_name(key.dev)
    return GroupId(kind, name, name, name, op)


def _task(key, kind):
    return key.tid if kind == "thread" else key.tgid


def process_name(pid, comms, resolver):
    """A process's row name: its live /proc comm (the latest name); for a
    process gone, the name last seen, unless the kernel recorded several
    (comms joined by task_comms): the last-seen name may predate an exec,
    so all of them are shown."""
    name = resolver.comm(pid, comms)
    if "|" in comms and name != comms and not resolver.pid_exists(pid):
        return comms
    return name


def task_comms(totals, kind):
    """One kernel-recorded name per process (per thread with kind "thread").

    The kernel keeps the comm of each key's first request, so a process that
    changed its name (exec) has keys with different comms. Rows are one per
    process, named by process_name: the live /proc comm (the latest name),
    else these names, all of them joined with "|". One row per process rather than
    per (process, comm) keeps every sum over rows equal to the device's
    count, and needs no exec tracepoint in the kernel.
    """
    seen = {}
    for key, t in totals.items():
        if t is not None and t.comm:
            seen.setdefault(_task(key, kind), set()).add(t.comm)
    return {task: "|".join(sorted(names)) for task, names in seen.items()}


def by_key(snap, kind, resolver, split_disk=True, split_op=True, ops=None, layer=layers.BLOCK):
    """Aggregate one layer of a (delta) snapshot into Groups, sorted by key.

    kind: a key kind, or a --by pair ("cgroup,disk", a bykeys.By), which
    then decides split_disk and split_op itself (By.splits); Group ids keep
    the first kind, the second key is their disk or op.
    ops: optional set of op names (block ops, syscall names) to keep.
    Group.queue_ns and device_ns sum those totals fields where the layer
    has them; Group.sums holds the exact sums of its other stages.
    """
    by = bykeys.of(kind)
    kind = by.kind
    split_disk, split_op = by.splits(split_disk, split_op)
    totals_f, hists_f, errors_f = layer.fields
    totals = getattr(snap, totals_f)
    count = layer.count_field
    named = {"queue_ns", "device_ns"}
    other_sums = {st: fs for st, fs in layer.stage_sums.items() if not set(fs) <= named}
    ids = {}
    acc = {}
    comms = task_comms(totals, kind)

    def gid(key):
        g = ids.get(key)
        if g is None:
            g = ids[key] = group_id(key, comms.get(_task(key, kind), ""), kind, resolver, split_disk, split_op,
                                    layer)
        return g

    def slot(key):
        g = gid(key)
        s = acc.get(g)
        if s is None:
            s = acc[g] = {"ios": 0, "bytes": 0, "errors": 0, "queue_ns": 0, "device_ns": 0,
                          "hists": {}, "errnos": {}}
            if other_sums:
                s["sums"] = dict.fromkeys(other_sums, 0)
        return s

    def wanted(key):
        v = getattr(key, layer.op_field)
        return ops is None or (v < len(layer.op_names) and layer.op_names[v] in ops)

    for key, t in totals.items():
        if not wanted(key):
            continue
        s = slot(key)
        s["ios"] += getattr(t, count)
        s["bytes"] += t.bytes
        s["errors"] += t.errors
        for f in named & set(t._fields):
            s[f] += getattr(t, f)
        for stage, fs in other_sums.items():
            s["sums"][stage] += sum(getattr(t, f) for f in fs)
    for cell, arr in getattr(snap, hists_f).items():
        key, stage = cell if layer.staged else (cell, 0)
        if not wanted(key):
            continue
        hs = slot(key)["hists"]
        name = layer.stages[stage] if stage < len(layer.stages) else str(stage)
        # The snapshot's own array while a group has one cell of a stage
        # (a sum is a new array; nothing changes a group's arrays in place).
        hs[name] = hs[name] + arr if name in hs else arr
    for (key, errno), n in (getattr(snap, errors_f).items() if errors_f else ()):
        if not wanted(key):
            continue
        es = slot(key)["errnos"]
        es[errno] = es.get(errno, 0) + n
    out = [Group(g, **s) for g, s in acc.items()]
    out.sort(key=lambda g: (_sortable(g.id.key), g.id.disk, g.id.op))
    return out


def _sortable(key):
    return (0, int(key), "") if key.isdigit() else (1, 0, key)
