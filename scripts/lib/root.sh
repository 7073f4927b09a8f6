# Sourced by the scripts a README command starts (setup.sh, test.sh,
# ioltrace): they need root, and run as root either way a reader starts
# them: as root (a container or minimal VM often has no sudo), or as a
# user with sudo, through which the script then runs itself again.
#
# usage: run_as_root "$0" "$@"   (returns when already root)
# IOLTRACE_PRIVILEGES_ONLY=1 makes it say what it would do and exit 0,
# running nothing: tests/unit/test_setup_privileges.py checks the README's
# commands with it.

run_as_root() {
    local self=$1
    if [[ $(id -u) -eq 0 ]]; then
        if [[ ${IOLTRACE_PRIVILEGES_ONLY:-} == 1 ]]; then
            printf 'run as root: %s\n' "$*"
            exit 0
        fi
        return 0
    fi
    if command -v sudo >/dev/null 2>&1; then
        if [[ ${IOLTRACE_PRIVILEGES_ONLY:-} == 1 ]]; then
            printf 'run through sudo: %s\n' "$*"
            exit 0
        fi
        # sudo resets the environment; keep the settings these scripts read.
        local keep=() var
        for var in $(compgen -e); do
            [[ $var == IOLTRACE_* || $var == CI ]] && keep+=("$var=${!var}")
        done
        exec sudo -- env "${keep[@]}" bash "$@"
    fi
    printf '%s: must run as root (it loads eBPF programs, installs packages or mounts tracefs), and there is no sudo here: run it as root\n' \
        "${self##*/}" >&2
    exit 2
}
