"""`ioltrace plot`: histograms or a heatmap of recordings (no root)."""

from dataclasses import dataclass

from .. import offline
from . import refuse_unused
from .offline_options import Selection


@dataclass(frozen=True)
class Options(Selection):
    files: tuple = ()
    output: str = None
    heatmap: bool = False
    interval: float = None
    size: tuple = None

    def __post_init__(self):
        refuse_unused(self, [] if self.heatmap else [("interval", "sets the heatmap's window, and there is no heatmap",
                                                                   "add --heatmap, or leave it out")])


def main(opts: Options) -> int:
    return offline.plot(opts)
