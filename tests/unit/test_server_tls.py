"""serve() with a web configuration, checked with real TLS clients (requests, ssl) against openssl-made certificates.

A CA, a server certificate (localhost, 127.0.0.1) and a client certificate are generated with the openssl CLI in a
temporary directory; a second, untrusted CA signs a rogue client certificate.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge

from nomade.exporter.server import serve
from nomade.exporter.webconfig import WebConfig, WebConfigError, load_web_config

# Required, not skipped: a missing openssl CLI fails these tests instead of passing them silently.
OPENSSL = shutil.which("openssl") or "openssl"

PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([str(OPENSSL), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", *EC, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip


def _leaf(d: Path, name: str, ca: str, cn: str, usage: str, san: str | None = None) -> None:
    extra = ["-addext", f"subjectAltName={san}"] if san else []
    _openssl(
        "req", "-x509", *EC, "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-keyout", f"{name}.key",
        "-out", f"{name}.crt", "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", f"extendedKeyUsage={usage}", *extra,
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory with ca, server, client (signed by ca) and rogue-ca, rogue (a client signed by rogue-ca)."""
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _leaf(d, "server", "ca", "localhost", "serverAuth", "DNS:localhost,IP:127.0.0.1")
    _leaf(d, "client", "ca", "prometheus", "clientAuth")
    _ca(d, "rogue-ca")
    _leaf(d, "rogue", "rogue-ca", "prometheus", "clientAuth")
    return d


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """Write a web configuration (YAML text), load it, start serve() on a free loopback port; return the port."""
    servers = []
    registry = CollectorRegistry()
    Gauge("nomade_tls_test_value", "A test value.", registry=registry).set(42)

    def _start(yaml_text: str) -> int:
        f = tmp_path / f"web{len(servers)}.yml"
        f.write_text(yaml_text)
        server = serve(registry, "127.0.0.1", 0, web_config=load_web_config(f))
        servers.append(server)
        return server.server_address[1]

    yield _start
    for s in servers:
        s.shutdown()
        s.server_close()


def _tls_yaml(pki: Path, **extra: str) -> str:
    lines = ["tls_server_config:", f"  cert_file: {pki / 'server.crt'}", f"  key_file: {pki / 'server.key'}"]
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


USERS = f"basic_auth_users:\n  prometheus: '{HASH}'\n"


def test_https_with_basic_auth(pki: Path, start: Callable[[str], int]) -> None:
    port = start(_tls_yaml(pki) + USERS + "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    url = f"https://localhost:{port}/metrics"
    ca = str(pki / "ca.crt")

    ok = requests.get(url, verify=ca, auth=("prometheus", PASSWORD), timeout=10)
    assert ok.status_code == 200
    assert "nomade_tls_test_value 42.0" in ok.text
    assert ok.headers["X-Content-Type-Options"] == "nosniff"
    # The cached check answers the same on the next scrape.
    assert requests.get(url, verify=ca, auth=("prometheus", PASSWORD), timeout=10).status_code == 200

    for auth in (None, ("prometheus", "wrong"), ("someone", PASSWORD)):
        r = requests.get(url, verify=ca, auth=auth, timeout=10)
        assert r.status_code == 401, auth
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
        assert "nomade_tls_test_value" not in r.text
        assert r.headers["X-Content-Type-Options"] == "nosniff"

    # The landing page and unknown paths are protected too.
    assert requests.get(f"https://localhost:{port}/", verify=ca, timeout=10).status_code == 401
    assert requests.get(f"https://localhost:{port}/nope", verify=ca, timeout=10).status_code == 401
    landing = requests.get(f"https://localhost:{port}/", verify=ca, auth=("prometheus", PASSWORD), timeout=10)
    assert landing.status_code == 200 and "/metrics" in landing.text


def test_plain_http_to_tls_port_and_untrusted_server_fail(pki: Path, start: Callable[[str], int]) -> None:
    port = start(_tls_yaml(pki))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    # A client that does not trust the CA refuses the server's certificate.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://localhost:{port}/metrics", timeout=10)
    # The server keeps serving after those failed handshakes; no auth configured -> open.
    r = requests.get(f"https://127.0.0.1:{port}/metrics", verify=str(pki / "ca.crt"), timeout=10)
    assert r.status_code == 200 and "nomade_tls_test_value 42.0" in r.text


def _raw_get(port: int, ctx: ssl.SSLContext) -> bytes:
    """One GET over ``ctx``; returns what the server sent (raises ssl.SSLError/OSError on a refused handshake)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data


def test_client_certificate_required(pki: Path, start: Callable[[str], int]) -> None:
    port = start(
        _tls_yaml(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki / "ca.crt")) + USERS
    )
    url = f"https://localhost:{port}/metrics"
    ca = str(pki / "ca.crt")
    client = (str(pki / "client.crt"), str(pki / "client.key"))
    r = requests.get(url, verify=ca, cert=client, auth=("prometheus", PASSWORD), timeout=10)
    assert r.status_code == 200 and "nomade_tls_test_value 42.0" in r.text
    # A valid certificate does not replace the password.
    assert requests.get(url, verify=ca, cert=client, timeout=10).status_code == 401

    # No client certificate: the handshake fails (TLS 1.3 reports it on the first read: "certificate required").
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(url, verify=ca, auth=("prometheus", PASSWORD), timeout=10)
    # The server's "certificate required" alert may be lost to the reset of the closing socket: the client sees an
    # SSL error or a reset, never an HTTP response.
    ctx = ssl.create_default_context(cafile=ca)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _raw_get(port, ctx)
    # A certificate from another CA is refused as well.
    rogue = ssl.create_default_context(cafile=ca)
    rogue.load_cert_chain(str(pki / "rogue.crt"), str(pki / "rogue.key"))
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _raw_get(port, rogue)
    # The same raw client with the right certificate gets an HTTP answer (so the failures above are the certificate's).
    good = ssl.create_default_context(cafile=ca)
    good.load_cert_chain(*client)
    assert _raw_get(port, good).startswith(b"HTTP/1.0 401")


def test_tls_below_min_version_refused(pki: Path, start: Callable[[str], int]) -> None:
    port = start(_tls_yaml(pki, min_version="TLS13"))
    old = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        _raw_get(port, old)
    new = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    new.minimum_version = ssl.TLSVersion.TLSv1_3
    body = _raw_get(port, new)
    assert body.startswith(b"HTTP/1.0 200") and b"nomade_tls_test_value 42.0" in body


def test_basic_auth_without_tls(start: Callable[[str], int]) -> None:
    port = start(USERS)
    url = f"http://127.0.0.1:{port}/metrics"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("prometheus", PASSWORD), timeout=10).status_code == 200


def test_mismatched_key_is_a_config_error(pki: Path, tmp_path: Path) -> None:
    f = tmp_path / "web.yml"
    f.write_text(f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n  key_file: {pki / 'client.key'}\n")
    with pytest.raises(WebConfigError, match="cannot load"):
        load_web_config(f)


def test_serve_without_web_config_is_plain_http() -> None:
    registry = CollectorRegistry()
    Gauge("nomade_tls_test_value", "A test value.", registry=registry).set(7)
    server = serve(registry, "127.0.0.1", 0, web_config=WebConfig())
    try:
        r = requests.get(f"http://127.0.0.1:{server.server_address[1]}/metrics", timeout=10)
        assert r.status_code == 200 and "nomade_tls_test_value 7.0" in r.text
    finally:
        server.shutdown()
        server.server_close()
