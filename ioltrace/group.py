"""Kernel keys -> rows of output: aggregate a snapshot by the chosen key kind.

The kernel keeps one entry per (process, cgroup, disk, op) (per thread with
--by thread); per-cgroup and per-disk views are sums of those here. Names
come from a resolve.Resolver; nothing here reads the system directly or
knows how rows are shown.
"""

from . import layout
from .records import Group, GroupId, Key

KINDS = ("process", "thread", "cgroup", "cgroup-v1", "disk")


def group_id(key, comm, kind, resolver, split_disk=True, split_op=True):
    disk = resolver.disk_name(key.dev) if split_disk or kind == "disk" else "*"
    op = layout.OPS[key.op] if split_op and key.op < len(layout.OPS) else "*"
    if key.tgid == layout.OTHER_TGID:
        return GroupId(kind, "other", "other (stats map full)", disk, op)
    if key.tgid == layout.EXITED_TGID and kind in ("process", "thread"):
        return GroupId(kind, "exited", layout.EXITED_COMM, disk, op)
    if kind == "process":
        return GroupId(kind, str(key.tgid), resolver.comm(key.tgid, comm), disk, op)
    if kind == "thread":
        return GroupId(kind, str(key.tid), comm, disk, op)
    if kind == "cgroup":
        return GroupId(kind, str(key.cgid), resolver.cgroup_path(key.cgid), disk, op)
    if kind == "cgroup-v1":
        path = resolver.cgroup_v1(key.tgid) or "?"
        return GroupId(kind, path, path, disk, op)
    name = resolver.disk_name(key.dev)
    return GroupId(kind, name, name, name, op)


def by_key(snap, kind, resolver, split_disk=True, split_op=True, ops=None):
    """Aggregate a (delta) snapshot into Groups, sorted by key.

    ops: optional set of op names to keep.
    """
    ids = {}
    acc = {}

    def gid(key):
        g = ids.get(key)
        if g is None:
            t = snap.totals.get(key)
            g = ids[key] = group_id(key, t.comm if t else "", kind, resolver, split_disk, split_op)
        return g

    def slot(key):
        g = gid(key)
        s = acc.get(g)
        if s is None:
            s = acc[g] = {"ios": 0, "bytes": 0, "errors": 0, "queue_ns": 0, "device_ns": 0,
                          "hists": {}, "errnos": {}}
        return s

    def wanted(key):
        return ops is None or (key.op < len(layout.OPS) and layout.OPS[key.op] in ops)

    for key, t in snap.totals.items():
        if not wanted(key):
            continue
        s = slot(key)
        s["ios"] += t.ios
        s["bytes"] += t.bytes
        s["errors"] += t.errors
        s["queue_ns"] += t.queue_ns
        s["device_ns"] += t.device_ns
    for (key, stage), arr in snap.hists.items():
        if not wanted(key):
            continue
        hs = slot(key)["hists"]
        name = layout.STAGES[stage] if stage < len(layout.STAGES) else str(stage)
        hs[name] = hs[name] + arr if name in hs else arr.copy()
    for (key, errno), n in snap.errors.items():
        if not wanted(key):
            continue
        es = slot(key)["errnos"]
        es[errno] = es.get(errno, 0) + n
    out = [Group(g, **s) for g, s in acc.items()]
    out.sort(key=lambda g: (_sortable(g.id.key), g.id.disk, g.id.op))
    return out


def _sortable(key):
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


SYSCALL_KINDS = ("process", "thread", "cgroup", "cgroup-v1")


def sys_group_id(key, comm, kind, resolver, split_op=True):
    op = layout.SYSCALLS[key.sc] if split_op and key.sc < len(layout.SYSCALLS) else "*"
    # The syscall layer knows no disk; reuse the block key's naming rules.
    return group_id(Key(key.cgid, key.tgid, key.tid, 0, 0), comm, kind, resolver, split_disk=False)._replace(
        disk="*", op=op)


def by_key_sys(snap, kind, resolver, split_op=True, syscalls=None):
    """Aggregate the syscall layer of a snapshot into Groups: op is the
    syscall name, the one histogram stage is "latency"."""
    acc = {}
    ids = {}

    def gid(key):
        g = ids.get(key)
        if g is None:
            t = snap.sys_totals.get(key)
            g = ids[key] = sys_group_id(key, t.comm if t else "", kind, resolver, split_op)
        return g

    def wanted(key):
        return syscalls is None or (key.sc < len(layout.SYSCALLS) and layout.SYSCALLS[key.sc] in syscalls)

    def slot(key):
        return acc.setdefault(gid(key), {"ios": 0, "bytes": 0, "errors": 0, "queue_ns": 0, "device_ns": 0,
                                         "hists": {}, "errnos": {}, "sums": {"latency": 0}})

    for key, t in snap.sys_totals.items():
        if wanted(key):
            s = slot(key)
            s["ios"] += t.calls
            s["bytes"] += t.bytes
            s["errors"] += t.errors
            s["sums"]["latency"] += t.sum_ns
    for key, arr in snap.sys_hists.items():
        if wanted(key):
            hs = slot(key)["hists"]
            hs["latency"] = hs["latency"] + arr if "latency" in hs else arr.copy()
    for (key, errno), n in snap.sys_errors.items():
        if wanted(key):
            es = slot(key)["errnos"]
            es[errno] = es.get(errno, 0) + n
    out = [Group(g, **s) for g, s in acc.items()]
    out.sort(key=lambda g: (_sortable(g.id.key), g.id.op))
    return out
