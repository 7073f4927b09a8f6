"""`serve --web-config`: the exporters' web config YAML (exporter-toolkit's
format), checked at start, and the HTTP server it configures.

No root and no bcc: the server is serve.MetricsServer on 127.0.0.1 with a
render function returning fixed bytes; the clients are python's own
urllib/ssl/socket, so what they see is what any HTTP client would. Bad
configurations must end in one line and exit 2 before serve binds a port or
loads a probe (both replaced by stubs that fail the test)."""

import base64
import os
import socket
import ssl
import threading
import urllib.error
import urllib.request

import pytest

from ioltrace import cli, loader, serve, webconfig
from ioltrace.errors import BadInput
from tests import tlscerts

if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    import bcrypt   # noqa: E402 (CI must have them: scripts/setup.sh installs both)
    import yaml     # noqa: F401
else:
    bcrypt = pytest.importorskip("bcrypt")
    pytest.importorskip("yaml")

BODY = b"# TYPE up gauge\nup 1\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return tlscerts.make(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def pw_hash():
    return bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


def write(tmp_path, text, name="web.yml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def tls_yaml(certs, extra=""):
    return f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n{extra}"


# -- parsing --------------------------------------------------------------------

def test_full_config_parses(tmp_path, certs, pw_hash):
    p = write(tmp_path, tls_yaml(certs, f"  client_auth_type: RequireAndVerifyClientCert\n"
                                        f"  client_ca_file: {certs.ca}\n  min_version: TLS13\n"
                                        f"basic_auth_users:\n  prom: {pw_hash}\n  other: '{pw_hash}'\n"
                                        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"))
    w = webconfig.load(str(p))
    assert w.scheme == "https"
    assert w.context.verify_mode == ssl.CERT_REQUIRED
    assert w.context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert w.users == {"prom": pw_hash.encode(), "other": pw_hash.encode()}
    assert w.headers == {"X-Frame-Options": "deny"}
    assert "TLS" in w.describe() and "2 users" in w.describe()


def test_paths_are_relative_to_the_config_file(tmp_path, certs):
    d = certs.cert.parent
    p = write(d, "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n", "rel.yml")
    assert webconfig.load(str(p)).context is not None


def test_basic_auth_alone_is_plain_http(tmp_path, pw_hash):
    w = webconfig.load(str(write(tmp_path, f"basic_auth_users:\n  prom: {pw_hash}\n")))
    assert w.context is None and w.scheme == "http" and list(w.users) == ["prom"]


def test_empty_file_is_plain_http_without_auth(tmp_path):
    w = webconfig.load(str(write(tmp_path, "")))
    assert (w.context, w.users) == (None, {})


BAD = {
    "yaml": ("tls_server_config: [unclosed\n", "not valid YAML at line"),
    "not_mapping": ("- a\n- b\n", "must be a mapping"),
    "unknown_top": ("tls_config: null\n", "unknown key tls_config"),
    "unknown_tls": ("tls_server_config:\n  cert_fil: x\n", "unknown key tls_server_config.cert_fil"),
    "unsupported_tls": ("tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "not supported"),
    "cert_without_key": ("tls_server_config:\n  cert_file: {cert}\n", "key_file is missing"),
    "key_without_cert": ("tls_server_config:\n  key_file: {key}\n", "cert_file is missing"),
    "auth_without_cert": ("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n",
                          "without cert_file and key_file"),
    "bad_auth_type": ("{tls}  client_auth_type: Sometimes\n", "is not one of"),
    "unverified_auth": ("{tls}  client_auth_type: RequireAnyClientCert\n", "checks no certificate"),
    "auth_without_ca": ("{tls}  client_auth_type: VerifyClientCertIfGiven\n", "needs client_ca_file"),
    "ca_without_auth": ("{tls}  client_ca_file: {ca}\n", "client_auth_type is not"),
    "bad_version": ("{tls}  min_version: TLS14\n", "min_version"),
    "missing_cert": ("tls_server_config:\n  cert_file: /nonexistent/c.pem\n  key_file: {key}\n",
                     "cert_file /nonexistent/c.pem: no such file"),
    "cert_is_key": ("tls_server_config:\n  cert_file: {key}\n  key_file: {key}\n", "do not make a certificate"),
    "key_of_other_cert": ("tls_server_config:\n  cert_file: {cert}\n  key_file: {client_key}\n",
                          "do not make a certificate"),
    "ca_not_pem": ("{tls}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {yml}\n",
                   "client_ca_file"),
    "plain_password": ("basic_auth_users:\n  prom: s3cret\n", "is not a bcrypt hash"),
    "hash_not_string": ("basic_auth_users:\n  prom: 12\n", "must be a bcrypt hash string"),
    "users_list": ("basic_auth_users:\n  - prom\n", "basic_auth_users must be a mapping"),
    "colon_user": ("basic_auth_users:\n  'a:b': {hash}\n", "holds ':'"),
    "unknown_http": ("http_server_config:\n  keepalive: true\n", "unknown key http_server_config.keepalive"),
    "header_newline": ("http_server_config:\n  headers:\n    X-A: \"a\\nb\"\n", "one-line string"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_config_is_one_line(name, tmp_path, certs, pw_hash):
    text, expect = BAD[name]
    yml = tmp_path / "web.yml"
    text = text.format(tls=tls_yaml(certs), cert=certs.cert, key=certs.key, ca=certs.ca,
                       client_key=certs.client_key, hash=pw_hash, yml=yml)
    yml.write_text(text)
    with pytest.raises(BadInput) as e:
        webconfig.load(str(yml))
    msg = str(e.value)
    assert msg.startswith(f"--web-config {yml}: ") and "\n" not in msg
    assert expect in msg, msg


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        webconfig.load(str(tmp_path / "absent.yml"))
    with pytest.raises(BadInput, match="is a directory"):
        webconfig.load(str(tmp_path))
    (tmp_path / "bin.yml").write_bytes(b"\xff\xfe")
    with pytest.raises(BadInput, match="not UTF-8"):
        webconfig.load(str(tmp_path / "bin.yml"))


@pytest.fixture
def nothing_starts(monkeypatch):
    def fail(*a, **kw):
        pytest.fail("serve got past the web config check")
    monkeypatch.setattr(loader, "Tracer", fail)
    monkeypatch.setattr(serve, "bind", fail)


@pytest.mark.parametrize("name", ["yaml", "missing_cert", "plain_password", "unknown_top"])
def test_serve_exits_2_before_binding_or_attaching(name, tmp_path, certs, pw_hash, capsys, nothing_starts):
    text, expect = BAD[name]
    yml = write(tmp_path, text.format(tls=tls_yaml(certs), cert=certs.cert, key=certs.key, hash=pw_hash))
    rc = cli.main(["serve", "--listen", "127.0.0.1:1", "--web-config", str(yml), "--user", "root"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"ioltrace: --web-config {yml}: "), err
    assert expect in err and "Traceback" not in err


def test_web_config_without_listener(tmp_path, capsys, nothing_starts):
    rc = cli.main(["serve", "--listen", "none", "--textfile", str(tmp_path / "x.prom"),
                   "--web-config", str(write(tmp_path, ""))])
    assert rc == 2 and "--listen is none" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "web.yml"]


# -- authentication -------------------------------------------------------------

def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_authenticator(pw_hash):
    a = webconfig.Authenticator({"prom": pw_hash.encode()})
    assert a.allowed(basic("prom", "s3cret"))
    assert a.allowed(basic("prom", "s3cret"))          # remembered
    assert not a.allowed(basic("prom", "s3cret "))
    assert not a.allowed(basic("prom", "S3CRET"))
    assert not a.allowed(basic("nobody", "s3cret"))
    assert not a.allowed(None)
    assert not a.allowed("Bearer abc")
    assert not a.allowed("Basic !!!notbase64")
    assert not a.allowed("Basic " + base64.b64encode(b"no-colon").decode())
    assert webconfig.Authenticator({}).allowed(None)


def test_htpasswd_2y_hashes_verify():
    h = bcrypt.hashpw(b"pw", bcrypt.gensalt(4))
    a = webconfig.Authenticator({"u": b"$2y$" + h[4:]})
    assert a.allowed(basic("u", "pw")) and not a.allowed(basic("u", "px"))


# -- the server -----------------------------------------------------------------

@pytest.fixture
def server(tmp_path, certs, pw_hash):
    started = []

    def start(yaml_text):
        web = webconfig.load(str(write(tmp_path, yaml_text)))
        srv = serve.bind(("127.0.0.1", 0), lambda fmt: BODY, web=web)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        t.start()
        started.append((srv, t))
        return srv.server_address[1]

    yield start
    for srv, t in started:
        srv.shutdown()
        srv.server_close()
        t.join(30)


def get(url, ctx=None, auth=None, timeout=30):
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def client_ctx(certs, with_cert=False):
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if with_cert:
        ctx.load_cert_chain(str(certs.client), str(certs.client_key))
    return ctx


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/nothing"])
def test_tls_and_basic_auth_cover_every_path(path, server, certs, pw_hash):
    port = server(tls_yaml(certs, f"basic_auth_users:\n  prom: {pw_hash}\n"
                                  "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"))
    url = f"https://127.0.0.1:{port}{path}"
    ctx = client_ctx(certs)
    for auth in (None, basic("prom", "wrong"), basic("eve", "s3cret")):
        code, headers, body = get(url, ctx, auth)
        assert code == 401 and headers["WWW-Authenticate"].startswith("Basic ") and BODY not in body
    code, headers, body = get(url, ctx, basic("prom", "s3cret"))
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert (code, body) == {"/metrics": (200, BODY), "/healthz": (200, b"ok\n")}.get(path, (404, body))


def test_plain_http_to_the_tls_port_is_refused(server, certs, pw_hash):
    port = server(tls_yaml(certs, f"basic_auth_users:\n  prom: {pw_hash}\n"))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: " + basic("prom", "s3cret").encode()
                  + b"\r\n\r\n")
        got = b""
        while chunk := s.recv(4096):
            got += chunk
    assert got.startswith(b"HTTP/1.0 400 ") and BODY not in got
    # A client that speaks neither gets its connection closed (or a TLS
    # alert, record type 0x15), and the server goes on.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"\x00\x01garbage")
        try:
            got = s.recv(4096)
        except ConnectionResetError:
            got = b""
        assert got[:1] in (b"", b"\x15"), got
    assert get(f"https://127.0.0.1:{port}/metrics", client_ctx(certs), basic("prom", "s3cret"))[0] == 200


def test_client_certificates_required(server, certs):
    port = server(tls_yaml(certs, f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n"))
    url = f"https://127.0.0.1:{port}/metrics"
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        get(url, client_ctx(certs))
    code, _, body = get(url, client_ctx(certs, with_cert=True))
    assert (code, body) == (200, BODY)


def test_basic_auth_over_plain_http(server, pw_hash):
    port = server(f"basic_auth_users:\n  prom: {pw_hash}\n")
    assert get(f"http://127.0.0.1:{port}/metrics")[0] == 401
    assert get(f"http://127.0.0.1:{port}/metrics", auth=basic("prom", "s3cret"))[::2] == (200, BODY)


def test_a_scraper_that_breaks_off_mid_answer_leaves_no_traceback(tmp_path, certs, capfd):
    """A scraper whose timeout ends the connection while serve writes a
    large answer over TLS (the write fails with ssl.SSLEOFError, seen in an
    emulated guest): nothing on stderr, and the next scrape is answered."""
    big = b"# TYPE up gauge\n" + b"up 1\n" * (8 << 20)
    web = webconfig.load(str(write(tmp_path, tls_yaml(certs))))
    reports = []
    srv = serve.bind(("127.0.0.1", 0), lambda fmt: big, report=reports.append, web=web)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        port = srv.server_address[1]
        for _ in range(3):
            raw = socket.create_connection(("127.0.0.1", port), timeout=30)
            with client_ctx(certs).wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(4096)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        code, _, body = get(f"https://127.0.0.1:{port}/healthz", client_ctx(certs))
        assert (code, body) == (200, b"ok\n")
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(30)
    err = capfd.readouterr().err
    assert "Traceback" not in err and not reports, (err, reports)
