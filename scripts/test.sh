#!/usr/bin/env bash
# The test command: prepare the machine (scripts/setup.sh --test, quick when
# nothing changed), run the real-kernel tests in a Debian 12 guest (kernel
# 6.1, scripts/vm-test.sh), then every test on this machine's kernel with the
# venv's interpreter, which sees the distribution's bcc. Extra arguments go
# to the host's pytest (e.g. -k hist, tests/unit). IOLTRACE_VM_TEST=0 skips
# the guest (it takes about 10 minutes, beside the host's tests); CI never does.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# As root; a user with sudo runs it through sudo.
# shellcheck source=scripts/lib/root.sh
. "$REPO/scripts/lib/root.sh"
run_as_root "$0" "$@"
VENV=${IOLTRACE_VENV:-$REPO/.venv}

bash "$REPO/scripts/setup.sh" --test
cd "$REPO"

# The guest's tests (about 9 minutes under qemu's software emulation, most
# of it waiting on compiles) run beside the host's (about 7): the whole run
# takes the longer of the two, not their sum. The guest's output is kept in a
# file and printed after the host's, so neither interleaves with the other.
vm_rc=0 vm_pid= vm_log=
stop_guest() {
    if [[ -n $vm_pid ]] && kill -0 "$vm_pid" 2>/dev/null; then
        kill -TERM "$vm_pid" 2>/dev/null || true
        wait "$vm_pid" 2>/dev/null || true
    fi
    [[ -z $vm_log ]] || rm -f "$vm_log"
}
trap stop_guest EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
if [[ ${IOLTRACE_VM_TEST:-1} != 0 || ${CI:-} == true ]]; then
    vm_log=$(mktemp "${TMPDIR:-/tmp}/ioltrace-vm-test.XXXXXX")
    start=$SECONDS
    bash "$REPO/scripts/vm-test.sh" > "$vm_log" 2>&1 &
    vm_pid=$!
    echo "vm-test: the guest's tests run in the background; their output follows the host's"
else
    echo "vm-test: skipped (IOLTRACE_VM_TEST=0)"
fi

host_rc=0
# Tests marked guest_only need what only the guest has (cgroup v2 with the
# io and memory controllers): vm-test.sh runs them there.
"$VENV/bin/python" -m pytest -v -ra -m "not guest_only" tests "$@" || host_rc=$?
echo "host tests: exit $host_rc"
if [[ -n $vm_pid ]]; then
    wait "$vm_pid" || vm_rc=$?
    vm_pid=
    cat "$vm_log"
    echo "vm-test: exit $vm_rc after $((SECONDS - start)) s"
fi
if ((vm_rc)); then
    echo "test.sh: the tests in the 6.1 guest failed (vm-test exit $vm_rc, see above)" >&2
    exit "$vm_rc"
fi
exit "$host_rc"
