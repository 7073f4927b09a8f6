"""--csv - writes the recording to stdout (as --json - does), and no file named "-"."""

from ioltrace.commands import common
from ioltrace.export import csv as rec
from ioltrace.records import Group, GroupId

T0 = 1_700_000_000.0


def test_csv_dash_is_stdout_and_leaves_no_file(tmp_path, monkeypatch, capfd):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    opts = common.Traced(csv="-")
    writer, jwriter = common.open_outputs(opts)
    assert jwriter is None and common.json_to_stdout(opts)
    g = Group(GroupId("process", "42", "dd", "sda", "write"), 3, 3 * 4096, 0, 10, 20, {}, {})
    writer.write_interval([g], T0, T0 + 1, {"dropped": 0})
    writer.close()
    out = capfd.readouterr().out
    assert list(cwd.iterdir()) == []
    assert out.startswith(rec.PREAMBLE) and out.endswith("\r\n")
    path = tmp_path / "stdout.csv"
    path.write_text(out, newline="")
    rows = rec.read(path)
    assert {(r.key, r.stage, r.count) for r in rows if r.key_kind == "process"} >= {("42", "ios", 3),
                                                                                   ("42", "bytes", 12288)}


def test_csv_file_and_json_stdout_are_distinct(tmp_path, capfd):
    opts = common.Traced(csv=str(tmp_path / "r.csv"), json="-")
    writer, jwriter = common.open_outputs(opts)
    writer.close()
    jwriter.close()
    assert (tmp_path / "r.csv").exists() and capfd.readouterr().out == ""
