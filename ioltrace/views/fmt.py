"""Small text formatters shared by the views: units chosen per value.

No I/O and no knowledge of records beyond numbers and strings.
"""

import errno
import math
import unicodedata

_TIME_UNITS = ((1e9, "s"), (1e6, "ms"), (1e3, "us"), (1, "ns"))
_BYTE_UNITS = ((1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K"))


def ns(value):
    """Nanoseconds -> '812ns', '24.5us', '3.10ms', '1.25s'; '-' for nan.

    Three significant digits; the unit is chosen after rounding, so 999.7 ns
    is '1.00us', never '1000ns'.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for scale, unit in reversed(_TIME_UNITS):
        text = _three_digits(value / scale) if unit != "ns" else f"{value:.0f}"
        if float(text) < 1000 or unit == "s":
            return text + unit
    return "-"


def _three_digits(v):
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def size(value):
    """Bytes -> '512B', '4.0K', '1.5M' (binary units, like iotop)."""
    for scale, unit in _BYTE_UNITS:
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}B"


def rate(value):
    return size(value) + "/s"


def errno_name(num):
    """5 -> 'EIO'; unknown numbers stay numeric ('E4095')."""
    return errno.errorcode.get(int(num), f"E{int(num)}")


def columns(text):
    """Terminal columns a string takes: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def truncate(text, width):
    """Fit text in `width` terminal columns, keeping the end of long paths
    (where cgroup and container names differ); unprintable characters
    become '?'."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    if columns(text) <= width:
        return text
    if width < 2:
        return "…"[:width]
    out, used = [], 1
    for c in reversed(text):
        w = columns(c)
        if used + w > width:
            break
        out.append(c)
        used += w
    return "…" + "".join(reversed(out))
