"""Hostile input is refused cleanly: random command lines through cli.main.

Argument lists come from a grammar (the real subcommands and some bogus
ones; each parser's real options, read from cli.build_parser(), and bogus
ones; values that are unicode, empty, huge, negative, NaN, paths that do not
exist, '--', ...). Whatever comes in, cli.main returns 0 or 2 and never lets
an exception out; on 2, stderr is exactly one line starting "ioltrace:".

CI runs this as root with bcc installed, so a valid command line would
really trace, create cgroups and loop devices or open a port. Every entry
point with a side effect is replaced by a stub that raises WouldRun (a
BaseException, so no `except Exception` on the way swallows it): reaching
one means validation let the command line through, which is fine, and is
counted. Files land in a private directory: the test chdirs into it, free
text never holds '/', and the only absolute paths drawn are under a
directory that does not exist or in /proc, where no file can be created.
Nor does free text hold NUL, which no real argv can (in-process,
main(["hist", "--csv", "a\\0b"]) raises ValueError from os.open:
unreachable from a shell).

Also: filter values reach the kernel only as -D flags of validated integers
(loader.cflags), whatever text the user gave.
"""

import argparse
import io
import os
import re
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioltrace import cgroups, cli, doctor, loader, serve
from ioltrace.commands import common, hist
from ioltrace.commands import demo as demo_command
from ioltrace.records import Check

from . import recfiles

MAX_EXAMPLES = 300
NO_DIR = "/nonexistent-ioltrace-fuzz"


class WouldRun(BaseException):
    """A stub was reached: the command line passed validation."""


# ---------------------------------------------------------------- the sandbox

