"""`ioltrace report`: statistics and histograms of recordings (no root)."""

from dataclasses import dataclass

from .. import offline
from .offline_options import Selection


@dataclass(frozen=True)
class Options(Selection):
    files: tuple = ()
    interval: float = None
    format: str = "table"    # table, csv or json
    milliseconds: bool = False


def main(opts: Options) -> int:
    return offline.report(opts)
