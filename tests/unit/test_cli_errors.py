"""Bad command lines end in one 'ioltrace:' line on stderr and exit code 2,
in-process and as a real process, and never get as far as tracing.

CI runs this as root with bcc installed, so a case that slipped past
validation would really trace: in-process the Tracer is replaced by a stub
that fails the test, and subprocesses have a timeout.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ioltrace import cli, loader

REPO = Path(__file__).resolve().parents[2]
NO_PID = 4_000_000  # <= PID_MAX_LIMIT (4194304), so only the existence check rejects it
NO_DIR = "/nonexistent-dir"

CASES = {
    "no_command": [],
    "unknown_command": ["nope"],
    "unknown_option": ["--nope"],
    "interval_text": ["hist", "abc"],
    "interval_zero": ["hist", "0"],
    "interval_negative": ["hist", "-1"],
    "count_zero": ["hist", "1", "0"],
    "count_text": ["hist", "1", "x"],
    "by": ["hist", "--by", "nope"],
    "op": ["hist", "--op", "nope"],
    "pid_zero": ["hist", "--pid", "0"],
    "pid_huge": ["hist", "--pid", "99999999"],
    "pid_missing": ["hist", "--pid", str(NO_PID)],
    "comm_16": ["hist", "--comm", "a" * 16],
    "comm_16_bytes_8_chars": ["hist", "--comm", "é" * 8],
    "disk": ["hist", "--disk", "nosuchdisk"],
    "cgroup": ["hist", "--cgroup", "/no/such/cgroup"],
    "csv_no_dir": ["hist", "--csv", f"{NO_DIR}/x.csv"],
    "csv_is_dir": ["hist", "--csv", "{dir}"],
    "disk_newline": ["hist", "--disk", "no\nsuch"],
    # One file for both recordings would interleave CSV and JSON lines.
    "csv_json_same": ["hist", "--csv", "{dir}/x", "--json", "{dir}/x"],
    "csv_json_same_spelled_apart": ["top", "-b", "--csv", "{dir}/x", "--json", "{dir}/../adir/./x"],
    "csv_json_both_stdout": ["run", "--csv", "-", "--json", "-", "--", "true"],
}
EXPECT = {"pid_missing": "no such process", "csv_no_dir": f"{NO_DIR}/x.csv", "disk": "nosuchdisk",
          "cgroup": "/no/such/cgroup", "csv_json_same": "same file", "csv_json_both_stdout": "same stdout", "comm_16": "15 bytes", "comm_16_bytes_8_chars": "15 bytes"}


def params():
    for name in CASES:
        yield pytest.param(name, id=name)


@pytest.fixture(autouse=True)
def no_tracing(monkeypatch):
    def tracer(*a, **kw):
        pytest.fail("tracing started: validation let a bad command line through")
    monkeypatch.setattr(loader, "Tracer", tracer)
    assert not os.path.exists(f"/proc/{NO_PID}") and not os.path.exists(NO_DIR)


def argv_for(name, tmp_path):
    d = tmp_path / "adir"
    d.mkdir(exist_ok=True)
    return [a.replace("{dir}", str(d)) for a in CASES[name]], d


def check(name, rc, out, err, tmp_path, d):
    assert "Traceback" not in out + err
    assert rc == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("ioltrace:")
    if name in EXPECT:
        assert EXPECT[name] in lines[0]
    if name == "csv_is_dir":
        assert str(d) in lines[0]
    # No recording file was created anywhere.
    assert not os.path.exists(NO_DIR) and list(d.iterdir()) == []


@pytest.mark.parametrize("name", params())
def test_in_process(name, tmp_path, capsys, monkeypatch):
    argv, d = argv_for(name, tmp_path)
    monkeypatch.chdir(d)    # a relative path ("-" taken for a file name) would land in d
    rc = cli.main(argv)
    cap = capsys.readouterr()
    check(name, rc, cap.out, cap.err, tmp_path, d)


def run(argv, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))))
    return subprocess.run([sys.executable, "-m", "ioltrace.cli", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.mark.parametrize("name", params())
def test_subprocess(name, tmp_path):
    argv, d = argv_for(name, tmp_path)
    p = run(argv, cwd=d)    # as in-process: a file made by mistake would land in d
    check(name, p.returncode, p.stdout, p.stderr, tmp_path, d)


@pytest.mark.parametrize("argv", [["--help"], ["hist", "--help"]])
def test_help_subprocess(argv):
    p = run(argv)
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout.startswith("usage: ioltrace")
    if argv[0] == "hist":
        assert "examples:" in p.stdout


@pytest.mark.parametrize("argv", [["--help"], ["hist", "--help"], ["--version"]])
def test_help_in_process_returns_0(argv, capsys):
    rc = cli.main(argv)
    assert rc == 0 and capsys.readouterr().out.startswith(("usage: ioltrace", "ioltrace "))
