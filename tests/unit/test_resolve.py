"""resolve.py against small fake /sys, /proc and cgroup trees built in tmp_path.

Fake the system, not the logic: the trees have the shape the kernel gives
them (symlinks into /sys/devices, "MAJ:MIN\\n" dev files, real directories
whose st_ino stands in for cgroup ids).
"""

import os
import shutil

import pytest

from ioltrace import resolve
from ioltrace.errors import BadInput
from ioltrace.resolve import Resolver, dev_major_minor, make_dev

# name -> (sysfs dir under devices/, major, minor, (start, size) for partitions)
BLOCK = {
    "sda": ("pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda", 8, 0, None),
    "sda1": ("pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1", 8, 1, (2048, 1048576)),
    "sda2": ("pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda2", 8, 2, (1050624, 4096)),
    "nvme0n1": ("pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1", 259, 0, None),
    "nvme0n1p2": ("pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1/nvme0n1p2", 259, 2, (1230848, 97656250)),
    "loop0": ("virtual/block/loop0", 7, 0, None),
}


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.fixture
def sys_root(tmp_path):
    root = tmp_path / "sys"
    for name, (devpath, major, minor, part) in BLOCK.items():
        d = root / "devices" / devpath
        _write(d / "dev", f"{major}:{minor}\n")
        _write(d / "uevent", f"MAJOR={major}\nMINOR={minor}\nDEVNAME={name}\n")
        if part:
            _write(d / "partition", f"{name[-1]}\n")
            _write(d / "start", f"{part[0]}\n")
            _write(d / "size", f"{part[1]}\n")
        for link in (root / "class/block" / name, root / "dev/block" / f"{major}:{minor}"):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(d, link.parent))
    # A dev/block entry that is a plain directory: only its uevent names it.
    _write(root / "dev/block/7:3/uevent", "MAJOR=7\nMINOR=3\nDEVNAME=loop3\n")
    return root


@pytest.fixture
def resolver(sys_root, tmp_path):
    return Resolver(sys_root=str(sys_root), proc_root=str(tmp_path / "proc"))


# -- dev_t ---------------------------------------------------------------------

@pytest.mark.parametrize("major, minor, dev", [
    (0, 0, 0),
    (7, 0, 7 << 20),
    (8, 1, 0x800001),
    (259, 1, 0x10300001),
    (4095, 0xFFFFF, 0xFFFFFFFF),
])
def test_dev_encode_decode(major, minor, dev):
    assert make_dev(major, minor) == dev
    assert dev_major_minor(dev) == (major, minor)


@pytest.mark.parametrize("major, minor", [(4096, 0), (0, 1 << 20), (-1, 0)])
def test_make_dev_out_of_range(major, minor):
    with pytest.raises(ValueError):
        make_dev(major, minor)


@pytest.mark.parametrize("major, minor, name", [
    (8, 0, "sda"),
    (8, 1, "sda1"),
    (259, 2, "nvme0n1p2"),
    (7, 0, "loop0"),
    (7, 3, "loop3"),      # from uevent DEVNAME=
    (8, 99, "8:99"),      # unknown
])
def test_disk_name(resolver, major, minor, name):
    assert resolver.disk_name(make_dev(major, minor)) == name


def test_disk_name_is_cached_but_unknown_is_not(resolver, sys_root):
    assert resolver.disk_name(make_dev(8, 0)) == "sda"
    assert resolver.disk_name(make_dev(7, 5)) == "7:5"
    (sys_root / "dev/block/8:0").unlink()
    (sys_root / "dev/block/7:5").symlink_to("../../devices/virtual/block/loop5")
    assert resolver.disk_name(make_dev(8, 0)) == "sda"
    assert resolver.disk_name(make_dev(7, 5)) == "loop5"


def test_disks(resolver):
    assert resolver.disks() == sorted(BLOCK)
    assert Resolver(sys_root="/nonexistent").disks() == []


