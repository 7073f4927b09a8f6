"""The v1 blkio controller's own count of a group's bytes per device, as
ground truth for tests.

blk-throttle counts every bio of a group when it is submitted, before any
scheduler, in blkio.throttle.io_service_bytes; it counts only on a device
the group has a throttle rule for, so `watch` sets read and write limits
too high to bind. blkio.bfq.io_service_bytes needs BFQ, which a kernel may
lack (the CI machine's 6.18 offers none, mq-deadline, kyber), and it missed
part of a group's bytes in some runs (see ioltrace/demo.py).
"""

import os

V1_ROOT = "/sys/fs/cgroup/blkio"
STAT = "blkio.throttle.io_service_bytes"
NO_LIMIT = 1 << 40  # bytes/s: far above any loop device, so the rule never delays a bio


def missing():
    """Why the v1 throttle count cannot be read here, or None."""
    return None if os.path.isfile(f"{V1_ROOT}/{STAT}") else f"no v1 blkio hierarchy ({V1_ROOT}/{STAT})"


def watch(group, dev):
    """Make the kernel count group's bytes on dev (MAJ:MIN)."""
    for rule in ("blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"):
        with open(f"{group}/{rule}", "w") as f:
            f.write(f"{dev} {NO_LIMIT}")


def service_bytes(group, dev, op):
    """Bytes the kernel counted for group on dev; op is "Read" or "Write"."""
    for line in open(f"{group}/{STAT}"):
        f = line.split()
        if len(f) == 3 and f[0] == dev and f[1] == op:
            return int(f[2])
    return 0
