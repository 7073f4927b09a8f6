"""Small text formatters shared by views and exporters: units chosen per value.

No I/O and no knowledge of records beyond numbers and strings.
"""

import errno
import math
import unicodedata

from . import layout

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


def value(v, unit="ns"):
    """A figure of a histogram stage in its unit (layers.Unit.name): a time,
    bytes ('4.0K') or a count of requests ('7', '3.25'); '-' for nan."""
    if unit == "ns":
        return ns(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if unit == "bytes":
        return size(v)
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"


def min_max(s, unit="ns"):
    """The bucket bounds of a summary's smallest and largest samples, labeled
    as bounds: 'min ≥4.00us  max <2.56ms' (hist.summary: min_low, max_high).
    A histogram knows no sample's true value, so a midpoint shown as "min"
    could exceed an exact mean. Whole counts (bytes, requests) in buckets one
    value wide are exact: 'min 0  max 7'."""
    high = s["max_high"]
    if isinstance(s["min_low"], float) and math.isnan(s["min_low"]):
        return "min -  max -"
    if unit != "ns" and high <= 2 * layout.SUB_COUNT:   # buckets one value wide
        return f"min {value(s['min_low'], unit)}  max {value(high - 1, unit)}"
    if isinstance(high, float) and math.isinf(high):
        top = f"max ≥{value(float(layout.BUCKET_LOW[-1]), unit)}"
    else:
        top = f"max <{value(high, unit)}"
    return f"min ≥{value(s['min_low'], unit)}  {top}"


def size(value):
    """Bytes -> '512B', '4.0K', '1.5M' (binary units, like iotop)."""
    for scale, unit in _BYTE_UNITS:
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}B"


def rate(value):
    return size(value) + "/s"


def spell(text):
    """A name as valid Unicode, the one spelling every output uses: names
    read with os.fsdecode (cgroup directories) hold undecodable bytes as lone
    surrogates, which no UTF-8 encoder accepts; they become the text \\xNN,
    as maps.comm_text writes a comm's undecodable bytes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for c in text:
        o = ord(c)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif 0xD800 <= o <= 0xDFFF:   # a surrogate os.fsdecode never makes
            out.append(f"\\u{o:04x}")
        else:
            out.append(c)
    return "".join(out)


def errno_name(num):
    """5 -> 'EIO'; unknown numbers stay numeric ('E4095')."""
    return errno.errorcode.get(int(num), f"E{int(num)}")


def columns(text):
    """Terminal columns a string takes: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def cut(text, width):
    """The start of text that fits in `width` terminal columns."""
    used = 0
    for i, c in enumerate(text):
        used += columns(c)
        if used > width:
            return text[:i]
    return text


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


_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def parse_ns(text, high_s=86400):
    """'10ms', '250us', '1.5s', '800ns' -> nanoseconds (int), the inverse of
    ns(); '0' alone needs no unit. ValueError with the reason otherwise, or
    when above high_s seconds."""
    t = text.strip()
    num, unit = t, None
    for u in sorted(_DURATION_UNITS, key=len, reverse=True):
        if t.endswith(u):
            num, unit = t[:-len(u)].strip(), u
            break
    try:
        value = float(num)
    except ValueError:
        raise ValueError(f"{text!r} is not a latency: a number with a unit ns, us, ms or s (10ms, 250us)") from None
    if unit is None and value != 0:
        raise ValueError(f"{text!r} has no unit: add ns, us, ms or s (10ms, 250us)")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} must be 0 or more")
    out = round(value * _DURATION_UNITS.get(unit, 1))
    if out > high_s * 1_000_000_000:
        raise ValueError(f"{text!r} is more than {high_s} s")
    return out
