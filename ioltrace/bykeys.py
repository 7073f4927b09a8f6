"""The --by choice: one key kind, or two keys (a kind, and disk or op).

Every kernel key already names its owner (process, thread, cgroup), its disk
and its op, so a two-key grouping such as cgroup,disk picks which of those
stay apart and which are summed; nothing new is keyed in the kernel. This
module parses the choice once for every command (live and offline) and says
which of disk and op it splits; group.by_key and recording.aggregate apply
it, views show the second key as a column. Pure: reads nothing, prints
nothing.
"""

from typing import NamedTuple

# The two keys that can follow an owner kind (or, for disk, each other).
DIMS = ("disk", "op")
# Columns and title words of the second key.
HEADINGS = {"disk": "DISK", "op": "OP"}


class By(NamedTuple):
    """A parsed --by: `kind` is what GroupId.kind says (process, thread,
    comm, cgroup, cgroup-v1 or disk); `second` is "disk", "op" or None."""

    kind: str
    second: str = None

    @property
    def text(self):
        return f"{self.kind},{self.second}" if self.second else self.kind

    @property
    def pair(self):
        return self.second is not None

    def splits(self, split_disk, split_op):
        """(split_disk, split_op) of Groups: the keys of the --by always
        stay apart, and so does what the command asks for on top (top
        splits ops to tell reads from writes, then merges its rows by the
        two keys; hist asks for nothing more with a pair)."""
        return (split_disk or "disk" in (self.kind, self.second)), (split_op or self.second == "op")


class Invalid(ValueError):
    """A --by text that names no grouping; str() is the one-line reason."""


def parse(text, kinds):
    """A By from "cgroup", "cgroup,disk", "disk,op", ...: one of `kinds`,
    optionally with disk or op (in either order; shown owner first, then
    disk, then op). Raises Invalid with the reason and what to type."""
    parts = [p.strip() for p in str(text).split(",")]
    if any(not p for p in parts):
        raise Invalid(f"{text!r} has an empty key; give a key ({', '.join(kinds)}), or a key and disk or op "
                      "joined by a comma (e.g. cgroup,disk)")
    for p in parts:
        if p not in kinds and p not in DIMS:
            raise Invalid(f"unknown key {p!r}; keys: {', '.join(kinds)}; second keys: disk, op "
                          "(e.g. cgroup,disk)")
    if len(parts) > 2:
        raise Invalid(f"{text!r} has {len(parts)} keys; at most two (e.g. cgroup,disk or process,op)")
    if len(parts) == 1:
        if parts[0] == "op":
            raise Invalid("op is a second key only; pair it with a first one (e.g. disk,op or cgroup,op)")
        return By(parts[0])
    a, b = parts
    if a == b:
        raise Invalid(f"{text!r} names {a} twice; give two different keys (e.g. cgroup,disk)")
    owners = [p for p in parts if p not in DIMS]
    if len(owners) == 2:
        raise Invalid(f"{a} and {b} both say who did the I/O; pair one of them with disk or op "
                      f"(e.g. {a},disk)")
    if not owners:
        if "disk" not in kinds:
            raise Invalid("disk is not a key here; pair a key with op (e.g. cgroup,op)")
        return By("disk", "op")
    return By(owners[0], next(p for p in parts if p in DIMS))


def argtype(kinds):
    """An argparse type for --by over `kinds` (its errors become one line)."""
    import argparse

    def convert(text):
        try:
            return parse(text, kinds).text
        except Invalid as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = "--by"
    return convert


def of(by):
    """A By from a --by value (text, as options hold it, or a By); None stays None."""
    if by is None or isinstance(by, By):
        return by
    kind, _, second = by.partition(",")
    return By(kind, second or None)
