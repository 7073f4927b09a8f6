"""`doctor` run by a real unprivileged user (nobody) on this kernel, where
root sees bpf(), tracefs and the block tracepoints working: the user is told
about privileges first, and no requirement root has is reported missing."""

import os
import subprocess
import sys

from .conftest import REPO


def test_doctor_as_nobody_blames_privileges_not_the_kernel():
    root_view = subprocess.run([sys.executable, "-m", "ioltrace", "doctor"], cwd=REPO, capture_output=True, text=True)
    assert root_view.returncode == 0, root_view.stdout   # the ground truth: this host has everything

    def drop():
        os.setgid(65534)
        os.setuid(65534)

    p = subprocess.run([sys.executable, "-m", "ioltrace", "doctor"], cwd=REPO, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}, preexec_fn=drop, timeout=120)
    assert p.returncode != 0
    first = p.stdout.splitlines()[0]
    assert first.startswith("not privileged") and "uid 65534" in first, p.stdout
    for wrong in ("not mounted", "CONFIG_", "absent"):
        assert wrong not in p.stdout, (wrong, p.stdout)
    assert "Traceback" not in p.stderr
