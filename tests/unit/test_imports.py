"""The allowed import directions (pyproject.toml, [tool.importlinter]) hold.

import-linter builds the real import graph of ioltrace/ (every import
statement, direct and indirect chains) and checks each contract: only
loader imports bcc; cli -> commands -> session -> loader -> fold -> maps ->
layers -> layout, never upwards; views, exporters and offline code never
reach commands or tracing; exporters never import views; commands do not
import one another; webconfig and privileges stand alone, and only webconfig
imports yaml and bcrypt. A new arrow against them fails here, naming the chain.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def lint_imports():
    """lint-imports of this Python's environment (scripts/setup.sh --test installs it)."""
    here = Path(sys.executable).parent / "lint-imports"
    found = str(here) if here.exists() else shutil.which("lint-imports")
    assert found, "lint-imports is missing: pip install import-linter (scripts/setup.sh --test does)"
    return found


def run(config=None):
    argv = [lint_imports(), "--no-cache"] + (["--config", str(config)] if config else [])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    p = run()
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


def test_a_broken_contract_fails(tmp_path):
    """The check can fail: the same contracts plus one the code breaks
    (views import fmt, so forbidding it must be reported)."""
    text = (REPO / "pyproject.toml").read_text()
    cfg = tmp_path / "contracts.toml"
    cfg.write_text(text + '\n[[tool.importlinter.contracts]]\nname = "views never import fmt"\ntype = "forbidden"\n'
                   'source_modules = ["ioltrace.views"]\nforbidden_modules = ["ioltrace.fmt"]\n')
    p = run(cfg)
    assert p.returncode != 0
    assert "views never import fmt BROKEN" in p.stdout
