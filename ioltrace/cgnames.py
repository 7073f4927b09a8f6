"""Cgroup path -> the name users know it by: a systemd unit, a container, a pod.

`ps`, `systemctl` and `docker ps` name workloads by unit, container id and
pod; the kernel names them by cgroup path. This module maps the one to the
other from the path alone (cgroup v1 or v2, systemd or cgroupfs driver), so
it works after the container is gone and on hosts whose runtime sockets we
must not touch. It must not read files, talk to a runtime or raise: a path it
does not recognise gets an empty name, and callers show the path instead.

Shapes recognised (each has a row in tests/unit/test_cgnames.py):
  /system.slice/nginx.service                              systemd unit
  /user.slice/user-1000.slice/session-3.scope              a user's unit
  /system.slice/docker-<id>.scope, /docker/<id>            docker
  /system.slice/nerdctl-<id>.scope                         containerd (nerdctl)
  /<parent>/<id>                                           a container by a cgroupfs driver
  /machine.slice/libpod-<id>.scope, /libpod_parent/...     podman
  .../crio-<id>.scope, .../crio-<id>                       CRI-O
  /kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice/cri-containerd-<id>.scope
  /kubepods/<qos>/pod<uid>/<id>                            Kubernetes pods
"""

from __future__ import annotations

import re
from typing import NamedTuple

# `docker ps` and `crictl ps` show the first 12 hex digits of a 64-digit id.
SHORT_ID = 12

# Scope/directory prefixes container runtimes use, and the runtime each means.
_RUNTIME_PREFIXES = {
    "cri-containerd": "containerd",
    "containerd": "containerd",
    "nerdctl": "containerd",
    "libpod": "podman",
    "libpod-conmon": "podman-conmon",   # the container's monitor, not the container
    "docker": "docker",
    "crio": "crio",
    "crio-conmon": "crio-conmon",
}
# A runtime-prefixed id: "docker-<hex>.scope" (systemd driver) or "crio-<hex>" (cgroupfs).
_PREFIXED_ID = re.compile(r"^(?P<prefix>[a-z-]+?)-(?P<id>[0-9a-f]{64})(?:\.scope)?$")
_BARE_ID = re.compile(r"^[0-9a-f]{64}$")
# Kubernetes QoS classes; "guaranteed" pods sit directly under kubepods.
_QOS = ("burstable", "besteffort")
_POD_SYSTEMD = re.compile(r"^kubepods(?:-(?P<qos>burstable|besteffort))?-pod(?P<uid>[0-9a-f_]+)\.slice$")
_POD_CGROUPFS = re.compile(r"^pod(?P<uid>[0-9a-f-]+)$")
_USER_SLICE = re.compile(r"^user-(?P<uid>\d+)\.slice$")
_UNIT_SUFFIXES = (".service", ".scope", ".slice", ".socket", ".mount", ".swap")
# Slices every host has: they say nothing about the workload inside.
_STANDARD_SLICES = frozenset({"system.slice", "user.slice", "machine.slice", "app.slice", "session.slice",
                              "background.slice"})


class CgroupName(NamedTuple):
    """What a cgroup path says about its workload (parse); "" when it says nothing."""

    unit: str = ""         # innermost systemd unit that is not a container scope
    user: str = ""         # uid of a user-<uid>.slice
    runtime: str = ""      # docker, containerd, podman, crio (…-conmon for monitors)
    container: str = ""    # container id, shortened to SHORT_ID
    pod_uid: str = ""      # Kubernetes pod UID, with dashes
    qos: str = ""          # guaranteed, burstable, besteffort (Kubernetes only)

    @property
    def text(self) -> str:
        """One short label: "docker:3f4a5b6c7d8e", "pod:<uid> burstable
        containerd:…", "nginx.service", "user 1000 session-3.scope"."""
        parts = []
        if self.pod_uid:
            parts.append(f"pod:{self.pod_uid} {self.qos}")
        elif self.qos:
            parts.append(f"kubepods {self.qos}")
        if self.container:
            parts.append(f"{self.runtime}:{self.container}")
        elif not parts and self.unit:
            parts.append(f"user {self.user} {self.unit}" if self.user else self.unit)
        elif not parts and self.user:
            parts.append(f"user {self.user}")
        return " ".join(parts)


def _unescape_unit(name):
    # systemd escapes "-" and other bytes in unit names as \xNN.
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), name)


def _container(part):
    """(runtime, short id) if this path component is a container's, else None."""
    m = _PREFIXED_ID.match(part)
    runtime = m and _RUNTIME_PREFIXES.get(m.group("prefix"))
    return (runtime, m.group("id")[:SHORT_ID]) if runtime else None


def parse(path: str) -> CgroupName:
    """A cgroup path (as in /proc/PID/cgroup or resolve.cgroup_path) -> CgroupName."""
    if not isinstance(path, str):
        return CgroupName()
    parts = [p for p in path.split("/") if p]
    unit = user = runtime = container = pod_uid = qos = ""
    in_kubepods = False
    parent = ""
    for p in parts:
        c = _container(p)
        if c:
            runtime, container = c
            parent = p
            continue
        if _BARE_ID.match(p):
            # cgroupfs drivers name the directory by the bare id; the parent
            # says whose it is ("docker", "libpod_parent"; a pod's says nothing).
            container = p[:SHORT_ID]
            runtime = ("docker" if parent == "docker" else
                       "podman" if parent.startswith("libpod") else "container")
            parent = p
            continue
        if p in ("kubepods", "kubepods.slice"):
            in_kubepods = True
        elif in_kubepods and p in _QOS:
            qos = p
        elif in_kubepods and p.startswith("kubepods-") and p.endswith(".slice") and p[9:-6] in _QOS:
            qos = p[9:-6]
        elif in_kubepods and _POD_SYSTEMD.match(p):
            m = _POD_SYSTEMD.match(p)
            pod_uid = m.group("uid").replace("_", "-")
            qos = m.group("qos") or "guaranteed"
        elif in_kubepods and _POD_CGROUPFS.match(p):
            pod_uid = _POD_CGROUPFS.match(p).group("uid")
            qos = qos or "guaranteed"    # guaranteed pods sit right under kubepods
        elif _USER_SLICE.match(p):
            user = _USER_SLICE.match(p).group("uid")
            unit = ""
        elif (p.endswith(_UNIT_SUFFIXES) and p not in _STANDARD_SLICES
              and not p.startswith(("user@", "machine-libpod_pod_"))):
            unit = _unescape_unit(p)
        parent = p
    return CgroupName(unit, user, runtime, container, pod_uid, qos if in_kubepods else "")


def name_of(path: str) -> str:
    """The label to show beside a cgroup's id; "" when the path says nothing
    more than itself."""
    return parse(path).text
