"""`ioltrace plot`: histograms or a heatmap of recordings (no root)."""

from dataclasses import dataclass

from .. import offline
from .offline_options import Selection


@dataclass(frozen=True)
class Options(Selection):
    files: tuple = ()
    output: str = None
    heatmap: bool = False
    interval: float = None
    size: tuple = None


def main(opts: Options) -> int:
    return offline.plot(opts)
