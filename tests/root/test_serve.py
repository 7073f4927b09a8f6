"""`ioltrace serve` scraped by a real Prometheus server (Debian package
prometheus), checked against ground truth from outside ioltrace: the bytes
and block count dd was told to write with direct I/O, inside a cgroup the
test created, on a private loop device. The exposition is linted by
promtool (same package). Everything listens on 127.0.0.1 only, on free
ports; Prometheus keeps its storage in tmp_path. Without prometheus or
promtool these tests skip locally and fail under CI=true (conftest.need)."""

import json
import math
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from ioltrace import hist as H
from ioltrace import layout
from ioltrace.export import csv as rec
from ioltrace.export import prometheus as P

from .conftest import START_TIMEOUT_S, need_tool, room

BS, COUNT = 65536, 64        # 4 MiB in 64 requests (loop devices take 64 KiB unsplit)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, accept=None, timeout=60):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=room(timeout)) as r:
        return r.status, r.headers["Content-Type"], r.read()


class Prometheus:
    def __init__(self, proc, port, log_path):
        self.proc, self.port, self.log_path = proc, port, log_path

    def query(self, expr):
        """Instant query -> list of (labels, float value)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        _, _, body = http_get(url)
        data = json.loads(body)
        assert data["status"] == "success", data
        return [(r["metric"], float(r["value"][1])) for r in data["data"]["result"]]

    def one(self, expr):
        res = self.query(expr)
        assert len(res) == 1, (expr, res)
        return res[0][1]

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""


@pytest.fixture
def prometheus(tmp_path):
    need_tool("prometheus")
    started = []

    def start(target_port):
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: ioltrace\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n")
        data = tmp_path / "prometheus-data"
        log_path = tmp_path / "prometheus.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        prom = Prometheus(proc, port, log_path)
        started.append((proc, log, data))
        deadline = time.monotonic() + room(START_TIMEOUT_S)
        while True:
            assert proc.poll() is None, f"prometheus exited ({proc.returncode}): {prom.log()}"
            try:
                if http_get(f"http://127.0.0.1:{port}/-/ready", timeout=2)[0] == 200:
                    return prom
            except OSError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready in {room(START_TIMEOUT_S):g} s: {prom.log()}"
            time.sleep(0.2)

    yield start
    for proc, log, data in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=room(60))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        subprocess.run(["rm", "-rf", "--", str(data)], check=False)


def wait_for(what, fn, timeout=300, every=0.25):
    deadline = time.monotonic() + room(timeout)
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


def dd_in(cg, loop, bs=BS, count=COUNT):
    p = subprocess.run(cg.wrap(["dd", "if=/dev/zero", f"of={loop.path}", f"bs={bs}", f"count={count}",
                                "oflag=direct"]), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    # dd's own report is the ground truth for what was written.
    written = int(re.search(r"^(\d+) bytes", p.stderr, re.M).group(1))
    assert written == bs * count
    return written


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')


def samples(body):
    """Sample lines of an exposition -> {series text: value}."""
    out = {}
    for line in body.decode("utf-8").splitlines():
        if line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, line
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def promtool_ok(body):
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=room(600))
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def coarse_bucket_of_median(buckets):
    """(lower, upper) edge in seconds of the exported bucket holding the
    median: where Prometheus's linear interpolation must land."""
    count = buckets[-1]
    edges = [0.0] + [ns / 1e9 for ns in P.EDGES_NS] + [math.inf]
    for i, c in enumerate(buckets):
        if c >= count / 2:
            return edges[i], edges[i + 1]
    raise AssertionError(buckets)


