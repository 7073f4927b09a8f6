"""Which kernel headers bcc compiles the probes against, and how to get them.

Order of preference: headers for the running kernel (/lib/modules/R/build);
bcc's own /sys/kernel/kheaders.tar.xz; else the distribution's generic
headers package, assembled into a private symlink tree under ioltrace's cache
directory and handed to bcc with BCC_KERNEL_SOURCE. Nothing is ever written
outside that cache directory (never into /lib/modules).

The generic fallback is safe because ioltrace reads only tracepoint
arguments, whose layout bcc takes from the running kernel's tracefs format
files; the headers only supply basic types and bcc's helper prototypes, never
the layout of a kernel struct. This module does not import bcc.
"""

import os
import re
from pathlib import Path
from typing import NamedTuple

ARCH_SUFFIX = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "powerpc64le", "s390x": "s390x"}


class HeaderChoice(NamedTuple):
    kind: str        # running-kernel, kheaders, generic, user, or none
    path: str        # what bcc will read ('' when bcc finds it itself)
    detail: str      # one line for --verbose and doctor
    env: dict        # environment bcc needs (BCC_KERNEL_SOURCE)


def cache_dir():
    base = os.environ.get("IOLTRACE_CACHE") or os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / ("" if os.environ.get("IOLTRACE_CACHE") else "ioltrace")


def _version_key(name):
    return [int(x) for x in re.findall(r"\d+", name)]


def generic_sources(usr_src="/usr/src", machine=None):
    """Candidate (common_dir, arch_dir) pairs from distribution packages, newest first.

    Debian: linux-headers-V-common + linux-headers-V-amd64; Ubuntu:
    linux-headers-V + linux-headers-V-generic; Fedora/RHEL: one complete
    tree /usr/src/kernels/V (arch_dir is then None).
    """
    machine = machine or os.uname().machine
    root = Path(usr_src)
    found = []
    if not root.is_dir():
        return found
    suffix = ARCH_SUFFIX.get(machine, machine)
    for d in root.glob("linux-headers-*-common"):
        arch = Path(str(d)[: -len("-common")] + "-" + suffix)
        if (d / "include").is_dir() and arch.is_dir():
            found.append((d, arch))
    for arch in root.glob("linux-headers-*-generic"):
        common = Path(str(arch)[: -len("-generic")])
        if common.is_dir() and (common / "include").is_dir():
            found.append((common, arch))
    kernels = root / "kernels"
    if kernels.is_dir():
        for d in kernels.iterdir():
            if (d / "include").is_dir() and (d / "arch").is_dir():
                found.append((d, None))
    found.sort(key=lambda pair: _version_key(pair[0].name), reverse=True)
    return found


def _link_tree(src, dst):
    """Mirror src into dst as directories and symlinks; existing links are
    replaced, so a second call overlays a second tree on the first."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        out = dst / rel if rel != "." else dst
        out.mkdir(parents=True, exist_ok=True)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            target = os.path.realpath(os.path.join(dirpath, name))
            link = out / name
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.is_dir():
                continue
            os.symlink(target, link)


def assemble(common, arch, dest):
    """Build the merged tree at dest atomically (temp dir, then rename)."""
    dest = Path(dest)
    if (dest / "include").is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / (dest.name + f".tmp{os.getpid()}")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    for sub in ("include", "arch", "Makefile", ".config"):
        if (common / sub).exists():
            _place(common / sub, tmp / sub)
    if arch is not None:
        for sub in ("include", "arch", "Makefile", ".config"):
            if (arch / sub).exists():
                _place(arch / sub, tmp / sub)
    try:
        os.rename(tmp, dest)
    except OSError:
        # Another ioltrace finished first: use its tree.
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _place(src, dst):
    if src.is_dir():
        _link_tree(src, dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        os.symlink(os.path.realpath(src), dst)


def choose(release=None, modules="/lib/modules", kheaders="/sys/kernel/kheaders.tar.xz",
           usr_src="/usr/src", machine=None, build=True):
    """Pick headers in the documented order; build the generic tree if needed
    and `build` is true. Returns a HeaderChoice (kind 'none' if nothing fits)."""
    release = release or os.uname().release
    user = os.environ.get("BCC_KERNEL_SOURCE")
    if user:
        return HeaderChoice("user", user, f"BCC_KERNEL_SOURCE={user} (set by you)", {})
    build_dir = Path(modules) / release / "build"
    if (build_dir / "include").is_dir():
        return HeaderChoice("running-kernel", str(build_dir), f"headers of the running kernel at {build_dir}", {})
    if os.path.exists(kheaders):
        return HeaderChoice("kheaders", kheaders, f"the kernel's own {kheaders} (CONFIG_IKHEADERS)", {})
    for common, arch in generic_sources(usr_src, machine):
        name = common.name.replace("-common", "") if arch is not None else "kernels-" + common.name
        dest = cache_dir() / "kernel-headers" / name
        detail = (f"generic distribution headers {common.name}"
                  f"{' + ' + arch.name if arch is not None else ''} assembled at {dest}; safe because "
                  "ioltrace reads only tracepoint arguments, laid out from tracefs, never kernel structs")
        if build:
            assemble(common, arch, dest)
        return HeaderChoice("generic", str(dest), detail, {"BCC_KERNEL_SOURCE": str(dest)})
    return HeaderChoice("none", "", f"no headers for {release}, no kheaders, no generic headers package", {})
