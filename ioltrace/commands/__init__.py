"""The commands: one module per command, each `main(opts) -> int`.

A command takes its module's frozen Options dataclass (field names are the
argparse dests; cli.py builds them once, `demo` builds them directly) and
returns the exit code. Commands own the order of things: validate, open
outputs, attach, run the interval loop (session.run), detach. Parsing is
cli.py's, text is views/', bytes are export/'s.
"""

# Command name -> module; cli.py dispatches through it.
MODULES = {
    "hist": "hist", "top": "top", "run": "run", "loop": "loop", "serve": "serve", "demo": "demo",
    "doctor": "doctor", "report": "report", "compare": "compare", "plot": "plot",
}
