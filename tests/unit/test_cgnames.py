"""cgnames: cgroup paths as each runtime and driver writes them -> the names
`systemctl`, `docker ps`, `podman ps`, `crictl ps` and `kubectl` show.

The paths are the shapes those tools create (systemd's unit naming,
runc/crun's systemd and cgroupfs drivers, kubelet's pod cgroups); ids are
64 hex digits, shown by the runtimes' own ps as their first 12.
"""

import pytest

from ioltrace import cgnames

ID = "3f4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233445566aabb"
SHORT = ID[:12]
UID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
UID_ = UID.replace("-", "_")

CASES = [
    # systemd units (cgroup v2 unified and v1 named/blkio hierarchies alike)
    ("/system.slice/nginx.service", "nginx.service"),
    ("/system.slice/system-getty.slice/getty@tty1.service", "getty@tty1.service"),
    ("/system.slice/system-postgresql.slice/postgresql@15-main.service", "postgresql@15-main.service"),
    ("/system.slice/run-r2f1e\\x2dtest.scope", "run-r2f1e-test.scope"),
    ("/init.scope", "init.scope"),
    ("/user.slice/user-1000.slice/session-3.scope", "user 1000 session-3.scope"),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope",
     "user 1000 app-gnome-firefox-4242.scope"),
    ("/user.slice/user-1000.slice/user@1000.service", "user 1000"),
    ("/user.slice/user-1000.slice/user@1000.service/background.slice/tracker-miner-fs-3.service",
     "user 1000 tracker-miner-fs-3.service"),
    # docker: systemd driver (v2 and v1 blkio), cgroupfs driver, docker in docker
    (f"/system.slice/docker-{ID}.scope", f"docker:{SHORT}"),
    (f"/docker/{ID}", f"docker:{SHORT}"),
    (f"/docker/{'1' * 64}/docker/{ID}", f"docker:{SHORT}"),
    # containerd without Kubernetes (nerdctl): systemd and cgroupfs drivers
    (f"/system.slice/nerdctl-{ID}.scope", f"containerd:{SHORT}"),
    (f"/default/{ID}", f"container:{SHORT}"),
    # podman: root (machine.slice), rootless (user slice), pods, cgroupfs driver, conmon
    (f"/machine.slice/libpod-{ID}.scope", f"podman:{SHORT}"),
    (f"/machine.slice/libpod-{ID}.scope/container", f"podman:{SHORT}"),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope", f"podman:{SHORT}"),
    (f"/machine.slice/machine-libpod_pod_{'2' * 64}.slice/libpod-{ID}.scope", f"podman:{SHORT}"),
    (f"/libpod_parent/libpod-{ID}", f"podman:{SHORT}"),
    (f"/libpod_parent/{ID}", f"podman:{SHORT}"),
    (f"/machine.slice/libpod-conmon-{ID}.scope", f"podman-conmon:{SHORT}"),
    # Kubernetes, systemd driver: containerd, CRI-O, docker (dockershim); three QoS classes
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope",
     f"pod:{UID} burstable containerd:{SHORT}"),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope",
     f"pod:{UID} besteffort crio:{SHORT}"),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-conmon-{ID}.scope",
     f"pod:{UID} besteffort crio-conmon:{SHORT}"),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope",
     f"pod:{UID} guaranteed containerd:{SHORT}"),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{ID}.scope",
     f"pod:{UID} burstable docker:{SHORT}"),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice", f"pod:{UID} burstable"),
    ("/kubepods.slice/kubepods-burstable.slice", "kubepods burstable"),
    # Kubernetes, cgroupfs driver (v1 blkio and v2): containerd/docker bare ids, CRI-O prefixed
    (f"/kubepods/burstable/pod{UID}/{ID}", f"pod:{UID} burstable container:{SHORT}"),
    (f"/kubepods/besteffort/pod{UID}/crio-{ID}", f"pod:{UID} besteffort crio:{SHORT}"),
    (f"/kubepods/pod{UID}/{ID}", f"pod:{UID} guaranteed container:{SHORT}"),
    (f"/kubepods/besteffort/pod{UID}", f"pod:{UID} besteffort"),
    # kind/k3s-in-docker: the node's own cgroup in front of kubelet's
    (f"/docker/{'1' * 64}/kubepods/burstable/pod{UID}/{ID}", f"pod:{UID} burstable container:{SHORT}"),
    # nothing to add to the path itself
    ("/", ""),
    ("", ""),
    ("/system.slice", ""),
    ("/kubepods.slice", ""),
    ("/ioltrace-test/a", ""),
    ("cgroup:12345", ""),
    ("?", ""),
    (f"/system.slice/docker-{ID[:20]}.scope", "docker-3f4a5b6c7d8e9f001122.scope"),  # not a 64-digit id
]


@pytest.mark.parametrize("path,name", CASES, ids=[c[0][-60:] or "empty" for c in CASES])
def test_name_of_runtime_paths(path, name):
    assert cgnames.name_of(path) == name


def test_parse_fields_of_a_kubernetes_container():
    n = cgnames.parse(f"/kubepods/burstable/pod{UID}/crio-{ID}")
    assert (n.runtime, n.container, n.pod_uid, n.qos) == ("crio", SHORT, UID, "burstable")


def test_non_text_is_no_name():
    assert cgnames.name_of(None) == ""
