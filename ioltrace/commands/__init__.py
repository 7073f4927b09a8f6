"""The commands: one module per command, each `main(opts) -> int`.

A command takes its module's frozen Options dataclass (field names are the
argparse dests; cli.py builds them once, `demo` builds them directly) and
returns the exit code. Commands own the order of things: validate, open
outputs, attach, run the interval loop (session.run), detach. Parsing is
cli.py's, text is views/', bytes are export/'s.
"""

from dataclasses import fields

from ..errors import BadInput

# The commands, each the module ioltrace.commands.<name>; cli.py dispatches through it.
NAMES = ("hist", "top", "run", "loop", "snoop", "serve", "demo", "doctor", "report", "compare", "plot")


def refuse_unused(opts, unused):
    """An option given away from its default that the command would not use
    is refused, never ignored. unused: (field, why, fix) triples, where why
    says under which condition the command does not use it."""
    defaults = {f.name: f.default for f in fields(opts)}
    for name, why, fix in unused:
        if getattr(opts, name) != defaults[name]:
            raise BadInput(f"--{name.replace('_', '-')}", why, fix)
