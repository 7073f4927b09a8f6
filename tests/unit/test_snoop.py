"""snoop's pure parts: --min-latency parsing, the rwbs the kernel side
builds from cmd_flags (compiled natively from bpf/ioltrace.h), the rwbs ->
op decoder, the text view, the exports (atomic files) and bad input.

The rwbs expectations are blk_fill_rwbs()'s (kernel/trace/blktrace.c) for
flag bits numbered as enum req_flag_bits of 6.18 (the kernel's BTF gives
them at run time), not the header's own logic."""

import csv
import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ioltrace import cli, layout, maps
from ioltrace.commands import snoop as command
from ioltrace.errors import BadInput
from ioltrace.export import snoop as export
from ioltrace.fmt import parse_ns
from ioltrace.records import SnoopEvent, SnoopRow
from ioltrace.views import snoop as view

REPO = Path(__file__).resolve().parents[2]

# enum req_flag_bits on 6.18 (the same on 6.1).
SYNC, META, FUA, PREFLUSH, RAHEAD = 1 << 11, 1 << 12, 1 << 17, 1 << 18, 1 << 19
READ, WRITE, FLUSH, DISCARD, SECURE_ERASE, WRITE_ZEROES = 0, 1, 2, 3, 5, 9

# cmd_flags -> what blk_fill_rwbs() writes.
RWBS = [
    (READ, "R"), (READ | RAHEAD, "RA"), (READ | SYNC | META, "RSM"), (READ | RAHEAD | SYNC, "RAS"),
    (WRITE, "W"), (WRITE | SYNC, "WS"), (WRITE | FUA | SYNC, "WFS"), (WRITE | PREFLUSH | SYNC, "FWS"),
    (WRITE | PREFLUSH | FUA | SYNC | META, "FWFSM"), (FLUSH, "F"), (FLUSH | PREFLUSH, "FF"),
    (DISCARD, "D"), (DISCARD | SYNC, "DS"), (SECURE_ERASE, "DE"), (WRITE_ZEROES, "N"),
    (WRITE_ZEROES | SYNC, "NS"), (PREFLUSH | SECURE_ERASE | FUA | RAHEAD | SYNC | META, "FDEFASM"),
]

