"""Which block probes to use: the typed request path or the classic tracepoints.

The typed path (bpf/request.bpf.c) reads struct request and the cgroup
structs at offsets from the running kernel's BTF; it is chosen when BTF is
readable and every offset it needs resolves, and the classic tracepoint path
(bpf/block.bpf.c) otherwise. `--probes raw|classic` forces one. Pure: reads
the BTF file, never bcc; the choice says what it found and why, for -v and
`doctor`.
"""

import hashlib
import json
import os
from typing import NamedTuple

from . import btf
from .errors import KernelUnsupported
from .headers import cache_dir

MODES = ("auto", "raw", "classic")
# Where BTF is read from; IOLTRACE_BTF points elsewhere (tests simulate a
# kernel without BTF with a path that does not exist).
BTF_ENV = "IOLTRACE_BTF"

# -D name -> (struct, member path, byte size the program reads). Checked
# present on 6.1 (Debian 12) and 6.18: kernfs_node.id is u64 since 5.5,
# request.q->disk since 5.14 (gendisk moved there from rq->rq_disk).
OFFSETS = {
    "IOLT_OFF_RQ_Q": ("request", "q", 8),
    "IOLT_OFF_RQ_CMD_FLAGS": ("request", "cmd_flags", 4),
    "IOLT_OFF_RQ_DATA_LEN": ("request", "__data_len", 4),
    "IOLT_OFF_RQ_SECTOR": ("request", "__sector", 8),
    "IOLT_OFF_RQ_BIO": ("request", "bio", 8),
    "IOLT_OFF_RQ_RQ_FLAGS": ("request", "rq_flags", 4),
    "IOLT_OFF_Q_DISK": ("request_queue", "disk", 8),
    "IOLT_OFF_DISK_MAJOR": ("gendisk", "major", 4),
    "IOLT_OFF_DISK_FIRST_MINOR": ("gendisk", "first_minor", 4),
    "IOLT_OFF_BIO_BLKG": ("bio", "bi_blkg", 8),
    "IOLT_OFF_BIO_OPF": ("bio", "bi_opf", 4),
    "IOLT_OFF_BLKG_BLKCG": ("blkcg_gq", "blkcg", 8),
    "IOLT_OFF_BLKCG_CGROUP": ("blkcg", "css.cgroup", 8),
    "IOLT_OFF_CGROUP_KN": ("cgroup", "kn", 8),
    "IOLT_OFF_CGROUP_LEVEL": ("cgroup", "level", 4),
    "IOLT_OFF_KN_ID": ("kernfs_node", "id", 8),
}

# -D name -> enumerator whose value the program needs: bit numbers of enum
# req_flag_bits (REQ_FUA is 1 << __REQ_FUA), which move when the kernel adds
# or removes a flag (__REQ_FUA is 17 on 6.1 and 6.18; it was 13 in 4.x).
ENUMERATORS = {
    "IOLT_REQ_FUA_BIT": "__REQ_FUA",
    "IOLT_REQ_PREFLUSH_BIT": "__REQ_PREFLUSH",
    "IOLT_REQ_SYNC_BIT": "__REQ_SYNC",
    "IOLT_REQ_META_BIT": "__REQ_META",
    "IOLT_REQ_RAHEAD_BIT": "__REQ_RAHEAD",   # 19 on 6.18; snoop's rwbs 'A'
}


# The struct request fields read where a request is first seen; when they
# lie within RQ_WINDOW_MAX bytes (q .. bio: 0..64 on 6.18) the program reads
# them in one bpf_probe_read_kernel (rq_window). range 8..128: the window
# sits on the BPF stack beside the in-flight slot.
RQ_WINDOW = ("IOLT_OFF_RQ_Q", "IOLT_OFF_RQ_CMD_FLAGS", "IOLT_OFF_RQ_DATA_LEN", "IOLT_OFF_RQ_SECTOR",
             "IOLT_OFF_RQ_BIO")
RQ_WINDOW_MAX = 64
# "0": a read per field even when a window fits (benchmarks/kernel_cost.py
# compares the two in one run); not a user option.
WINDOW_ENV = "IOLTRACE_RQ_WINDOW"


def rq_window(offsets):
    """(base, size) in bytes of the one read that covers every RQ_WINDOW
    field, base 8-aligned; None when they span more than RQ_WINDOW_MAX
    (or one is not known)."""
    if not all(n in offsets for n in RQ_WINDOW):
        return None
    base = min(offsets[n] for n in RQ_WINDOW) // 8 * 8
    end = max(offsets[n] + OFFSETS[n][2] for n in RQ_WINDOW)
    return (base, end - base) if end - base <= RQ_WINDOW_MAX else None


