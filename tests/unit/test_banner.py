"""The start-up banner says "Hit Ctrl-C" only on runs that nothing else ends."""

import io
import types

import pytest

from ioltrace import session


def fake_tracer():
    return types.SimpleNamespace(start_tp="block_io_start", describe=lambda: "probes: block_io_start, ...",
                                 headers=types.SimpleNamespace(kind="running", detail=""), compile_s=0.1)


@pytest.mark.parametrize("kw,ctrl_c,says", [
    ({}, True, "Hit Ctrl-C to end"),                                   # hist, top, serve: until stopped
    ({"interval": 1.0}, True, "Hit Ctrl-C to end"),                    # an interval but no count
    ({"interval": 1.0, "count": 5}, False, "for 5 intervals of 1s"),   # hist 1 5, top -n 5
    ({"interval": 0.5, "count": 1}, False, "for 1 interval of 0.5s"),
    ({"command": True}, False, "until the command exits"),             # run -- CMD
])
def test_banner_names_how_the_run_ends(kw, ctrl_c, says):
    out = io.StringIO()
    session.banner(fake_tracer(), False, out=out, end_line=session.ending(**kw))
    last = out.getvalue().splitlines()[-1]
    assert says in last and last.startswith("Tracing block I/O")
    assert ("Ctrl-C" in out.getvalue()) == ctrl_c
