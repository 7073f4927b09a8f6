"""`ioltrace demo`: the cgroup weight experiment (ioltrace/demo.py), shown
live through `top`'s typed options."""

from dataclasses import dataclass

from .. import demo as experiment


@dataclass(frozen=True)
class Options:
    duration: int = 20
    batch: bool = False
    verbose: bool = False


def main(opts: Options) -> int:
    return experiment.run(opts)