@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A directory holding recordings and junk files, with every side effect stubbed."""
    d = tmp_path_factory.mktemp("fuzz")
    rec = recfiles.one_file(d / "rec.csv", recfiles.samples(1, 400), seconds=4)
    rec2 = recfiles.one_file(d / "rec2.csv", recfiles.samples(2, 400, median_ns=80_000), seconds=4)
    (d / "garbage.csv").write_bytes(b"\xff\xfe not a recording\n,,,\n")
    (d / "empty.csv").write_bytes(b"")
    (d / "adir").mkdir()
    mp = pytest.MonkeyPatch()

    def stub(name):
        def would_run(*a, **kw):
            raise WouldRun(name)
        return would_run

    mp.setattr(loader, "Tracer", stub("loader.Tracer"))
    mp.setattr(demo_command, "main", stub("demo.run"))
    mp.setattr(serve, "bind", stub("serve.bind"))
    mp.setattr(cgroups, "ScratchCgroup", stub("cgroups.ScratchCgroup"))
    # The real checks may assemble a headers tree; the verdict is not under test here.
    mp.setattr(doctor, "run_checks", lambda: [Check("fuzz", True, "stubbed", "")])
    mp.chdir(d)
    assert not os.path.exists(NO_DIR)
    yield {"dir": d, "rec": rec, "rec2": rec2}
    mp.undo()


class Captured:
    """sys.stdout and sys.stderr as Python sets them up for a UTF-8 locale:
    stdout strict (text that cannot be encoded is a crash), stderr with
    backslashreplace; neither is a terminal."""

    def __enter__(self):
        self.saved = sys.stdout, sys.stderr
        self.out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
        self.err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)
        sys.stdout, sys.stderr = self.out, self.err
        return self

    def __exit__(self, *exc):
        sys.stdout, sys.stderr = self.saved
        return False

    def text(self):
        return (self.out.buffer.getvalue().decode("utf-8", "replace"),
                self.err.buffer.getvalue().decode("utf-8", "replace"))


# ---------------------------------------------------------------- the grammar

def parser_actions():
    """{subcommand: (optional actions, positional actions)} from the real parser,
    without -h/--help (drawn separately, rarely: it ends parsing at once)."""
    top = cli.build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for name, p in sub.choices.items():
        acts = [a for a in p._actions if not isinstance(a, argparse._HelpAction)]
        out[name] = ([a for a in acts if a.option_strings], [a for a in acts if not a.option_strings])
    return out


ACTIONS = parser_actions()
COMMANDS = sorted(ACTIONS)
assert {"hist", "top", "run", "loop", "demo", "doctor", "report", "compare", "plot", "serve"} <= set(COMMANDS)
DISK = next((d for d in sorted(os.listdir("/sys/block")) if not d.startswith(("ram", "zram"))), "sda") \
    if os.path.isdir("/sys/block") else "sda"

# Text from the user: any unicode but '/' (so no value names a path outside
# the sandbox) and NUL (which no real argv can hold).
free_text = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), max_size=40)
numbers = st.one_of(st.integers(-(2**70), 2**70).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["0", "1", "-1", "0.05", "0.049", "86400", "86401", "1e400", "-1e400", "nan",
                                     "inf", "1_000", "0x10", "\u0663", " 1", "1 ", "9" * 5000, "1.", ".5", "+2"]))
odd = st.sampled_from(["", " ", "-", "--", "---", "-x", "\n", "a\nb", "\r", "\t", "'", '"', ";", "$(id)", "`id`",
                       ",", ",,", "é" * 8, "é" * 20, "x" * 300, "\udcff\udcfe", "caf\udce9", "\u202e", "\ufeff",
                       "\U0001f600", "..", "."])
relative_paths = st.sampled_from(["out.csv", "out.png", "out.svg", "out.pdf", "out.txt", "adir", "adir/x.csv",
                                  "adir/x.png", "rec.csv", "rec2.csv", "garbage.csv", "empty.csv", "missing.csv",
                                  "x.prom", "adir/x.prom", "nodir/x.csv", "no\nsuch.csv", "rec.csv,rec2.csv",
                                  "rec.csv,", ",rec.csv", "missing.csv,rec.csv", "out.json"])
absolute_paths = st.sampled_from([f"{NO_DIR}/x.csv", f"{NO_DIR}/x.png", NO_DIR, "/proc/self/nope.csv"])
paths = st.one_of(relative_paths, absolute_paths)
specific = st.sampled_from([
    # choices and near misses
    "disk", "process", "thread", "cgroup", "cgroup-v1", "comm", "read", "write", "flush", "discard", "other",
    "queue", "device", "total", "all", "latency", "block", "syscall", "both", "table", "csv", "json", "bytes",
    "READ", "Disk", "iops",
    # filters
    DISK, "sda", "sda1", "nvme0n1", "nosuchdisk", "1", str(os.getpid()), "4194304", "4194305", "fio",
    "a" * 15, "a" * 16,
    # serve
    "127.0.0.1:0", "none", "NONE", "[::1]:9435", "::1:9435", "0.0.0.0:99999", "localhost:1", ":9435",
    "127.0.0.1:", "[127.0.0.1]:80", "256.1.1.1:80", "127.0.0.1:-1",
    # syscall lists, tracepoints, chains, sizes
    "all", "default", "read,write", "read,nope", "fsync,fdatasync", "openat", "sys_enter_fsync",
    "syscalls:sys_enter_read", "block:block_rq_issue", "nope:nope", "a:b:c", "sys_enter_fsync,sys_exit_fsync",
    "sys_enter_read,sys_exit_read,sys_enter_write", ",".join(["sys_enter_read"] * 9), "800x600", "400x160",
    "0x0", "x", "399x160", "800X600", "1e3x600",
])
values = st.one_of(free_text, numbers, odd, paths, specific)

# Values a user would likely give, per destination, so that many command
# lines get past parsing into each command's own checks (and the stubs).
GOOD = {
    "interval": ["1", "0.5", "2"], "count": ["1", "3"], "iterations": ["1", "2"], "width": ["80", "120"],
    "duration": ["5"], "max_series": ["10"], "pid": [str(os.getpid()), "1"], "cgroup": ["/", "/nope"],
    "disk": [DISK, "nosuchdisk"], "comm": ["fio", "python3"], "csv": ["out.csv", "adir/x.csv"],
    "json": ["out.json"], "textfile": ["x.prom"], "listen": ["127.0.0.1:0", "none", "[::1]:0"],
    "syscalls": ["read,write", "default"], "from_tp": ["sys_enter_read"], "to_tp": ["sys_exit_read"],
    "chain": ["sys_enter_read,sys_exit_read"], "size": ["800x600", "400x160"], "output": ["out.png", "out.svg"],
    "plot": ["out.png"], "runs": ["rec.csv,rec2.csv", "rec2.csv"], "key": ["100", "fio"],
    "files": ["rec.csv", "rec2.csv"], "command_argv": ["true"],
}
bogus_options = st.sampled_from(["--nope", "-Z", "--by=", "--=", "--cs", "--c", "--op=read", "--stage=all",
                                 "--csv=out.csv", "--interval=1", "--layer=both", "-vv", "-Tm", "-bo",
                                 "--verbose=1", "--no-such-option=x", "-n0", "-n1", "-"])


def value_for(draw, action):
    roll = draw(st.integers(0, 5))
    if action.choices and roll <= 2:
        return draw(st.sampled_from(sorted(map(str, action.choices))))
    if action.dest in GOOD and roll <= 3:
        return draw(st.sampled_from(GOOD[action.dest]))
    return draw(values)


@st.composite
def argv_lists(draw):
    argv = []
    if draw(st.integers(0, 49)) == 0:
        argv.append(draw(st.sampled_from(["--version", "--nope", "-h"])))
    roll = draw(st.integers(0, 24))
    if roll == 0:
        return argv + draw(st.lists(values, max_size=4))
    cmd = draw(st.sampled_from(COMMANDS)) if roll > 1 else draw(
        st.sampled_from(["nope", "", "HIST", "hist ", "his", "hist\n", "-", "--"]))
    argv.append(cmd)
    opts, positionals = ACTIONS.get(cmd, ([], []))
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 19))
        if kind <= 13 and opts:
            action = draw(st.sampled_from(opts))
            flag = draw(st.sampled_from(action.option_strings))
            if action.nargs == 0:
                argv.append(flag)
                continue
            value = value_for(draw, action)
            if flag.startswith("--") and draw(st.integers(0, 4)) == 0:
                argv.append(f"{flag}={value}")
            else:
                argv += [flag, value]
        elif kind <= 15:
            argv.append(draw(bogus_options))
        elif kind == 16:
            argv.append(draw(st.sampled_from(["-h", "--help", "--version"])))
        else:
            argv.append(draw(values))
    for action in positionals:
        if action.nargs == argparse.REMAINDER:
            if draw(st.integers(0, 3)):
                argv += draw(st.sampled_from([["--"], [], ["--", "--"]])) + draw(st.lists(st.one_of(
                    st.sampled_from(["true", "false", "--", "-x", "/nonexistent-cmd"]), free_text), max_size=3))
        elif draw(st.integers(0, 3)):
            n = {"?": 1, "*": 2, "+": draw(st.integers(1, 3))}.get(action.nargs, 1)
            argv += [value_for(draw, action) for _ in range(n)]
    return argv


# ---------------------------------------------------------------- the properties

def check_outcome(argv, outcomes):
    with Captured() as cap:
        try:
            rc = cli.main(argv)
        except WouldRun as e:
            outcomes[f"would run: {e.args[0]}"] += 1
            rc = None
    out, err = cap.text()
    assert "Traceback" not in out + err, (argv, err)
    if rc is None:
        return
    assert isinstance(rc, int) and rc in (0, 2), (argv, rc, err)
    outcomes[rc] += 1
    if rc == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and err.endswith("\n") and lines[0].startswith("ioltrace:"), (argv, err)
        assert all(c.isprintable() for c in lines[0]), (argv, lines[0])
    else:
        assert all(line.startswith("ioltrace:") for line in err.splitlines()), (argv, err)


def test_fuzz_cli(sandbox):
    outcomes = Counter()

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(argv_lists())
    def one(argv):
        check_outcome(argv, outcomes)

    one()
    print(dict(outcomes))
    # The grammar must reach both sides of validation, or it tests little.
    assert outcomes[2] > MAX_EXAMPLES // 4, outcomes
    assert outcomes[0] > 0, outcomes
    assert sum(n for k, n in outcomes.items() if str(k).startswith("would run")) > 0, outcomes
    assert not os.path.exists(NO_DIR)


@pytest.mark.parametrize("argv", [
    ["hist", "1", "1"], ["top", "-b", "-n", "1"], ["run", "--", "true"], ["loop", "--from", "sys_enter_read",
                                                                        "--to", "sys_exit_read"],
    ["serve"], ["serve", "--listen", "none", "--textfile", "x.prom", "--user", "root"], ["demo"], ["doctor"], ["--version"],
    ["report", "rec.csv"], ["compare", "rec.csv", "rec2.csv"],
])
def test_valid_command_lines_reach_the_stubs(argv, sandbox):
    """The stubs are where a valid command line ends up (so the fuzz could
    not have traced, made cgroups or opened a port by accident)."""
    outcomes = Counter()
    check_outcome(argv, outcomes)
    if argv[0] in ("hist", "top", "run", "loop", "demo"):
        assert any(str(k).startswith("would run") for k in outcomes), outcomes
    elif argv[0] == "serve" and "--textfile" not in argv:
        assert outcomes == {"would run: serve.bind": 1}
    elif argv[0] == "serve":
        assert outcomes == {"would run: loader.Tracer": 1}
    else:
        assert outcomes == {0: 1}, outcomes


# ---------------------------------------------------------------- filters -> cflags

FLAG = re.compile(r"-D[A-Z][A-Z0-9_]*=[0-9]+(U|ULL)?")
KNOWN_BARE = {"-DIOLT_START_IO_START", "-DIOLT_BY_THREAD", "-DIOLT_TOTAL_HIST"}


class FakeResolver:
    """Names -> numbers, as the real resolver would after checking them: any
    text resolves, so hostile names get as far as the flags."""

    def disk_filter(self, name):
        return (259 << 20) | (len(name) % 1024), 2048, 2**63 - 1

    def cgroup_filter(self, path):
        return 2**64 - 1, len(path) % 64

    def pid_exists(self, pid):
        return True


HOSTILE = ['x"; } int evil() { return 0; } //', "a\nb", "a;b", "$(reboot)", "\\", "'", "*/ /*", "%s%n",
           "a b", "\x01", "\r\n#define X", "é", "\udcff", "", " "]


def assert_only_integers(flags, *hostile):
    for f in flags:
        assert f in KNOWN_BARE or FLAG.fullmatch(f), f
    for h in hostile:
        if len(h) > 1:
            assert not any(h in f for f in flags), (h, flags)


def decode_comm(flags):
    v = dict(f[2:].split("=") for f in flags if "=" in f)
    lo, hi = (int(v[k].rstrip("UL")) for k in ("IOLT_FILTER_COMM_LO", "IOLT_FILTER_COMM_HI"))
    return (lo.to_bytes(8, "little") + hi.to_bytes(8, "little")).rstrip(b"\0")


@pytest.mark.parametrize("text", [h for h in HOSTILE if h] + ["fio", "a" * 15, "kworker/0:1H", "é" * 7])
@pytest.mark.parametrize("start_tp", ["block_io_start", "block_rq_insert"])
def test_hostile_filters_become_integers(text, start_tp):
    argv = ["hist", "--by", "thread", "--stage", "all", "--disk", text, "--cgroup", "/" + text, "--pid", "1"]
    raw = text.encode("utf-8", "surrogateescape")
    comm_ok = 0 < len(raw) <= 15
    if comm_ok:
        argv += ["--comm", text]
    args = cli.build_parser().parse_args(argv)
    opts = common.kernel_options(cli.options_of(hist.Options, args), FakeResolver(), by_thread=True, total_hist=True)
    for field, value in opts._asdict().items():
        assert value is None or type(value) in (int, bool) or (field == "comm" and type(value) is bytes), (field, value)
    flags = loader.cflags(opts, start_tp)
    assert_only_integers(flags, text, "/" + text)
    names = {f.split("=")[0] for f in flags}
    assert {"-DIOLT_FILTER_DEV", "-DIOLT_FILTER_SECTOR_LO", "-DIOLT_FILTER_CGID", "-DIOLT_FILTER_TGID"} <= names
    assert ("-DIOLT_START_IO_START" in flags) == (start_tp == "block_io_start")
    if comm_ok:
        assert decode_comm(flags) == raw.rstrip(b"\0")


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.binary(min_size=1, max_size=15).filter(lambda b: b"\0" not in b), st.text(max_size=60),
       st.booleans(), st.booleans())
def test_any_comm_and_names_become_integers(raw, name, by_thread, total):
    text = raw.decode("utf-8", "surrogateescape")   # how Python hands non-UTF-8 argv bytes over
    args = common.Filters(disk=name or None, cgroup=name or None, pid=None, comm=cli.comm_arg(text))
    opts = common.kernel_options(args, FakeResolver(), by_thread=by_thread, total_hist=total)
    flags = loader.cflags(opts, "block_io_start")
    assert_only_integers(flags, name)
    assert decode_comm(flags) == raw


@pytest.mark.parametrize("text", ["a" * 16, "é" * 8, "a\0b", ""])
def test_comm_that_the_kernel_cannot_hold_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        cli.comm_arg(text)
