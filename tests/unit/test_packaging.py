"""The built wheel works on its own: installed into a fresh venv and run from
outside the checkout, it finds its bpf/ sources inside site-packages and its
console script starts.

A checkout hides packaging mistakes, since loader.bpf_dir() falls back to the
repo's bpf/ beside the package; running from "/" in a fresh venv does not.
The venv comes from /usr/bin/python3 because that is the interpreter the
distribution's bcc is installed for, whatever runs pytest.
"""

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
# Generated or local state that must not reach the build: a stale build/ in
# particular would ship files already deleted from the sources.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".hypothesis")


def run(cmd, cwd="/", env=None):
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                                  f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.stdout


def clean_env():
    # Nothing may point the fresh venv back at the checkout.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCES, symlinks=True)
    wheels = tmp_path / "wheels"
    run([SYSTEM_PYTHON, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", wheels, src])
    (wheel,) = wheels.glob("ioltrace-*.whl")

    venv = tmp_path / "venv"
    run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", venv])
    py = venv / "bin" / "python"
    env = clean_env()
    run([py, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", wheel], env=env)

    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env=env).strip())
    out = run([py, "-c", "import ioltrace.loader as l; print(l.bpf_dir())"], env=env)
    bpf = Path(out.strip()).resolve()
    assert bpf.is_relative_to(site.resolve()), f"bpf_dir() is {bpf}, not inside {site}"

    shipped = sorted(p.name for p in bpf.iterdir() if p.suffix in (".c", ".h"))
    expected = sorted(p.name for p in (REPO / "bpf").iterdir() if p.suffix in (".c", ".h"))
    assert {"block.bpf.c", "ioltrace.h"} <= set(shipped)
    assert shipped == expected
    for name in expected:
        assert (bpf / name).read_bytes() == (REPO / "bpf" / name).read_bytes(), f"{name} differs from bpf/{name}"

    proc = subprocess.run([venv / "bin" / "ioltrace", "--help"], cwd="/", env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ioltrace --help exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "usage" in proc.stdout.lower()
