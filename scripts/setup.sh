#!/usr/bin/env bash
# Prepare this machine to run and test ioltrace: distribution packages (bcc
# comes only from there), kernel headers, tracefs, and a venv that sees the
# distribution's bcc. Safe to run again: each step does nothing when its work
# is already done. Debian 12 and Ubuntu 22.04/24.04, as root (a user with
# sudo: it runs itself through sudo). --test adds what the tests need.
#
# Options: --test     also what the tests need
#          --service  also install packaging/ioltrace.service (not enabled)
# Environment: IOLTRACE_VENV  where the venv lives (default <repo>/.venv)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/root.sh
. "$REPO/scripts/lib/root.sh"
run_as_root "$0" "$@"
VENV=${IOLTRACE_VENV:-$REPO/.venv}
# The distribution's interpreter is the one python3-bpfcc installs bcc for;
# a python3 earlier on PATH (pyenv, conda) cannot import it.
SYSPY=/usr/bin/python3

say() { printf '==> %s\n' "$*"; }
warn() { printf 'setup.sh: warning: %s\n' "$*" >&2; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

want_test=false
want_service=false
for arg in "$@"; do
    case $arg in
        --test) want_test=true ;;
        --service) want_service=true ;;
        *) printf 'setup.sh: unknown option %s (known: --test, --service)\n' "$arg" >&2; exit 2 ;;
    esac
done

[[ -r /etc/os-release ]] || die "no /etc/os-release: only Debian and Ubuntu are supported"
# shellcheck disable=SC1091
. /etc/os-release
is_ubuntu=false
[[ ${ID:-} == ubuntu || " ${ID_LIKE:-} " == *" ubuntu "* ]] && is_ubuntu=true
command -v apt-get >/dev/null || die "apt-get not found: only Debian and Ubuntu are supported"

# ---- distribution packages -------------------------------------------------

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q -o DPkg::Lock::Timeout=300)
apt_updated=false

apt_update_once() {
    $apt_updated && return 0
    say "apt-get update"
    apt-get "${APT_OPTS[@]}" update >/dev/null
    apt_updated=true
}

installed() {
    [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) == "ii " ]]
}

# True when apt can install the package (it has a candidate version).
available() {
    local cand
    cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }')
    [[ -n $cand && $cand != "(none)" ]]
}

# apt-cache answers from the package lists; a fresh image may have none.
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt_update_once
fi

# matplotlib: `ioltrace plot`, a README feature; yaml and bcrypt: serve --web-config.
BASE_PKGS=(python3-bpfcc python3-venv python3-pip python3-numpy python3-tabulate python3-matplotlib
           python3-yaml python3-bcrypt fio gcc)
# What only the tests need (scripts/test.sh passes --test): ground truth and
# harnesses, CPU load (stress-ng), a real Prometheus, and the VM test's qemu,
# debootstrap and vagrant.
TEST_PKGS=(python3-pytest python3-hypothesis bpftrace tmux fdisk e2fsprogs stress-ng
           prometheus python3-prometheus-client openssl systemd qemu-system-x86 qemu-utils debootstrap vagrant vagrant-libvirt)
if $want_test; then
    BASE_PKGS+=("${TEST_PKGS[@]}")
fi

# Headers for the running kernel when the distribution packages them;
# otherwise the generic metapackage, which ioltrace/headers.py assembles
# into its cache (tracepoint arguments need no exact headers).
headers_pkg() {
    local exact arch
    exact="linux-headers-$(uname -r)"
    if installed "$exact" || available "$exact"; then
        echo "$exact"
        return
    fi
    arch=$(dpkg --print-architecture)
    if $is_ubuntu; then
        echo linux-headers-generic
    else
        echo "linux-headers-$arch"
    fi
}

# Debian ships bpftool on its own; Ubuntu 22.04/24.04 ship it only inside
# linux-tools-common (a wrapper) plus the per-kernel linux-tools package.
bpftool_pkgs() {
    if installed bpftool || available bpftool; then
        echo bpftool
    elif available "linux-tools-$(uname -r)"; then
        echo linux-tools-common "linux-tools-$(uname -r)"
    elif available linux-tools-generic; then
        echo linux-tools-common linux-tools-generic
    fi
}