def test_prometheus_sees_exactly_the_bytes_dd_wrote(loopdev, make_cgroup, ioltrace, prometheus, tmp_path):
    need_tool("promtool")
    cg = make_cgroup("prom")
    port = free_port()
    t = ioltrace("serve", "--listen", f"127.0.0.1:{port}", "--disk", loopdev.name)
    # A second, independent tracer records the fine histograms (CSV).
    csv_path = tmp_path / "ref.csv"
    ref = ioltrace("hist", "--by", "cgroup", "--disk", loopdev.name, "--stage", "device", "--csv", csv_path)
    prom = prometheus(port)
    wait_for("the first scrape", lambda: prom.query('up{job="ioltrace"} == 1'))

    written = dd_in(cg, loopdev)
    done = time.time()
    assert ref.stop() == 0, ref.err

    sel = f'cgroup="{cg.rel}",device="{loopdev.name}"'
    # A sample scraped after dd exited holds all of its completions: the
    # kernel counts a request before dd's write() returns.
    wait_for("a scrape after dd finished",
             lambda: all(v > done for _, v in prom.query(f"timestamp(ioltrace_cgroup_block_bytes_total{{{sel}}})"))
             and prom.query(f"ioltrace_cgroup_block_bytes_total{{{sel}}}"))
    assert prom.one(f"sum(ioltrace_cgroup_block_bytes_total{{{sel}}})") == written
    assert prom.one(f'ioltrace_cgroup_block_bytes_total{{{sel},op="write"}}') == written
    assert prom.one(f'ioltrace_cgroup_block_ios_total{{{sel},op="write"}}') == COUNT
    assert prom.one(f'ioltrace_block_bytes_total{{device="{loopdev.name}",op="write"}}') == written
    assert prom.one(f'ioltrace_cgroup_block_latency_seconds_count{{{sel},op="write",stage="device"}}') == COUNT
    assert prom.one('ioltrace_build_info{job="ioltrace"}') == 1

    q = prom.one(f'histogram_quantile(0.5, sum by (le) '
                 f'(ioltrace_cgroup_block_latency_seconds_bucket{{{sel},op="write",stage="device"}}))')
    assert math.isfinite(q) and q > 0

    # Inside the exported bucket that holds the median, per ioltrace's own /metrics ...
    _, ctype, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert ctype.startswith("text/plain; version=0.0.4")
    got = samples(text)
    buckets = [got[f'ioltrace_cgroup_block_latency_seconds_bucket{{{sel},op="write",stage="device",le="{le}"}}']
               for le in P.LE_VALUES]
    assert buckets[-1] == COUNT
    lo, hi = coarse_bucket_of_median(buckets)
    assert lo <= q <= hi, (q, lo, hi, buckets)
    # ... and within the exported edges around every sample the independent
    # tracer's fine histogram saw (min and max to 1/32 of a power of two).
    fine = H.empty()
    for r in rec.read(csv_path):
        if r.stage == "device" and r.name == cg.rel and r.op == "write" and r.bucket_low_ns:
            fine[layout.bucket_of(int(r.bucket_low_ns))] += r.count
    assert fine.sum() == COUNT
    nz = fine.nonzero()[0]
    fine_min, fine_max = layout.BUCKET_LOW[nz[0]], layout.BUCKET_HIGH[nz[-1]]
    floor = max([0] + [e for e in P.EDGES_NS if e <= fine_min]) / 1e9
    ceil = min([math.inf] + [e for e in P.EDGES_NS if e >= fine_max]) / 1e9
    print(f"histogram_quantile p50 {q * 1e6:.1f} us; fine min {fine_min / 1e3:.1f} us max {fine_max / 1e3:.1f} us; "
          f"fine p50 {H.percentile(fine, 50) / 1e3:.1f} us")
    assert floor <= q <= ceil, (q, floor, ceil)

    # The real exposition passes promtool, and Prometheus (which asks for
    # OpenMetrics) took every sample of it.
    rc, out = promtool_ok(text)
    assert rc == 0, out
    _, ctype, om = http_get(f"http://127.0.0.1:{port}/metrics", "application/openmetrics-text;version=1.0.0")
    assert ctype.startswith("application/openmetrics-text; version=1.0.0") and om.endswith(b"# EOF\n")
    assert samples(om).keys() == samples(text).keys()

    def ingested_all():
        n = len(samples(http_get(f"http://127.0.0.1:{port}/metrics", "application/openmetrics-text")[2]))
        return prom.one('scrape_samples_scraped{job="ioltrace"}') == n
    wait_for("Prometheus to ingest every sample", ingested_all, every=0.5)

    assert t.stop() == 0, t.err
    assert "probes detached" in t.err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_textfile_and_listener_stop_cleanly_on_signals(sig, loopdev, make_cgroup, ioltrace, tmp_path):
    need_tool("promtool")
    cg = make_cgroup("txt")
    out_dir = tmp_path / "textfile"
    out_dir.mkdir()
    path = out_dir / "ioltrace.prom"
    port = free_port()
    t = ioltrace("serve", "--user", "root", "--textfile", path, "--interval", "0.2", "--listen", f"127.0.0.1:{port}",
                 "--disk", loopdev.name)
    written = dd_in(cg, loopdev, bs=4096, count=100)
    series = f'ioltrace_cgroup_block_bytes_total{{cgroup="{cg.rel}",device="{loopdev.name}",op="write"}}'
    wait_for("the textfile to show dd's bytes",
             lambda: path.exists() and samples(path.read_bytes()).get(series) == written)
    rc, out = promtool_ok(path.read_bytes())
    assert rc == 0, out
    assert samples(http_get(f"http://127.0.0.1:{port}/metrics")[2])[series] == written

    assert t.stop(sig) == 0, t.err
    assert "probes detached" in t.err and "Traceback" not in t.err
    # Only the final file is left; its last write is complete.
    assert [p.name for p in out_dir.iterdir()] == ["ioltrace.prom"]
    assert samples(path.read_bytes())[series] == written
    # Nothing listens on the port any more (SO_REUSEADDR: our own
    # connections may linger in TIME_WAIT).
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)


