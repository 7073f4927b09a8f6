"""Bad input to report, compare and plot: one 'ioltrace:' line on stderr naming
the file and line (or option), exit code 2, in-process and as a real process
with bcc unimportable; and the commands never need bcc or root."""

import pytest

from ioltrace import cli
from ioltrace.export import csv as rec

from .recfiles import T0, group, ioltrace, samples, write

HEADER = ",".join(rec.HEADER)
GOOD_ROW = f"{rec.iso(T0)},{rec.iso(T0 + 1)},process,1,x,sda,read,block,device,1024,1056,3"


def text_file(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text.encode())
    return str(p)


def bad_files(tmp_path):
    """name -> (path, text expected in the message after 'path:')."""
    pre = rec.PREAMBLE
    cases = {
        "missing": (str(tmp_path / "nope.csv"), "no such file"),
        "empty": (text_file(tmp_path, "empty.csv", ""), "1: not an ioltrace recording"),
        "not_a_recording": (text_file(tmp_path, "notes.csv", "a,b,c\r\n1,2,3\r\n"), "1: not an ioltrace recording"),
        "version_4": (text_file(tmp_path, "v4.csv", pre.replace(f" {rec.FORMAT_VERSION} ", " 4 ") + HEADER + "\r\n"
                                + GOOD_ROW + "\r\n"), "1: recording format version '4'"),
        "layout_in_preamble": (text_file(tmp_path, "sub4.csv", pre.replace("sub_bits=5", "sub_bits=4") + HEADER
                                         + "\r\n" + GOOD_ROW + "\r\n"), "1: bucket layout"),
        "layout_in_rows": (text_file(tmp_path, "rows.csv", pre + HEADER + "\r\n" + GOOD_ROW + "\r\n"
                                     + GOOD_ROW.replace(",1024,1056,", ",1024,1088,") + "\r\n"),
                           "4: bucket [1024, 1088) is not one of this ioltrace's buckets"),
        "truncated_row": (text_file(tmp_path, "cut.csv", pre + HEADER + "\r\n" + GOOD_ROW + "\r\n" + GOOD_ROW[:30]),
                          "cut short (a run killed mid-write) in its first interval"),
        "short_row": (text_file(tmp_path, "short.csv", pre + HEADER + "\r\n" + GOOD_ROW + "\r\n1,2,3\r\n"),
                      "4: expected 12 fields, got 3"),
        "bad_header": (text_file(tmp_path, "hdr.csv", pre + "a,b\r\n"), "2: unexpected header"),
        "bad_count": (text_file(tmp_path, "count.csv", pre + HEADER + "\r\n" + GOOD_ROW[:-1] + "x\r\n"),
                      "3: count 'x' is not an integer"),
        "bad_time": (text_file(tmp_path, "time.csv", pre + HEADER + "\r\n" + GOOD_ROW + "\r\n"
                               + GOOD_ROW.replace(rec.iso(T0), "yesterday", 1) + "\r\n"),
                     "4: interval_start 'yesterday' is not an ISO 8601 time"),
        "mixed_kinds": (text_file(tmp_path, "kinds.csv", pre + HEADER + "\r\n" + GOOD_ROW + "\r\n"
                                  + GOOD_ROW.replace(",process,", ",cgroup,") + "\r\n"), "4: key_kind 'cgroup'"),
        "no_intervals": (text_file(tmp_path, "none.csv", pre + HEADER + "\r\n"), "3: no intervals recorded"),
        "name_with_newline_then_bad_bucket": (
            text_file(tmp_path, "nl.csv", pre + HEADER + "\r\n" + GOOD_ROW.replace(",x,", ',"a\r\nb",') + "\r\n"
                      + GOOD_ROW.replace(",1056,", ",1057,") + "\r\n"), "5: bucket [1024, 1057)"),
    }
    return cases


