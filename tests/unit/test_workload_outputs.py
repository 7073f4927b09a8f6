"""The unit, container or pod a cgroup path names (cgnames) appears beside
the cgroup in report text, report CSV and JSON, and live JSON lines."""

import csv
import io
import json

from ioltrace import cli
from ioltrace.export import json as jexport
from ioltrace.recording import from_group

from .recfiles import T0, group, samples, write

CID = "3f4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233445566aabb"
UID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
DOCKER = f"/system.slice/docker-{CID}.scope"
POD = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/" \
      f"cri-containerd-{CID}.scope"


def cgroup_recording(tmp_path):
    gs = [group("11", DOCKER, samples(1, 100), kind="cgroup"), group("12", POD, samples(2, 100), kind="cgroup"),
          group("13", "/ioltrace-test", samples(3, 100), kind="cgroup")]
    return write(tmp_path / "cg.csv", [(gs, T0, T0 + 1)])


def out_of(capsys, *argv):
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().out


def test_report_json_and_csv_carry_the_workload(tmp_path, capsys):
    path = cgroup_recording(tmp_path)
    keys = {k["key"]: k for k in json.loads(out_of(capsys, "report", path, "--format", "json"))["keys"]}
    assert keys["11"]["workload"] == "docker:3f4a5b6c7d8e" and keys["11"]["name"] == DOCKER
    assert keys["12"]["workload"] == f"pod:{UID} burstable containerd:3f4a5b6c7d8e"
    assert keys["13"]["workload"] == ""
    rows = list(csv.DictReader(io.StringIO(out_of(capsys, "report", path, "--format", "csv"))))
    assert {r["key"]: r["workload"] for r in rows} == {"11": "docker:3f4a5b6c7d8e",
                                                       "12": f"pod:{UID} burstable containerd:3f4a5b6c7d8e",
                                                       "13": ""}


def test_report_text_titles_end_with_the_workload(tmp_path, capsys):
    out = out_of(capsys, "report", cgroup_recording(tmp_path), "--stage", "device")
    titles = [line for line in out.splitlines() if line.endswith("device time")]
    assert any(t.startswith("cgroup ") and "[docker:3f4a5b6c7d8e]" in t for t in titles), titles
    assert any("/ioltrace-test  read" in t for t in titles)


def test_live_json_lines_carry_the_workload():
    g = group("11", DOCKER, samples(1, 10), kind="cgroup")
    line = json.loads(jexport.interval_lines([from_group(g)], T0, T0 + 1).splitlines()[0])
    assert line["workload"] == "docker:3f4a5b6c7d8e"
    p = group("4242", "dd", samples(1, 10))
    assert "workload" not in json.loads(jexport.interval_lines([from_group(p)], T0, T0 + 1).splitlines()[0])