# -- --disk --------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("sda", (make_dev(8, 0), None, None)),
    ("/dev/sda", (make_dev(8, 0), None, None)),
    (" loop0", (make_dev(7, 0), None, None)),
    ("nvme0n1", (make_dev(259, 0), None, None)),
    # Partitions: the parent disk's dev and [start, start + size) sectors.
    ("sda1", (make_dev(8, 0), 2048, 2048 + 1048576)),
    ("/dev/sda2", (make_dev(8, 0), 1050624, 1050624 + 4096)),
    ("nvme0n1p2", (make_dev(259, 0), 1230848, 1230848 + 97656250)),
])
def test_disk_filter(resolver, name, expected):
    assert resolver.disk_filter(name) == expected


@pytest.mark.parametrize("name", ["sdz", "/dev/sdz", "", "..", "/dev/../sda", "sda/../sda1"])
def test_disk_filter_unknown(resolver, name):
    with pytest.raises(BadInput) as e:
        resolver.disk_filter(name)
    assert e.value.what == f"--disk {name}"
    assert str(e.value) == (f"--disk {name}: no such block device "
                            "(known: loop0, nvme0n1, nvme0n1p2, sda, sda1, sda2)")


def test_disk_filter_unknown_lists_at_most_20(resolver, sys_root):
    for i in range(30):
        (sys_root / "class/block" / f"ram{i:02}").mkdir()
    with pytest.raises(BadInput) as e:
        resolver.disk_filter("sdz")
    listed = e.value.fix[len("known: "):].split(", ")
    assert len(listed) == 21 and listed[-1] == "..."


# -- cgroup v2 ids -------------------------------------------------------------

@pytest.fixture
def cg(tmp_path):
    root = tmp_path / "cgroup"
    for d in ("system.slice/cron.service", "user.slice/user-1000.slice/session-1.scope", "init.scope"):
        (root / d).mkdir(parents=True)
    _write(root / "user.slice/cgroup.procs", "")    # files are not cgroups
    return root


def ino(path):
    return os.stat(path).st_ino


@pytest.fixture
def cgr(cg, sys_root, tmp_path):
    return Resolver(sys_root=str(sys_root), proc_root=str(tmp_path / "proc"), cgroup_root=str(cg))


@pytest.mark.parametrize("rel, expected", [
    ("", "/"),
    ("init.scope", "/init.scope"),
    ("system.slice/cron.service", "/system.slice/cron.service"),
    ("user.slice/user-1000.slice/session-1.scope", "/user.slice/user-1000.slice/session-1.scope"),
])
def test_cgroup_path(cgr, cg, rel, expected):
    assert cgr.cgroup_path(ino(cg / rel)) == expected


def test_cgroup_path_unknown(cgr, cg):
    known = {ino(d) for d, _, _ in os.walk(cg)}
    missing = max(known) + 1000
    assert cgr.cgroup_path(missing) == f"cgroup:{missing}"


def test_cgroup_path_pre_5_5_id(cgr, cg):
    # ino | generation << 32, as bpf_get_current_cgroup_id returned before 5.5
    assert cgr.cgroup_path(1 << 32 | ino(cg / "init.scope")) == "/init.scope"


def test_cgroup_path_without_v2(tmp_path):
    _write(tmp_path / "mountinfo", "")
    r = Resolver(sys_root=str(tmp_path), mountinfo=str(tmp_path / "mountinfo"))
    assert r.cgroup_path(1) == "cgroup:1"


def test_cgroup_created_after_walk(cgr, cg):
    assert cgr.cgroup_path(ino(cg)) == "/"
    (cg / "system.slice/new.service").mkdir()
    new = ino(cg / "system.slice/new.service")
    cgr.rewalk_interval = 3600
    assert cgr.cgroup_path(new) == f"cgroup:{new}"     # rate limited
    cgr.rewalk_interval = 0
    assert cgr.cgroup_path(new) == "/system.slice/new.service"


