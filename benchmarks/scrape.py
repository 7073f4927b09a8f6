"""Scrape time of `ioltrace serve`: exposition of synthetic Snapshots, and real scrapes.

What it measures: how long one scrape of /metrics takes for 1,000 series.
"Series" is read two ways, both reported: 1,000 sample lines (16 cgroups'
latency histograms, counters and the fixed families), and the stricter
1,000 label sets per level, i.e. 1,000 (cgroup, disk, op) keys, each with
two latency histograms of 28 buckets (about 62,000 sample lines), alone and
with --per-process adding 1,000 (pid, comm, disk, op) label sets.

- pure (no root): export/prometheus.Exporter.render() on synthetic Snapshots
  built beforehand (20 fine buckets hit per histogram, as a busy key has),
  text format and OpenMetrics; plus maps.snapshot(), the decoding of raw map
  entries that a real scrape also pays (ctypes records of layout.py, as
  bcc's batch lookup returns them); 3 warm-ups, then --runs timed calls.
- real (root only): a loop device over /dev/shm traced by two `ioltrace
  serve --disk LOOP` instances (without and with --per-process); cgroups
  each running one direct-I/O dd writer and one reader: first 6 cgroups
  (about 1,000 samples), then 494 more (1,000 cgroup label sets, 1,000
  processes); after each phase, --runs GETs of /metrics on 127.0.0.1,
  timed from request to last byte (snapshot, render and HTTP).

Target: a scrape of 1,000 series under 50 ms (median).

--client: instead, today's hand-written exposition against the official
prometheus_client (python3-prometheus-client) on the same synthetic
Snapshots: a custom collector that aggregates the kernel keys per disk and
per cgroup as the Exporter does (minus its memory of label sets between
scrapes, so a lower bound of what adopting it would cost) and yields
CounterMetricFamily / HistogramMetricFamily, exposed by generate_latest
(text 0.0.4) and openmetrics.exposition.generate_latest; median of --runs
(default 20) timed scrapes after 3 warm-ups, every key changed since the
previous scrape. Results go to their own section (scrape_client).

--tls (root): real scrapes of about 1,000 samples (6 cgroups' I/O on a
loop device) from two `ioltrace serve` instances, one plain and one with
--web-config (TLS with a self-signed P-256 certificate, basic auth with a
bcrypt cost-10 hash), each GET on a new connection as Prometheus makes
them (serve answers HTTP/1.0): handshake, authentication, snapshot, render.
Section scrape_tls.

Run: /usr/bin/python3 benchmarks/scrape.py [--quick] [--runs N] [--pure-only | --client | --tls]
"""

import argparse
import contextlib
import ctypes
import gc
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: tests.support, ioltrace
from tests.support import bench as B  # noqa: E402

from ioltrace import layout, maps  # noqa: E402
from ioltrace.export import prometheus as P  # noqa: E402
from ioltrace.records import Key, Snapshot, Totals  # noqa: E402

TARGET_MS = 50.0
DISKS = 4
HIT_BUCKETS = 20     # fine buckets hit per histogram


class SynthResolver:
    def disk_name(self, dev):
        return f"nvme{dev}n1"

    def cgroup_path(self, cgid):
        return f"/kubepods.slice/kubepods-burstable.slice/pod{cgid:06d}.slice/cri-containerd-{cgid:012x}.scope"


def synthetic(n_keys, seed=0):
    """n_keys kernel keys, each its own (cgroup, disk, op) and process."""
    rng = np.random.default_rng(seed)
    totals, hists = {}, {}
    for i in range(n_keys):
        k = Key(1000 + i, 10000 + i, 0, i % DISKS, i % 2)
        totals[k] = Totals(200, 200 * 4096, 0, 123456, 7654321, f"worker-{i}")
        for stage in (layout.STAGE_QUEUE, layout.STAGE_DEVICE):
            a = np.zeros(layout.NBUCKETS, dtype=np.uint64)
            a[rng.integers(200, 750, HIT_BUCKETS)] += 10
            hists[(k, stage)] = a
    return Snapshot(0, totals, hists, {}, dict.fromkeys(layout.COUNTERS, 0))


