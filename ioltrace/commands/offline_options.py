"""The selection options every offline command has (cli.recording_options)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Selection:
    by: str = None           # None: the recorded key kind
    op: tuple = None
    stage: tuple = None
    layer: str = None
    key: tuple = None
    disk: str = None
