#!/usr/bin/env bash
# The test command: prepare the machine (scripts/setup.sh, quick when nothing
# changed), then run every test with the venv's interpreter, which sees the
# distribution's bcc. Extra arguments go to pytest (e.g. -k hist, tests/unit).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${IOLTRACE_VENV:-$REPO/.venv}

bash "$REPO/scripts/setup.sh" --test
cd "$REPO"
exec "$VENV/bin/python" -m pytest -v -ra tests "$@"