@pytest.mark.parametrize("command", ["report", "compare", "plot"])
def test_every_bad_file_is_one_line_naming_file_and_line(tmp_path, capsys, command):
    good = write(tmp_path / "good.csv", [([group("1", "x", samples(1, 100))], T0, T0 + 1)])
    for name, (path, expect) in bad_files(tmp_path).items():
        argv = {"report": ["report", path], "compare": ["compare", good, path],
                "plot": ["plot", path, "-o", str(tmp_path / "out.png")]}[command]
        rc = cli.main(argv)
        out, err = capsys.readouterr()
        if command == "plot" and "matplotlib is not installed" in err:
            pytest.skip("matplotlib missing: plot stops before reading (tested in test_plot)")
        assert rc == 2, name
        assert out == "", name
        assert err.count("\n") == 1 and err.startswith(f"ioltrace: {path}:"), (name, err)
        assert expect in err, (name, err)


def test_bad_files_in_a_real_process_without_bcc(tmp_path):
    for name, (path, expect) in bad_files(tmp_path).items():
        p = ioltrace("report", path)
        assert p.returncode == 2, (name, p.stderr)
        assert p.stdout == "" and p.stderr.count("\n") == 1, (name, p.stderr)
        assert p.stderr.startswith(f"ioltrace: {path}:") and expect in p.stderr, (name, p.stderr)


BAD_ARGS = {
    "compare_one_file": (["compare", "{good}"], "compare: needs two recordings, got 1"),
    "compare_three_files": (["compare", "{good}", "{good}", "{good}"], "needs two recordings, got 3"),
    "compare_runs_once": (["compare", "--runs", "{good},{good}"], "give two recordings, or --runs twice"),
    "compare_runs_and_files": (["compare", "{good}", "--runs", "{good}", "--runs", "{good}"], "or --runs twice"),
    "compare_runs_empty": (["compare", "--runs", ",", "--runs", "{good}"], "an empty list"),
    "by_not_derivable": (["report", "{good}", "--by", "cgroup-v1"], "--by cgroup-v1: {good} was recorded by process"),
    "by_unknown": (["report", "{good}", "--by", "nope"], "unknown key 'nope'"),
    "kinds_differ": (["report", "{good}", "{disk}"], "recordings: keyed by disk and process"),
    "interval_zero": (["report", "{good}", "--interval", "0"], "must be between"),
    "format": (["report", "{good}", "--format", "xml"], "invalid choice"),
    "plot_no_output": (["plot", "{good}"], "required: -o/--output"),
    "plot_extension": (["plot", "{good}", "-o", "{tmp}/x.gif"], "unknown picture format 'gif'"),
    "plot_unwritable": (["plot", "{good}", "-o", "/nonexistent-dir/x.png"], "cannot write into /nonexistent-dir"),
    "plot_size": (["plot", "{good}", "-o", "{tmp}/x.png", "--size", "big"], "is not WIDTHxHEIGHT"),
    "compare_plot_extension": (["compare", "{good}", "{good}", "--plot", "{tmp}/x.jpeg"], "unknown picture format"),
    "no_files": (["report"], "the following arguments are required"),
}


@pytest.mark.parametrize("name", sorted(BAD_ARGS))
def test_bad_arguments(tmp_path, capsys, name):
    good = write(tmp_path / "good.csv", [([group("1", "x", samples(1, 100))], T0, T0 + 1)])
    disk = write(tmp_path / "disk.csv", [([group("sda", "sda", samples(1, 100), kind="disk", disk="sda")], T0, T0 + 1)])
    argv, expect = BAD_ARGS[name]
    fill = {"good": good, "disk": disk, "tmp": str(tmp_path)}
    rc = cli.main([a.format(**fill) for a in argv])
    out, err = capsys.readouterr()
    if "matplotlib is not installed" in err:
        pytest.skip("matplotlib missing (tested in test_plot)")
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith("ioltrace: "), err
    assert expect.format(**fill) in err


def test_offline_commands_never_import_bcc(tmp_path):
    a = write(tmp_path / "a.csv", [([group("1", "x", samples(1, 500))], T0, T0 + 1)])
    b = write(tmp_path / "b.csv", [([group("2", "x", samples(2, 500, 80_000))], T0, T0 + 1)])
    for argv in (["report", a, "--format", "json"], ["compare", a, b], ["compare", "--runs", f"{a},{b}", "--runs", b],
                 ["report", "--help"]):
        p = ioltrace(*argv)
        assert p.returncode == 0, (argv, p.stderr)
        assert p.stderr == "" and p.stdout, argv