def test_per_process_series_name_dd(loopdev, make_cgroup, ioltrace):
    cg = make_cgroup("pp")
    port = free_port()
    t = ioltrace("serve", "--listen", f"127.0.0.1:{port}", "--per-process", "--disk", loopdev.name)
    p = subprocess.Popen(cg.wrap(["dd", "if=/dev/zero", f"of={loopdev.path}", "bs=4096", "count=50",
                                  "oflag=direct"]), stderr=subprocess.DEVNULL)
    assert p.wait() == 0
    got = samples(http_get(f"http://127.0.0.1:{port}/metrics")[2])
    # The shell execs dd, so dd keeps the pid Popen saw.
    key = f'ioltrace_process_block_bytes_total{{pid="{p.pid}",comm="dd",device="{loopdev.name}",op="write"}}'
    assert got[key] == 50 * 4096
    assert t.stop() == 0, t.err


PWRITE_PROGRAM = """
import errno, mmap, os, sys, time
path, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, size)           # page-aligned, as O_DIRECT needs
buf.write(b"x" * size)
t0 = time.perf_counter()
for i in range(n):
    assert os.pwrite(fd, buf, i * size) == size
try:
    os.pwrite(fd, buf, 1)           # misaligned for O_DIRECT: the kernel says EINVAL
    raise SystemExit("a misaligned O_DIRECT pwrite succeeded")
except OSError as e:
    assert e.errno == errno.EINVAL, e
elapsed = time.perf_counter() - t0
os.close(fd)
print(elapsed)
"""