def raw_entries(snap):
    """The Snapshot as the (key, value) ctypes pairs a batch lookup returns."""
    def sk(k):
        return layout.StatKey(cgid=k.cgid, tgid=k.tgid, tid=k.tid, dev=k.dev, op=k.op)
    stats = [(sk(k), layout.Stat(ios=t.ios, bytes=t.bytes, errors=t.errors, queue_ns=t.queue_ns,
                                 device_ns=t.device_ns, comm=t.comm.encode()))
             for k, t in snap.totals.items()]
    hist = [(layout.HistKey(k=sk(k), stage=stage, bucket=int(b)), ctypes.c_uint64(int(arr[b])))
            for (k, stage), arr in snap.hists.items() for b in np.nonzero(arr)[0]]
    return stats, hist


def timed(fn, runs, warm=3, prep=None):
    """(wall ms, CPU ms) of each fn() after warm-ups; prep() runs untimed
    before each call. The cycle collector is off during the call, as in
    serve.Scraper."""
    wall, cpu = [], []
    for i in range(warm + runs):
        if prep is not None:
            prep()
        gc.disable()
        try:
            t, c = time.perf_counter(), time.thread_time()
            fn()
            dt, dc = time.perf_counter() - t, time.thread_time() - c
        finally:
            gc.enable()
        if i >= warm:
            wall.append(dt * 1e3)
            cpu.append(dc * 1e3)
    return wall, cpu


def grow(state):
    """Next scrape's Snapshot: every key did one more I/O (new totals, one
    more count in each of its histograms), so no label set is idle."""
    snap = state[0]
    for (k, stage), arr in snap.hists.items():
        arr[300 + (k.cgid + stage) % 400] += 1
    totals = {k: t._replace(ios=t.ios + 1, bytes=t.bytes + 4096, device_ns=t.device_ns + 5000)
              for k, t in snap.totals.items()}
    state[0] = snap._replace(totals=totals)


def pct(xs, q):
    return float(np.percentile(xs, q))


def pure(runs):
    rows = []
    cases = [("12 cgroup label sets (~1,000 samples)", 12, False),
             ("1,000 cgroup label sets", 1000, False),
             ("1,000 cgroup + 1,000 process label sets (--per-process)", 1000, True)]
    for label, n, per_process in cases:
        for fmt in (P.TEXT, P.OPENMETRICS):
            state = [synthetic(n)]
            ex = P.Exporter(SynthResolver(), per_process=per_process)
            body = ex.render(state[0], fmt)
            lines = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
            busy, busy_cpu = timed(lambda: ex.render(state[0], fmt), runs, prep=lambda: grow(state))
            idle, _ = timed(lambda: ex.render(state[0], fmt), runs)
            rows.append([label, "text" if fmt == P.TEXT else "OpenMetrics", f"{lines:,}", f"{len(body) / 1024:,.0f}",
                         f"{B.median(busy):.1f}", f"{pct(busy, 95):.1f}", f"{B.median(busy_cpu):.1f}",
                         f"{B.median(idle):.1f}"])
            print(f"pure {label}, {fmt}: median {B.median(busy):.1f} ms all changed, {B.median(idle):.1f} ms idle, "
                  f"{lines} samples", flush=True)
    # What a real scrape also pays before rendering: decoding the map entries.
    snap = synthetic(1000)
    stats, hist = raw_entries(snap)
    counters = [ctypes.c_uint64(0)] * len(layout.COUNTERS)
    ms, cpu = timed(lambda: maps.snapshot(0, stats, hist, [], counters), runs)
    decode = (len(stats), len(hist), B.median(ms), pct(ms, 95), B.median(cpu))
    print(f"maps.snapshot of {len(stats)} stats + {len(hist)} hist entries: median {decode[2]:.1f} ms", flush=True)
    return rows, decode