missing_pkgs() {
    local p hdr
    hdr=$(headers_pkg)
    # shellcheck disable=SC2046  # word splitting of package names is wanted
    for p in "${BASE_PKGS[@]}" "$hdr" $(bpftool_pkgs); do
        installed "$p" || echo "$p"
    done
}

say "checking distribution packages"
mapfile -t missing < <(missing_pkgs)
if ((${#missing[@]})); then
    # Lists may be stale or lack the running kernel's headers: refresh, then
    # choose again.
    apt_update_once
    mapfile -t missing < <(missing_pkgs)
fi
if ((${#missing[@]})); then
    say "apt-get install ${missing[*]}"
    # No recommends: prometheus would pull node-exporter, qemu a desktop stack.
    apt-get "${APT_OPTS[@]}" install --no-install-recommends "${missing[@]}" >/dev/null
    # The tests start their own Prometheus on loopback; the package's service
    # would listen on every interface.
    if command -v systemctl >/dev/null && systemctl is-enabled prometheus >/dev/null 2>&1; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi
if [[ -z $(bpftool_pkgs) ]]; then
    warn "no bpftool package found; ioltrace does not need it, debugging does"
fi

# ---- tracefs ---------------------------------------------------------------

# Looking into debugfs's tracing/ also automounts tracefs there if it can.
if [[ -d /sys/kernel/tracing/events || -d /sys/kernel/debug/tracing/events ]]; then
    say "tracefs is mounted"
else
    say "mounting tracefs at /sys/kernel/tracing"
    mount -t tracefs tracefs /sys/kernel/tracing ||
        warn "could not mount tracefs; ioltrace will not trace until it is mounted"
fi

# ---- venv ------------------------------------------------------------------

venv_ok() {
    [[ -x $VENV/bin/python && -f $VENV/pyvenv.cfg ]] || return 1
    [[ $(readlink -f "$VENV/bin/python") == "$(readlink -f "$SYSPY")" ]] || return 1
    grep -Eq '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" || return 1
    (cd / && "$VENV/bin/python" -c 'import bcc') >/dev/null 2>&1
}

if venv_ok; then
    say "venv $VENV is ready"
else
    if [[ -e $VENV ]]; then
        # Never delete something that is not a venv (IOLTRACE_VENV could be
        # pointed anywhere).
        if [[ ! -f $VENV/pyvenv.cfg && -n $(ls -A "$VENV" 2>/dev/null) ]]; then
            die "$VENV exists and is not a venv; move it away or set IOLTRACE_VENV"
        fi
        say "recreating venv $VENV (not made from $SYSPY with system site-packages, or no bcc)"
        rm -rf -- "$VENV"
    else
        say "creating venv $VENV"
    fi
    "$SYSPY" -m venv --system-site-packages "$VENV"
fi

if ! (cd / && "$VENV/bin/python" -c 'import bcc') >/dev/null 2>&1; then
    die "$VENV/bin/python cannot import bcc. It comes only from the distribution package
python3-bpfcc for $SYSPY ($("$SYSPY" -V 2>&1)); check 'dpkg -L python3-bpfcc'.
Never 'pip install bcc': that PyPI project is unrelated."
fi

# Fingerprint of everything that goes into the package, so that a second run
# with unchanged sources skips the reinstall.
src_hash() {
    local p paths=()
    for p in pyproject.toml setup.cfg setup.py MANIFEST.in README* LICENSE* ioltrace bpf; do
        [[ -e $REPO/$p ]] && paths+=("$p")
    done
    (cd "$REPO" &&
        find "${paths[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

stamp=$VENV/.ioltrace-src-sha256
want=$(src_hash)
if [[ -f $stamp && $(<"$stamp") == "$want" && -x $VENV/bin/ioltrace ]] &&
    (cd / && "$VENV/bin/python" -c 'import ioltrace') >/dev/null 2>&1; then
    say "ioltrace in the venv is up to date"
else
    say "installing ioltrace from $REPO into the venv"
    # Build from a copy: pip builds in-tree, and a stale build/ in the checkout
    # could ship files that were deleted from the sources.
    tmp=$(mktemp -d)
    trap 'rm -rf -- "$tmp"' EXIT
    mkdir "$tmp/src"
    excludes=(--exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist
              --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache
              --exclude=.hypothesis)
    if [[ $VENV == "$REPO"/* ]]; then
        excludes+=("--exclude=./${VENV#"$REPO"/}")
    fi
    tar -C "$REPO" "${excludes[@]}" -cf - . | tar -C "$tmp/src" -xf -
    pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade)
    if ! "${pip[@]}" "$tmp/src" >"$tmp/pip.log" 2>&1; then
        # Without PyPI the isolated build cannot fetch setuptools; the
        # distribution's setuptools (seen through system site-packages) can.
        say "retrying with --no-build-isolation"
        if ! "${pip[@]}" --no-build-isolation "$tmp/src"; then
            cat "$tmp/pip.log" >&2
            die "pip could not install ioltrace from $REPO (first attempt's log above)"
        fi
    fi
    echo "$want" >"$stamp"
fi

for spec in pytest:pytest hypothesis:hypothesis importlinter:import-linter; do   # module:package
    $want_test || break
    mod=${spec%%:*} pkg=${spec#*:}
    if ! (cd / && "$VENV/bin/python" -c "import $mod") >/dev/null 2>&1; then
        say "pip install $pkg into the venv"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$pkg"
    fi
done

say "checking the venv imports bcc, numpy, tabulate, matplotlib, ioltrace"
(cd / && "$VENV/bin/python" -c 'import bcc, numpy, tabulate, matplotlib, ioltrace') ||
    die "$VENV/bin/python cannot import everything ioltrace needs (see above)"

# ---- doctor ----------------------------------------------------------------

if ! help=$(cd / && "$VENV/bin/ioltrace" --help 2>&1 </dev/null); then
    warn "ioltrace --help failed, so doctor was not run:"
    printf '%s\n' "$help" | tail -n 5 >&2
elif grep -qw doctor <<<"$help"; then
    say "ioltrace doctor"
    rc=0
    (cd / && "$VENV/bin/ioltrace" doctor </dev/null) || rc=$?
    if ((rc)); then
        warn "ioltrace doctor exited $rc: tracing may not work here (setup itself is done)"
    fi
else
    say "ioltrace doctor: not in this version of ioltrace, skipped"
fi

# ---- systemd unit (--service) ------------------------------------------------

if $want_service; then
    unit=/etc/systemd/system/ioltrace.service
    sed -e "s#/usr/local/bin/ioltrace#$VENV/bin/ioltrace#" "$REPO/packaging/ioltrace.service" >"$unit.tmp"
    case $VENV in
        /home/* | /root/*)
            # ProtectHome=yes would hide the venv from the service.
            sed -i 's/^ProtectHome=yes$/ProtectHome=read-only/' "$unit.tmp"
            warn "the venv $VENV is under a home directory: the unit gets ProtectHome=read-only" ;;
    esac
    mv -f "$unit.tmp" "$unit"
    say "installed $unit (ExecStart $VENV/bin/ioltrace; options in /etc/default/ioltrace)"
    if [[ -d /run/systemd/system ]]; then
        systemctl daemon-reload
        say "start it with: systemctl enable --now ioltrace"
    else
        warn "systemd is not running here: the unit is installed, not started"
    fi
fi

cat <<EOF

ioltrace is set up.
  run:        $REPO/scripts/ioltrace --help  (as root, or through sudo)
  all tests:  $REPO/scripts/test.sh           (runs this setup first)
  unit only:  cd $REPO && $VENV/bin/python -m pytest tests/unit
EOF
