#!/bin/bash
# Builds the Debian test guest for scripts/vm-test.sh from Debian packages alone.
#
# usage: build-image.sh DEST [DEB_CACHE]
#
# DEST must not exist; on success it holds root.img (ext4, the whole guest),
# vmlinuz and initrd.img (booted with qemu -kernel/-initrd) and manifest.txt.
# The guest's PID 1 is the small init written below, not systemd: it mounts
# what the tests need, runs scripts/vm/guest.sh from the 9p-shared repo and
# powers off, so a boot under software emulation takes seconds, not a minute.
# Needs root (debootstrap), but no loop device and no mount of its own:
# mkfs.ext4 -d fills the filesystem from the directory.
#
# Editing this file or packages.txt changes vm-test.sh's cache key, so the
# image is rebuilt on the next run; nothing else triggers a rebuild.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dest=${1:?usage: build-image.sh DEST [DEB_CACHE]}
debs=${2:-}
suite=${IOLTRACE_VM_SUITE:-bookworm}
mirror=${IOLTRACE_VM_MIRROR:-http://deb.debian.org/debian}
# Free space in the root filesystem beyond what the packages use. /tmp is on
# it, as on a stock Debian 12 (tmpfs has no O_DIRECT before 6.6, and tests
# put loop-device backing files under tmp_path). The file is sparse and the
# guest's writes go to qemu's throw-away overlay, so this costs no disk here.
headroom_mb=${IOLTRACE_VM_HEADROOM_MB:-4096}

die() { echo "build-image: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap)"
[ ! -e "$dest" ] || die "$dest exists"
for tool in debootstrap mkfs.ext4; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install debootstrap e2fsprogs)"
done

work=$(mktemp -d "$(dirname "$dest")/.build.XXXXXX")
root=$work/rootfs

cleanup() {
    # debootstrap mounts proc and sys inside the target while it installs;
    # never let rm walk into a live mount.
    local m
    awk -v r="$root" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pkgs=$(sed -e 's/#.*//' "$here/packages.txt" | tr -s ' \t\n' '\n' | grep -v '^$' | paste -sd, -)
opts=(--variant=minbase --include="$pkgs")
if [ -n "$debs" ]; then
    mkdir -p "$debs"
    opts+=(--cache-dir="$(cd "$debs" && pwd)")
fi

echo "build-image: debootstrap $suite from $mirror"
echo "build-image: packages: $pkgs"
if ! debootstrap "${opts[@]}" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi

# A package whose postinst started a daemon in the target (prometheus ships
# an init script) would keep files open there; nothing may outlive the build.
for pid_root in /proc/[0-9]*/root; do
    if [ "$(readlink "$pid_root" 2>/dev/null)" = "$root" ]; then
        pid=${pid_root#/proc/}; pid=${pid%/root}
        echo "build-image: stopping $(cat "/proc/$pid/comm" 2>/dev/null) ($pid), started inside the image"
        kill -KILL "$pid" 2>/dev/null || true
    fi
done

# One kernel, and headers for exactly that kernel: ioltrace looks for them at
# /lib/modules/$(uname -r)/build before any fallback.
mapfile -t kvers < <(ls "$root/lib/modules")
[ "${#kvers[@]}" = 1 ] || die "expected one kernel in the image, found: ${kvers[*]:-none}"
kver=${kvers[0]}
[ -d "$root/usr/src/linux-headers-$kver" ] || die "no linux-headers-$kver in the image (headers do not match the kernel)"
[ "$(readlink "$root/lib/modules/$kver/build")" = "/usr/src/linux-headers-$kver" ] \
    || die "/lib/modules/$kver/build does not point at linux-headers-$kver"
if [ ! -f "$root/boot/vmlinuz-$kver" ] || [ ! -f "$root/boot/initrd.img-$kver" ]; then
    die "no vmlinuz/initrd for $kver"
fi
[ -d "$root/usr/lib/python3/dist-packages/bcc" ] || die "python3-bpfcc did not install bcc"

cat >"$root/sbin/ioltrace-vm-init" <<'EOF'
#!/bin/sh
# PID 1 of the ioltrace test guest (written by scripts/vm/build-image.sh).
# Mounts what tracing and the tests need, runs the repo's scripts/vm/guest.sh
# and always powers off; the host reads the serial console and /mnt/out.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH HOME=/root LANG=C.UTF-8
echo "IOLTRACE-VM: booted"
mnt() { mountpoint -q "$3" 2>/dev/null || { mkdir -p "$3"; mount -t "$1" "$2" "$3"; }; }
mnt proc proc /proc
mnt sysfs sysfs /sys
mnt devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mnt devpts devpts /dev/pts
mnt tmpfs tmpfs /dev/shm
mnt tmpfs tmpfs /run
mnt cgroup2 cgroup2 /sys/fs/cgroup
mnt debugfs debugfs /sys/kernel/debug
mnt tracefs tracefs /sys/kernel/tracing
mnt bpf bpf /sys/fs/bpf
hostname ioltrace-vm
ip link set lo up  # tests talk to ioltrace's listener on 127.0.0.1
modprobe -q 9pnet_virtio; modprobe -q 9p; modprobe -q loop
mkdir -p /mnt/repo /mnt/out
opts=trans=virtio,version=9p2000.L,msize=262144
if mount -t 9p -o "$opts,ro" repo /mnt/repo && mount -t 9p -o "$opts" out /mnt/out; then
    /bin/bash /mnt/repo/scripts/vm/guest.sh
else
    echo "IOLTRACE-VM: cannot mount the 9p shares"
fi
sync
umount /mnt/out 2>/dev/null
echo "IOLTRACE-VM: poweroff"
echo o >/proc/sysrq-trigger
sleep 60
EOF
chmod 755 "$root/sbin/ioltrace-vm-init"
echo ioltrace-vm >"$root/etc/hostname"
: >"$root/etc/fstab"

mkdir -p "$work/out"
cp "$root/boot/vmlinuz-$kver" "$work/out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/out/initrd.img"
{
    echo "suite: $suite"
    echo "kernel: $kver"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    # shellcheck disable=SC2016  # ${Package} is dpkg-query's, not the shell's
    chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' \
        "linux-image-$kver" "linux-headers-$kver" python3 python3-bpfcc fio bpftool
} >"$work/out/manifest.txt"

# Nothing in the guest reads these; leaving them out shortens mkfs and boot.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/info "$root"/debootstrap

size_mb=$(( $(du -sm --one-file-system "$root" | cut -f1) * 11 / 10 + headroom_mb ))
truncate -s "${size_mb}M" "$work/out/root.img"
mkfs.ext4 -q -F -L ioltrace-root -d "$root" "$work/out/root.img" \
    || die "mkfs.ext4 -d failed (needs e2fsprogs 1.43 or newer)"

mv "$work/out" "$dest"
echo "build-image: $dest: kernel $kver, root.img ${size_mb} MiB"
