"""dashboards/ioltrace.json without a kernel: valid Grafana JSON whose every
target the unit rule of tests/dashboard.py can judge, with the unit it
computes; the real queries run in tests/root/test_dashboard.py."""

import json

from tests.dashboard import DASHBOARD, UNITS, substitute, targets


def test_every_target_has_the_unit_of_what_it_computes():
    _, ts = targets()
    assert len(ts) >= 15
    for title, unit, expr in ts:
        kinds = [(u, kind) for rx, u, kind in UNITS if rx.search(expr)]
        assert len(kinds) == 1, (title, expr)
        assert unit == kinds[0][0], (title, unit, expr)


def test_panels_and_variables():
    d = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    names = {v["name"] for v in d["templating"]["list"]}
    assert names == {"datasource", "instance", "disk", "cgroup"}
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}" and p["description"], p["title"]
        for t in p["targets"]:
            # Only variables the dashboard defines (and Grafana's own).
            substitute(t["expr"], {n: ".*" for n in names})
