"""Names for the numbers the kernel reports: dev_t -> disk, cgroup id -> path,
pid -> comm, cmdline and v1 cgroup, plus --disk/--cgroup option parsing.

It only reads /sys and /proc (both roots are arguments, so tests point it at
fake trees) and remembers what it saw, because processes and cgroups are often
gone by the time their I/O is shown. It must not import bcc, need root, write
anything, or raise on a lookup: unknown things get a printable placeholder;
only bad user input (--disk, --cgroup) raises BadInput.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import time

from .errors import BadInput

# The kernel-internal dev_t (include/linux/kdev_t.h), which the block
# tracepoints report: major 0..4095 in the top 12 bits, minor 0..1048575 below.
MINORBITS = 20
MINORMASK = (1 << MINORBITS) - 1
MAJORMAX = (1 << (32 - MINORBITS)) - 1

# Most recently seen pids whose names are kept after exit; range 1..4194304
# (pid_max's ceiling). Bounds memory over days of tracing short-lived processes.
PID_CACHE_MAX = 1 << 16

MAX_KNOWN_SHOWN = 20       # names listed in a --disk error


def dev_major_minor(dev: int) -> tuple[int, int]:
    return dev >> MINORBITS, dev & MINORMASK


def make_dev(major: int, minor: int) -> int:
    if not (0 <= major <= MAJORMAX and 0 <= minor <= MINORMASK):
        raise ValueError(f"dev {major}:{minor} out of range")
    return major << MINORBITS | minor


def _read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "backslashreplace")


def _parse_dev(text):
    major, minor = text.strip().split(":")
    return make_dev(int(major), int(minor))


def _unescape(field):
    # mountinfo writes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


class Resolver:
    rewalk_interval = 1.0   # seconds between cgroup tree walks on a miss; tests set 0

    def __init__(self, sys_root="/sys", proc_root="/proc", mountinfo=None, cgroup_root=None):
        self.sys_root = sys_root
        self.proc_root = proc_root
        self.mountinfo = mountinfo or f"{proc_root}/self/mountinfo"
        self._cg_root = cgroup_root
        self._cg_root_known = cgroup_root is not None
        self._disk_names = {}
        self._cg_paths = {}
        self._v1_paths = {}   # controller -> {kernfs id: path}; removed groups keep their names
        self._walked_at = None
        self._procs = {}    # pid -> {"comm"|"cmdline"|"cgroup": text}, oldest first

    # -- disks ---------------------------------------------------------------

    def disk_name(self, dev: int) -> str:
        name = self._disk_names.get(dev)
        if name is not None:
            return name
        major, minor = dev_major_minor(dev)
        link = f"{self.sys_root}/dev/block/{major}:{minor}"
        try:
            # The link's basename is the /sys/class/block name ("!" for "/"),
            # the same spelling disks() and disk_filter() use.
            name = os.path.basename(os.readlink(link))
        except OSError:
            name = self._uevent_devname(link)
        if not name:
            # Not cached: the device may appear later (a loop device attached).
            return f"{major}:{minor}"
        self._disk_names[dev] = name
        return name

    @staticmethod
    def _uevent_devname(link):
        try:
            for line in _read(f"{link}/uevent").splitlines():
                if line.startswith("DEVNAME="):
                    return line[len("DEVNAME="):]
        except OSError:
            pass
        return None

    def disks(self) -> list[str]:
        try:
            return sorted(os.listdir(f"{self.sys_root}/class/block"))
        except OSError:
            return []

    def disk_filter(self, name: str) -> tuple[int, int | None, int | None]:
        """--disk NAME -> (whole-disk dev, first sector, end sector) or (dev, None, None)."""
        what = f"--disk {name}"
        key = name.strip()
        if key.startswith("/dev/"):
            key = key[len("/dev/"):]
        key = key.replace("/", "!")     # /dev/cciss/c0d0 is cciss!c0d0 in sysfs
        known = self.disks()
        if key not in known:
            shown = ", ".join(known[:MAX_KNOWN_SHOWN]) or "none"
            if len(known) > MAX_KNOWN_SHOWN:
                shown += ", ..."
            raise BadInput(what, "no such block device", fix="known: " + shown)
        d = f"{self.sys_root}/class/block/{key}"
        try:
            if not os.path.exists(f"{d}/partition"):
                return _parse_dev(_read(f"{d}/dev")), None, None
            # Request-level block tracepoints report the whole disk's dev_t and
            # absolute sectors, so a partition filter is a sector range on the
            # whole disk. The parent disk is the partition's sysfs parent dir.
            parent = os.path.dirname(os.path.realpath(d))
            start = int(_read(f"{d}/start"))
            size = int(_read(f"{d}/size"))
            return _parse_dev(_read(f"{parent}/dev")), start, start + size
        except (OSError, ValueError) as e:
            raise BadInput(what, f"cannot read its sysfs entry {d}: {e}") from None

    # -- cgroups -------------------------------------------------------------

    def cgroup_v2_root(self) -> str | None:
        if not self._cg_root_known:
            self._cg_root = self._find_v2_mount()
            self._cg_root_known = True
        return self._cg_root

    def _find_v2_mount(self):
        return self._find_mount("cgroup2")

    def cgroup_v1_root(self, controller: str = "blkio") -> str | None:
        """Mount point of the v1 hierarchy holding `controller`, if any."""
        return self._find_mount("cgroup", controller)

    def _find_mount(self, fstype, controller=None):
        try:
            lines = _read(self.mountinfo).splitlines()
        except OSError:
            return None
        found = None
        for line in lines:
            # ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
            fields = line.split()
            if "-" not in fields:
                continue
            sep = fields.index("-")
            if sep < 5 or sep + 1 >= len(fields) or fields[sep + 1] != fstype:
                continue
            if controller and (sep + 3 >= len(fields) or controller not in fields[sep + 3].split(",")):
                continue
            if _unescape(fields[3]) == "/":
                return _unescape(fields[4])
            # A bind mount of a subtree: usable, but only if nothing better.
            found = found or _unescape(fields[4])
        return found

    def cgroup_path(self, cgid: int) -> str:
        path = self._cg_lookup(cgid)
        if path is None and self._may_rewalk():
            self._walk_cgroups()
            path = self._cg_lookup(cgid)
        return path if path is not None else f"cgroup:{cgid}"

    def _cg_lookup(self, cgid):
        path = self._cg_paths.get(cgid)
        if path is None and cgid >> 32:
            # Before 5.5 (kernfs: convert kernfs_node->id ... to u64) the id
            # was ino | generation << 32.
            path = self._cg_paths.get(cgid & 0xFFFFFFFF)
        return path

    def _may_rewalk(self):
        return self._walked_at is None or time.monotonic() - self._walked_at >= self.rewalk_interval

    def _walk_cgroups(self):
        self._walked_at = time.monotonic()
        root = self.cgroup_v2_root()
        if root is None:
            return
        # A cgroup v2 id is the inode number of its directory (64-bit kernels
        # since 5.5). st_ino rather than DirEntry.inode(): on overlayfs, where
        # tests may run, d_ino can differ from st_ino.
        # update, not replace: removed cgroups keep their names.
        self._cg_paths.update(_paths_by_inode(root))

    def cgroup_v1_path(self, cgid: int, controller: str = "blkio") -> str | None:
        """Path of a v1 cgroup by its kernfs id (the inode of its directory
        under the controller's mount), or None."""
        paths = self._v1_paths.setdefault(controller, {})
        if cgid not in paths:
            root = self.cgroup_v1_root(controller)
            if root:
                paths.update(_paths_by_inode(root))
        return paths.get(cgid)

    def cgroup_filter(self, path: str) -> tuple[int, int]:
        """--cgroup PATH -> (cgroup id, level) for bpf_get_current_ancestor_cgroup_id(level)."""
        what = f"--cgroup {path}"
        root = self.cgroup_v2_root()
        if root is None:
            raise BadInput(what, "cgroup v2 is not mounted, and --cgroup matches cgroup v2 ids",
                           fix="mount it: mount -t cgroup2 none /sys/fs/cgroup/unified")
        base = root.rstrip("/")
        rel = path[len(base):] if path == base or path.startswith(base + "/") else path
        # normpath under "/" resolves "." and ".." lexically and cannot climb above the root.
        parts = [p for p in posixpath.normpath("/" + rel.lstrip("/")).split("/") if p]
        full = os.path.join(root, *parts)
        try:
            st = os.stat(full)
        except OSError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise BadInput(what, f"no such cgroup v2 directory under {root}",
                           fix=f"give a path relative to {root} as in the '0::' line of "
                           "/proc/PID/cgroup, or an absolute path under it")
        self._cg_paths[st.st_ino] = "/" + "/".join(parts)
        return st.st_ino, len(parts)

    # -- processes -----------------------------------------------------------

    def _remembered(self, pid, field, live):
        """live text if there is any (and remember it), else what was remembered."""
        if live:
            entry = self._procs.pop(pid, None) or {}
            entry[field] = live
            self._procs[pid] = entry    # re-inserted: most recent last
            if len(self._procs) > PID_CACHE_MAX:
                del self._procs[next(iter(self._procs))]
            return live
        return self._procs.get(pid, {}).get(field)

    def _proc_text(self, pid, name):
        try:
            return _read(f"{self.proc_root}/{int(pid)}/{name}")
        except OSError:
            return ""

    def comm(self, pid: int, fallback: str = "") -> str:
        text = self._remembered(pid, "comm", self._proc_text(pid, "comm").rstrip("\n"))
        return text if text is not None else fallback

    def cmdline(self, pid: int) -> str:
        # Empty for kernel threads and zombies: then keep what was remembered.
        live = self._proc_text(pid, "cmdline").rstrip("\0").replace("\0", " ")
        return self._remembered(pid, "cmdline", live) or ""

    def remember(self, pid: int) -> None:
        self.comm(pid)
        self.cmdline(pid)
        self._remembered(pid, "cgroup", self._proc_text(pid, "cgroup"))

    def cgroup_v1(self, pid: int, controller: str = "blkio") -> str | None:
        text = self._remembered(pid, "cgroup", self._proc_text(pid, "cgroup")) or ""
        for line in text.splitlines():
            # ID:CONTROLLERS:PATH; the path itself may contain ":".
            fields = line.split(":", 2)
            if len(fields) == 3 and controller in fields[1].split(","):
                return fields[2]
        return None

    def forget(self, pids) -> None:
        """Drop what was remembered of these processes: once folded
        (fold.py), their I/O is shown under the exited key, never by pid."""
        for pid in pids:
            self._procs.pop(pid, None)

    def pid_exists(self, pid: int) -> bool:
        return int(pid) > 0 and os.path.isdir(f"{self.proc_root}/{int(pid)}")


def _paths_by_inode(root):
    """{inode: path relative to root ("/" for root)} of every directory of a
    cgroup tree: a cgroup's id is the inode number of its directory."""
    found = {}
    stack = [(root, "")]
    while stack:
        d, rel = stack.pop()
        try:
            found[os.stat(d).st_ino] = rel or "/"
            with os.scandir(d) as it:
                stack.extend((e.path, f"{rel}/{e.name}") for e in it if e.is_dir(follow_symlinks=False))
        except OSError:
            continue    # removed while walking
    return found
