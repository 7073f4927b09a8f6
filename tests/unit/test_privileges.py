"""privileges.py without bcc: choosing the user at start, the textfile check,
and the credential switch itself, done in forked children and read back
from /proc/PID/status (the kernel's word, not ours). The switch needs root:
those tests skip without it (CI runs as root)."""

import os
import pwd
import shutil
import tempfile

import pytest

from ioltrace import privileges as PV
from ioltrace.errors import BadInput

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="switching users needs root")


def test_unknown_user():
    with pytest.raises(BadInput, match="no such user"):
        PV.target("no-such-user-ioltrace")


def test_default_and_root():
    if ROOT:
        t = PV.target(None)
        assert t == PV.Target("nobody", pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
        assert PV.target("root") is None and PV.target("0") is None
    else:
        assert PV.target(None) is None
        with pytest.raises(BadInput, match="needs root"):
            PV.target("root")


@needs_root
def test_textfile_directory_checked_as_the_user(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(BadInput, match=f"not writable by user nobody .*chown nobody {closed}"):
        PV.target("nobody", str(closed))
    open_dir = tempfile.mkdtemp(dir="/dev/shm")
    try:
        os.chown(open_dir, pwd.getpwnam("nobody").pw_uid, -1)
        assert PV.target("nobody", open_dir).name == "nobody"
        assert os.listdir(open_dir) == []       # the probe file is gone
    finally:
        shutil.rmtree(open_dir)


def _child_status(keep):
    """Fork; the child switches to nobody keeping `keep` and waits; the
    parent reads its /proc status, then lets it exit."""
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.close(w2)
        code = 0
        try:
            PV.switch(PV.Target("nobody", pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid), keep)
        except BaseException:
            code = 1
        os.write(w, b"x")
        os.read(r2, 1)
        os._exit(code)
    os.close(w)
    os.close(r2)
    try:
        assert os.read(r, 1) == b"x"
        st = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                st[k] = v.split()
        groups = st.get("Groups", [])
    finally:
        os.write(w2, b"x")
        _, status = os.waitpid(pid, 0)
        os.close(r)
        os.close(w2)
    assert os.waitstatus_to_exitcode(status) == 0
    return st, groups


@needs_root
@pytest.mark.parametrize("keep", [(), (PV.CAP_BPF,)], ids=["none", "cap_bpf"])
def test_switch_leaves_only_what_was_kept(keep):
    if keep and PV.cap_last() < PV.CAP_BPF:
        pytest.skip("kernel without CAP_BPF")
    st, groups = _child_status(keep)
    nobody = pwd.getpwnam("nobody")
    want = sum(1 << c for c in keep)
    assert st["Uid"] == [str(nobody.pw_uid)] * 4 and st["Gid"] == [str(nobody.pw_gid)] * 4
    assert [int(st[k][0], 16) for k in ("CapEff", "CapPrm", "CapBnd")] == [want] * 3
    assert int(st["CapInh"][0], 16) == 0 and int(st["CapAmb"][0], 16) == 0
    assert "0" not in groups     # root's group is gone


def test_read_probe_on_a_file_is_an_error(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x")
    fd = os.open(p, os.O_RDONLY)
    try:
        with pytest.raises(OSError):
            PV.read_probe(fd, None)
    finally:
        os.close(fd)


def test_dropped_describes_itself():
    d = PV.Dropped("nobody", 65534, (PV.CAP_BPF,), "why")
    assert d.describe() == "running as nobody (uid 65534) with capabilities: CAP_BPF (why)"
    assert "capabilities: none" in PV.Dropped("nobody", 65534, (), "why").describe()
