"""`ioltrace compare`: A/B comparison of recordings (no root)."""

from dataclasses import dataclass

from .. import offline
from .offline_options import Selection


@dataclass(frozen=True)
class Options(Selection):
    files: tuple = ()
    runs: tuple = None       # two comma lists of recordings: A, then B
    format: str = "table"    # table or json
    plot: str = None
    size: tuple = None


def main(opts: Options) -> int:
    return offline.compare(opts)
