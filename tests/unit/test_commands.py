"""Every command is a module of ioltrace.commands with a frozen Options
dataclass and main(opts); cli.options_of carries every option the parser
has, and a caller that builds Options itself (demo) gets the same defaults
as the command line."""

import argparse
import dataclasses
import importlib

import pytest

from ioltrace import cli
from ioltrace.commands import NAMES


def subparsers():
    top = cli.build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_parser_command_has_a_module():
    assert set(subparsers()) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_options_carry_every_option_with_the_parser_default(name):
    module = importlib.import_module(f"ioltrace.commands.{name}")
    opts_cls = module.Options
    assert dataclasses.is_dataclass(opts_cls) and opts_cls.__dataclass_params__.frozen
    fields = {f.name: f for f in dataclasses.fields(opts_cls)}
    # cli.Refused options are refused at parsing (tests/unit/test_unused_options.py).
    actions = [a for a in subparsers()[name]._actions if not isinstance(a, (argparse._HelpAction, cli.Refused))]
    assert {a.dest for a in actions} <= set(fields), name
    for a in actions:
        if a.option_strings:
            default = a.default if not isinstance(a.default, list) else tuple(a.default)
            assert fields[a.dest].default == default, (name, a.dest)


def test_options_of_builds_frozen_typed_options():
    from ioltrace.commands import hist

    args = cli.build_parser().parse_args(["hist", "--op", "read", "--op", "write", "--by", "cgroup", "2", "3"])
    opts = cli.options_of(hist.Options, args)
    assert opts == hist.Options(op=("read", "write"), by="cgroup", interval=2.0, count=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.by = "disk"
