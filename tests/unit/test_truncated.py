"""A recording cut short (a run killed mid-write): report reads every complete
interval, says in one line on stderr that the last one was cut, exits 0.

Ground truth: the same intervals written whole to a second file."""

import json
import os

import pytest

from ioltrace import cli

from .recfiles import T0, group, samples, write


def intervals():
    return [([group("100", "fio", samples(i, 200)), group("200", "dd", samples(10 + i, 50), op="write")],
             T0 + i, T0 + i + 1) for i in range(3)]


def report_json(path, capsys):
    rc = cli.main(["report", str(path), "--format", "json"])
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    doc.pop("sources")
    return rc, doc, cap.err


# Where in the last interval's write the kill lands: bytes of it that reached the file.
CUTS = {"mid_row": lambda n: n // 2, "in_interval_fields": lambda n: 40,
        "all_but_line_end": lambda n: n - 1}


@pytest.mark.parametrize("where", CUTS)
def test_report_reads_complete_intervals_of_a_cut_recording(tmp_path, capsys, where):
    whole = write(tmp_path / "two.csv", intervals()[:2])
    full = write(tmp_path / "three.csv", intervals())
    two_size = os.path.getsize(whole)
    data = open(full, "rb").read()
    last_write = len(data) - two_size
    cut = tmp_path / "cut.csv"
    cut.write_bytes(data[:two_size + CUTS[where](last_write)])
    rc, got, err = report_json(cut, capsys)
    want_rc, want, want_err = report_json(whole, capsys)
    assert (rc, want_rc, want_err) == (0, 0, "")
    assert got == want
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ioltrace: ") and str(cut) in lines[0]
    assert "cut" in lines[0] and "2 complete intervals" in lines[0]


def test_cut_at_a_row_boundary_of_a_new_interval_keeps_the_last_complete_one(tmp_path, capsys):
    # The kill came right after the previous interval's rows, mid-way into
    # the next interval's first row: all of the first two intervals count.
    whole = write(tmp_path / "two.csv", intervals()[:2])
    full = open(write(tmp_path / "three.csv", intervals()), "rb").read()
    n = os.path.getsize(whole)
    cut = tmp_path / "cut.csv"
    cut.write_bytes(full[:n + 80])   # past the first row's interval fields, short of its end
    rc, got, err = report_json(cut, capsys)
    assert rc == 0 and got == report_json(whole, capsys)[1]
    assert "2 complete intervals" in err


def test_a_cut_too_short_to_tell_its_interval_leaves_that_one_out_too(tmp_path, capsys):
    # One byte of a row: it may start a new interval or continue the last
    # one (as most rows do); half an interval passing for a whole one would
    # be wrong, so the last complete-looking interval goes too, and it says so.
    one = write(tmp_path / "one.csv", intervals()[:1])
    two = write(tmp_path / "two.csv", intervals()[:2])
    full = open(write(tmp_path / "three.csv", intervals()), "rb").read()
    cut = tmp_path / "cut.csv"
    cut.write_bytes(full[:os.path.getsize(two) + 1])
    rc, got, err = report_json(cut, capsys)
    assert rc == 0 and got == report_json(one, capsys)[1]
    assert "1 complete interval read" in err and len(err.splitlines()) == 1


def test_a_whole_recording_says_nothing(tmp_path, capsys):
    rc, _, err = report_json(write(tmp_path / "w.csv", intervals()), capsys)
    assert (rc, err) == (0, "")


def test_read_says_what_it_left_out(tmp_path):
    from ioltrace.export import csv as rec

    full = open(write(tmp_path / "three.csv", intervals()), "rb").read()
    cut = tmp_path / "cut.csv"
    cut.write_bytes(full[:-40])
    rows = rec.read(cut)
    assert rows.cut and str(cut) in rows.cut
    assert {r.interval_start for r in rows} == {rec.iso(T0), rec.iso(T0 + 1)}