# ------------------------------------------------------ prometheus_client

def client_collector(resolver, stages=(layout.STAGE_QUEUE, layout.STAGE_DEVICE)):
    """A prometheus_client custom collector over the Snapshot in .snap:
    the disk and cgroup levels of the block layer, the same bucket edges
    (P.LE_VALUES, exact sums of fine buckets), build info and kernel
    counters."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    stage_names = dict(enumerate(layout.STAGES))
    levels = (("ioltrace_block", ("disk", "op"), "per disk and op"),
              ("ioltrace_cgroup_block", ("cgroup", "disk", "op"), "per cgroup v2, disk and op"))

    class Collector:
        snap = None

        def collect(self):
            snap = self.snap
            info = GaugeMetricFamily("ioltrace_build_info", "ioltrace version; always 1.", labels=["version"])
            info.add_metric(["0"], 1)
            yield info
            ents = {}
            for k in snap.totals:
                disk, op = resolver.disk_name(k.dev), layout.OPS[k.op]
                ents[k] = ((disk, op), (resolver.cgroup_path(k.cgid), disk, op))
            cells = [(k, st, arr) for (k, st), arr in snap.hists.items() if st in stages and k in ents]
            coarse = P._coarse(np.stack([c[2] for c in cells]).astype(np.uint64, copy=False)) if cells else None
            for i, (prefix, labels, what) in enumerate(levels):
                tot = {}
                for k, t in snap.totals.items():
                    a = tot.setdefault(ents[k][i], [0, 0, 0, 0])
                    a[0] += t.ios
                    a[1] += t.bytes
                    a[2] += t.queue_ns
                    a[3] += t.device_ns
                ios = CounterMetricFamily(f"{prefix}_ios", f"Completed block I/O requests, {what}.", labels=labels)
                byt = CounterMetricFamily(f"{prefix}_bytes", f"Bytes of completed block I/O requests, {what}.",
                                          labels=labels)
                for e, a in tot.items():
                    ios.add_metric(e, a[0])
                    byt.add_metric(e, a[1])
                yield ios
                yield byt
                agg = {}
                for row, (k, st, _) in enumerate(cells):
                    e = (ents[k][i], st)
                    agg[e] = agg[e] + coarse[row] if e in agg else coarse[row].copy()
                h = HistogramMetricFamily(f"{prefix}_latency_seconds", f"Block I/O latency {what}.",
                                          labels=list(labels) + ["stage"])
                for (e, st), seg in agg.items():
                    ns = tot[e][2] if st == layout.STAGE_QUEUE else tot[e][3]
                    h.add_metric(list(e) + [stage_names[st]], list(zip(P.LE_VALUES, np.cumsum(seg).tolist())),
                                 sum_value=ns / 1e9)
                yield h
            ev = CounterMetricFamily("ioltrace_kernel_events", "Kernel-side events.", labels=["event"])
            for name in layout.COUNTERS:
                ev.add_metric([name], int(snap.counters.get(name, 0)))
            yield ev

    return Collector()


def client(runs):
    """Rows of (case, format, samples of each, median ms of each, ratio)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_om

    rows = []
    for label, n in (("12 cgroup label sets (~1,000 samples)", 12), ("1,000 cgroup label sets", 1000)):
        for fmt, gen in ((P.TEXT, generate_latest), (P.OPENMETRICS, generate_om)):
            state = [synthetic(n)]
            ex = P.Exporter(SynthResolver())
            col = client_collector(SynthResolver())
            reg = CollectorRegistry(auto_describe=False)
            reg.register(col)

            def theirs():
                col.snap = state[0]
                return gen(reg)
            col.snap = state[0]
            ours_lines = sum(1 for line in ex.render(state[0], fmt).split(b"\n") if line and not line.startswith(b"#"))
            their_lines = sum(1 for line in theirs().split(b"\n") if line and not line.startswith(b"#"))
            mine, mine_cpu = timed(lambda: ex.render(state[0], fmt), runs, prep=lambda: grow(state))
            other, other_cpu = timed(theirs, runs, prep=lambda: grow(state))
            m, o = B.median(mine), B.median(other)
            rows.append([label, "text" if fmt == P.TEXT else "OpenMetrics", f"{ours_lines:,}", f"{their_lines:,}",
                         f"{m:.2f}", f"{B.median(mine_cpu):.2f}", f"{o:.2f}", f"{B.median(other_cpu):.2f}",
                         f"{o / m:.1f}", f"{B.median(other_cpu) / B.median(mine_cpu):.1f}"])
            print(f"client {label}, {fmt}: ioltrace {m:.2f} ms, prometheus_client {o:.2f} ms ({o / m:.2f}x)",
                  flush=True)
    return rows