def test_cgroup_removed_still_resolves(cgr, cg):
    gone = ino(cg / "system.slice/cron.service")
    assert cgr.cgroup_path(ino(cg)) == "/"
    (cg / "system.slice/cron.service").rmdir()
    cgr.rewalk_interval = 0
    cgr.cgroup_path(0)     # a miss (no directory has inode 0) forces a re-walk
    assert cgr.cgroup_path(gone) == "/system.slice/cron.service"


# -- --cgroup ------------------------------------------------------------------

@pytest.mark.parametrize("arg, rel, level", [
    ("/", "", 0),
    ("", "", 0),
    ("/user.slice", "user.slice", 1),
    ("user.slice", "user.slice", 1),
    ("/user.slice/user-1000.slice/", "user.slice/user-1000.slice", 2),
    ("user.slice/user-1000.slice/session-1.scope", "user.slice/user-1000.slice/session-1.scope", 3),
    ("./system.slice/../system.slice/cron.service", "system.slice/cron.service", 2),
    ("{cg}", "", 0),
    ("{cg}/", "", 0),
    ("{cg}/system.slice/cron.service", "system.slice/cron.service", 2),
])
def test_cgroup_filter(cgr, cg, arg, rel, level):
    assert cgr.cgroup_filter(arg.format(cg=cg)) == (ino(cg / rel), level)


def test_cgroup_filter_names_the_cgroup_for_display(cgr, cg):
    cgid, _ = cgr.cgroup_filter(f"{cg}/user.slice")
    assert cgr.cgroup_path(cgid) == "/user.slice"


@pytest.mark.parametrize("arg", ["/nope", "user.slice/nope", "user.slice/cgroup.procs", "../../etc"])
def test_cgroup_filter_missing(cgr, cg, arg):
    with pytest.raises(BadInput) as e:
        cgr.cgroup_filter(arg)
    assert str(e.value).startswith(f"--cgroup {arg}: no such cgroup v2 directory under {cg} (")


def test_cgroup_filter_without_v2(tmp_path):
    _write(tmp_path / "mountinfo", V1_ONLY)
    r = Resolver(sys_root=str(tmp_path), mountinfo=str(tmp_path / "mountinfo"))
    with pytest.raises(BadInput) as e:
        r.cgroup_filter("/user.slice")
    assert "cgroup v2 is not mounted" in str(e.value)
    assert "mount -t cgroup2" in e.value.fix


# -- mountinfo -----------------------------------------------------------------

HYBRID = """\
22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
23 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,size=4096k,nr_inodes=1024,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
31 25 0:29 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,blkio
32 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
42 22 0:13 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:18 - tracefs tracefs rw
"""

PURE_V2 = """\
22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
28 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
"""

