"""`ioltrace hist` end to end on snapshots of known counts (the tracer is
replaced; no root, no bcc): several disks are split, never merged without a
label; --csv - puts only the recording on stdout."""

import numpy as np
import pytest

from ioltrace import cli, hist, layout, loader
from ioltrace.export import csv as rec
from ioltrace.records import Key, Snapshot, Totals
from ioltrace.resolve import make_dev

# Devices no machine running the tests has, so they resolve to MAJ:MIN.
DEV_A, DEV_B = make_dev(259, 1000), make_dev(259, 1001)
W = layout.OPS.index("write")
# Above PID_MAX_LIMIT (2^22, the ceiling of /proc/sys/kernel/pid_max): no
# process of the machine has it, so its name comes from the snapshot.
PID = 4194305


def snapshot(t_ns, per_dev):
    """per_dev: {dev: [device latencies]} of one process (PID, dd)."""
    totals, hists = {}, {}
    for dev, lat in per_dev.items():
        k = Key(1, PID, PID, dev, W)
        lat = np.asarray(lat, dtype=np.int64)
        totals[k] = Totals(len(lat), 4096 * len(lat), 0, 0, int(lat.sum()), "dd")
        hists[(k, layout.STAGE_QUEUE)] = hist.from_samples(np.zeros_like(lat))
        hists[(k, layout.STAGE_DEVICE)] = hist.from_samples(lat)
    return Snapshot(t_ns, totals, hists, {}, dict.fromkeys(layout.COUNTERS, 0))


class FakeTracer:
    start_tp = "block_io_start"
    compile_s = 0.0

    class headers:
        kind = "running"
        detail = ""

    def __init__(self, snaps):
        self.snaps = list(snaps)

    def describe(self):
        return "probes: fake"

    def snapshot(self):
        return self.snaps.pop(0) if len(self.snaps) > 1 else self.snaps[0]

    def close(self):
        pass


@pytest.fixture
def two_disks(monkeypatch):
    fast, slow = [20_000] * 300, [5_000_000] * 7
    snaps = [snapshot(0, {}), snapshot(10**9, {DEV_A: fast, DEV_B: slow})]
    monkeypatch.setattr(loader, "Tracer", lambda *a, **kw: FakeTracer(snaps))
    return fast, slow


def test_hist_by_process_splits_several_disks(two_disks, capsys):
    fast, slow = two_disks
    assert cli.main(["hist", "--by", "process", "0.05", "1"]) == 0
    out = capsys.readouterr().out
    titles = [line for line in out.splitlines() if line.endswith("device time")]
    assert titles == [f"PID {PID} (dd)  disk 259:1000  write  device time",
                      f"PID {PID} (dd)  disk 259:1001  write  device time"]
    counts = [int(line.split()[1]) for line in out.splitlines() if line.startswith("  count ")]
    assert counts == [len(fast), len(slow)]


def test_hist_csv_to_stdout_prints_only_the_recording(two_disks, capsys, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert cli.main(["hist", "--by", "process", "--csv", "-", "0.05", "1"]) == 0
    assert list(cwd.iterdir()) == []    # stdout, no file named "-"
    out = capsys.readouterr().out
    assert out.startswith(rec.PREAMBLE) and "device time" not in out
    p = tmp_path / "out.csv"
    p.write_text(out, newline="")
    rows = rec.read(p)
    assert sum(r.count for r in rows if r.stage == "ios") == 307


def test_report_labels_keys_whose_disks_were_merged(tmp_path, capsys):
    from .recfiles import T0, group, samples, write

    path = write(tmp_path / "two.csv", [([group("100", "fio", samples(1, 300), disk="sda"),
                                          group("100", "fio", samples(2, 30, 4_000_000), disk="nvme0n1")],
                                         T0, T0 + 1)])
    assert cli.main(["report", path, "--stage", "device"]) == 0
    out = capsys.readouterr().out
    titles = [line for line in out.splitlines() if "device time" in line]
    assert titles == ["PID 100 (fio)  read  device time  2 disks merged"]
    assert "disks merged per key: nvme0n1, sda; --by disk, a pair with disk (cgroup,disk) or --disk NAME splits them" in out
    assert cli.main(["report", path, "--stage", "device", "--by", "disk"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "device time" in line] == [
        "disk nvme0n1  read  device time", "disk sda  read  device time"]
    assert "merged" not in out