def client_main(runs, env):
    from importlib.metadata import version

    load_before = B.loadavg()
    rows = client(runs)
    head = ["case", "format", "samples, ioltrace", "samples, prometheus_client", "ioltrace median ms",
            "ioltrace CPU ms", "prometheus_client median ms", "prometheus_client CPU ms", "wall ratio", "CPU ratio"]
    text = (f"The same synthetic Snapshots (as in the scrape section: {HIT_BUCKETS} fine buckets hit per histogram, "
            f"2 stages, {DISKS} disks, every key changed since the previous scrape) exposed by today's "
            f"`Exporter.render()` and by prometheus_client {version('prometheus_client')} "
            f"(a custom collector yielding CounterMetricFamily and HistogramMetricFamily for the disk and cgroup "
            f"levels, then `generate_latest`; without the Exporter's memory of label sets, so a lower bound); "
            f"3 warm-ups, then {runs} timed scrapes each, median; ratios are prometheus_client / ioltrace:\n\n" + B.table(head, rows, left=2) + "\n")
    small = [r for r in rows if r[0].startswith("12 ")]
    worst_ours = max(float(r[4]) for r in small)
    worst_theirs = max(float(r[6]) for r in small)
    text += (f"\n- ~1,000 samples: ioltrace {worst_ours:.2f} ms, prometheus_client {worst_theirs:.2f} ms "
             f"(worst format; target 10 ms: ioltrace {'meets' if worst_ours < 10 else 'MISSES'} it, "
             f"prometheus_client {'meets' if worst_theirs < 10 else 'MISSES'} it)\n"
             f"- 1-minute load average {load_before} before and {B.loadavg()} after, on {os.cpu_count()} CPUs\n")
    cpu_ratios = [float(r[9]) for r in rows]
    text += (f"- verdict: prometheus_client needs {min(cpu_ratios):.1f}-{max(cpu_ratios):.1f} times the CPU of "
             f"the hand-written exposition for the same samples; "
             + ("keep the hand-written exposition (its Accept negotiation and textfile writing are "
                "already in place and tested)" if min(cpu_ratios) > 1.5 else "adopting it costs little")
             + "\n")
    print()
    print(text)
    B.update_results("scrape_client", "scrape_client: hand-written exposition against prometheus_client", text, env)
    print(f"updated {B.RESULTS}")
    return 0


# ---------------------------------------------------------------- TLS scrapes

