#!/bin/bash
# Runs ioltrace's real-kernel tests on a second kernel: a Debian 12 guest (6.1)
# booted with qemu, next to the host's own kernel.
#
# usage: scripts/vm-test.sh [--check] [--rebuild] [--build-only] [-- PYTEST_ARGS...]
#
#   (default)     boot the guest and run `python3 -m pytest -v -ra tests/root`
#                 there with CI=true, less the stress tests (see below);
#                 PYTEST_ARGS replace that selection
#   --check       boot and report kernel, start tracepoint and headers only
#   --build-only  build (or reuse) the cached image and stop
#   --rebuild     build the image again even when the cached one is current
#
# The image (scripts/vm/build-image.sh, debootstrap + packages.txt) is cached
# under $IOLTRACE_VM_CACHE and rebuilt only when build-image.sh or
# packages.txt change. The repo is shared read-only over 9p, results come back
# through a second 9p share and the serial console; the guest has no network.
#
# Exit status, each with one "vm-test: FAIL ..." line saying which:
#   0 passed   1 the guest's tests failed (their names are printed)
#   2 the guest could not boot   3 the guest did not finish within the limit
#   4 the guest stopped without a result   5 image build or host set-up failed
#
# Environment:
#   IOLTRACE_VM_CACHE         image cache (${XDG_CACHE_HOME:-~/.cache}/ioltrace/vm)
#   IOLTRACE_VM_TIMEOUT       s from boot to result (3600: the guest's tests take 12-14 min on a quiet machine, over 30 beside stress-ng --cpu 2 --io 1; --check: 300)
#   IOLTRACE_VM_BOOT_TIMEOUT  s from qemu start to the guest's init (300)
#   IOLTRACE_VM_MEMORY        guest MiB (3072)       IOLTRACE_VM_CPUS  guest CPUs (2)
#   IOLTRACE_VM_ACCEL         auto, kvm or tcg (auto: KVM if it boots the guest, else TCG)
#   IOLTRACE_VM_LOGDIR        keep serial.log, pytest.log and junit.xml here
#   IOLTRACE_VM_MIRROR, IOLTRACE_VM_SUITE  passed to build-image.sh
#   IOLTRACE_TEST_TIMEOUT_SCALE  the guest's test timeout scale (default 4)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
vmdir=$repo/scripts/vm
mode="test"
rebuild=0
build_only=0
pytest_args=()
while [ $# -gt 0 ]; do
    case $1 in
        --check) mode=check ;;
        --rebuild) rebuild=1 ;;
        --build-only) build_only=1 ;;
        --) shift; pytest_args=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "vm-test: unknown argument $1 (see --help)" >&2; exit 5 ;;
    esac
    shift
done
# The stress tests stay on the host: continuous dd writers on a loop device
# that goes through the page cache (Debian 12's tmpfs has no O_DIRECT) soft-
# lock the 6.1 guest's CPUs under software emulation (watchdog: "soft lockup
# - CPU#0 stuck for 22s! [dd]"), whether traced or not matters little there.
# The churn test's 20,000 forks would take most of an hour under emulation.
# Also host-only, to keep the guest's run short (each ioltrace start takes
# 7-12 s under emulation, bcc's compile and Python's start): the tests of what user space does the same on
# any kernel once the probes count: the terminal UI (tmux), serve's signal
# handling and per-process labels, the JSON lines format, top's batch table,
# and run --plot (matplotlib, which the guest image does not carry); of
# snoop, all but its count against the disk's and its rwbs against the
# kernel's (the ring buffer, threshold and exports work alike on any kernel).
# Every test that attaches a different set of probes, reads a kernel-specific
# file (cgroup v1/v2, loop devices, errors) or checks counts against the
# kernel's runs in the guest.
# cgroup_v1_names needs a v1 blkio hierarchy, which the guest's
# unified v2 hierarchy does not have (its v2 cases run in the guest).
host_only="signals or kill_9 or soak or churn or real_terminal or textfile_and_listener or test_json_lines
    or per_process_series or top_batch or cgroup_v1_names or test_run_plot
    or (test_snoop and not every_completed_request and not raw_rwbs)"
