"""Least privilege after attach: switch to an unprivileged user, keep only
the capabilities this kernel needs for reading the maps.

Loading and attaching eBPF programs needs root (or CAP_BPF, CAP_PERFMON and
friends); reading and deleting map entries through the file descriptors a
process already holds does not from Linux 5.19 (commit c8644cd0efe7, "bpf:
refine kernel.unprivileged_bpf_disabled behaviour", stopped the blanket
capability check made when unprivileged BPF is disabled from blocking
commands on descriptors already held; measured: Debian 12's 6.1 and 6.18
read the maps with none). Before 5.19, with
kernel.unprivileged_bpf_disabled != 0, every bpf() call needs CAP_BPF (5.8+)
or CAP_SYS_ADMIN. Rather than trusting version numbers, drop() asks the
kernel: a forked child switches to the user with no capabilities and tries
a map read and a program-info read on the real descriptors; only if that
fails does the process keep CAP_BPF (CAP_SYS_ADMIN where the kernel has no
CAP_BPF).

What this module must not do: know about metrics, maps' contents or bcc. It
takes a user name, file descriptors and a path to check, and changes the
credentials of the calling process (setgroups/setgid/setuid are process-wide
through glibc; capset, the bounding set and PR_SET_KEEPCAPS are per thread,
so drop() runs before serve starts its threads, and checks the others).
"""

import ctypes
import os
import pwd
import struct
from typing import NamedTuple

from . import bpfsys
from .errors import BadInput, IoltraceError

CAP_SETGID, CAP_SETUID, CAP_SETPCAP = 6, 7, 8
CAP_SYS_ADMIN, CAP_BPF = 21, 39     # linux/capability.h; CAP_BPF since Linux 5.8
PR_SET_KEEPCAPS, PR_CAPBSET_DROP, PR_CAP_AMBIENT = 8, 24, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
BPF_MAP_GET_NEXT_KEY, BPF_OBJ_GET_INFO_BY_FD = 4, 15
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
CAP_NAMES = {CAP_SYS_ADMIN: "CAP_SYS_ADMIN", CAP_BPF: "CAP_BPF"}

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


class DropFailed(IoltraceError):
    def __init__(self, step, err):
        self.step, self.err = step, err
        super().__init__(f"could not switch to the unprivileged user ({step}: {os.strerror(err)}); "
                         "stopped rather than serve with more privileges than asked (--user root keeps them)")


class Target(NamedTuple):
    """Who serve becomes after attaching (returned by target())."""

    name: str
    uid: int
    gid: int


def target(user, textfile_dir=None):
    """--user -> the Target to switch to after attach, or None to stay as
    started. Checked before anything is attached: the user exists, and the
    textfile's directory is writable by it (tried by a forked child)."""
    euid = os.geteuid()
    if user is None:
        if euid != 0:
            return None             # started unprivileged with capabilities: stays so
        user = "nobody"
    try:
        pw = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        raise BadInput(f"--user {user}", "no such user",
                       "give an existing user, e.g. nobody, or root to keep root") from None
    if pw.pw_uid == euid:
        return None
    if euid != 0:
        raise BadInput(f"--user {user}", "switching users needs root", "start as root, or leave --user out")
    if pw.pw_uid == 0:
        return None
    t = Target(pw.pw_name, pw.pw_uid, pw.pw_gid)
    _, eff = status_caps()
    lacking = [n for c, n in ((CAP_SETUID, "CAP_SETUID"), (CAP_SETGID, "CAP_SETGID"), (CAP_SETPCAP, "CAP_SETPCAP"))
               if not eff & (1 << c)]
    if lacking:
        raise BadInput(f"--user {t.name}", f"switching to it after attach needs {', '.join(lacking)}, "
                       "which this process lacks",
                       "grant them, e.g. in systemd's CapabilityBoundingSet=, or give --user root")
    if textfile_dir is not None:
        err = _in_child(lambda: _try_write(textfile_dir), t, ())
        if err:
            raise BadInput(f"--textfile in {textfile_dir}",
                           f"the directory is not writable by user {t.name} (uid {t.uid}), which serve runs as "
                           f"after attaching: {os.strerror(err).lower()}",
                           f"chown {t.name} {textfile_dir}, or choose another --user (--user root keeps root)")
    return t


