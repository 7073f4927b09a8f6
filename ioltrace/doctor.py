"""`ioltrace doctor`: check each requirement and say how to fix what is missing.

Reads the system (privileges, bpf(), tracefs, tracepoints, BTF, headers, bcc,
cgroup v2) and returns Check records; it never loads a probe or changes
anything, except that choosing generic headers assembles their private tree.
"""

import os

from . import bpfsys, headers, loader, probepath
from .errors import BccMissing
from .records import Check


# Said instead of a verdict on what an unprivileged user cannot see: bpf()
# answers EPERM and tracefs is mode 0700, which would otherwise read as "the
# kernel lacks CONFIG_BPF_SYSCALL" and "tracefs not mounted".
UNCHECKED = "not checked: needs the privileges above"


def privilege_line(checks):
    """The one line said before the table when privileges are missing, or None."""
    first = checks[0]
    if first.ok:
        return None
    return (f"not privileged ({first.detail}): tracing needs root or CAP_BPF and CAP_PERFMON; "
            "run 'sudo ioltrace doctor' to check the rest")


def run_checks():
    """Check records, privileges first: without them, the checks that need
    them are not run (ok None) rather than reported as missing."""
    missing = loader.missing_privileges()
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    checks = [Check("privileges", not missing,
                    who if not missing and os.geteuid() == 0 else
                    ("capabilities present" if not missing else f"{who}, missing " + ", ".join(missing)),
                    "" if not missing else "run as root (sudo) or grant CAP_BPF and CAP_PERFMON")]
    if missing:
        checks.append(Check("bpf() syscall", None, UNCHECKED, ""))
        checks.append(Check("tracefs and block tracepoints", None, UNCHECKED, ""))
    else:
        checks += _privileged_checks()
    btf = os.path.exists("/sys/kernel/btf/vmlinux")
    checks.append(Check("BTF", btf, "/sys/kernel/btf/vmlinux" if btf else "absent",
                        "" if btf else "optional for ioltrace (tracepoints need no BTF); CONFIG_DEBUG_INFO_BTF"))
    # Which block probe path `--probes auto` takes, with the offsets or the reason.
    path = probepath.choose("auto")
    checks.append(Check("probe path", True, path.describe()[len("probe path: "):],
                        "" if path.kind == "raw" else "optional: the typed request path needs the kernel's BTF "
                        "(charged cgroups for writeback, no (dev, sector) pairing)"))
    try:
        h = headers.choose()
        ok, detail = h.kind != "none", f"{h.kind}: {h.detail}"
    except OSError as e:
        ok, detail = False, f"could not assemble generic headers: {e}"
    checks.append(Check("kernel headers", ok, detail,
                        "" if ok else "apt-get install linux-headers-$(uname -r) or linux-headers-amd64 (scripts/setup.sh)"))
    try:
        ver, where = loader.bcc_version()
        checks.append(Check("bcc", True, f"version {ver} at {where}", ""))
    except BccMissing as e:
        checks.append(Check("bcc", False, e.detail, "apt-get install python3-bpfcc (Debian/Ubuntu) or python3-bcc "
                            "(Fedora/RHEL); use a Python that sees it (scripts/setup.sh's venv)"))
    from .resolve import Resolver

    cg = Resolver().cgroup_v2_root()
    checks.append(Check("cgroup v2", cg is not None, cg or "not mounted",
                        "" if cg else "mount -t cgroup2 none /sys/fs/cgroup/unified (needed for --by cgroup names and --cgroup)"))
    return checks


def _privileged_checks():
    checks = []
    res = bpfsys.works()
    if res is not None:
        ok, err = res
        checks.append(Check("bpf() syscall", ok, "available" if ok else os.strerror(err),
                            "" if ok else "kernel needs CONFIG_BPF_SYSCALL; as non-root, run with sudo"))
    root = loader.tracefs()
    checks.append(Check("tracefs", root is not None, root or "not mounted",
                        "" if root else "mount -t tracefs tracefs /sys/kernel/tracing"))
    start = loader.start_tracepoint(root) if root else "block_io_start or block_rq_insert"
    for tp in (start, "block_rq_issue", "block_rq_complete"):
        ok = root is not None and loader.tracepoint_exists("block", tp, root)
        detail = "present" if ok else "absent"
        if tp == "block_rq_insert" and ok:
            detail = "present (block_io_start absent: kernel older than 6.5)"
        checks.append(Check(f"tracepoint block:{tp}", ok, detail,
                            "" if ok else "kernel needs CONFIG_TRACEPOINTS and CONFIG_BLK_DEV_IO_TRACE"))
    return checks


def render(checks):
    from tabulate import tabulate

    import textwrap

    # Wrapped by hand: tabulate's maxcolwidths needs 0.8.10, Debian 12 has 0.8.9.
    rows = [(c.name, "OK" if c.ok else "missing" if c.ok is not None else "unchecked", textwrap.fill(c.detail, 60), textwrap.fill(c.fix, 40))
            for c in checks]
    return tabulate(rows, headers=("requirement", "status", "detail", "fix"), tablefmt="simple")