def tls_main(runs, env):
    import base64
    import ssl
    import tempfile

    import bcrypt

    from tests import tlscerts

    load_before = B.loadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ioltrace-bench-tls-") as d, B.loop_device(64) as (dev, _dio):
        certs = tlscerts.make(d)
        cfg = os.path.join(d, "web.yml")
        with open(cfg, "w") as f:
            f.write(f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n"
                    f"basic_auth_users:\n  prometheus: {bcrypt.hashpw(b'pw', bcrypt.gensalt(10)).decode()}\n")
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        auth = {"Authorization": "Basic " + base64.b64encode(b"prometheus:pw").decode()}
        name = os.path.basename(dev)
        servers = []
        try:
            for label, extra in (("plain HTTP", []), ("TLS + basic auth", ["--web-config", cfg])):
                port = free_port()
                t = B.Ioltrace(label=f"ioltrace serve ({label})")
                t.argv = B.IOLTRACE + ["serve", "--listen", f"127.0.0.1:{port}", "--disk", name] + extra
                t.start()
                servers.append((t, port, label, bool(extra)))
            with cgroups(6) as paths:
                io_in_cgroups(dev, paths)
                time.sleep(0.5)
                for t, port, label, tls in servers:
                    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/metrics"
                    for fmt, accept in (("text", None), ("OpenMetrics", "application/openmetrics-text")):
                        headers = dict(auth if tls else {}, **({"Accept": accept} if accept else {}))
                        ms = []
                        for i in range(2 + runs):
                            req = urllib.request.Request(url, headers=headers)
                            t0 = time.perf_counter()
                            with urllib.request.urlopen(req, timeout=30, context=ctx if tls else None) as r:
                                body = r.read()
                            if i >= 2:
                                ms.append((time.perf_counter() - t0) * 1e3)
                        lines = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
                        rows.append([label, fmt, f"{lines:,}", f"{B.median(ms):.2f}", f"{pct(ms, 95):.2f}"])
                        print(f"tls {label}, {fmt}: median {B.median(ms):.2f} ms, {lines} samples", flush=True)
        finally:
            for t, _, _, _ in servers:
                t.stop()
            B.final_checks()
    plain = {r[1]: float(r[3]) for r in rows if r[0] == "plain HTTP"}
    tls = {r[1]: float(r[3]) for r in rows if r[0] != "plain HTTP"}
    text = (f"Real scrapes on 127.0.0.1 of two `ioltrace serve --disk LOOP` (6 cgroups did one direct-I/O write and "
            f"read each), one plain, one with `--web-config` (TLS 1.2+ with a P-256 certificate, basic auth against "
            f"a bcrypt cost-10 hash, remembered after the first check); every GET on a new connection, as "
            f"Prometheus makes them; 2 warm-ups then {runs} scrapes, request to last byte:\n\n"
            + B.table(["server", "format", "samples", "median ms", "p95 ms"], rows, left=2) + "\n\n"
            + "".join(f"- {fmt}: TLS + basic auth {tls[fmt]:.2f} ms against {plain[fmt]:.2f} ms plain "
                      f"({tls[fmt] / plain[fmt]:.2f}x; {'meets' if tls[fmt] < 10 else 'MISSES'} the 10 ms target)\n"
                      for fmt in plain)
            + f"- 1-minute load average {load_before} before and {B.loadavg()} after, on {os.cpu_count()} CPUs\n")
    print()
    print(text)
    B.update_results("scrape_tls", "scrape_tls: /metrics over TLS with basic auth against plain HTTP", text, env)
    print(f"updated {B.RESULTS}")
    return 0


# ---------------------------------------------------------------- real scrapes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def cgroups(n):
    """n empty cgroups under one parent; removed on the way out."""
    parent = os.path.join(B.cgroup2_root(), f"ioltrace-bench-scrape-{os.getpid()}")
    os.mkdir(parent)
    made = []
    try:
        for i in range(n):
            p = os.path.join(parent, f"cg{i:03d}")
            os.mkdir(p)
            made.append(p)
        yield made
    finally:
        for p in reversed([parent] + made):
            for _ in range(50):
                try:
                    os.rmdir(p)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def io_in_cgroups(dev, paths, batch=25, first=0):
    """In each cgroup: one dd writing 4 KiB, then one reading it, direct I/O."""
    for start in range(0, len(paths), batch):
        procs = []
        for i, p in enumerate(paths[start:start + batch], first + start):
            script = (f'echo $$ > "{p}/cgroup.procs" && '
                      f'dd if=/dev/zero of={dev} bs=4096 count=1 seek={i} oflag=direct 2>/dev/null && '
                      f'dd if={dev} of=/dev/null bs=4096 count=1 skip={i} iflag=direct 2>/dev/null')
            procs.append(subprocess.Popen(["sh", "-c", script]))
        if any(p.wait() != 0 for p in procs):
            raise B.BenchError("a dd in a cgroup failed")