def test_prometheus_sees_exactly_the_pwrite64_calls_and_bytes(loopdev, make_cgroup, ioltrace, prometheus):
    """The syscall layer: a program makes exactly N pwrite64 calls of SIZE
    bytes with O_DIRECT, then one that the kernel refuses with EINVAL."""
    need_tool("promtool")
    n, size = 200, 8192
    cg = make_cgroup("sc")
    port = free_port()
    t = ioltrace("serve", "--listen", f"127.0.0.1:{port}", "--layer", "both", "--syscalls", "pwrite64",
                 "--per-process", "--cgroup", cg.rel)
    prom = prometheus(port)
    wait_for("the first scrape", lambda: prom.query('up{job="ioltrace"} == 1'))

    p = subprocess.Popen(cg.wrap([sys.executable, "-c", PWRITE_PROGRAM, loopdev.path, str(n), str(size)]),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=room(600))
    assert p.returncode == 0, err
    elapsed = float(out)        # the program's own clock around its calls
    done = time.time()

    sel = f'cgroup="{cg.rel}",syscall="pwrite64"'
    wait_for("a scrape after the program finished",
             lambda: all(v > done for _, v in prom.query(f"timestamp(ioltrace_cgroup_syscall_calls_total{{{sel}}})"))
             and prom.query(f"ioltrace_cgroup_syscall_calls_total{{{sel}}}"))
    assert prom.one(f"ioltrace_cgroup_syscall_calls_total{{{sel}}}") == n + 1
    assert prom.one(f"ioltrace_cgroup_syscall_bytes_total{{{sel}}}") == n * size
    assert prom.one(f'ioltrace_cgroup_syscall_errors_total{{{sel},errno="EINVAL"}}') == 1
    assert prom.one(f"ioltrace_cgroup_syscall_latency_seconds_count{{{sel}}}") == n + 1
    assert prom.one(f'ioltrace_cgroup_syscall_latency_seconds_bucket{{{sel},le="+Inf"}}') == n + 1
    # The sum of the calls' times is positive and no more than the time the
    # program measured around all of them.
    total = prom.one(f"ioltrace_cgroup_syscall_latency_seconds_sum{{{sel}}}")
    assert 0 < total <= elapsed, (total, elapsed)
    q = prom.one(f"histogram_quantile(0.5, sum by (le) (ioltrace_cgroup_syscall_latency_seconds_bucket{{{sel}}}))")
    assert math.isfinite(q) and 0 < q <= elapsed
    # The shell execs python, so the program keeps the pid Popen saw.
    psel = f'pid="{p.pid}",syscall="pwrite64"'
    assert prom.one(f"ioltrace_process_syscall_calls_total{{{psel}}}") == n + 1
    assert prom.one(f"ioltrace_process_syscall_bytes_total{{{psel}}}") == n * size
    # The block layer saw the same bytes reach the loop device.
    assert prom.one(f'sum(ioltrace_cgroup_block_bytes_total{{cgroup="{cg.rel}",device="{loopdev.name}"}})') == n * size
    assert prom.one('ioltrace_build_info{job="ioltrace"}') == 1
    assert prom.query('ioltrace_build_info{layers="block,syscall"}')

    _, _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    rc, lint = promtool_ok(text)
    assert rc == 0, lint
    assert t.stop() == 0, t.err
    assert "probes detached" in t.err


def test_serve_syscall_layer_alone_exports_no_block_families(make_cgroup, ioltrace, tmp_path):
    cg = make_cgroup("sconly")
    port = free_port()
    t = ioltrace("serve", "--listen", f"127.0.0.1:{port}", "--layer", "syscall", "--syscalls", "write,fsync",
                 "--cgroup", cg.rel)
    target = tmp_path / "f"
    p = subprocess.run(cg.wrap(["sh", "-c", f'printf abc > "{target}"']), capture_output=True, timeout=room(300))
    assert p.returncode == 0
    got = samples(http_get(f"http://127.0.0.1:{port}/metrics")[2])
    assert got[f'ioltrace_cgroup_syscall_calls_total{{cgroup="{cg.rel}",syscall="write"}}'] == 1
    assert got[f'ioltrace_cgroup_syscall_bytes_total{{cgroup="{cg.rel}",syscall="write"}}'] == 3
    assert not any(k.startswith(("ioltrace_block_", "ioltrace_cgroup_block_")) for k in got)
    assert any('start_tracepoint="none"' in k and 'layers="syscall"' in k for k in got if "build_info" in k)
    assert t.stop() == 0, t.err