[ ${#pytest_args[@]} -gt 0 ] || pytest_args=(tests/root -k "not (${host_only//$'\n'/ })")

cache=${IOLTRACE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ioltrace/vm}
suite=${IOLTRACE_VM_SUITE:-bookworm}
memory=${IOLTRACE_VM_MEMORY:-3072}
cpus=${IOLTRACE_VM_CPUS:-2}
accel=${IOLTRACE_VM_ACCEL:-auto}
boot_timeout=${IOLTRACE_VM_BOOT_TIMEOUT:-300}
if [ "$mode" = check ]; then timeout=${IOLTRACE_VM_TIMEOUT:-300}; else timeout=${IOLTRACE_VM_TIMEOUT:-3600}; fi
for setting in "memory=$memory" "cpus=$cpus" "boot_timeout=$boot_timeout" "timeout=$timeout"; do
    case ${setting#*=} in
        ''|*[!0-9]*|0) echo "vm-test: $setting: must be a positive integer (see --help)" >&2; exit 5 ;;
    esac
done
# Under KVM the guest reaches its init in a few seconds; a KVM that has not
# got there by then is one that cannot boot this kernel.
kvm_probe_s=30

say() { echo "vm-test: $*"; }
fail() { local code=$1; shift; echo "vm-test: FAIL ($*)" >&2; exit "$code"; }
now() { date +%s; }

tmp=""
qpid=""
tailpid=""
cleanup() {
    local rc=$?
    stop_qemu
    if [ -n "$tmp" ] && [ -n "${IOLTRACE_VM_LOGDIR:-}" ]; then
        mkdir -p "$IOLTRACE_VM_LOGDIR"
        cp "$tmp/serial.log" "$tmp/out/pytest.log" "$tmp/out/junit.xml" "$IOLTRACE_VM_LOGDIR/" 2>/dev/null || true
    fi
    [ -n "$tmp" ] && rm -rf --one-file-system "$tmp"
    exit "$rc"
}
stop_qemu() {
    # $qpid is the subshell that waits for qemu; qemu.pid is qemu itself.
    local pids=()
    if [ -n "$qpid" ]; then
        pids=("$qpid")
        [ -s "$tmp/qemu.pid" ] && pids+=("$(cat "$tmp/qemu.pid")")
        kill -TERM "${pids[@]}" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "${pids[@]}" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "${pids[@]}" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
    qpid=""
    rm -f "$tmp/qemu.pid"
    if [ -n "$tailpid" ]; then
        kill "$tailpid" 2>/dev/null || true
        wait "$tailpid" 2>/dev/null || true
        tailpid=""
    fi
}
trap cleanup EXIT
trap 'echo; say "interrupted"; exit 130' INT
trap 'exit 143' TERM HUP

# --- image -------------------------------------------------------------------
key=$( (cat "$vmdir/build-image.sh" "$vmdir/packages.txt"; echo "$suite") | sha256sum | cut -c1-12)
img=$cache/$suite-$key
mkdir -p "$cache"
if [ "$rebuild" = 1 ] || [ ! -f "$img/root.img" ]; then
    [ "$(id -u)" = 0 ] || fail 5 "building the image needs root (debootstrap)"
    command -v debootstrap >/dev/null || fail 5 "debootstrap not found: apt-get install debootstrap"
    exec 9>"$cache/.lock"
    flock 9
    if [ "$rebuild" = 1 ] || [ ! -f "$img/root.img" ]; then
        rm -rf --one-file-system "$img"
        # Other keys are images of older package lists: nothing uses them.
        for old in "$cache/$suite"-*; do [ -d "$old" ] && rm -rf --one-file-system "$old"; done
        say "building the $suite image in $img (about 3 min)"
        t0=$(now)
        "$vmdir/build-image.sh" "$img" "$cache/debs" || fail 5 "image build failed"
        say "image built in $(( $(now) - t0 )) s"
    fi
    flock -u 9
else
    say "image $img (cached; --rebuild to build again)"
fi
sed 's/^/vm-test: image /' "$img/manifest.txt" | head -n 3
[ "$build_only" = 0 ] || exit 0

# --- boot --------------------------------------------------------------------
command -v qemu-system-x86_64 >/dev/null || fail 5 "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
case $accel in
    auto)
        if [ -w /dev/kvm ] && [ ! -e "$cache/kvm-fails-$(uname -r)" ]; then accel=kvm; probe=1; else accel=tcg; probe=0; fi ;;
    kvm|tcg) probe=0 ;;
    *) fail 5 "IOLTRACE_VM_ACCEL must be auto, kvm or tcg, not $accel" ;;
esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ioltrace-vm.XXXXXX")

