"""Scratch cgroups for `run` and `demo`, and the I/O controls of a cgroup.

ScratchCgroup makes a child in the cgroup v2 hierarchy (and, when asked, the
same path in the v1 blkio hierarchy of a hybrid host), lets a child process
join it before exec, and removes it again, moving any leftover processes to
the parent first, also after errors and signals. read_controls() reads the
io.weight/io.max (v2) or blkio.* (v1) files that say what a group should
get. Nothing here traces or formats output beyond one short string.
"""

import os
import time

from .errors import BadInput

V2_FILES = ("io.weight", "io.bfq.weight", "io.max")
V1_FILES = ("blkio.bfq.weight", "blkio.weight", "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device", "blkio.throttle.read_iops_device",
            "blkio.throttle.write_iops_device")


class ScratchCgroup:
    """A cgroup made for one command; a context manager that removes it."""

    def __init__(self, resolver, name, v1_blkio=False, parent=None):
        root = resolver.cgroup_v2_root()
        if root is None:
            raise BadInput("cgroup v2", "no cgroup v2 hierarchy is mounted",
                           "mount -t cgroup2 none /sys/fs/cgroup/unified")
        base = parent.v2 if parent else root
        self.rel = ((parent.rel if parent else "") + "/" + name)
        self.v2 = os.path.join(base, name)
        self.v1 = None
        self._made = []
        try:
            os.mkdir(self.v2)
        except OSError as e:
            raise BadInput(f"cgroup {self.v2}", e.strerror.lower(), "run as root on a host with cgroup v2") from None
        self._made.append(self.v2)
        v1root = resolver.cgroup_v1_root("blkio") if v1_blkio else None
        if v1root:
            self.v1 = os.path.join(parent.v1 if parent and parent.v1 else v1root, name)
            try:
                os.mkdir(self.v1)
                self._made.append(self.v1)
            except OSError:
                self.v1 = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def join(self):
        """Move the calling process in (for a child, before exec)."""
        for d in (self.v2, self.v1):
            if d:
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write("0")

    def procs(self):
        pids = set()
        for d in self._made:
            for dirpath, _, _ in os.walk(d):
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        pids.update(int(p) for p in f.read().split())
                except OSError:
                    pass
        return pids

    def remove(self):
        """Move leftover processes to the parent, then remove the cgroups
        depth-first. Returns the pids that had to be moved."""
        moved = set()
        for top in reversed(self._made):
            parent = os.path.dirname(top)
            for _ in range(100):
                if not os.path.isdir(top):
                    break
                for dirpath, _, _ in os.walk(top, topdown=False):
                    moved |= _move_all(dirpath, parent)
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass
                if os.path.isdir(top):
                    time.sleep(0.02)  # a migrating task can keep it busy briefly
        self._made = [d for d in self._made if os.path.isdir(d)]
        return moved


def _move_all(src, dst):
    moved = set()
    try:
        with open(os.path.join(src, "cgroup.procs")) as f:
            pids = [int(p) for p in f.read().split()]
    except OSError:
        return moved
    for pid in pids:
        try:
            with open(os.path.join(dst, "cgroup.procs"), "w") as f:
                f.write(str(pid))
            moved.add(pid)
        except OSError:
            pass  # exited meanwhile
    return moved


def read_controls(resolver, rel_path):
    """{file name: content} of the I/O control files of a cgroup path.

    The v2 files are read at the path in the v2 hierarchy; on a hybrid host
    whose io controller lives in v1, the same path in the blkio hierarchy.
    """
    out = {}
    rel = rel_path.lstrip("/")
    for root, names in ((resolver.cgroup_v2_root(), V2_FILES), (resolver.cgroup_v1_root("blkio"), V1_FILES)):
        if not root or (rel_path.startswith("cgroup:")):
            continue
        for name in names:
            try:
                with open(os.path.join(root, rel, name)) as f:
                    text = f.read().strip()
            except OSError:
                continue
            if text:
                out[name] = text
        if out:
            break
    return out


def format_controls(controls):
    """Short text: 'weight 1000', 'weight 500 rbps 7:0=1048576', '' if none."""
    parts = []
    for name in ("io.bfq.weight", "io.weight", "blkio.bfq.weight", "blkio.weight"):
        if name in controls:
            lines = controls[name].splitlines()
            default = lines[0].split()[-1]
            parts.append(f"weight {default}")
            parts += [f"weight {line}" for line in lines[1:]]
            break
    if "io.max" in controls:
        for line in controls["io.max"].splitlines():
            dev, *limits = line.split()
            limits = [x for x in limits if not x.endswith("=max")]
            if limits:
                parts.append(f"{dev} " + " ".join(limits))
    for name, short in (("blkio.throttle.read_bps_device", "rbps"), ("blkio.throttle.write_bps_device", "wbps"),
                        ("blkio.throttle.read_iops_device", "riops"), ("blkio.throttle.write_iops_device", "wiops")):
        for line in controls.get(name, "").splitlines():
            dev, _, value = line.partition(" ")
            parts.append(f"{short} {dev}={value.strip()}")
    return " ".join(parts)
