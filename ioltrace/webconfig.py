"""`serve --web-config FILE`: TLS and basic auth in the Prometheus exporters' format.

Reads the YAML that exporters built on prometheus/exporter-toolkit take with
--web.config.file (node_exporter, blackbox_exporter, ...), so one file serves
a whole fleet: `tls_server_config` (cert_file, key_file, client_auth_type,
client_ca_file, min_version, max_version) and `basic_auth_users` (user ->
bcrypt hash), plus `http_server_config.headers`. Everything is checked and
the certificate loaded at start (load() raises BadInput, one line), before
serve binds or attaches anything; the file is not re-read while running.

What this module must not do: know about metrics, the tracer or privileges.
It turns a file into an ssl.SSLContext and an authorization check, and wraps
accepted sockets; serve.py calls it.
"""

import base64
import hashlib
import hmac
import os
import socket
import ssl
import threading
from typing import NamedTuple

from .errors import BadInput

# client_auth_type values of exporter-toolkit -> ssl verify modes. The two
# that ask for a certificate without verifying it (RequestClientCert,
# RequireAnyClientCert) authenticate nothing, and python's ssl cannot
# express them: refused with a hint.
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "": ssl.CERT_NONE,
               "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}

TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version")
# Keys exporter-toolkit knows that ioltrace does not implement: named, so the
# message says "not supported" rather than "unknown".
TLS_UNSUPPORTED = ("cert", "key", "client_ca", "cipher_suites", "curve_preferences",
                   "prefer_server_cipher_order", "client_allowed_sans")
TOP_KEYS = ("tls_server_config", "basic_auth_users", "http_server_config")
HTTP_KEYS = ("headers", "http2")
BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
AUTH_CACHE_MAX = 64         # verified (user, password digest) pairs kept; range 1..10^4
PEEK_TIMEOUT = 10           # s a TLS client may take to send its first bytes; range 1..3600


class WebConfig(NamedTuple):
    """What load() returns: context None means plain HTTP; users empty
    means no authentication."""

    path: str
    context: ssl.SSLContext = None
    users: dict = {}        # user name -> bcrypt hash (bytes)
    headers: dict = {}      # extra response headers

    @property
    def scheme(self):
        return "http" if self.context is None else "https"

    def describe(self):
        parts = ["TLS" if self.context else "no TLS"]
        if self.context is not None and self.context.verify_mode != ssl.CERT_NONE:
            parts.append("client certificates " + ("required" if self.context.verify_mode == ssl.CERT_REQUIRED
                                                   else "verified if given"))
        parts.append(f"basic auth for {len(self.users)} user{'s' * (len(self.users) != 1)}" if self.users
                     else "no basic auth")
        return ", ".join(parts)


def _bad(path, why, fix=None):
    return BadInput(f"--web-config {path}", why, fix)


def _mapping(path, value, where):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(path, f"{where} must be a mapping, not {type(value).__name__}")
    for k in value:
        if not isinstance(k, str):
            raise _bad(path, f"{where}: key {k!r} is not a string")
    return value


def _unknown(path, mapping, known, where, unsupported=()):
    for k in mapping:
        if k in unsupported:
            raise _bad(path, f"{where}.{k} is not supported by ioltrace",
                       "use cert_file, key_file, client_auth_type, client_ca_file, min_version, max_version")
        if k not in known:
            raise _bad(path, f"unknown key {where + '.' if where else ''}{k}", f"known: {', '.join(known)}")


def _string(path, mapping, key, where):
    v = mapping.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _bad(path, f"{where}.{key} must be a string")
    return v


def _resolve(base_dir, name):
    """Relative file names are relative to the config file, as in exporter-toolkit."""
    return name if os.path.isabs(name) else os.path.join(base_dir, name)


