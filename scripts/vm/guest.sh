#!/bin/bash
# Runs inside the test guest (started by the image's init, see build-image.sh).
#
# The host shares the repo read-only at /mnt/repo and a results directory at
# /mnt/out, where scripts/vm-test.sh left `mode` (check or test) and
# `pytest-args` (one argument a line). This script reports the kernel, the
# start tracepoint and the headers, then in test mode runs the real-kernel
# tests from a writable copy of the repo with the guest's python3 (which has
# bcc) and CI=true, so a test that cannot run fails instead of skipping.
# It writes its exit code to /mnt/out/status; it never powers off itself.
# Lines starting "IOLTRACE-VM:" are read by the host: keep their wording.
set -u
out=/mnt/out
mode=$(cat "$out/mode" 2>/dev/null || echo check)
say() { echo "IOLTRACE-VM: $*"; }
finish() { echo "$1" >"$out/status"; sync; say "done status=$1"; exit 0; }

say "kernel $(uname -r)"
tfs=/sys/kernel/tracing
if [ ! -d "$tfs/events" ]; then
    mount -t tracefs tracefs "$tfs" 2>/dev/null || { tfs=/sys/kernel/debug/tracing; mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null; }
fi
[ -d "$tfs/events" ] || { say "no tracefs"; finish 3; }

# block_io_start appeared in 6.5; 6.1 has only block_rq_insert.
if [ -d "$tfs/events/block/block_io_start" ]; then start=block_io_start; else start=block_rq_insert; fi
missing=""
for tp in "$start" block_rq_issue block_rq_complete; do
    [ -d "$tfs/events/block/$tp" ] || missing="$missing block:$tp"
done
say "start tracepoint $start"
[ -z "$missing" ] || { say "missing tracepoints:$missing"; finish 3; }

build=/lib/modules/$(uname -r)/build
if [ -f "$build/Makefile" ]; then say "headers $build -> $(readlink -f "$build")"; else say "no headers at $build"; finish 3; fi

# A writable copy: tests and hypothesis write caches next to the sources.
src=/opt/ioltrace  # not /run: initramfs mounts it noexec
mkdir -p "$src"
tar -C /mnt/repo --exclude=./.git --exclude=./.venv --exclude=./.vagrant --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude=.hypothesis -cf - . | tar -C "$src" -xf -
cd "$src" || finish 3
export CI=true PYTHONPATH=$src PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Software emulation runs everything 10-60x slower than the host: the
# tests' timeouts (tests/root/conftest.py) get more room here.
export IOLTRACE_TEST_TIMEOUT_SCALE=$(cat "$out/timeout-scale" 2>/dev/null || echo 4)
# No pip and no network in the guest: the console script is a wrapper.
cat >/usr/local/bin/ioltrace <<'EOF'
#!/bin/sh
exec python3 -c 'import sys; from ioltrace.cli import main; sys.exit(main())' "$@"
EOF
chmod 755 /usr/local/bin/ioltrace

say "bcc $(python3 -c 'import bcc; print(getattr(bcc, "__version__", "?"))' 2>&1 | tail -n 1)"
# What the project's own loader picks, when this checkout has one.
python3 - <<'EOF' 2>&1 | sed 's/^/IOLTRACE-VM: /'
try:
    from ioltrace import headers, loader
except Exception as e:  # the package may be mid-rewrite: report, don't fail
    print(f"ioltrace not importable here: {e}")
else:
    print(f"ioltrace loader picks {loader.start_tracepoint()}")
    try:
        print(f"ioltrace headers {headers.choose().kind}")
    except Exception as e:
        print(f"ioltrace headers: {e}")
EOF

[ "$mode" = test ] || finish 0

mapfile -t args <"$out/pytest-args"
say "running: python3 -m pytest -v -ra ${args[*]}"
t0=$(date +%s)
python3 -m pytest -v -ra -p no:cacheprovider --junitxml="$out/junit.xml" "${args[@]}" 2>&1 | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
say "pytest exit $rc after $(( $(date +%s) - t0 )) s"
finish "$rc"
