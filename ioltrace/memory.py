"""Giving freed memory back to the system after exited processes are folded.

A fold drops the snapshot cells of many processes at once; glibc keeps the
freed heap pages for reuse, so without a trim the resident size stays at the
churn's peak (benchmarks/RESULTS.md, churn-memory). malloc_trim(0) returns the free
pages of every arena. And glibc raises its mmap threshold to the size of any
mmapped block freed (up to 32 MiB), after which a snapshot's histogram array
(maps.decode_hists: 8 KiB per cell) comes from the heap, zeroed in full;
fixed at 128 KiB, such arrays are mapped afresh, resident only in the pages
a count touches, and unmapped when freed. Other C libraries (musl) have
neither call: then nothing is done. Must not import bcc.
"""

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3          # mallopt() parameter (malloc.h)
MMAP_THRESHOLD = 128 * 1024    # glibc's initial value; range 4 KiB..32 MiB

# Processes folded since the last trim that make the next one worth its
# cost (a trim walks the heap: milliseconds); range 1..4194304.
TRIM_AFTER_PROCESSES = 256

_libc = None


def _fn(name, argtypes):
    """A function of the C library, or None where it has none."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        except OSError:
            _libc = False
    fn = getattr(_libc, name, None) if _libc else None
    if fn is not None:
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


def trim():
    """Return free heap pages to the system; False where the C library
    cannot."""
    fn = _fn("malloc_trim", [ctypes.c_size_t])
    if fn is None:
        return False
    fn(0)
    return True


def fix_mmap_threshold(size=MMAP_THRESHOLD):
    """Keep large blocks out of the heap for good (see the module's
    docstring); False where the C library cannot."""
    fn = _fn("mallopt", [ctypes.c_int, ctypes.c_int])
    return bool(fn is not None and fn(M_MMAP_THRESHOLD, size))


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
