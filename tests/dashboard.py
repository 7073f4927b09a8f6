"""dashboards/ioltrace.json as the tests read it: every panel target's
PromQL with Grafana's variables substituted, and the rule that says which
unit a query's result has (tests/unit/test_dashboard_json.py,
tests/root/test_dashboard.py)."""

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "dashboards" / "ioltrace.json"
WINDOW = "2m"     # for $__rate_interval: covers every scrape of a test's few seconds of I/O

# What a query computes -> the panel unit that says so (Grafana unit ids).
UNITS = (
    (re.compile(r"histogram_quantile\(.*_seconds_bucket\{"), "s", "histogram"),
    (re.compile(r"rate\(\w+_bytes_total\{"), "Bps", "counter"),
    (re.compile(r"rate\(\w+_ios_total\{"), "iops", "counter"),
    (re.compile(r"rate\(\w+_calls_total\{"), "ops", "counter"),
    (re.compile(r"rate\(\w+_events_total\{"), "cps", "counter"),
    (re.compile(r"^sum by \([\w, ]+\) \(ioltrace_folded_label_sets\{"), "short", "gauge"),
)


def targets():
    d = json.loads(DASHBOARD.read_text())
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], p["fieldConfig"]["defaults"].get("unit"), t["expr"]))
    return d, out


def substitute(expr, values):
    expr = expr.replace("$__rate_interval", WINDOW)
    for name, v in values.items():
        expr = expr.replace(f"${{{name}}}", v).replace(f"${name}", v)
    assert "$" not in expr, expr
    return expr
