"""Self-signed certificates for tests of `serve --web-config`: a CA, a server
certificate for 127.0.0.1 signed by it, and a client certificate, made with
python's `cryptography` when it is installed, else with the openssl command.
Everything is written under a directory the test owns (tmp_path)."""

import datetime
import shutil
import subprocess
from pathlib import Path


class Certs:
    def __init__(self, d):
        d = Path(d)
        self.ca, self.ca_key = d / "ca.pem", d / "ca.key"
        self.cert, self.key = d / "server.pem", d / "server.key"
        self.client, self.client_key = d / "client.pem", d / "client.key"


def make(d):
    """Certs in directory d (created by the caller)."""
    c = Certs(d)
    try:
        _with_cryptography(c)
    except ImportError:
        if not shutil.which("openssl"):
            raise RuntimeError("neither python's cryptography nor the openssl command is installed") from None
        _with_openssl(Path(d), c)
    return c


def _with_cryptography(c):
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def key(path):
        k = ec.generate_private_key(ec.SECP256R1())
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        return k

    def cert(path, subject, k, issuer, issuer_key, ca=False, san=None):
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        path.write_bytes(b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))

    ca_key = key(c.ca_key)
    cert(c.ca, "ioltrace test CA", ca_key, "ioltrace test CA", ca_key, ca=True)
    cert(c.cert, "127.0.0.1", key(c.key), "ioltrace test CA", ca_key,
         san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    cert(c.client, "prometheus", key(c.client_key), "ioltrace test CA", ca_key)


def _with_openssl(d, c):
    def run(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", c.ca_key, "-out", c.ca, "-days", "1", "-subj", "/CN=ioltrace test CA")
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for crt, k, cn, extra in ((c.cert, c.key, "127.0.0.1", ["-extfile", ext]), (c.client, c.client_key, "prometheus", [])):
        csr = d / f"{cn}.csr"
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", k,
            "-out", csr, "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", csr, "-CA", c.ca, "-CAkey", c.ca_key, "-CAcreateserial", "-out", crt,
            "-days", "1", *extra)
