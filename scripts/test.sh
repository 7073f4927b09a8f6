#!/usr/bin/env bash
# The test command: prepare the machine (scripts/setup.sh --test, quick when
# nothing changed), run the real-kernel tests in a Debian 12 guest (kernel
# 6.1, scripts/vm-test.sh), then every test on this machine's kernel with the
# venv's interpreter, which sees the distribution's bcc. Extra arguments go
# to the host's pytest (e.g. -k hist, tests/unit). IOLTRACE_VM_TEST=0 skips
# the guest (it takes about 12 minutes); CI never does.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# As root; a user with sudo runs it through sudo.
# shellcheck source=scripts/lib/root.sh
. "$REPO/scripts/lib/root.sh"
run_as_root "$0" "$@"
VENV=${IOLTRACE_VENV:-$REPO/.venv}

bash "$REPO/scripts/setup.sh" --test
cd "$REPO"

vm_rc=0
if [[ ${IOLTRACE_VM_TEST:-1} != 0 || ${CI:-} == true ]]; then
    start=$SECONDS
    bash "$REPO/scripts/vm-test.sh" || vm_rc=$?
    echo "vm-test: exit $vm_rc after $((SECONDS - start)) s"
else
    echo "vm-test: skipped (IOLTRACE_VM_TEST=0)"
fi

host_rc=0
"$VENV/bin/python" -m pytest -v -ra tests "$@" || host_rc=$?
if ((vm_rc)); then
    echo "test.sh: the tests in the 6.1 guest failed (vm-test exit $vm_rc, see above)" >&2
    exit "$vm_rc"
fi
exit "$host_rc"
