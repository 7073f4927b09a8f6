"""The one interval loop of every live command: intervals, signals, banner.

Owns the order of things: validate options and open output files first, then
attach probes, then poll the kernel every interval and hand deltas to a
callback, and always detach and close on the way out (Ctrl-C, SIGTERM,
SIGHUP, errors). It formats nothing itself.
"""

import signal
import sys
import time

from . import maps

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopper:
    """Turns stop signals into a flag so an interval in progress finishes."""

    def __init__(self):
        self.signum = None
        self._saved = {}

    def __enter__(self):
        for s in STOP_SIGNALS:
            self._saved[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    @property
    def stopped(self):
        return self.signum is not None

    def __exit__(self, *exc):
        for s, h in self._saved.items():
            signal.signal(s, h)
        return False

    def sleep_until(self, deadline):
        """Sleep to a monotonic deadline; returns False if stopped first."""
        while not self.stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.05))
        return False


def ending(interval=None, count=None, command=False, what="block I/O"):
    """The banner's last line: how this run ends. "Hit Ctrl-C" only when
    nothing else ends it (no count, no command), as bcc's tools say it."""
    tracing = f"Tracing {what}" if what else "Tracing"
    if command:
        return f"{tracing} until the command exits."
    if interval is not None and count:
        return f"{tracing} for {count} interval{'s' if count > 1 else ''} of {interval:g}s."
    return f"{tracing}... Hit Ctrl-C to end."


def banner(tracer, verbose, out=None, end_line=None):
    out = out or sys.stderr     # looked up now: a default would keep whatever stderr was at import
    start = ""
    if tracer.start_tp:
        start = f"; start event {tracer.start_tp}" + (
            " (block_io_start absent: kernel < 6.5)" if tracer.start_tp == "block_rq_insert" else "")
    out.write(f"{tracer.describe()}{start}; headers: {tracer.headers.kind}\n")
    if verbose:
        if getattr(tracer, "path", None) is not None:   # the block layer's probe path
            out.write(tracer.path.describe() + "\n")
        out.write(f"headers: {tracer.headers.detail}\n")
        out.write(f"compiled and attached in {tracer.compile_s:.2f}s\n")
    out.write((end_line or ending()) + "\n")
    out.flush()


def run(tracer, interval, count, on_interval, stopper, child=None, wait=None, on_start=None, announce=None):
    """Call on_interval(delta, start_wall, end_wall, final) for each interval.

    interval None means one interval until stopped (or until `child`, a
    Popen, exits). count limits the number of intervals. The last call has
    final=True: it carries whatever happened since the previous one.
    wait(deadline) replaces the plain sleep (the live screen reads keys in
    it) and returns False to stop. announce() (the banner) and then
    on_start() run right after the first snapshot, so that nothing a user
    starts on seeing the banner can fall into the baseline; on_start may
    return the child to watch. Returns the first and last snapshots.

    The maps are read one after another while I/O goes on, so an I/O that
    completes during a read can land in the next interval's histograms;
    totals over the whole run are exact.
    """
    wait = wait or stopper.sleep_until
    first = prev = tracer.snapshot()
    if announce is not None:
        announce()
    if on_start is not None:
        child = on_start()
    prev_wall = time.time()
    t0 = time.monotonic()
    n = 0
    while True:
        n += 1
        if interval is None:
            while not stopper.stopped and (child is None or child.poll() is None):
                time.sleep(0.05)
            done = True
        else:
            ok = wait(t0 + n * interval) and not stopper.stopped
            if child is not None and child.poll() is not None:
                ok = False
            done = not ok or (count is not None and n >= count)
        if done and hasattr(tracer, "stopping"):
            tracer.stopping()   # the next snapshot counts what is still in flight
        cur = tracer.snapshot()
        wall = time.time()
        on_interval(maps.delta(cur, prev), prev_wall, wall, done)
        first = maps.refold(first, cur)  # processes folded since stay folded in the baseline
        prev, prev_wall = cur, wall
        if done:
            return first, cur


# Seconds between the intervals `run --csv/--json` records (range 0.05..86400):
# a plot of the run has a column per second; the report sums them all.
RUN_RECORD_S = 1.0


def until_exit(started, stopper, poll_s=0.05):
    """A wait(deadline) for run(): sleeps to the deadline, but returns as
    soon as the traced command (started[0]) exits, so the last interval
    ends with it; asks stopper.stopped meanwhile (which passes Ctrl-C on)."""
    def wait(deadline):
        while True:
            stopper.stopped     # noqa: B018 (the property forwards a pending signal)
            if started and started[0].poll() is not None:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, poll_s))
    return wait


def live(tracer, interval, count, on_interval, verbose, wait=None, announce=True, what="block I/O",
         on_start=None):
    """run() under a Stopper, after the banner: what hist, top and loop (and
    demo through top) share. wait(stopper) -> wait(deadline), or None for a
    plain sleep; announce False: no banner (top's full screen). The banner
    ends with how the run ends (ending)."""
    end_line = ending(interval, count, what=what)
    with Stopper() as stopper:
        return run(tracer, interval, count, on_interval, stopper, wait=wait(stopper) if wait else None,
                   announce=(lambda: banner(tracer, verbose, end_line=end_line)) if announce else None,
                   on_start=on_start)
