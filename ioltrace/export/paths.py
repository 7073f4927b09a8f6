"""Where the live commands' outputs go: --csv and --json paths, "-" for stdout.

Checks only; it opens nothing, so a refused command line leaves no file.
"""

import os

from ..errors import BadInput

STDOUT = "-"


def same_output(csv_path, json_path):
    """Refuse --csv and --json naming one file (or both stdout): two writers
    appending to one file interleave CSV and JSON lines into something
    neither reader accepts."""
    if not csv_path or not json_path:
        return
    if csv_path == STDOUT or json_path == STDOUT:
        same = csv_path == json_path
    else:
        same = os.path.realpath(csv_path) == os.path.realpath(json_path)
        if not same:
            try:
                same = os.path.samefile(csv_path, json_path)   # hard links
            except OSError:
                pass
    if same:
        raise BadInput(f"--csv {csv_path} --json {json_path}", "both would write the same "
                       + ("stdout" if csv_path == STDOUT else "file"),
                       "give --csv and --json different files (at most one of them -)")
