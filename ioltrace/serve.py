"""`ioltrace serve`: the long-running exporter for Prometheus.

Answers GET /metrics (text format 0.0.4, or OpenMetrics 1.0.0 when the
scraper asks for it) and /healthz over HTTP, and/or writes the same
exposition to a file for node_exporter's textfile collector. Each scrape
reads the kernel maps at that moment (Tracer.snapshot: batch lookups); the
kernel side keeps counting meanwhile, nothing here pauses it. Scrapes are
serialised, so the exporter's memory of label sets is updated in order.

The pieces of serving: address parsing, the HTTP server (with the TLS and
basic auth of webconfig.py), the textfile, the scraper. commands/serve.py
owns the order of things (validate, bind, attach, drop privileges, serve
until a stop signal, clean up); the exposition itself is
export/prometheus.py's.
"""

import gc
import ipaddress
import os
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import __version__, webconfig
from .errors import BadInput
from .export import prometheus

DEFAULT_LISTEN = "127.0.0.1:9435"
DEFAULT_INTERVAL = 15.0     # textfile rewrite period, s; range 0.05..86400 (cli.positive_float)
REQUEST_TIMEOUT = 30        # s a client may take to send its request; range 1..3600


def parse_listen(text):
    """--listen text -> (host, port), or None for "none".

    Only IP literals (and "localhost" for 127.0.0.1): a name that resolves
    to several addresses would make it unclear what is exposed, and an empty
    host (":9435") would silently mean every interface.
    """
    what = f"--listen {text}"
    if text.strip().lower() == "none":
        return None
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise BadInput(what, "expected ADDRESS:PORT with an explicit address",
                       f"e.g. {DEFAULT_LISTEN}, [::1]:9435, or 0.0.0.0:9435 for every interface")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        version = 6
    else:
        version = 4
    if host.lower() == "localhost":
        host = "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise BadInput(what, f"{host!r} is not an IP address",
                       "use an IPv4 address, or an IPv6 one in brackets: [::1]:9435") from None
    if addr.version != version:
        raise BadInput(what, "an IPv6 address needs brackets", f"[{host}]:{port_text}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise BadInput(what, f"port {port_text!r} is not a number from 1 to 65535")
    return str(addr), int(port_text)


def host_port(addr):
    host, port = addr[:2]
    return f"{'[' + host + ']' if ':' in host else host}:{port}"


def url(addr, scheme="http"):
    return f"{scheme}://{host_port(addr)}/metrics"


# A client that closed its connection while we answered: over TLS the
# write fails with ssl.SSLEOFError rather than BrokenPipeError.
_GONE = (ConnectionError, ssl.SSLError, socket.timeout)


class _Handler(BaseHTTPRequestHandler):
    server_version = f"ioltrace/{__version__}"
    timeout = REQUEST_TIMEOUT

    def do_GET(self):
        self._respond(body_wanted=True)

    def do_HEAD(self):
        self._respond(body_wanted=False)

    def _respond(self, body_wanted):
        path = self.path.split("?", 1)[0]
        if not self.server.auth.allowed(self.headers.get("Authorization")):
            self._send(401, "text/plain; charset=utf-8", b"Unauthorized\n", body_wanted,
                       {"WWW-Authenticate": 'Basic realm="ioltrace"'})
        elif path == "/metrics":
            fmt = prometheus.negotiate(self.headers.get("Accept"))
            try:
                body = self.server.render(fmt)
            except Exception as e:  # a scrape must not take the exporter down
                self.server.report(f"scrape failed: {type(e).__name__}: {e}")
                self._send(500, "text/plain; charset=utf-8", b"scrape failed; see ioltrace's stderr\n", body_wanted)
                return
            self._send(200, prometheus.CONTENT_TYPES[fmt], body, body_wanted)
            self.server.served += 1
        elif path == "/healthz":
            self._send(200, "text/plain; charset=utf-8", b"ok\n", body_wanted)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: the metrics are at /metrics\n", body_wanted)

    def _send(self, code, ctype, body, body_wanted, extra=None):
        try:
            self.send_response(code)
            for k, v in {**self.server.web.headers, **(extra or {})}.items():
                self.send_header(k, v)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body_wanted:
                self.wfile.write(body)
        except _GONE:
            pass    # the scraper gave up (its timeout); nothing to tell it

    def log_message(self, format, *args):
        pass    # one line per scrape would drown the useful ones


class MetricsServer(ThreadingHTTPServer):
    """HTTP server whose handlers call render(fmt) -> bytes."""

    daemon_threads = True

    def __init__(self, addr, render, report=None, web=None):
        self.render = render
        self.served = 0     # successful /metrics answers
        self.report = report or (lambda msg: sys.stderr.write(f"ioltrace serve: {msg}\n"))
        self.web = web or webconfig.WebConfig("")
        self.auth = webconfig.Authenticator(self.web.users)
        super().__init__(addr, _Handler)

    def handle_error(self, request, client_address):
        """One line instead of socketserver's traceback on stderr: a client
        that breaks off costs nothing, anything else is said once."""
        e = sys.exc_info()[1]
        if not isinstance(e, _GONE):
            self.report(f"a request from {client_address[0]} failed: {type(e).__name__}: {e}")

    def finish_request(self, request, client_address):
        # In the request's thread (ThreadingMixIn): the TLS handshake of a
        # slow client holds up no other.
        if self.web.context is None:
            return super().finish_request(request, client_address)
        tls = webconfig.wrap(self.web.context, request)
        if tls is not None:
            try:
                super().finish_request(tls, client_address)
            finally:
                self.shutdown_request(tls)


class _MetricsServer6(MetricsServer):
    address_family = socket.AF_INET6


def bind(addr, render, report=None, web=None):
    """A listening MetricsServer on addr, or BadInput saying why not."""
    cls = _MetricsServer6 if ":" in addr[0] else MetricsServer
    try:
        return cls(addr, render, report, web)
    except OSError as e:
        raise BadInput(f"--listen {host_port(addr)}",
                       (e.strerror or str(e)).lower(), "choose a free port or another address") from None


class Textfile:
    """The exposition in a file, replaced atomically (a temporary file in the
    same directory, then rename) so node_exporter never reads half of one.
    The temporary name does not end in .prom, which the collector ignores."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        what = f"--textfile {path}"
        d, base = os.path.split(self.path)
        if os.path.isdir(self.path):
            raise BadInput(what, "is a directory", "give a file path, e.g. /var/lib/node_exporter/ioltrace.prom")
        if not base or not os.path.isdir(d):
            raise BadInput(what, f"no such directory {d}")
        self.tmp = os.path.join(d, f".{base}.{os.getpid()}.tmp")
        try:
            self._open_tmp()
        except OSError as e:
            raise BadInput(what, (e.strerror or str(e)).lower(), "choose a writable directory") from None
        self.cleanup()
        self.writes = 0
        self._last_error = None

    def _open_tmp(self):
        try:
            os.unlink(self.tmp)     # left by a crashed run with our pid
        except FileNotFoundError:
            pass
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        os.fchmod(fd, 0o644)    # readable by node_exporter's user whatever the umask
        return fd

    def write(self, body):
        """Replace the file; returns False (after one line on stderr per new
        kind of failure) when the disk refuses, to retry next interval."""
        try:
            fd = self._open_tmp()
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.cleanup()
            msg = f"cannot write {self.path}: {(e.strerror or str(e)).lower()}"
            if msg != self._last_error:
                sys.stderr.write(f"ioltrace serve: {msg} (retrying every interval)\n")
                sys.stderr.flush()
                self._last_error = msg
            return False
        self._last_error = None
        self.writes += 1
        return True

    def cleanup(self):
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


class Scraper:
    """Snapshot + exposition, one at a time; refuses once the probes are gone."""

    def __init__(self, tracer, exporter):
        self.tracer = tracer
        self.exporter = exporter
        self.lock = threading.Lock()
        self.closed = False
        self.scrapes = 0

    def render(self, fmt=prometheus.TEXT):
        with self.lock:
            if self.closed:
                raise RuntimeError("ioltrace is stopping")
            # A scrape allocates ~10^5 short-lived, acyclic objects (map
            # entries, keys, lines); the cycle collector would walk every
            # live object several times meanwhile. Refcounting frees them.
            gc_was_on = gc.isenabled()
            gc.disable()
            try:
                body = self.exporter.render(self.tracer.snapshot(), fmt)
            finally:
                if gc_was_on:
                    gc.enable()
            self.scrapes += 1
            return body

    def close(self):
        with self.lock:
            self.closed = True
