"""dashboards/ioltrace.json against a real Prometheus that scraped a real
`ioltrace serve --layer both --per-process` while dd and fio ran in two
cgroups on a private loop device.

Every panel target's PromQL, parsed from the JSON with Grafana's variables
substituted ($__rate_interval by a window that covers the I/O, $instance
by all, $disk by the loop device, $cgroup by the test's cgroups), must
return at least one finite value; each template variable's label_values()
must list what the test made; and each panel's unit must be the unit of
the metric its queries compute (seconds for latency quantiles, bytes per
second for rates of byte counters, ...), with each family of the type the
query needs, as ioltrace's exposition declares it."""

import json
import math
import os
import re
import subprocess
import time
import urllib.parse

import pytest

from tests.dashboard import UNITS, WINDOW, substitute, targets

from .conftest import need_tool, remove_cgroup, room
from .test_serve import dd_in, free_port, http_get, prometheus, wait_for  # noqa: F401 (fixture)

def families(body):
    """{family: type} from an exposition's # TYPE lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", body.decode(), re.M))


def test_every_panel_query_returns_data(loopdev, make_cgroup, ioltrace, prometheus, tmp_path):
    need_tool("fio")
    need_tool("promtool")
    parent = make_cgroup("dash")
    kids = []
    try:
        for name in ("writer", "reader"):
            os.mkdir(os.path.join(parent.path, name))
            kids.append(type(parent)(parent.root, f"{parent.rel}/{name}"))
        port = free_port()
        t = ioltrace("serve", "--listen", f"127.0.0.1:{port}", "--layer", "both", "--per-process",
                     "--cgroup", parent.rel)
        prom = prometheus(port)
        wait_for("the first scrape", lambda: prom.query('up{job="ioltrace"} == 1'), timeout=60)

        def run_fio():
            fio = subprocess.run(kids[1].wrap(["fio", "--name=dash", f"--filename={loopdev.path}", "--rw=randread",
                                               "--bs=4k", "--direct=1", "--ioengine=psync", "--size=64M",
                                               "--runtime=4", "--time_based", "--output-format=json"]),
                                 capture_output=True, text=True, timeout=room(300))
            assert fio.returncode == 0, fio.stderr
            assert json.loads(fio.stdout)["jobs"][0]["read"]["total_ios"] > 0
            done = time.time()
            # Two scrapes after the I/O, so every rate() has the whole increase.
            wait_for("two scrapes after the I/O",
                     lambda: prom.query(f'count_over_time(ioltrace_build_info{{job="ioltrace"}}[{WINDOW}])')
                     and all(v > done + 1 for _, v in prom.query('timestamp(ioltrace_build_info{job="ioltrace"})'))
                     and prom.query(f"ioltrace_cgroup_block_ios_total{{{sel}}}"), timeout=room(60))

        sel = f'cgroup=~"{parent.rel}/.*"'  # a plain path: [a-z0-9/-]
        written = dd_in(kids[0], loopdev, bs=65536, count=256)
        assert written > 0
        run_fio()
        body = http_get(f"http://127.0.0.1:{port}/metrics")[2]
        types = families(body)
        dash, ts = targets()
        values = {"instance": ".*", "disk": loopdev.name, "cgroup": f"{parent.rel}/.*"}

        # Template variables: label_values(METRIC{...}, LABEL) lists ours.
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
            assert m, var
            match = substitute(m.group(1), values)
            url = (f"http://127.0.0.1:{prom.port}/api/v1/label/{m.group(2)}/values?"
                   + urllib.parse.urlencode({"match[]": match}))
            got = json.loads(http_get(url)[2])["data"]
            want = {"instance": f"127.0.0.1:{port}", "disk": loopdev.name, "cgroup": kids[0].rel}[var["name"]]
            assert want in got, (var["name"], got)

        def empty_panels():
            empty = []
            for title, unit, expr in ts:
                fam = re.search(r"(ioltrace_\w+?)(_bucket)?\{", expr).group(1)
                kind = next(k for rx, u, k in UNITS if rx.search(expr))
                assert types.get(fam) == kind, (title, fam, types.get(fam))
                res = prom.query(substitute(expr, values))
                finite = [v for _, v in res if math.isfinite(v)]
                print(f"{title}: {len(res)} series, e.g. {finite[:3]} {unit}")
                if not finite:
                    empty.append((title, expr))
            return empty

        # A rate needs two scrapes of a series within its I/O: on a loaded
        # machine scrapes time out (1 s), and a series can first appear with
        # its whole count (one 6.1 guest run under load: every latency
        # quantile NaN). Then fio reads again, up to twice, so that it spans
        # more scrapes; a panel that stays empty after that fails.
        empty = empty_panels()
        for _ in range(2):
            if not empty:
                break
            print(f"{len(empty)} panels without data yet: fio reads again")
            run_fio()
            empty = empty_panels()
        assert not empty, empty

        # The queries see this test's I/O, not just any: fio's reads, which
        # span several scrapes (dd's burst may fit between two: a series
        # that first appears with its whole count has no rate yet).
        bytes_q = [e for _, u, e in ts if "ioltrace_cgroup_block_bytes_total" in e][0]
        rates = {m["cgroup"]: v for m, v in prom.query(substitute(bytes_q, values)) if m.get("op") == "read"}
        assert rates.get(kids[1].rel, 0) > 0, rates
        assert t.stop() == 0, t.err
    finally:
        for k in kids:
            remove_cgroup(k.path)