# Starts qemu in the background; $1 is kvm or tcg.
start_qemu() {
    local a=$1
    rm -rf "$tmp/out"; mkdir -p "$tmp/out"
    : >"$tmp/serial.log"
    echo "$mode" >"$tmp/out/mode"
    printf '%s\n' "${pytest_args[@]}" >"$tmp/out/pytest-args"
    [ -z "${IOLTRACE_TEST_TIMEOUT_SCALE:-}" ] || echo "$IOLTRACE_TEST_TIMEOUT_SCALE" >"$tmp/out/timeout-scale"
    # shellcheck disable=SC2054  # the commas belong to qemu's option syntax
    local accel_opts=(-accel tcg,thread=multi -cpu max)
    [ "$a" = kvm ] && accel_opts=(-accel kvm -cpu host)
    # snapshot=on: the guest's writes go to a throw-away overlay in $TMPDIR,
    # so the cached image stays as built.
    # In a subshell whose stderr is closed, so that bash's own "Aborted" line
    # for a qemu that dies of a signal (KVM probe) does not reach the user.
    (TMPDIR=$tmp qemu-system-x86_64 -name ioltrace-vm -nodefaults -nographic -no-reboot \
        "${accel_opts[@]}" -smp "$cpus" -m "$memory" \
        -kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 quiet loglevel=4 panic=-1 init=/sbin/ioltrace-vm-init" \
        -drive "file=$img/root.img,format=raw,if=virtio,snapshot=on" \
        -virtfs "local,path=$repo,mount_tag=repo,security_model=none,readonly=on" \
        -virtfs "local,path=$tmp/out,mount_tag=out,security_model=none" \
        -serial "file:$tmp/serial.log" -monitor none -pidfile "$tmp/qemu.pid" \
        </dev/null >"$tmp/qemu.log" 2>&1; true) 2>/dev/null &
    qpid=$!
    tail -n +1 -F --pid="$qpid" "$tmp/serial.log" 2>/dev/null \
        | sed -u -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' -e 's/^/guest| /' &
    tailpid=$!
}
booted() { grep -q "IOLTRACE-VM: booted" "$tmp/serial.log" 2>/dev/null; }

say "booting with $accel: $cpus CPUs, $memory MiB, mode $mode"
t_start=$(now)
start_qemu "$accel"
t_boot=""
while :; do
    if [ -z "$t_boot" ] && booted; then
        t_boot=$(now)
        say "guest booted in $(( t_boot - t_start )) s ($accel)"
    fi
    [ -f "$tmp/out/status" ] && break
    alive=1
    kill -0 "$qpid" 2>/dev/null || alive=0
    if [ -z "$t_boot" ] && [ "$probe" = 1 ] && { [ "$alive" = 0 ] || [ $(( $(now) - t_start )) -ge "$kvm_probe_s" ]; }; then
        stop_qemu
        # Seen here: nested KVM either aborts ("failed to set MSR 0x10a") or
        # hangs right after the kernel is decompressed.
        say "KVM did not boot the guest ($(grep -m1 -i error "$tmp/qemu.log" || echo "no init within $kvm_probe_s s")): using TCG from now on (remembered in $cache)"
        : >"$cache/kvm-fails-$(uname -r)"
        accel=tcg; probe=0; t_start=$(now)
        start_qemu tcg
        continue
    fi
    if [ "$alive" = 0 ]; then
        sleep 1  # let tail print the last lines
        break
    fi
    if [ -z "$t_boot" ] && [ $(( $(now) - t_start )) -ge "$boot_timeout" ]; then
        stop_qemu
        tail -n 20 "$tmp/qemu.log" >&2
        fail 2 "guest could not boot: no init within $boot_timeout s ($accel)"
    fi
    if [ -n "$t_boot" ] && [ $(( $(now) - t_boot )) -ge "$timeout" ]; then
        stop_qemu
        last=$(tr -d '\r' <"$tmp/serial.log" | grep -o '^tests/[^ ]*::[^ ]*' | tail -n 1 || true)
        [ -z "$last" ] || say "the guest was running $last"
        fail 3 "guest did not finish within $timeout s (IOLTRACE_VM_TIMEOUT)"
    fi
    sleep 0.5
done
t_end=$(now)
# The guest powers itself off after writing status; give it a moment, then
# stop_qemu (also run by the EXIT trap) takes care of one that hangs.
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qpid" 2>/dev/null || break; sleep 0.5; done
stop_qemu

if [ -z "$t_boot" ]; then
    tail -n 20 "$tmp/qemu.log" >&2
    fail 2 "guest could not boot: qemu exited before the guest's init ran ($accel)"
fi
if [ ! -f "$tmp/out/status" ]; then
    fail 4 "guest stopped after $(( t_end - t_boot )) s without a result (kernel panic or init failure: see the guest| lines)"
fi
status=$(cat "$tmp/out/status")
kernel=$(sed -n 's/^IOLTRACE-VM: kernel //p' "$tmp/serial.log" | tr -d '\r' | head -n 1)
start=$(sed -n 's/^IOLTRACE-VM: start tracepoint //p' "$tmp/serial.log" | tr -d '\r' | head -n 1)
say "guest kernel ${kernel:-?}, start tracepoint ${start:-?}"
say "timings: boot $(( t_boot - t_start )) s, $mode $(( t_end - t_boot )) s, total $(( t_end - t_start )) s ($accel)"
case $status in
    0) say "PASS ($mode on ${kernel:-?})" ;;
    5) fail 1 "the guest's pytest collected no tests from: ${pytest_args[*]}" ;;
    *)
        if [ "$mode" = test ] && [ -f "$tmp/out/pytest.log" ]; then
            failed=$(grep -E '^(FAILED|ERROR) ' "$tmp/out/pytest.log" || true)
            if [ -n "$failed" ]; then
                echo "vm-test: failing tests in the guest:" >&2
                printf '  %s\n' "${failed//$'\n'/$'\n'  }" >&2
            fi
            fail 1 "the guest's tests failed: pytest exit $status on ${kernel:-?}"
        fi
        fail 1 "the guest's $mode failed with status $status on ${kernel:-?}"
        ;;
esac
