"""`doctor` as a user without privileges: the privileges are named first, in
one line, and nothing that only root can see is blamed on the kernel.

A non-root user gets EPERM from bpf() and cannot look into tracefs (mode
0700), so tracefs "is not there" and bpf() "does not work" for them; the
fake system below is exactly what such a user's process sees."""

import errno

from ioltrace import bpfsys, cli, loader


def _as_unprivileged_user(mp):
    mp.setattr("os.geteuid", lambda: 1000)
    mp.setattr(loader, "effective_caps", lambda: 0)
    mp.setattr(loader, "tracefs", lambda: None)
    mp.setattr(bpfsys, "works", lambda: (False, errno.EPERM))


def test_doctor_unprivileged_names_privileges_first_and_blames_nothing_else(monkeypatch, capsys):
    _as_unprivileged_user(monkeypatch)
    code = cli.main(["doctor"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert code != 0
    assert lines[0].startswith("not privileged") and "CAP_BPF" in lines[0]
    for wrong in ("not mounted", "CONFIG_BPF_SYSCALL", "CONFIG_TRACEPOINTS", "absent", "Operation not permitted"):
        assert wrong not in out, wrong
    assert "unchecked" in out


def test_doctor_privileged_has_no_privilege_line(monkeypatch, capsys):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    cli.main(["doctor"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("requirement")