def parse(text, path="<config>", base_dir="."):
    """YAML text -> (tls mapping, users {name: hash bytes}, headers); BadInput on
    anything exporter-toolkit would refuse or ioltrace does not implement."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise _bad(path, f"not valid YAML{where}: {problem}") from None
    doc = _mapping(path, doc, "the file")
    _unknown(path, doc, TOP_KEYS, "")
    tls = _mapping(path, doc.get("tls_server_config"), "tls_server_config")
    _unknown(path, tls, TLS_KEYS, "tls_server_config", TLS_UNSUPPORTED)
    tls = {k: _string(path, tls, k, "tls_server_config") for k in TLS_KEYS}
    for k in ("cert_file", "key_file", "client_ca_file"):
        if tls[k]:
            tls[k] = _resolve(base_dir, tls[k])
    if tls["cert_file"] or tls["key_file"]:
        for k in ("cert_file", "key_file"):
            if not tls[k]:
                raise _bad(path, f"tls_server_config.{k} is missing", "give both cert_file and key_file")
    elif any(tls[k] for k in TLS_KEYS):
        raise _bad(path, "tls_server_config without cert_file and key_file",
                   "give both, or leave tls_server_config out for plain HTTP")
    auth = tls["client_auth_type"]
    if auth in UNVERIFIED_CLIENT_AUTH:
        raise _bad(path, f"client_auth_type {auth} checks no certificate and is not supported",
                   "use RequireAndVerifyClientCert or VerifyClientCertIfGiven with client_ca_file")
    if auth not in CLIENT_AUTH:
        raise _bad(path, f"client_auth_type {auth!r} is not one of "
                   f"{', '.join(k for k in CLIENT_AUTH if k)}")
    if CLIENT_AUTH[auth] != ssl.CERT_NONE and not tls["client_ca_file"]:
        raise _bad(path, f"client_auth_type {auth} needs client_ca_file")
    if tls["client_ca_file"] and CLIENT_AUTH[auth] == ssl.CERT_NONE:
        raise _bad(path, "client_ca_file is set but client_auth_type is not",
                   "add client_auth_type: RequireAndVerifyClientCert")
    for k in ("min_version", "max_version"):
        if tls[k] and tls[k] not in TLS_VERSIONS:
            raise _bad(path, f"tls_server_config.{k} {tls[k]!r} is not one of {', '.join(TLS_VERSIONS)}")

    users = {}
    for name, h in _mapping(path, doc.get("basic_auth_users"), "basic_auth_users").items():
        if not isinstance(h, str):
            raise _bad(path, f"basic_auth_users.{name} must be a bcrypt hash string")
        raw = h.encode("ascii", "replace")
        if ":" in name or not name:
            raise _bad(path, f"user name {name!r} is empty or holds ':'")
        if not raw.startswith(BCRYPT_PREFIXES) or len(raw) != 60:
            raise _bad(path, f"basic_auth_users.{name} is not a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters)",
                       "make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'")
        users[name] = raw

    http = _mapping(path, doc.get("http_server_config"), "http_server_config")
    _unknown(path, http, HTTP_KEYS, "http_server_config")
    headers = _mapping(path, http.get("headers"), "http_server_config.headers")
    for k, v in headers.items():
        if not isinstance(v, str) or any(c in k + v for c in "\r\n") or not k.strip():
            raise _bad(path, f"http_server_config.headers.{k} must be a one-line string")
    return tls, users, dict(headers)


def context(path, tls):
    """An ssl.SSLContext with the certificate loaded, or None without TLS."""
    if not tls["cert_file"]:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls["min_version"] or "TLS12"]   # exporter-toolkit's default
    if tls["max_version"]:
        ctx.maximum_version = TLS_VERSIONS[tls["max_version"]]
    for k in ("cert_file", "key_file", "client_ca_file"):
        f = tls[k]
        if f:
            try:
                with open(f, "rb"):
                    pass
            except OSError as e:
                raise _bad(path, f"{k} {f}: {(e.strerror or str(e)).lower()}") from None
    try:
        ctx.load_cert_chain(tls["cert_file"], tls["key_file"])
    except ssl.SSLError as e:
        raise _bad(path, f"cert_file {tls['cert_file']} and key_file {tls['key_file']} do not make a "
                   f"certificate and its key ({e.reason or e})", "check both are PEM and belong together") from None
    ctx.verify_mode = CLIENT_AUTH[tls["client_auth_type"]]
    if tls["client_ca_file"]:
        try:
            ctx.load_verify_locations(cafile=tls["client_ca_file"])
        except ssl.SSLError as e:
            raise _bad(path, f"client_ca_file {tls['client_ca_file']}: no PEM certificates "
                       f"({e.reason or e})") from None
    return ctx


def load(path):
    """The checked WebConfig of a file, certificate and key loaded."""
    try:
        import yaml  # noqa: F401
    except ImportError:
        raise _bad(path, "needs PyYAML", "apt-get install python3-yaml, or pip install pyyaml") from None
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 20)
    except OSError as e:
        raise _bad(path, (e.strerror or str(e)).lower()) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(path, "is not UTF-8 text") from None
    tls, users, headers = parse(text, path, os.path.dirname(os.path.abspath(path)))
    if users:
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise _bad(path, "basic_auth_users needs the bcrypt module",
                       "apt-get install python3-bcrypt, or pip install bcrypt") from None
    return WebConfig(path, context(path, tls), users, headers)


class Authenticator:
    """Checks Authorization headers against the bcrypt hashes. A verified
    (user, password) pair is remembered (by digest) so that a scrape every
    few seconds does not pay bcrypt's ~0.1 s each time, as exporter-toolkit
    does; an unknown user costs a bcrypt check too, so timing does not tell
    which users exist."""

    def __init__(self, users):
        self.users = users
        self._ok = {}
        if users:
            import bcrypt

            self._bcrypt = bcrypt
            self._dummy = bcrypt.hashpw(b"ioltrace", bcrypt.gensalt(10))
        self._lock = threading.Lock()

    def allowed(self, header):
        if not self.users:
            return True
        if not header or not header[:6].lower() == "basic ":
            return False
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if not sep:
            return False
        h = self.users.get(user)
        digest = hashlib.sha256(f"{user}\0{password}".encode("utf-8", "surrogateescape")).digest()
        with self._lock:
            if h is not None and any(hmac.compare_digest(digest, d) for d in self._ok.get(user, ())):
                return True
        try:
            ok = self._bcrypt.checkpw(password.encode("utf-8", "surrogateescape"), h or self._dummy) and h is not None
        except ValueError:
            return False
        if ok:
            with self._lock:
                if sum(len(v) for v in self._ok.values()) >= AUTH_CACHE_MAX:
                    self._ok.clear()
                self._ok.setdefault(user, set()).add(digest)
        return ok


PLAIN_HTTP_ANSWER = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")


def wrap(ctx, sock):
    """An accepted socket -> its TLS socket after the handshake, or None
    (the connection closed) when the client does not speak TLS. Runs in the
    request's own thread, so a slow client holds up nobody else."""
    sock.settimeout(PEEK_TIMEOUT)
    try:
        first = sock.recv(1, socket.MSG_PEEK)
        if first[:1].isalpha():
            # A TLS ClientHello starts with byte 0x16; a letter is an HTTP
            # method: say so in plain text, as Go's servers do. The request
            # is read first: closing with unread bytes would send a reset
            # that could overtake the answer.
            sock.recv(1 << 16)
            sock.sendall(PLAIN_HTTP_ANSWER)
            sock.shutdown(socket.SHUT_WR)
            raise OSError("plain HTTP")
        return ctx.wrap_socket(sock, server_side=True)
    except (OSError, ssl.SSLError, ValueError):
        try:
            sock.close()
        except OSError:
            pass
        return None
