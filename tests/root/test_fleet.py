"""`ioltrace serve` deployed as on a fleet: TLS and basic auth (--web-config),
an unprivileged user after attach (--user, default nobody), and a real
Prometheus (Debian package prometheus) scraping it.

Ground truth comes from outside ioltrace: the bytes dd reports it wrote with
direct I/O on a private loop device, /proc/PID/status of the serving process
(uid, capability sets), the kernel's version and
kernel.unprivileged_bpf_disabled for which capability must remain, and
Prometheus's own view of each scrape (up, scrape_samples_scraped). The
certificates are made in the test (python's cryptography or openssl);
everything listens on 127.0.0.1 and is removed afterwards."""

import base64
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests import tlscerts

from .conftest import REPO, Ioltrace, need, need_tool
from .test_serve import COUNT, Prometheus, dd_in, free_port, http_get, samples, wait_for

CAP_SYS_ADMIN, CAP_BPF = 21, 39
PASSWORD = "correct horse"


def status(pid):
    """uid (real, effective, saved, fs) and capability sets of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == "Uid":
                out["uid"] = tuple(int(x) for x in v.split())
            elif k.startswith("Cap"):
                out[k] = int(v, 16)
    return out


def expected_caps():
    """The capabilities serve must keep, from the kernel's version and
    sysctl: none from 5.19, where unprivileged_bpf_disabled stops blocking
    commands on descriptors a process already holds (commit c8644cd0efe7,
    "bpf: refine kernel.unprivileged_bpf_disabled behaviour"; the Debian 12
    guest's 6.1 reads the maps without any), else CAP_BPF (CAP_SYS_ADMIN
    before 5.8) when unprivileged BPF is disabled."""
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
        disabled = int(f.read()) != 0
    if release >= (5, 19) or not disabled:
        return 0
    return 1 << (CAP_BPF if release >= (5, 8) else CAP_SYS_ADMIN)


def assert_dropped(pid, uid):
    st = status(pid)
    want = expected_caps()
    assert st["uid"] == (uid,) * 4, st
    assert (st["CapEff"], st["CapPrm"], st["CapInh"], st["CapAmb"]) == (want, want, 0, 0), st
    assert st["CapBnd"] == want, st
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            t = status(f"{pid}/task/{tid}")
        except (FileNotFoundError, ProcessLookupError):
            continue    # a thread that ended after the listing
        assert t["uid"] == (uid,) * 4 and t["CapEff"] & ~want == 0, (tid, t)
    return want


# Kernel counters of a request that completed but is not in its key's
# count: a completion the kernel skipped our program for, a start or issue
# whose in-flight slot was taken, a completion with nothing in flight, or
# one counted under "other" because the stats map was full.
ALARMS = ("missed_complete", "collision", "dropped", "unmatched", "stats_full")
SETTLED_READINGS = 5    # fresh readings with the same value: the count is final
SETTLED_S = 5.0         # ... spanning at least this long


def check_counted(got_bytes, written, bs, events, disk_bytes=None):
    """dd's writes: every one counted, or shown by a kernel counter; a
    request missing with no counter saying so fails. events: event ->
    value of ioltrace_kernel_events_total at the same reading; disk_bytes,
    the disk's own series then, says in a failure whether the request was
    lost or attributed to another cgroup."""
    assert got_bytes % bs == 0 and got_bytes <= written, (got_bytes, written)
    lost = (written - got_bytes) // bs
    assert lost <= sum(events.get(k, 0) for k in ALARMS), (lost, events, disk_bytes)


def settle(what, read, want, timeout=120):
    """Wait on the count rather than on the clock. read() -> None (not yet)
    or (stamp, value, extra): stamp names a fresh reading (a scrape's
    timestamp, a textfile's rewrite), value is compared with want. Returns
    (value, extra) of the first reading equal to want or, when the count
    never gets there, of the last of SETTLED_READINGS fresh readings that
    have not changed for SETTLED_S (every completion has landed: dd used
    direct I/O, so its writes completed before it exited)."""
    deadline = time.monotonic() + timeout
    last = None
    same = []       # stamps of the readings equal to the last value
    since = 0.0
    while True:
        got = read()
        if got is not None:
            stamp, value, extra = got
            if value == want:
                return value, extra
            if value != last:
                last, same, since = value, [], time.monotonic()
            if stamp not in same:
                same.append(stamp)
            if len(same) >= SETTLED_READINGS and time.monotonic() - since >= SETTLED_S:
                return value, extra
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what} to reach {want} or stop changing (last: {last!r}, "
                        f"{len(same)} readings since it changed)")
        time.sleep(0.25)


def range_samples(prom, expr):
    """Raw samples of a range selector: [(labels, [(timestamp, value), ...])]."""
    url = f"http://127.0.0.1:{prom.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    data = json.loads(http_get(url)[2])
    assert data["status"] == "success", data
    return [(r["metric"], [(float(ts), float(v)) for ts, v in r["values"]]) for r in data["data"]["result"]]


def http_reading():
    """Stamps for readings of serve's /metrics: each GET is a fresh scrape."""
    n = [0]

    def stamp():
        n[0] += 1
        return n[0]
    return stamp


def events_of(got):
    return {k.split('"')[1]: v for k, v in got.items() if k.startswith("ioltrace_kernel_events_total{")}


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def web(tmp_path):
    need(None if _importable("bcrypt") and _importable("yaml") else "python3-bcrypt or python3-yaml missing")
    import bcrypt

    d = tmp_path / "web"
    d.mkdir()
    certs = tlscerts.make(d)
    h = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    cfg = d / "web.yml"
    cfg.write_text(f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n"
                   f"basic_auth_users:\n  prometheus: {h}\n")
    return cfg, certs


def _importable(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


@pytest.fixture
def tls_prometheus(tmp_path):
    """A Prometheus scraping one target over TLS twice: job "good" with the
    right password, job "bad" with a wrong one."""
    need_tool("prometheus")
    started = []

    def start(target_port, ca):
        port = free_port()
        jobs = ""
        for job, password in (("good", PASSWORD), ("bad", "wrong horse")):
            jobs += (f"  - job_name: {job}\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n"
                     f"    basic_auth:\n      username: prometheus\n      password: '{password}'\n"
                     f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n")
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                       "scrape_configs:\n" + jobs)
        data = tmp_path / "prometheus-data"
        log_path = tmp_path / "prometheus.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        prom = Prometheus(proc, port, log_path)
        started.append((proc, log))
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"prometheus exited ({proc.returncode}): {prom.log()}"
            try:
                if http_get(f"http://127.0.0.1:{port}/-/ready", timeout=2)[0] == 200:
                    return prom
            except OSError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready in 60 s: {prom.log()}"
            time.sleep(0.2)

    yield start
    for proc, log in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_prometheus_scrapes_over_tls_with_basic_auth_as_nobody(loopdev, make_cgroup, ioltrace, tls_prometheus,
                                                                web):
    import ssl

    cfg, certs = web
    nobody = pwd.getpwnam("nobody").pw_uid
    cg = make_cgroup("tls")
    port = free_port()
    t = ioltrace("serve", "--listen", f"127.0.0.1:{port}", "--web-config", cfg, "--disk", loopdev.name)
    assert f"serving https://127.0.0.1:{port}/metrics" in t.banner
    assert "running as nobody" in t.banner
    kept = assert_dropped(t.proc.pid, nobody)
    print(f"kept capabilities {kept:#x}; {t.banner.splitlines()[0]}")

    prom = tls_prometheus(port, certs.ca)
    wait_for("the first scrape with the right password", lambda: prom.query('up{job="good"} == 1'), timeout=60)
    written = dd_in(cg, loopdev)
    done = time.time()
    sel = f'cgroup="{cg.rel}",device="{loopdev.name}",op="write"'

    def scraped():
        # The newest scrape that began after dd exited, with the kernel
        # counters of that same scrape.
        series = range_samples(prom, f'ioltrace_cgroup_block_bytes_total{{{sel},job="good"}}[5m]')
        fresh = [(ts, v) for ts, v in (series[0][1] if series else []) if ts > done]
        if not fresh:
            return None
        ts, v = fresh[-1]
        events = {m["event"]: dict(vals).get(ts, 0.0)
                  for m, vals in range_samples(prom, 'ioltrace_kernel_events_total{job="good"}[5m]')}
        return ts, v, events
    got, events = settle("the scraped bytes of dd's cgroup", scraped, written)
    disk = prom.one(f'ioltrace_block_bytes_total{{device="{loopdev.name}",op="write",job="good"}}')
    check_counted(got, written, written // COUNT, events, disk)
    assert prom.one(f'ioltrace_cgroup_block_ios_total{{{sel},job="good"}}') * (written // COUNT) == got
    assert disk == got

    # The wrong password: every scrape failed, not one sample stored.
    wait_for("a scrape with the wrong password", lambda: prom.query('up{job="bad"}'), timeout=60)
    assert prom.one('max_over_time(up{job="bad"}[1h])') == 0
    assert prom.one('max_over_time(scrape_samples_scraped{job="bad"}[1h])') == 0
    assert prom.query('{job="bad",__name__=~"ioltrace_.*"}') == []
    targets = json.loads(http_get(f"http://127.0.0.1:{prom.port}/api/v1/targets")[2])["data"]["activeTargets"]
    errors = {t["labels"]["job"]: t["lastError"] for t in targets}
    assert "401" in errors["bad"] and errors["good"] == "", errors

    # The same by hand: 401 with a challenge on both paths, 400 for plain HTTP.
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    for path in ("/metrics", "/healthz"):
        req = urllib.request.Request(f"https://127.0.0.1:{port}{path}",
                                     headers={"Authorization": basic("prometheus", "wrong horse")})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30, context=ctx)
        assert e.value.code == 401 and e.value.headers["WWW-Authenticate"].startswith("Basic")
        assert b"ioltrace_" not in e.value.read()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30)
    assert e.value.code == 400 and b"ioltrace_" not in e.value.read()
    req = urllib.request.Request(f"https://127.0.0.1:{port}/metrics",
                                 headers={"Authorization": basic("prometheus", PASSWORD)})
    with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
        assert samples(r.read())[f"ioltrace_cgroup_block_bytes_total{{{sel}}}"] == got

    # Still unprivileged after serving; exits cleanly and detaches as nobody.
    assert_dropped(t.proc.pid, nobody)
    assert t.stop() == 0, t.err
    assert "probes detached" in t.err and "Traceback" not in t.err


@pytest.fixture
def nobody_dir():
    d = tempfile.mkdtemp(prefix="ioltrace-test-textfile-", dir="/dev/shm")
    nobody = pwd.getpwnam("nobody")
    os.chown(d, nobody.pw_uid, nobody.pw_gid)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_counts_stay_exact_after_the_drop_with_folding_and_textfile(loopdev, make_cgroup, ioltrace, nobody_dir):
    """As nobody: exited processes are folded (their kernel entries read and
    deleted through the map descriptors), names resolved from /proc and
    /sys, and the textfile rewritten; the cgroup's bytes stay exactly dd's."""
    nobody = pwd.getpwnam("nobody").pw_uid
    cg = make_cgroup("drop")
    path = os.path.join(nobody_dir, "ioltrace.prom")
    port = free_port()
    t = ioltrace("serve", "--textfile", path, "--interval", "0.2", "--listen", f"127.0.0.1:{port}",
                 "--per-process", "--keep-exited", "0", "--disk", loopdev.name)
    assert_dropped(t.proc.pid, nobody)
    written = sum(dd_in(cg, loopdev, bs=4096, count=50) for _ in range(3))   # three processes, all exited
    cg_series = f'ioltrace_cgroup_block_bytes_total{{cgroup="{cg.rel}",device="{loopdev.name}",op="write"}}'
    exited = f'ioltrace_process_block_bytes_total{{pid="exited",comm="[exited]",device="{loopdev.name}",op="write"}}'

    def folded():
        try:
            with open(path, "rb") as f:     # replaced by rename: each open is one rewrite
                st, got = os.fstat(f.fileno()), samples(f.read())
        except FileNotFoundError:
            return None
        # Folded: the processes' kernel entries were read and deleted, and
        # their counts went to the exited row.
        if got.get(exited, 0) != got.get(cg_series):
            return None
        return (st.st_ino, st.st_mtime_ns), got[cg_series], got
    count, got = settle("the textfile's folded bytes of dd's cgroup", folded, written)
    assert os.stat(path).st_uid == nobody
    check_counted(count, written, 4096, events_of(got))
    http = samples(http_get(f"http://127.0.0.1:{port}/metrics")[2])
    assert http[cg_series] == got[cg_series] and http[exited] == got[cg_series]
    assert_dropped(t.proc.pid, nobody)
    assert t.stop() == 0, t.err
    assert "probes detached" in t.err and "Traceback" not in t.err


def test_textfile_directory_not_writable_by_the_user_is_refused_at_start(tmp_path):
    d = tmp_path / "root-only"
    d.mkdir(mode=0o700)
    p = subprocess.run([sys.executable, "-m", "ioltrace", "serve", "--listen", "none", "--textfile",
                        str(d / "x.prom")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "not writable by user nobody" in p.stderr and "Tracing" not in p.stderr
    assert list(d.iterdir()) == []


def unit_capabilities():
    with open(REPO / "packaging" / "ioltrace.service") as f:
        for line in f:
            if line.startswith("CapabilityBoundingSet="):
                return line.split("=", 1)[1].split()
    raise AssertionError("packaging/ioltrace.service has no CapabilityBoundingSet=")


def test_serve_needs_no_more_than_the_units_capability_bounding_set(loopdev, make_cgroup):
    """Started as root with only the unit's CapabilityBoundingSet (as systemd
    would: setpriv sets the bounding set, root's permitted set follows it at
    exec), serve loads, attaches, drops to nobody and counts dd's bytes."""
    need_tool("setpriv")
    caps = unit_capabilities()
    bounding = "-all," + ",".join("+" + c.removeprefix("CAP_").lower() for c in caps)
    cg = make_cgroup("unitcaps")
    port = free_port()
    t = Ioltrace(["serve", "--listen", f"127.0.0.1:{port}", "--disk", loopdev.name],
                 prefix=["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all", "--"])
    try:
        assert "running as nobody" in t.banner
        assert_dropped(t.proc.pid, pwd.getpwnam("nobody").pw_uid)
        written = dd_in(cg, loopdev)
        series = f'ioltrace_cgroup_block_bytes_total{{cgroup="{cg.rel}",device="{loopdev.name}",op="write"}}'
        stamp = http_reading()

        def scraped():
            got = samples(http_get(f"http://127.0.0.1:{port}/metrics")[2])
            return (stamp(), got[series], got) if series in got else None
        count, got = settle("the scraped bytes of dd's cgroup", scraped, written)
        check_counted(count, written, written // COUNT, events_of(got),
                      got.get(f'ioltrace_block_bytes_total{{device="{loopdev.name}",op="write"}}'))
        assert t.stop() == 0, t.err
        assert "probes detached" in t.err
    finally:
        t.kill()
