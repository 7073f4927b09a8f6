"""min and max come from histogram buckets: shown as the bounds they are
(text 'min ≥…  max <…', CSV and JSON *_bucket_low_ns / *_bucket_high_ns),
so one request never shows a min above its own exact mean."""

import csv
import io
import json
import re

import numpy as np
import pytest

from ioltrace import cli

from .recfiles import T0, group, write

UNITS = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}


def ns_of(text):
    m = re.fullmatch(r"([\d.]+)(ns|us|ms|s)", text)
    return float(m.group(1)) * UNITS[m.group(2)]


@pytest.fixture
def one_request(tmp_path):
    # 1,000,100 ns sits in the lower half of its bucket [999424, 1015808):
    # the bucket's midpoint (1007615.5), shown as "min" before, exceeded
    # the exact mean.
    lat = np.array([1_000_100])
    return write(tmp_path / "one.csv", [([group("100", "dd", lat)], T0, T0 + 1)]), 1_000_100


def run(capsys, *argv):
    rc = cli.main(list(argv))
    cap = capsys.readouterr()
    assert rc == 0 and cap.err == ""
    return cap.out


def test_text_labels_min_and_max_as_bucket_bounds(one_request, capsys):
    path, lat = one_request
    out = run(capsys, "report", path, "--stage", "device")
    m = re.search(r"mean (\S+)\s.*\n\s+min ≥(\S+)\s+max <(\S+)", out)
    assert m, out
    mean, low, high = (ns_of(x) for x in m.groups())
    assert low <= mean <= high and low <= lat < high


def test_csv_and_json_name_the_bounds(one_request, capsys):
    path, lat = one_request
    rows = list(csv.DictReader(io.StringIO(run(capsys, "report", path, "--format", "csv", "--stage", "device"))))
    assert "min_ns" not in rows[0] and "max_ns" not in rows[0]
    r = rows[0]
    assert float(r["min_bucket_low_ns"]) <= float(r["mean_ns"]) == lat < float(r["max_bucket_high_ns"])
    lat_doc = json.loads(run(capsys, "report", path, "--format", "json"))["keys"][0]["latency"]["device"]
    assert "min_ns" not in lat_doc and "max_ns" not in lat_doc
    assert lat_doc["min_bucket_low_ns"] <= lat_doc["mean_ns"] == lat < lat_doc["max_bucket_high_ns"]
