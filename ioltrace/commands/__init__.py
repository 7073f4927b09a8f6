"""The commands: one module per command, each `main(opts) -> int`.

A command takes its module's frozen Options dataclass (field names are the
argparse dests; cli.py builds them once, `demo` builds them directly) and
returns the exit code. Commands own the order of things: validate, open
outputs, attach, run the interval loop (session.run), detach. Parsing is
cli.py's, text is views/', bytes are export/'s.
"""

# The commands, each the module ioltrace.commands.<name>; cli.py dispatches through it.
NAMES = ("hist", "top", "run", "loop", "serve", "demo", "doctor", "report", "compare", "plot")
