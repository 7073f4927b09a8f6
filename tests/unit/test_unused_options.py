"""Every option of every command is either used by the command or refused
with one line; none is silently ignored (`loop --disk sdX` was).

For each command, each of its options is given once with a value away from
its default, with every --layer the command offers. Either building the
command's Options refuses it (BadInput: one line, exit 2), or the option
reaches the Options and something outside the option plumbing uses it:
  - a kernel filter: the macro it becomes (loader.cflags) appears in the C
    program of at least one layer the command compiles with that --layer;
  - --op, --syscalls: the op filter (layers.Layer.op_filter) of a traced layer;
    --stage of the live commands: the block layer is traced;
  - anything else: the command's code reads the field.
"""

import argparse
import importlib
import re
from pathlib import Path

import pytest

from ioltrace import cli, layers
from ioltrace.commands import NAMES
from ioltrace.errors import BadInput

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "ioltrace"

# What each command needs besides the option under test.
REQUIRED = {"loop": ["--from", "sys_enter_read", "--to", "sys_exit_read"], "report": ["rec.csv"],
            "compare": ["a.csv", "b.csv"], "plot": ["rec.csv", "-o", "out.png"]}
TRAILING = {"run": ["--", "true"]}
# A value away from the default, for the options that are neither flags nor choices.
SAMPLE = {"pid": "1", "cgroup": "/", "disk": "loop0", "comm": "fio", "keep_exited": "5", "csv": "out.csv",
          "json": "out.json", "syscalls": "read,write", "interval": "2", "count": "3", "iterations": "2",
          "width": "100", "from_tp": "sys_enter_write", "to_tp": "sys_exit_write",
          "chain": "sys_enter_read,sys_exit_read", "listen": "127.0.0.1:0", "textfile": "x.prom",
          "max_series": "10", "duration": "5", "key": "fio", "stage": "device", "op": "read", "runs": "a.csv,b.csv",
          "plot": "ab.png", "size": "800x600", "output": "o.png", "web_config": "web.yml", "user": "nobody",
          "by": "cgroup,op", "min_latency": "10ms", "buffer_pages": "64", "slowest_pct": "1"}
# The -D macro each kernel filter becomes (loader.cflags).
FILTER_MACROS = {"pid": "IOLT_FILTER_TGID", "cgroup": "IOLT_FILTER_CGID", "comm": "IOLT_FILTER_COMM_LO",
                 "disk": "IOLT_FILTER_DEV"}


def subparsers():
    top = cli.build_parser()
    return next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices


def program_text(layer_name):
    """A layer's C program with the local headers it includes."""
    src = (REPO / "bpf" / layers.BY_NAME[layer_name].source).read_text()
    for inc in re.findall(r'#include "([\w.]+)"', src):
        src += (REPO / "bpf" / inc).read_text()
    return src


def reads_field(command, field):
    """The command's own code (its module, the shared command code, and the
    modules it hands its options to) reads opts.<field> / args.<field>."""
    files = [PKG / "commands" / f"{command}.py", PKG / "commands" / "common.py", PKG / "session.py",
             PKG / "offline.py", PKG / "serve.py"]
    return any(re.search(rf"\b(opts|args|self)\.{field}\b", f.read_text()) for f in files)


def cases():
    for name in NAMES:
        parser = subparsers()[name]
        layer_action = next((a for a in parser._actions if a.dest == "layer" and a.choices), None)
        for action in parser._actions:
            if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            flag = action.option_strings[-1]
            if isinstance(action, getattr(cli, "Refused", ())):
                yield name, flag, [flag, SAMPLE.get(flag.lstrip("-"), "x")], None
                continue
            if action.nargs == 0:
                given = [flag]
            elif action.choices:
                value = next(c for c in action.choices if c != action.default)
                given = [flag, value]
            else:
                given = [flag, SAMPLE[action.dest]]
            layers_to_try = [None]
            if layer_action is not None and action is not layer_action and action.dest != "layer":
                layers_to_try = list(layer_action.choices)
            for layer in layers_to_try:
                extra = ["--layer", layer] if layer else []
                yield name, flag, given + extra, action.dest


@pytest.mark.parametrize("command,flag,given,dest", list(cases()),
                         ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_every_option_is_used_or_refused(command, flag, given, dest):
    module = importlib.import_module(f"ioltrace.commands.{command}")
    argv = [command] + REQUIRED.get(command, []) + given + TRAILING.get(command, [])
    try:
        args = cli.build_parser().parse_args(argv)
        opts = cli.options_of(module.Options, args)
    except BadInput as e:
        assert "\n" not in str(e)
        return   # refused, with one line
    assert dest is not None, f"{' '.join(argv)}: a Refused option was accepted"
    if dest == "layer":
        return   # --layer itself chooses what is traced
    layer = getattr(opts, "layer", None) or "block"
    chosen = ("loop",) if command == "loop" else ("block", "syscall") if layer == "both" else (layer,)
    if dest in FILTER_MACROS and command not in ("report", "compare", "plot"):
        assert any(FILTER_MACROS[dest] in program_text(l) for l in chosen), \
            f"{' '.join(argv)}: no traced layer's program applies {flag}, and it was not refused"
    elif dest in ("op", "syscalls") and hasattr(opts, "keep_exited"):
        assert any(layers.BY_NAME[l].op_filter == dest for l in chosen), \
            f"{' '.join(argv)}: no traced layer filters by {flag}, and it was not refused"
    elif dest == "stage" and hasattr(opts, "keep_exited"):
        assert "block" in chosen, f"{' '.join(argv)}: --stage names block stages, and it was not refused"
    else:
        assert reads_field(command, dest), f"{' '.join(argv)}: {command} never reads {dest}"


@pytest.mark.parametrize("argv", [
    ["loop", "--disk", "sdX", "--from", "sys_enter_read", "--to", "sys_exit_read"],
    ["hist", "--layer", "syscall", "--by", "process", "--disk", "loop0"],
    ["hist", "--layer", "syscall", "--by", "process", "--op", "read"],
    ["hist", "--layer", "syscall", "--by", "process", "--stage", "queue"],
    ["top", "--syscalls", "read"],
    ["run", "--layer", "syscall", "--disk", "loop0", "--", "true"],
    ["run", "--cgroup", "/", "--", "true"],
    ["hist", "--children"],
    ["hist", "--json", "-", "-T"],
    ["plot", "rec.csv", "-o", "out.png", "--interval", "5"],
    ["compare", "a.csv", "b.csv", "--size", "800x600"],
], ids=" ".join)
def test_unused_combinations_are_refused_with_one_line(argv):
    """Only parsing and Options are run (what cli.main does before a command
    starts): an accepted command line would start tracing."""
    module = importlib.import_module(f"ioltrace.commands.{argv[0]}")
    with pytest.raises(BadInput) as e:
        cli.options_of(module.Options, cli.build_parser().parse_args(argv))
    assert e.value.exit_code == 2 and "\n" not in str(e.value)
