"""TLS and mTLS from the outside, with certificates this test makes
(Python `cryptography`): grpcurl's health check and reflection over TLS
with a client certificate, refused without one; the HTTP port over TLS
with ALPN h2 and http/1.1; HTTP/1.0 refused with 505; `min_version = "1.3"`
refusing a TLS 1.2 client; the certificate replaced on disk and served to
the next handshake while the process keeps running."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import time
from pathlib import Path

from conftest import Latchkey, run
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_ca(cn: str):
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca_key, ca_cert, cn: str, server: bool):
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


class Pki:
    def __init__(self, root: Path):
        self.root = root
        self.ca_key, self.ca = make_ca("Latchkey test CA")
        self.client_ca_key, self.client_ca = make_ca("Latchkey internal callers")
        self.write("ca.pem", self.ca.public_bytes(serialization.Encoding.PEM))
        self.write("client-ca.pem", self.client_ca.public_bytes(serialization.Encoding.PEM))
        self.rotate_server("latchkey-1")
        ckey, ccert = issue(self.client_ca_key, self.client_ca, "payments", server=False)
        self.write("client.pem", ccert.public_bytes(serialization.Encoding.PEM))
        self.write("client.key", _pem_key(ckey))

    def write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return path

    def rotate_server(self, cn: str) -> x509.Certificate:
        key, cert = issue(self.ca_key, self.ca, cn, server=True)
        # Key first, certificate last, as a Secret's files change together.
        self.write("server.key", _pem_key(key))
        self.write("server.pem", cert.public_bytes(serialization.Encoding.PEM))
        return cert

    def path(self, name: str) -> str:
        return str(self.root / name)


def start_tls(latchkey_bin: Path, tmp_path: Path, pki: Pki, mtls: bool = True, min_version: str = "1.2") -> Latchkey:
    config = tmp_path / "latchkey.toml"
    lines = [
        "[tls]",
        f'cert_file = "{pki.path("server.pem")}"',
        f'key_file = "{pki.path("server.key")}"',
        f'min_version = "{min_version}"',
        "reload_interval_ms = 100",
    ]
    if mtls:
        lines.append(f'client_ca_file = "{pki.path("client-ca.pem")}"')
    config.write_text("\n".join(lines) + "\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    lk = Latchkey(latchkey_bin, data_dir)
    lk.extra_args = ["--config", str(config)]
    lk.start()
    return lk


def grpcurl_tls(grpcurl_exe: str, lk: Latchkey, pki: Pki, *verb: str, client_cert: bool = True):
    args = [grpcurl_exe, "-cacert", pki.path("ca.pem"), "-connect-timeout", "10", "-max-time", "20"]
    if client_cert:
        args += ["-cert", pki.path("client.pem"), "-key", pki.path("client.key")]
    return run([*args, lk.grpc_addr, *verb])


def tls_context(pki: Pki, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    ctx.set_alpn_protocols(alpn)
    return ctx


def https_raw(addr: str, ctx: ssl.SSLContext, request: bytes) -> tuple[str | None, bytes, bytes]:
    """(negotiated ALPN, the server certificate's DER, the raw response)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            proto = tls.selected_alpn_protocol()
            der = tls.getpeercert(binary_form=True)
            response = b""
            if request:
                tls.sendall(request)
                while chunk := tls.recv(65536):
                    response += chunk
            return proto, der, response


def stop(lk: Latchkey) -> None:
    assert lk.stop() == 0, lk.output()


def test_grpc_health_and_reflection_over_mtls(latchkey_bin, grpcurl_exe, tmp_path):
    pki = Pki(tmp_path)
    lk = start_tls(latchkey_bin, tmp_path, pki)
    try:
        r = grpcurl_tls(grpcurl_exe, lk, pki, "grpc.health.v1.Health/Check")
        assert r.returncode == 0, r.describe()
        assert json.loads(r.stdout) == {"status": "SERVING"}
        r = grpcurl_tls(grpcurl_exe, lk, pki, "list")
        assert r.returncode == 0 and "latchkey.v1.CheckService" in r.stdout, r.describe()
        # No client certificate: refused.
        r = grpcurl_tls(grpcurl_exe, lk, pki, "grpc.health.v1.Health/Check", client_cert=False)
        assert r.returncode != 0, r.describe()
        # Plaintext to a TLS port: refused.
        r = run([grpcurl_exe, "-plaintext", "-connect-timeout", "5", "-max-time", "10", lk.grpc_addr, "list"])
        assert r.returncode != 0, r.describe()
        # A client certificate from a CA Latchkey does not trust: refused.
        other_key, other_ca = make_ca("Someone else")
        k, c = issue(other_key, other_ca, "intruder", server=False)
        pki.write("client.pem", c.public_bytes(serialization.Encoding.PEM))
        pki.write("client.key", _pem_key(k))
        r = grpcurl_tls(grpcurl_exe, lk, pki, "grpc.health.v1.Health/Check")
        assert r.returncode != 0, r.describe()
    finally:
        stop(lk)


def test_http_port_over_tls_offers_h2_and_http11_and_refuses_http10(latchkey_bin, tmp_path):
    pki = Pki(tmp_path)
    lk = start_tls(latchkey_bin, tmp_path, pki)
    try:
        # Browsers bring no client certificate to the public port.
        proto, _, resp = https_raw(
            lk.http_addr, tls_context(pki, ["http/1.1"]),
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        assert proto == "http/1.1"
        assert resp.startswith(b"HTTP/1.1 200"), resp[:200]
        proto, _, _ = https_raw(lk.http_addr, tls_context(pki, ["h2", "http/1.1"]), b"")
        assert proto == "h2"
        _, _, resp = https_raw(
            lk.http_addr, tls_context(pki, ["http/1.1"]),
            b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n",
        )
        assert b" 505 " in resp.split(b"\r\n", 1)[0], resp[:200]
    finally:
        stop(lk)


def test_min_version_13_refuses_a_tls12_client(latchkey_bin, tmp_path):
    pki = Pki(tmp_path)
    lk = start_tls(latchkey_bin, tmp_path, pki, mtls=False, min_version="1.3")
    try:
        old = tls_context(pki, ["http/1.1"])
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            https_raw(lk.http_addr, old, b"")
            raise AssertionError("a TLS 1.2 client was accepted")
        except ssl.SSLError:
            pass
        current = tls_context(pki, ["http/1.1"])
        host, port = lk.http_addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with current.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.version() == "TLSv1.3"
    finally:
        stop(lk)


def test_a_replaced_certificate_is_served_without_a_restart(latchkey_bin, tmp_path):
    pki = Pki(tmp_path)
    lk = start_tls(latchkey_bin, tmp_path, pki, mtls=False)
    try:
        ctx = tls_context(pki, ["http/1.1"])
        host, port = lk.http_addr.rsplit(":", 1)
        # An established connection from before the rotation.
        raw = socket.create_connection((host, int(port)), timeout=10)
        kept = ctx.wrap_socket(raw, server_hostname="localhost")
        _, first, _ = https_raw(lk.http_addr, ctx, b"")
        assert x509.load_der_x509_certificate(first).subject == _name("latchkey-1")
        pki.rotate_server("latchkey-2")
        deadline = time.monotonic() + 10
        while True:
            _, der, _ = https_raw(lk.http_addr, ctx, b"")
            if x509.load_der_x509_certificate(der).subject == _name("latchkey-2"):
                break
            assert time.monotonic() < deadline, "the new certificate was never served"
            time.sleep(0.05)
        # The connection made before still works.
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200")
        kept.close()
        assert lk.proc.poll() is None
    finally:
        stop(lk)