V1_ONLY = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
"""

# A container's bind mount of a subtree comes first; the whole hierarchy wins.
SUBTREE_FIRST = """\
50 40 0:24 /system.slice/app.service /srv/app/cgroup rw,relatime - cgroup2 cgroup2 rw
51 40 0:24 / /mnt/my\\040cgroups rw,relatime master:3 - cgroup2 cgroup2 rw
"""


@pytest.mark.parametrize("text, expected", [
    (HYBRID, "/sys/fs/cgroup/unified"),
    (PURE_V2, "/sys/fs/cgroup"),
    (V1_ONLY, None),
    ("", None),
    (SUBTREE_FIRST, "/mnt/my cgroups"),
    (SUBTREE_FIRST.splitlines()[0] + "\n", "/srv/app/cgroup"),
])
def test_cgroup_v2_root_from_mountinfo(tmp_path, text, expected):
    _write(tmp_path / "mountinfo", text)
    assert Resolver(mountinfo=str(tmp_path / "mountinfo")).cgroup_v2_root() == expected


def test_cgroup_v2_root_default_mountinfo_is_under_proc_root(tmp_path):
    _write(tmp_path / "proc/self/mountinfo", PURE_V2)
    assert Resolver(proc_root=str(tmp_path / "proc")).cgroup_v2_root() == "/sys/fs/cgroup"
    assert Resolver(proc_root=str(tmp_path / "none")).cgroup_v2_root() is None


def test_cgroup_root_override_wins(tmp_path):
    _write(tmp_path / "mountinfo", HYBRID)
    r = Resolver(mountinfo=str(tmp_path / "mountinfo"), cgroup_root=str(tmp_path))
    assert r.cgroup_v2_root() == str(tmp_path)


# -- processes -----------------------------------------------------------------

HYBRID_PROC_CGROUP = """\
12:blkio:/user.slice
11:memory:/user.slice/user-1000.slice/session-1.scope
10:cpu,cpuacct:/user.slice
9:pids:/user.slice/user-1000.slice/session-1.scope
8:devices:/user.slice
7:freezer:/
6:net_cls,net_prio:/
5:perf_event:/
4:cpuset:/
3:hugetlb:/weird:name
1:name=systemd:/user.slice/user-1000.slice/session-1.scope
0::/user.slice/user-1000.slice/session-1.scope
"""


@pytest.fixture
def proc(tmp_path):
    root = tmp_path / "proc"
    _write(root / "4242/comm", "postgres\n")
    _write(root / "4242/cmdline", b"postgres\0-D\0/var/lib/postgresql/15/main\0")
    _write(root / "4242/cgroup", HYBRID_PROC_CGROUP)
    _write(root / "2/comm", "kthreadd\n")
    _write(root / "2/cmdline", b"")
    _write(root / "2/cgroup", "0::/\n")
    return root


@pytest.fixture
def pr(proc, tmp_path):
    return Resolver(sys_root=str(tmp_path / "sys"), proc_root=str(proc))


def test_live_process(pr):
    assert pr.pid_exists(4242)
    assert pr.comm(4242) == "postgres"
    assert pr.cmdline(4242) == "postgres -D /var/lib/postgresql/15/main"
    assert pr.comm(2) == "kthreadd"
    assert pr.cmdline(2) == ""


def test_remembered_after_exit(pr, proc):
    pr.remember(4242)
    shutil.rmtree(proc / "4242")
    assert not pr.pid_exists(4242)
    assert pr.comm(4242, fallback="?") == "postgres"
    assert pr.cmdline(4242) == "postgres -D /var/lib/postgresql/15/main"
    assert pr.cgroup_v1(4242) == "/user.slice"


def test_zombie_keeps_remembered_cmdline(pr, proc):
    pr.remember(4242)
    _write(proc / "4242/cmdline", b"")
    assert pr.cmdline(4242) == "postgres -D /var/lib/postgresql/15/main"


def test_reused_pid_shows_the_new_process(pr, proc):
    pr.remember(4242)
    _write(proc / "4242/comm", "fio\n")
    assert pr.comm(4242) == "fio"


def test_never_seen(pr):
    assert not pr.pid_exists(999)
    assert not pr.pid_exists(0)
    assert pr.comm(999) == ""
    assert pr.comm(999, fallback="kcomm") == "kcomm"
    assert pr.cmdline(999) == ""
    assert pr.cgroup_v1(999) is None


def test_pid_memory_is_bounded(pr, proc, monkeypatch):
    monkeypatch.setattr(resolve, "PID_CACHE_MAX", 1)
    pr.remember(4242)
    pr.remember(2)
    shutil.rmtree(proc / "4242")
    shutil.rmtree(proc / "2")
    assert pr.comm(4242, fallback="gone") == "gone"
    assert pr.comm(2) == "kthreadd"


@pytest.mark.parametrize("controller, path", [
    ("blkio", "/user.slice"),
    ("memory", "/user.slice/user-1000.slice/session-1.scope"),
    ("cpuacct", "/user.slice"),
    ("net_prio", "/"),
    ("hugetlb", "/weird:name"),
    ("name=systemd", "/user.slice/user-1000.slice/session-1.scope"),
    ("rdma", None),
    ("systemd", None),
])
def test_cgroup_v1(pr, controller, path):
    assert pr.cgroup_v1(4242, controller) == path


def test_cgroup_v1_on_pure_v2(pr):
    assert pr.cgroup_v1(2) is None
