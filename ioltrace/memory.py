"""Giving freed memory back to the system after exited processes are folded.

A fold drops the snapshot cells of many processes at once; glibc keeps the
freed heap pages for reuse, so without a trim the resident size stays at the
churn's peak (benchmarks/RESULTS.md, churn). malloc_trim(0) returns the free
pages of every arena. Other C libraries (musl) have no malloc_trim: then
nothing is done. Must not import bcc.
"""

import ctypes
import ctypes.util

# Processes folded since the last trim that make the next one worth its
# cost (a trim walks the heap: milliseconds); range 1..4194304.
TRIM_AFTER_PROCESSES = 256

_trim = None


def _malloc_trim():
    global _trim
    if _trim is None:
        try:
            fn = ctypes.CDLL(ctypes.util.find_library("c") or None).malloc_trim
            fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
            _trim = fn
        except (OSError, AttributeError):
            _trim = False
    return _trim


def trim():
    """Return free heap pages to the system; False where the C library
    cannot."""
    fn = _malloc_trim()
    if not fn:
        return False
    fn(0)
    return True


class Trimmer:
    """Counts folded processes and trims once enough were freed."""

    def __init__(self, after=TRIM_AFTER_PROCESSES, trim=trim):
        self.after = after
        self.pending = 0
        self.again = False
        self._trim = trim

    def folded(self, tgids):
        self.pending += len(tgids)

    def maybe_trim(self):
        """Trim if at least `after` processes were folded since the last
        trim, and once more at the next call: the snapshot read at the
        fold holds cells of theirs until the one after it replaces it.
        Call it before reading a snapshot."""
        if self.pending >= self.after:
            self.pending, self.again = 0, True
        elif self.again:
            self.again = False
        else:
            return False
        self._trim()
        return True