def scrape(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return (time.perf_counter() - t) * 1e3, body


def measure(servers, runs, rows, phase):
    for t, port, per_process in servers:
        url = f"http://127.0.0.1:{port}/metrics"
        for fmt, accept in (("text", None), ("OpenMetrics", "application/openmetrics-text")):
            for _ in range(2):
                scrape(url, accept)
            ms = []
            for _ in range(runs):
                m, body = scrape(url, accept)
                ms.append(m)
            lines = [line for line in body.split(b"\n") if line and not line.startswith(b"#")]
            sets = sum(1 for line in lines if line.startswith(b"ioltrace_cgroup_block_ios_total{"))
            procs = sum(1 for line in lines if line.startswith(b"ioltrace_process_block_ios_total{"))
            label = f"{phase}: {sets:,} cgroup label sets" + (f" + {procs:,} process label sets" if procs else "")
            rows.append([label, fmt, f"{len(lines):,}", f"{len(body) / 1024:,.0f}", f"{B.median(ms):.1f}",
                         f"{pct(ms, 95):.1f}"])
            print(f"real {label}, {fmt}: median {B.median(ms):.1f} ms, {len(lines)} samples", flush=True)


def real(runs, n_small, n_cgroups):
    """Phase 1: I/O in n_small cgroups (about 1,000 samples without
    --per-process); phase 2: in n_cgroups more."""
    rows = []
    with B.loop_device(64) as (dev, _dio):
        name = os.path.basename(dev)
        servers = []
        try:
            for per_process in (False, True):
                port = free_port()
                t = B.Ioltrace(label=f"ioltrace serve{' --per-process' if per_process else ''}")
                t.argv = B.IOLTRACE + ["serve", "--listen", f"127.0.0.1:{port}", "--disk", name,
                                       "--max-series", "5000"] + (["--per-process"] if per_process else [])
                t.start()
                servers.append((t, port, per_process))
            with cgroups(n_small + n_cgroups) as paths:
                io_in_cgroups(dev, paths[:n_small])
                time.sleep(0.5)
                measure(servers[:1], runs, rows, "small")
                io_in_cgroups(dev, paths[n_small:], first=n_small)
                time.sleep(0.5)
                measure(servers, runs, rows, "large")
        finally:
            for t, _, _ in servers:
                rc = t.stop()
                if rc != 0:
                    print(f"warning: {t.label} exited {rc}: {t.stderr.decode(errors='replace')[-300:]}",
                          file=sys.stderr)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timed scrapes (10)")
    ap.add_argument("--runs", type=int, help="timed scrapes per case (default 30, quick 10)")
    ap.add_argument("--pure-only", action="store_true", help="only the synthetic exposition (no root needed)")
    ap.add_argument("--client", action="store_true", help="only the comparison with prometheus_client (no root)")
    ap.add_argument("--tls", action="store_true", help="only real scrapes over TLS with basic auth against plain (root)")
    args = ap.parse_args(argv)
    runs = args.runs or (10 if args.quick else 30)
    B.sigterm_as_interrupt()
    env = B.environment()
    if args.client:
        return client_main(args.runs or 20, env)
    if args.tls:
        try:
            return tls_main(args.runs or 20, env)
        except B.BenchError as e:
            print(f"scrape: {e}", file=sys.stderr)
            return 1
    do_real = not args.pure_only and os.geteuid() == 0
    load_before = B.loadavg()
    try:
        prows, decode = pure(runs)
        rrows = real(runs, 6, 494) if do_real else []
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    except B.BenchError as e:
        print(f"scrape: {e}", file=sys.stderr)
        return 1
    finally:
        if do_real:
            B.final_checks()
    head = ["series", "format", "samples", "KiB", "median ms", "p95 ms"]
    phead = ["series", "format", "samples", "KiB", "median ms, all changed", "p95 ms, all changed",
             "CPU ms, all changed", "median ms, idle"]
    big = [r for r in prows if r[0].startswith("1,000 cgroup label sets")]
    text = (f"Exposition of synthetic Snapshots (pure: `Exporter.render()` on Snapshots built beforehand, "
            f"{HIT_BUCKETS} fine buckets hit per histogram, 2 stages, {DISKS} disks), 3 warm-ups then "
            f"{runs} timed calls; \"all changed\": every key did one more I/O since the previous scrape "
            f"(the worst case), \"idle\": nothing changed (histogram text is reused); CPU ms is the "
            f"thread's CPU time, less sensitive than wall time to other jobs on the machine:\n\n"
            + B.table(phead, prows, left=2)
            + f"\n\nDecoding raw map entries (`maps.snapshot`, the loader's part of a real scrape) for "
            f"{decode[0]:,} stats and {decode[1]:,} histogram entries: median {decode[2]:.1f} ms, "
            f"p95 {decode[3]:.1f} ms, CPU {decode[4]:.1f} ms.\n")
    if rrows:
        text += (f"\nReal scrapes: cgroups on a loop device over /dev/shm, each with one direct-I/O dd "
                 f"writer and one reader: 6 cgroups (small), then 494 more (large); two `ioltrace serve "
                 f"--disk LOOP` running throughout, without and with `--per-process` (small: the first only); "
                 f"GET /metrics on 127.0.0.1, request to last byte (Tracer.snapshot + render + HTTP), "
                 f"with the I/O over (idle label sets: their histogram text is reused), "
                 f"2 warm-ups then {runs} scrapes:\n\n" + B.table(head, rrows, left=2) + "\n")
    else:
        text += "\nReal scrapes: not measured (needs root).\n"
    small = [r for r in prows if r[0].startswith("12 ")]
    verdicts = [f"- synthetic, ~1,000 samples: median {max(float(r[4]) for r in small):.1f} ms "
                f"({'meets' if max(float(r[4]) for r in small) < TARGET_MS else 'MISSES'} target "
                f"< {TARGET_MS:.0f} ms)"]
    for r in big:
        wall, cpu = float(r[4]), float(r[6])
        verdicts.append(f"- synthetic, 1,000 cgroup label sets, all changed, {r[1]}: median {wall:.1f} ms wall "
                        f"({'meets' if wall < TARGET_MS else 'MISSES'} target < {TARGET_MS:.0f} ms), "
                        f"{cpu:.1f} ms CPU ({'meets' if cpu < TARGET_MS else 'MISSES'} it)")
    for series_label in dict.fromkeys(r[0] for r in rrows):
        sel = [r for r in rrows if r[0] == series_label]
        worst = max(float(r[4]) for r in sel)
        verdicts.append(f"- real scrapes, {series_label} ({sel[0][2]} samples): worst median {worst:.1f} ms "
                        f"({'meets' if worst < TARGET_MS else 'MISSES'} target < {TARGET_MS:.0f} ms)")
    verdicts.append(f"- 1-minute load average {load_before} before and {B.loadavg()} after, on {os.cpu_count()} CPUs "
                    "(other jobs share this machine: compare within one run)")
    text += "\n" + "\n".join(verdicts) + "\n"
    print()
    print(text)
    B.update_results("scrape", "scrape: `ioltrace serve` /metrics for 1,000 series", text, env)
    print(f"updated {B.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