def _try_write(d):
    path = os.path.join(d, f".ioltrace-write-test.{os.getpid()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    os.unlink(path)


def _in_child(fn, t, keep):
    """0 when fn() succeeds in a forked child switched to t keeping `keep`;
    else the errno it failed with (EPERM when it could not tell)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            switch(t, keep)
            fn()
        except OSError as e:
            code = e.errno or 1
        except BaseException:
            code = 1
        os._exit(min(code, 255))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8


def _bpf(cmd, attr):
    nr = bpfsys.BPF_SYSCALL.get(os.uname().machine)
    if nr is None:
        raise OSError(0, "bpf() number unknown for this machine")
    buf = ctypes.create_string_buffer(attr, max(len(attr), 128))
    if libc().syscall(nr, cmd, buf, len(buf)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return buf


def read_probe(map_fd, prog_fd, key_size=64):
    """What serve does with the descriptors after the switch, without
    changing anything: the first key of a map (ENOENT, an empty map, is an
    answer too) and a program's info (its recursion_misses counter)."""
    key = ctypes.create_string_buffer(max(key_size, 8))
    attr = struct.pack("=IIQQ", map_fd, 0, 0, ctypes.addressof(key))     # key NULL: the first key
    try:
        _bpf(BPF_MAP_GET_NEXT_KEY, attr)
    except OSError as e:
        if e.errno != 2:    # ENOENT: the map is empty, and reading it was allowed
            raise
    if prog_fd is not None:
        info = ctypes.create_string_buffer(256)
        _bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("=IIQ", prog_fd, len(info), ctypes.addressof(info)))


def cap_last():
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def switch(t, keep):
    """Become t (initgroups, setgid, setuid) with capabilities `keep` only
    (effective and permitted), nothing inheritable or ambient, and a
    bounding set of `keep`."""
    c = libc()
    last = cap_last()
    for cap in range(last + 1):
        if cap not in keep and c.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            raise DropFailed("PR_CAPBSET_DROP", ctypes.get_errno())
    c.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)    # EINVAL before 4.3: nothing to clear
    if c.prctl(PR_SET_KEEPCAPS, 1 if keep else 0, 0, 0, 0) != 0:
        raise DropFailed("PR_SET_KEEPCAPS", ctypes.get_errno())
    try:
        os.initgroups(t.name, t.gid)
        os.setgid(t.gid)
        os.setuid(t.uid)    # real, effective and saved: no way back to root
    except OSError as e:
        raise DropFailed("setuid", e.errno) from None
    mask = 0
    for cap in keep:
        mask |= 1 << cap
    # struct __user_cap_header_struct, then two __user_cap_data_struct
    # (effective, permitted, inheritable) for capabilities 0-31 and 32-63.
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0, mask >> 32, mask >> 32, 0)
    nr = SYS_CAPSET.get(os.uname().machine)
    if nr is None or c.syscall(nr, header, data) != 0:
        raise DropFailed("capset", ctypes.get_errno() or 38)
    c.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)


class Dropped(NamedTuple):
    """What drop() did, for the one line serve prints."""

    user: str
    uid: int
    kept: tuple     # capability numbers still held
    why: str

    def describe(self):
        caps = ", ".join(CAP_NAMES.get(c, str(c)) for c in self.kept) or "none"
        return f"running as {self.user} (uid {self.uid}) with capabilities: {caps} ({self.why})"


def drop(t, map_fd, prog_fd=None):
    """After attach: switch the (single-threaded) process to t, keeping no
    capability if a probe child could read the maps without any, else
    CAP_BPF (or CAP_SYS_ADMIN without CAP_BPF). Checks the result with the
    same probe; DropFailed if the maps cannot be read afterwards."""
    if _in_child(lambda: read_probe(map_fd, prog_fd), t, ()) == 0:
        keep, why = (), "this kernel lets the map descriptors be read without privilege"
    else:
        cap = CAP_BPF if cap_last() >= CAP_BPF else CAP_SYS_ADMIN
        keep = (cap,)
        why = (f"kernel.unprivileged_bpf_disabled={_sysctl_unpriv()}: this kernel checks privilege on "
               "every bpf() call (before 5.19)")
    switch(t, keep)
    try:
        read_probe(map_fd, prog_fd)
    except OSError as e:
        raise DropFailed("reading the maps afterwards", e.errno or 1) from None
    # Threads started before (numpy's BLAS pool) went through glibc's
    # setuid broadcast without PR_SET_KEEPCAPS, so they hold no capability
    # at all; check every one rather than assume.
    mask = sum(1 << c for c in keep)
    for tid in os.listdir("/proc/self/task"):
        try:
            uid, eff = status_caps(f"self/task/{tid}")
        except (FileNotFoundError, ProcessLookupError):
            continue    # a thread that ended after the listing
        if uid != t.uid or eff & ~mask:
            raise DropFailed(f"thread {tid} kept uid {uid} or capabilities {eff:#x}", 1)
    return Dropped(t.name, t.uid, keep, why)


def _sysctl_unpriv():
    try:
        with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
            return f.read().strip()
    except OSError:
        return "?"


def status_caps(pid="self"):
    """(uid, CapEff) of a process from /proc/PID/status."""
    uid = eff = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                uid = int(line.split()[2])
            elif line.startswith("CapEff:"):
                eff = int(line.split()[1], 16)
    return uid, eff