class ProbePath(NamedTuple):
    """What choose() decided: kind "raw" or "classic", the offsets (name ->
    bytes) when raw, one sentence of why, and the v1 hierarchy id the io
    controller is bound to (0: cgroup v2, where charged cgroups key --by
    cgroup; else they name --by cgroup-v1 groups)."""

    kind: str
    offsets: dict
    why: str
    blkio_hierarchy: int = 0

    def cflags(self):
        flags = [f"-D{name}={int(off)}" for name, off in sorted(self.offsets.items())]
        window = rq_window(self.offsets)
        if window and os.environ.get(WINDOW_ENV) != "0":
            flags += [f"-DIOLT_RQ_WIN_BASE={int(window[0])}", f"-DIOLT_RQ_WIN_SIZE={int(window[1])}"]
        if self.blkio_hierarchy:
            flags.append("-DIOLT_BLKCG_V1")
        return flags

    def describe(self):
        if self.kind != "raw":
            return f"probe path: classic tracepoints ({self.why})"
        offs = ", ".join(f"{OFFSETS[n][0]}.{OFFSETS[n][1]}={o}" if n in OFFSETS else f"{ENUMERATORS[n]}={o}"
                         for n, o in self.offsets.items())
        charged = (f"v1 blkio hierarchy {self.blkio_hierarchy}: names --by cgroup-v1" if self.blkio_hierarchy
                   else "cgroup v2: keys --by cgroup")
        return f"probe path: raw (typed struct request; {self.why}); charged cgroups on {charged}; offsets: {offs}"


def blkio_hierarchy(path="/proc/cgroups"):
    """The v1 hierarchy id the io (blkio) controller is bound to; 0 when it
    is on cgroup v2 or absent. A controller is bound to one hierarchy at a
    time, so this holds for every blkcg the kernel charges."""
    try:
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "blkio" and fields[1].isdigit():
                    return int(fields[1])
    except OSError:
        pass
    return 0


def btf_path():
    return os.environ.get(BTF_ENV) or btf.VMLINUX


def find_offsets(path=None):
    """(offsets, problems): every offset (and flag bit, ENUMERATORS) BTF
    gives, and what it lacks. Remembered per BTF blob (cached_offsets)."""
    path = path or btf_path()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return {}, [f"cannot read {path}: {e.strerror}"]
    return cached_offsets(data, lambda: _offsets_in(data))


# Parsing the whole of vmlinux's BTF (5 MB, 100,000 types) takes 0.2 s here
# and 2-4 s under qemu's software emulation, at every start; what it yields
# depends only on the blob and on what is looked up (OFFSETS, ENUMERATORS),
# so the result is kept under the cache directory, named by a digest of both.
def _digest(data):
    h = hashlib.blake2b(data, digest_size=16)
    h.update(repr((sorted(OFFSETS.items()), sorted(ENUMERATORS.items()))).encode())
    return h.hexdigest()


def cached_offsets(data, compute, cache=None):
    """compute()'s (offsets, problems) for the BTF blob `data`, from the
    cache when it holds them; a cache that cannot be read or written is
    passed by (it only saves time)."""
    file = (cache or cache_dir()) / "btf" / f"{_digest(data)}.json"
    try:
        got = json.loads(file.read_text())
        if isinstance(got.get("offsets"), dict) and isinstance(got.get("problems"), list):
            return {str(k): int(v) for k, v in got["offsets"].items()}, [str(p) for p in got["problems"]]
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    offsets, problems = compute()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"offsets": offsets, "problems": problems}))
        os.replace(tmp, file)
    except OSError:
        pass
    return offsets, problems


def _offsets_in(data):
    try:
        types = btf.Btf(data)
    except btf.BtfError as e:
        return {}, [e.what]
    found, problems = {}, []
    for name, (struct_name, member, size) in OFFSETS.items():
        try:
            off, t, _ = types.member(struct_name, member)
            got = types.size_of(t)
        except btf.BtfError as e:
            problems.append(e.what)
            continue
        if got != size:
            problems.append(f"{struct_name}.{member} is {got} bytes, the program reads {size}")
            continue
        found[name] = off
    for name, enumerator in ENUMERATORS.items():
        try:
            value = types.enumerator(enumerator)
        except btf.BtfError as e:
            problems.append(e.what)
            continue
        if not 0 <= value < 32:
            problems.append(f"{enumerator} is {value}, not a bit of the 32-bit request flags")
            continue
        found[name] = value
    return found, problems


def choose(mode="auto", path=None):
    """The probe path for --probes mode; raises KernelUnsupported when raw is
    forced and cannot work."""
    if mode == "classic":
        return ProbePath("classic", {}, "--probes classic")
    path = path or btf_path()
    offsets, problems = find_offsets(path)
    if problems:
        if mode == "raw":
            raise KernelUnsupported([f"BTF offsets ({problems[0]})"],
                                    "--probes raw needs the kernel's BTF (CONFIG_DEBUG_INFO_BTF); use --probes classic")
        return ProbePath("classic", {}, f"typed path unavailable: {problems[0]}")
    return ProbePath("raw", offsets, f"every offset found in {path}" + (", forced" if mode == "raw" else ""),
                     blkio_hierarchy())
