"""The bpf() syscall called directly, where bcc offers nothing: its number
per machine (also privileges' probe of the map descriptors), "does bpf()
work here" (doctor) and a program's recursion_misses (loader). ctypes only;
never imports bcc.
"""

import ctypes
import os

BPF_PROG_LOAD = 5


class _BpfProgInfo(ctypes.Structure):
    """The start of the kernel's struct bpf_prog_info (uapi/linux/bpf.h), up
    to recursion_misses (Linux 5.12); older kernels fill less and leave 0."""

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
                ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
                ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
                ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
                ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16),
                ("ifindex", ctypes.c_uint32), ("gpl_compatible", ctypes.c_uint32), ("netns_dev", ctypes.c_uint64),
                ("netns_ino", ctypes.c_uint64), ("nr_jited_ksyms", ctypes.c_uint32),
                ("nr_jited_func_lens", ctypes.c_uint32), ("jited_ksyms", ctypes.c_uint64),
                ("jited_func_lens", ctypes.c_uint64), ("btf_id", ctypes.c_uint32),
                ("func_info_rec_size", ctypes.c_uint32), ("func_info", ctypes.c_uint64),
                ("nr_func_info", ctypes.c_uint32), ("nr_line_info", ctypes.c_uint32), ("line_info", ctypes.c_uint64),
                ("jited_line_info", ctypes.c_uint64), ("nr_jited_line_info", ctypes.c_uint32),
                ("line_info_rec_size", ctypes.c_uint32), ("jited_line_info_rec_size", ctypes.c_uint32),
                ("nr_prog_tags", ctypes.c_uint32), ("prog_tags", ctypes.c_uint64), ("run_time_ns", ctypes.c_uint64),
                ("run_cnt", ctypes.c_uint64), ("recursion_misses", ctypes.c_uint64)]


_BPF_OBJ_GET_INFO_BY_FD = 15
# The bpf() syscall's number per machine (uname -m): the one table.
BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351}
_libc = None


def recursion_misses(fd):
    """How often the kernel skipped this program because another BPF
    program was already running on that CPU (a tracepoint firing in an
    interrupt that came during one of ours): events lost, so counted."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    info = _BpfProgInfo()
    attr = (ctypes.c_uint32 * 4)(fd, ctypes.sizeof(info), 0, 0)
    ctypes.memmove(ctypes.addressof(attr) + 8, ctypes.byref(ctypes.c_uint64(ctypes.addressof(info))), 8)
    nr = BPF_SYSCALL.get(os.uname().machine)
    if nr is None or _libc.syscall(nr, _BPF_OBJ_GET_INFO_BY_FD, attr, ctypes.sizeof(attr)) != 0:
        return 0
    return int(info.recursion_misses)


def works():
    """None when this machine's bpf() number is unknown; else (reached the
    kernel's checks, errno)."""
    nr = BPF_SYSCALL.get(os.uname().machine)
    if nr is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    # An empty attr makes the kernel answer EINVAL if bpf() exists and we may
    # call it, EPERM if we may not, ENOSYS if the kernel lacks it.
    attr = ctypes.create_string_buffer(128)
    ret = libc.syscall(nr, BPF_PROG_LOAD, attr, 128)
    err = ctypes.get_errno()
    # EINVAL, E2BIG (empty program) or EFAULT (no license string: 6.1 copies
    # it before looking at the program) all mean the call was let through.
    return ret >= 0 or err in (7, 14, 22), err