C_MAIN = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
typedef uint32_t __u32; typedef uint64_t __u64; typedef int32_t __s32; typedef int64_t __s64;
#include "ioltrace.h"
int main(void)
{
	unsigned int opf;
	while (scanf("%u", &opf) == 1) {
		char rwbs[IOLT_RWBS_LEN];
		memset(rwbs, 'x', sizeof(rwbs));
		iolt_fill_rwbs(rwbs, opf, 1u << 18, 1u << 17, 1u << 19, 1u << 11, 1u << 12);
		printf("%.*s|\n", IOLT_RWBS_LEN, rwbs);
	}
	return 0;
}
"""


@pytest.fixture(scope="module")
def fill_rwbs(tmp_path_factory):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("rwbs")
    (d / "r.c").write_text(C_MAIN)
    cc = subprocess.run([gcc, "-O2", "-Wall", "-Werror", f"-I{REPO / 'bpf'}", "-o", str(d / "r"), str(d / "r.c")],
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr

    def run(flags):
        out = subprocess.run([str(d / "r")], input="".join(f"{f}\n" for f in flags), check=True,
                             capture_output=True, text=True).stdout
        return [line.rstrip("|").split("\0", 1)[0] for line in out.splitlines()]
    return run


def test_rwbs_from_cmd_flags_is_blk_fill_rwbs(fill_rwbs):
    assert fill_rwbs([f for f, _ in RWBS]) == [r for _, r in RWBS]


@pytest.mark.parametrize("rwbs,op", [("R", "read"), ("RA", "read"), ("FR", "read"), ("W", "write"),
                                     ("WS", "write"), ("FWFSM", "write"), ("F", "flush"), ("FF", "flush"),
                                     ("D", "discard"), ("DE", "discard"), ("FD", "discard"), ("N", "other"),
                                     ("FN", "other"), ("", "other")])
def test_op_of_rwbs(rwbs, op):
    assert layout.OPS[maps.op_of_rwbs(rwbs)] == op


@pytest.mark.parametrize("text,ns", [("0", 0), ("10ms", 10_000_000), ("250us", 250_000), ("250µs", 250_000),
                                     ("1.5s", 1_500_000_000), ("800ns", 800), ("0ms", 0), (" 2ms ", 2_000_000),
                                     ("0.5us", 500)])
def test_parse_ns(text, ns):
    assert parse_ns(text) == ns


@pytest.mark.parametrize("text,why", [("abc", "not a latency"), ("10", "no unit"), ("-1ms", "0 or more"),
                                      ("10 parsecs", "not a latency"), ("ms", "not a latency"),
                                      ("nanms", "0 or more"), ("2days", "not a latency"), ("90000s", "more than")])
def test_parse_ns_refuses(text, why):
    with pytest.raises(ValueError) as e:
        parse_ns(text)
    assert why in str(e.value)


@pytest.mark.parametrize("argv", [["--min-latency", "abc"], ["--buffer-pages", "3"], ["--buffer-pages", "0"],
                                  ["--buffer-pages", "131072"], ["--buffer-pages", "x"], ["--min-latency", "10"],
                                  ["--duration", "0"], ["--probes", "kprobe"], ["--children"],
                                  ["--csv", "-", "--json", "-"]])
def test_bad_input_is_one_line_and_exit_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["snoop", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ioltrace: ") and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_options_parse_into_ns_and_pages():
    args = cli.build_parser().parse_args(["snoop", "--min-latency", "10ms", "--buffer-pages", "64",
                                          "--duration", "30", "--disk", "loop0"])
    opts = cli.options_of(command.Options, args)
    assert (opts.min_latency, opts.buffer_pages, opts.duration, opts.disk) == (10_000_000, 64, 30.0, "loop0")


EVENT = SnoopEvent(ts_ns=3_500_000_000, sector=2048, queue_ns=12_000, device_ns=1_988_000, cgid=7, comm="fio",
                   tgid=4242, tid=4243, dev=(7 << 20) | 3, bytes=1 << 20, err=0, rwbs="WS")


class FakeResolver:
    def cgroup_path(self, cgid):
        return {7: "/system.slice/fio-job.service"}.get(cgid, f"cgroup:{cgid}")

    def disk_name(self, dev):
        return "loop3" if dev == (7 << 20) | 3 else "?"


def test_rows_resolve_names_and_times():
    rows = command.Rows(FakeResolver(), t0_ns=1_000_000_000, wall0=1_800_000_000.0)
    r = rows.of(EVENT)
    assert r == SnoopRow("2027-01-15T08:00:02.500000+00:00", 2.5, "fio", 4242, 4243, "/system.slice/fio-job.service",
                         "loop3", "WS", "write", 2048, 1 << 20, 12_000, 1_988_000, 2_000_000, "")
    assert rows.of(EVENT._replace(err=-5)).error == "EIO"


def test_decode_snoop_event_from_the_kernel_struct():
    ev = layout.SnoopEvent(ts_ns=1, sector=8, queue_ns=2, device_ns=3, cgid=4, comm=b"kworker/u8:0", tgid=5,
                           tid=6, dev=7, bytes=4096, err=-5, rwbs=b"FWFS")
    assert maps.decode_snoop_event(bytes(ev)) == SnoopEvent(1, 8, 2, 3, 4, "kworker/u8:0", 5, 6, 7, 4096, -5, "FWFS")
    # The unpack format and the ctype (checked against the header by test_layout) agree.
    assert maps.SNOOP_EVENT.size == ctypes.sizeof(layout.SnoopEvent)


def test_view_line_is_in_its_columns():
    r = command.Rows(FakeResolver(), 1_000_000_000, 0.0).of(EVENT)
    head, line = view.header(), view.line(r)
    assert head.split() == ["TIME(s)", "COMM", "PID", "CGROUP", "DISK", "RWBS", "SECTOR", "BYTES", "QUE(ms)",
                            "DEV(ms)", "TOT(ms)"]
    assert line.split() == ["2.500000", "fio", "4242", "…e/fio-job.service", "loop3", "WS", "2048", "1048576",
                            "0.012", "1.988", "2.000"]
    # Each value ends where its column's heading ends (right-aligned) or starts with it.
    assert line.index("4242") + 4 == head.index("PID") + 3
    assert line.index("1.988") + 5 == head.index("DEV(ms)") + 7
    assert view.line(r._replace(error="EIO")).endswith(" EIO")


def test_summary_always_names_snoop_lost():
    assert view.summary(3, {"snoop_lost": 0}, ("snoop_lost", "unmatched"), 0) == ["3 requests shown; snoop_lost=0"]
    lines = view.summary(0, {"snoop_lost": 9, "unmatched": 2}, ("unmatched", "snoop_lost"), 10_000_000)
    assert lines[0].startswith("0 requests at or above 10ms shown; snoop_lost=9 (")
    assert lines[1] == "kernel counters: unmatched=2"
    assert view.summary(1, {"snoop_lost": 0}, (), 250_000)[0].startswith("1 requests at or above 250us")


def test_csv_and_json_appear_whole_on_finish(tmp_path):
    row = command.Rows(FakeResolver(), 1_000_000_000, 0.0).of(EVENT)
    c, j = tmp_path / "s.csv", tmp_path / "s.jsonl"
    outs = export.open_outputs(str(c), str(j))
    for o in outs:
        o.row(row)
        o.row(row._replace(comm="a,b\"c"))
        o.flush()
    assert not c.exists() and not j.exists()       # only the temporary files so far
    for o in outs:
        o.finish({"snoop_lost": 4})
        o.close()
    rows, counters = export.read_csv(c)
    assert counters == {"snoop_lost": 4}
    assert [r["comm"] for r in rows] == ["fio", "a,b\"c"] and rows[0]["total_ns"] == "2000000"
    assert list(csv.reader(c.read_text().splitlines()[1:2]))[0] == list(SnoopRow._fields)
    docs = [json.loads(line) for line in j.read_text().splitlines()]
    assert docs[0]["type"] == "request" and docs[0]["bytes"] == 1 << 20
    assert docs[-1] == {"type": "counters", "counters": {"snoop_lost": 4}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.jsonl"]


def test_the_runs_histogram_ends_csv_and_json(tmp_path):
    """Non-empty buckets with their bounds, the overflow bucket's high as
    inf / null, before the counters; rows still read as before."""
    from ioltrace import hist

    counts = hist.from_samples([5, 1000, 1001, 3_000_000, 1 << 40])
    row = command.Rows(FakeResolver(), 1_000_000_000, 0.0).of(EVENT)
    c, j = tmp_path / "s.csv", tmp_path / "s.jsonl"
    for o in export.open_outputs(str(c), str(j)):
        o.row(row)
        o.finish({"snoop_lost": 0}, counts)
        o.close()
    want = [(5, 6, 1), (992, 1008, 2), (2_949_120, 3_014_656, 1), (1 << 36, None, 1)]
    assert export.read_csv_histogram(c) == want
    rows, counters = export.read_csv(c)
    assert len(rows) == 1 and counters == {"snoop_lost": 0}
    lines = c.read_text().splitlines()
    assert lines[-2] == "# histogram total 5:6=1 992:1008=2 2949120:3014656=1 68719476736:inf=1"
    docs = [json.loads(line) for line in j.read_text().splitlines()]
    assert docs[-2] == {"type": "histogram", "stage": "total", "unit": "ns", "count": 5,
                        "buckets": [list(b) for b in want]}
    assert docs[-1]["type"] == "counters"


def test_histogram_line_counts_every_request():
    from ioltrace import hist

    line = view.histogram_line(hist.from_samples([1_000_000] * 99 + [40_000_000]))
    assert line.startswith("total time (kernel histogram) of all 100 requests: p50 1.01ms  p99 1.01ms  max < 40.9ms")
    assert view.histogram_line(hist.empty()) == "total time (kernel histogram): no requests"


@pytest.mark.parametrize("argv, flags, absent", [
    (["--min-latency", "10ms"], ["-DIOLT_SNOOP", "-DIOLT_SNOOP_MIN_NS=10000000ULL", "-DIOLT_TOTAL_HIST",
                                 "-DIOLT_TOTAL_ONLY"], ["-DIOLT_SNOOP_DYNAMIC"]),
    ([], ["-DIOLT_SNOOP_MIN_NS=0ULL", "-DIOLT_TOTAL_ONLY"], ["-DIOLT_SNOOP_DYNAMIC"]),
    (["--slowest-pct", "1"], ["-DIOLT_SNOOP_DYNAMIC", "-DIOLT_SNOOP_MIN_NS=0ULL", "-DIOLT_TOTAL_ONLY"], []),
    (["--layer", "syscall"], ["-DIOLT_SNOOP_SYSCALL"], ["-DIOLT_SNOOP", "-DIOLT_TOTAL_HIST", "-DIOLT_TOTAL_ONLY"]),
])
def test_a_fixed_threshold_is_compiled_in(argv, flags, absent):
    """--min-latency is a -D constant, the kernel's one comparison; only
    --slowest-pct compiles in the map (IOLT_SNOOP_DYNAMIC, bpf/snoop.h)."""
    from ioltrace import loader

    opts = cli.options_of(command.Options, cli.build_parser().parse_args(["snoop", *argv]))
    got = loader.cflags(command.kernel_options(opts, FakeResolver()), "block_io_start")
    assert set(flags) <= set(got) and not set(absent) & set(got), got


def test_an_unfinished_run_leaves_no_file(tmp_path):
    outs = export.open_outputs(str(tmp_path / "s.csv"), str(tmp_path / "s.jsonl"))
    for o in outs:
        o.close()
    assert list(tmp_path.iterdir()) == []


def test_outputs_refuse_a_directory_and_same_file(tmp_path):
    with pytest.raises(BadInput):
        export.open_outputs(str(tmp_path), None)
    with pytest.raises(BadInput):
        export.open_outputs(str(tmp_path / "x"), str(tmp_path / "x"))
    with pytest.raises(BadInput):
        export.open_outputs(str(tmp_path / "x.csv"), str(tmp_path / "no-such-dir" / "x.jsonl"))
    assert list(tmp_path.iterdir()) == []


def test_slowest_threshold_keeps_the_slowest_share():
    from ioltrace import hist

    # 1,000 samples: 990 at 10 us, 10 at 5 ms: the slowest 1% are the 5 ms ones.
    counts = hist.from_samples([10_000] * 990 + [5_000_000] * 10)
    th = hist.slowest_threshold(counts, 1)
    assert 10_000 < th <= 5_000_000 and layout.bucket_of(5_000_000) == layout.bucket_of(th)
    # 2% reaches into the 10 us bucket: its low bound, so all of them pass.
    assert hist.slowest_threshold(counts, 2) <= 10_000
    samples = list(range(1_000, 1_001_000, 1_000))      # 1 us .. 1 ms evenly, 1,000 samples
    th = hist.slowest_threshold(hist.from_samples(samples), 10)
    kept = sum(1 for s in samples if s >= th)
    # At least 10%, and at most the samples of one more bucket (16,384 ns wide
    # at 900 us: 1/32 of its power of two, 16 samples here).
    assert 100 <= kept <= 100 + 16384 // 1000 + 1
    assert hist.slowest_threshold(hist.from_samples([1_000] * 99), 1) is None       # fewer than 100
    assert hist.slowest_threshold(hist.from_samples([1_000] * 500), 0.1) is None    # fewer than 100/pct
    assert hist.slowest_threshold(hist.empty(), 50) is None


@pytest.mark.parametrize("argv", [["--slowest-pct", "0"], ["--slowest-pct", "100"], ["--slowest-pct", "x"],
                                  ["--slowest-pct", "1", "--min-latency", "10ms"]])
def test_slowest_pct_refusals(argv, capsys):
    assert cli.main(["snoop", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ioltrace: ") and err.count("\n") == 1


def test_summary_of_a_learned_threshold():
    assert view.summary(5, {"snoop_lost": 0}, (), 0, slowest=(1, 62_500))[0] == \
        "5 requests in the slowest 1% (threshold 62.5us at the end) shown; snoop_lost=0"
    assert "not learned" in view.summary(0, {"snoop_lost": 0}, (), 0, slowest=(0.5, None))[0]


SC_EVENT = layout.ScSnoopEvent(ts_ns=2_000_000_000, lat_ns=1_500_000, cgid=7, ret=4096, comm=b"dd", tgid=42, tid=43,
                               sc=layout.SYSCALLS.index("pread64"))


def test_syscall_events_decode_and_become_rows():
    assert maps.SC_SNOOP_EVENT.size == ctypes.sizeof(layout.ScSnoopEvent)
    e = maps.decode_sc_snoop_event(bytes(SC_EVENT))
    assert (e.comm, e.ret, e.sc, e.lat_ns) == ("dd", 4096, layout.SYSCALLS.index("pread64"), 1_500_000)
    rows = command.SyscallRows(FakeResolver(), 1_000_000_000, 0.0)
    r = rows.of(e)
    assert (r.seconds, r.syscall, r.ret, r.bytes, r.latency_ns, r.error, r.cgroup) == \
        (1.0, "pread64", 4096, 4096, 1_500_000, "", "/system.slice/fio-job.service")
    failed = rows.of(e._replace(ret=-9))
    assert (failed.bytes, failed.error) == (0, "EBADF")
    fsync = rows.of(e._replace(ret=0, sc=layout.SYSCALLS.index("fsync")))
    assert (fsync.syscall, fsync.bytes) == ("fsync", 0)
    line = view.SyscallLines().line(failed)
    assert line.split() == ["1.000000", "dd", "42", "…e/fio-job.service", "pread64", "0", "1.500", "EBADF"]
    assert view.syscall_header().split() == ["TIME(s)", "COMM", "PID", "CGROUP", "SYSCALL", "BYTES", "LAT(ms)"]
    assert view.summary(3, {"syscall_snoop_lost": 1}, (), 0, noun="syscalls", lost="syscall_snoop_lost")[0] \
        .startswith("3 syscalls shown; syscall_snoop_lost=1 (")


def test_syscall_csv_names_its_layer(tmp_path):
    from ioltrace.records import SnoopSyscallRow

    r = command.SyscallRows(FakeResolver(), 1_000_000_000, 0.0).of(maps.decode_sc_snoop_event(bytes(SC_EVENT)))
    [out] = export.open_outputs(str(tmp_path / "s.csv"), None, SnoopSyscallRow._fields, "syscall")
    out.row(r)
    out.finish({"syscall_snoop_lost": 0})
    out.close()
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "# ioltrace-snoop-csv 1 layer=syscall"
    assert lines[1].split(",") == list(SnoopSyscallRow._fields)
    rows, counters = export.read_csv(tmp_path / "s.csv")
    assert rows[0]["syscall"] == "pread64" and counters == {"syscall_snoop_lost": 0}


@pytest.mark.parametrize("argv", [["--layer", "syscall", "--disk", "loop0"], ["--layer", "syscall", "--probes", "raw"],
                                  ["--layer", "syscall", "--slowest-pct", "1"], ["--layer", "both"]])
def test_syscall_layer_refuses_block_options(argv, capsys):
    assert cli.main(["snoop", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ioltrace: ") and err.count("\n") == 1


def test_banner_ending_says_what_and_until_when():
    def opts(*argv):
        return cli.options_of(command.Options, cli.build_parser().parse_args(["snoop", *argv]))

    assert view.ending(opts(), False) == "Tracing block I/O... Hit Ctrl-C to end."
    assert view.ending(opts("--min-latency", "10ms", "--duration", "5"), False) == \
        "Tracing block I/O at or above 10ms for 5s."
    assert view.ending(opts("--slowest-pct", "0.5"), False) == "Tracing block I/O in the slowest 0.5%... Hit Ctrl-C to end."
    assert view.ending(opts("--layer", "syscall", "--min-latency", "250us"), True) == \
        "Tracing I/O syscalls at or above 250us... Hit Ctrl-C to end."
