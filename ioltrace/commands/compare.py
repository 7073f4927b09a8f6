"""`ioltrace compare`: A/B comparison of recordings (no root)."""

from dataclasses import dataclass

from .. import offline
from . import refuse_unused
from .offline_options import Selection


@dataclass(frozen=True)
class Options(Selection):
    files: tuple = ()
    runs: tuple = None       # two comma lists of recordings: A, then B
    format: str = "table"    # table or json
    plot: str = None
    size: tuple = None

    def __post_init__(self):
        refuse_unused(self, [] if self.plot else [("size", "sets the --plot picture's size, and there is no --plot",
                                                                "add --plot OUT.png, or leave it out")])


def main(opts: Options) -> int:
    return offline.compare(opts)
