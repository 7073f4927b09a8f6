"""The README's first commands work as root without sudo and as a user with
sudo: each script they start runs itself through sudo only when it is not
root and sudo exists (scripts/lib/root.sh), and says in one line what to do
when neither holds.

The scripts run with a PATH of a fake `id` (the uid the case needs), with or
without a fake `sudo`; IOLTRACE_PRIVILEGES_ONLY=1 makes them say what they
would do and stop, so nothing is installed. No root needed.
"""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASH = "/bin/bash"


def readme_commands():
    """The commands of the README's first sh block: lists of argv, split at &&."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    commands = []
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            commands += [shlex.split(part) for part in line.split("&&")]
    return commands


def fake_path(tmp_path, uid, sudo):
    """A PATH directory: `id` says `uid`; `sudo` (if asked) records its
    arguments in sudo.args; dirname is the real one (the scripts use it)."""
    bin_ = tmp_path / f"bin-{uid}-{sudo}"
    if bin_.exists():
        return str(bin_)
    bin_.mkdir()
    (bin_ / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    if sudo:
        (bin_ / "sudo").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/sudo.args"\n')
    for tool in bin_.iterdir():
        tool.chmod(0o755)
    os.symlink(subprocess.run(["sh", "-c", "command -v dirname"], capture_output=True, text=True).stdout.strip(),
               bin_ / "dirname")
    return str(bin_)


def run(argv, tmp_path, uid, sudo, only=True):
    env = {"PATH": fake_path(tmp_path, uid, sudo), "HOME": str(tmp_path)}
    if only:
        env["IOLTRACE_PRIVILEGES_ONLY"] = "1"
    return subprocess.run([BASH, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_readme_starts_with_two_commands_and_no_sudo():
    commands = readme_commands()
    assert len(commands) >= 2, commands
    assert not any("sudo" in argv for argv in commands), commands
    # Every command is one of the repo's scripts, so the checks below see it.
    assert all((REPO / argv[0]).is_file() and argv[0].startswith("scripts/") for argv in commands), commands


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda a: " ".join(a))
def test_as_root_without_sudo_the_script_runs_itself(argv, tmp_path):
    p = run(argv, tmp_path, 0, sudo=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("run as root: "), p.stdout + p.stderr


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda a: " ".join(a))
def test_as_a_user_with_sudo_the_script_goes_through_sudo(argv, tmp_path):
    p = run(argv, tmp_path, 1000, sudo=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("run through sudo: "), p.stdout + p.stderr
    # For real (the fake sudo runs nothing): the same script and arguments,
    # under bash, with the IOLTRACE_ settings kept across sudo's clean
    # environment.
    env_run = run(argv, tmp_path, 1000, sudo=True, only=False)
    assert env_run.returncode == 0, env_run.stderr
    args = (tmp_path / "sudo.args").read_text().splitlines()
    assert args[:2] == ["--", "env"], args
    tail = args[args.index("bash") + 1:]
    assert tail == argv, args


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda a: " ".join(a))
def test_a_user_without_sudo_gets_one_line(argv, tmp_path):
    p = run(argv, tmp_path, 1000, sudo=False)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "must run as root" in lines[0] and "no sudo" in lines[0], p.stderr
