"""Process churn for tests and benchmarks: N short-lived processes, each
writing one block with O_DIRECT to DEVICE at its own offset and exiting.

usage: churn_writer.py DEVICE N SECONDS [PARALLEL]

Paces the forks evenly over SECONDS, keeps at most PARALLEL (default 4)
alive, and prints one JSON line: how many processes wrote how many bytes
(each child reports through its exit status whether its write was whole),
and how many distinct pids those processes had: with pid_max 32768 and
other work forking on the machine, pids wrap within a 20,000-process run,
and a reused pid is one process id to any tracer keyed by pid.
"""

import json
import mmap
import os
import sys
import time

BLOCK = 4096


def child(dev, offset):
    buf = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT needs
    buf.write(b"c" * BLOCK)
    try:
        fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
        n = os.pwrite(fd, buf, offset)
        os.close(fd)
    except OSError:
        os._exit(2)
    os._exit(0 if n == BLOCK else 1)


def main():
    dev, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    parallel = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    fd = os.open(dev, os.O_RDONLY)
    size = os.lseek(fd, 0, os.SEEK_END)
    os.close(fd)
    slots = size // (2 * BLOCK)  # every other block: no two writes can merge
    alive, ok, failed, ok_pids = set(), 0, 0, set()
    t0 = time.monotonic()

    def reap(block):
        nonlocal ok, failed
        pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        if pid:
            alive.discard(pid)
            if os.waitstatus_to_exitcode(status) == 0:
                ok += 1
                ok_pids.add(pid)
            else:
                failed += 1
        return pid

    for i in range(n):
        delay = t0 + seconds * i / n - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        while len(alive) >= parallel:
            reap(True)
        while alive and reap(False):
            pass
        pid = os.fork()
        if pid == 0:
            child(dev, (i % slots) * 2 * BLOCK)
        alive.add(pid)
    while alive:
        reap(True)
    print(json.dumps({"processes": n, "ok": ok, "failed": failed, "bytes": ok * BLOCK, "distinct_pids": len(ok_pids),
                      "seconds": round(time.monotonic() - t0, 2)}))


if __name__ == "__main__":
    main()
