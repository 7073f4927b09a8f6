"""Small text formatters shared by the views: units chosen per value.

No I/O and no knowledge of records beyond numbers and strings.
"""

import errno
import math

_TIME_UNITS = ((1e9, "s"), (1e6, "ms"), (1e3, "us"), (1, "ns"))
_BYTE_UNITS = ((1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K"))


def ns(value):
    """Nanoseconds -> '812ns', '24.5us', '3.10ms', '1.25s'; '-' for nan."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for scale, unit in _TIME_UNITS:
        if value >= scale or unit == "ns":
            v = value / scale
            if unit == "ns":
                return f"{v:.0f}ns"
            return f"{v:.3g}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return "-"


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


def truncate(text, width):
    """Fit text in width columns, keeping the end of long paths."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1):] if width > 1 else text[:width]
