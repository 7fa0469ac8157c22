"""TLS and basic authentication for ``/metrics``: the Prometheus exporter-toolkit web configuration file.

The file format is the one of https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md
(YAML; JSON is a subset of YAML and is read without PyYAML). The subset implemented here::

    tls_server_config:
      cert_file: server.crt          # PEM; relative paths are relative to the configuration file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default), VerifyClientCertIfGiven
      client_ca_file: ca.crt         # required with the two Verify* types
      min_version: TLS12             # TLS10 | TLS11 | TLS12 (default) | TLS13
      max_version: TLS13             # default TLS13
    http_server_config:
      headers:                       # added to every response; only the toolkit's allowed names
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:                # user: bcrypt hash (see below)
      prometheus: $2b$10$...

A hash (or ``htpasswd -nBC 10 prometheus``, the part after the colon)::

    python3 -c 'import bcrypt, getpass; print(bcrypt.hashpw(getpass.getpass().encode(), bcrypt.gensalt()).decode())'

Usage::

    nomade-exporter --web.config.file /etc/nomade/web.yml
    nomade-analytics --web.config.file /etc/nomade/web.yml
    curl --cacert ca.crt -u prometheus:secret https://host:9866/metrics

and in Python ``serve(registry, host, port, web_config=load_web_config(path))`` (:func:`nomade.exporter.server.serve`).

Keys of the format that this module does not implement (``cert``, ``key``, ``client_ca``, ``cipher_suites``,
``curve_preferences``, ``prefer_server_cipher_suites``, ``client_allowed_sans``, ``http2: true``, ``rate_limit``)
raise :class:`WebConfigError` naming them, rather than being silently ignored; keys that are not part of the format
at all raise it too. A key whose value is null/empty counts as absent, as in the toolkit.

The file is read once, at start-up: a change (rotated certificate, new user) takes effect on restart; there is no
reload (the toolkit re-reads the file per connection; this implementation does not).

Passwords are never logged or stored: a successful check is cached in memory under an HMAC-SHA256 of
(user, password, hash) with a per-process random key, so a scrape every 15 s does not cost a bcrypt round each time
(the toolkit caches the same way); the cache is bounded (:data:`CACHE_SIZE`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

__all__ = [
    "BasicAuth",
    "TLSConfig",
    "WebConfig",
    "WebConfigError",
    "build_ssl_context",
    "load_web_config",
    "parse_web_config",
]

#: Bounded number of cached successful credential checks (cleared wholesale when full).
CACHE_SIZE = 1024

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

#: client_auth_type values implemented -> (ssl verify mode, needs client_ca_file).
CLIENT_AUTH: dict[str, tuple[ssl.VerifyMode, bool]] = {
    "NoClientCert": (ssl.CERT_NONE, False),
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}
#: Valid in the toolkit but not implementable with Python's ssl (a certificate requested but not verified).
CLIENT_AUTH_UNSUPPORTED = {"RequestClientCert", "RequireAnyClientCert"}

_TLS_SUPPORTED = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
_TLS_UNSUPPORTED = {
    "cert",
    "key",
    "client_ca",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
}
_HTTP_SUPPORTED = {"headers", "http2"}
_TOP_SUPPORTED = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TOP_UNSUPPORTED = {"rate_limit"}
#: Response headers the toolkit lets the file set (exporter-toolkit web/handler.go, ``extraHTTPHeaders``).
ALLOWED_HEADERS = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
)
_BCRYPT_RE = re.compile(rb"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")


class WebConfigError(ValueError):
    """An invalid, unsupported or unreadable web configuration file (the message names the key or file)."""


@dataclass(frozen=True)
class TLSConfig:
    """``tls_server_config``: absolute file paths, the verify mode and the protocol version range."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"


@dataclass(frozen=True)
class WebConfig:
    """A parsed web configuration: TLS (None: plain HTTP), bcrypt hashes per user, extra response headers."""

    tls: TLSConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server context (:func:`build_ssl_context`), or None without TLS."""
        return build_ssl_context(self.tls) if self.tls is not None else None

    def basic_auth(self) -> BasicAuth | None:
        """A credential checker for :attr:`users`, or None when no user is configured (no authentication)."""
        return BasicAuth(self.users) if self.users else None


def _present(section: Mapping[str, Any]) -> dict[str, Any]:
    """The keys whose value is not null/empty (the toolkit treats those as unset)."""
    return {k: v for k, v in section.items() if v is not None and v != "" and v != [] and v != {}}


def _section(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WebConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _check_keys(where: str, got: Mapping[str, Any], supported: set[str], unsupported: set[str]) -> dict[str, Any]:
    """Reject unknown keys (any value: the toolkit decodes strictly) and set unsupported ones; return the set keys."""
    unknown = sorted(str(k) for k in got if k not in supported and k not in unsupported)
    if unknown:
        raise WebConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    present = _present(got)
    unsup = sorted(k for k in present if k in unsupported)
    if unsup:
        raise WebConfigError(
            f"{where}: key(s) {', '.join(unsup)} valid in the exporter-toolkit format but not supported"
        )
    return present


def _path(base: Path, where: str, value: Any) -> Path:
    if not isinstance(value, str):
        raise WebConfigError(f"{where}: expected a file path string")
    p = Path(value)
    return p if p.is_absolute() else base / p


def parse_web_config(data: Any, base_dir: Path | str = ".") -> WebConfig:
    """Validate a decoded web configuration (the YAML document as Python objects).

    ``base_dir`` resolves relative file paths (the configuration file's directory, as in the toolkit). Files are
    not opened here; :func:`load_web_config` also builds the TLS context to report unreadable files early.

    Raises:
        WebConfigError: unknown key, unsupported key, bad value type, bad TLS version / client_auth_type,
            a cert without key (or the reverse), a Verify* type without client_ca_file, a non-bcrypt hash,
            a header name the toolkit does not allow.

    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise WebConfigError("web configuration: expected a mapping at the top level")
    base = Path(base_dir)
    top = _check_keys("web configuration", data, _TOP_SUPPORTED, _TOP_UNSUPPORTED)
    tls_raw = _check_keys("tls_server_config", _section(top, "tls_server_config"), _TLS_SUPPORTED, _TLS_UNSUPPORTED)
    tls: TLSConfig | None = None
    if tls_raw:
        if "cert_file" not in tls_raw or "key_file" not in tls_raw:
            raise WebConfigError("tls_server_config: cert_file and key_file are both required")
        auth = str(tls_raw.get("client_auth_type", "NoClientCert"))
        if auth in CLIENT_AUTH_UNSUPPORTED:
            raise WebConfigError(f"tls_server_config.client_auth_type: {auth} is valid but not supported")
        if auth not in CLIENT_AUTH:
            raise WebConfigError(f"tls_server_config.client_auth_type: unknown value {auth!r}")
        ca = tls_raw.get("client_ca_file")
        if CLIENT_AUTH[auth][1] and ca is None:
            raise WebConfigError(f"tls_server_config: client_auth_type {auth} requires client_ca_file")
        versions = {}
        for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
            v = str(tls_raw.get(key, default))
            if v not in TLS_VERSIONS:
                raise WebConfigError(f"tls_server_config.{key}: unknown value {v!r} (one of {', '.join(TLS_VERSIONS)})")
            versions[key] = v
        if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
            raise WebConfigError("tls_server_config: min_version is above max_version")
        tls = TLSConfig(
            cert_file=_path(base, "tls_server_config.cert_file", tls_raw["cert_file"]),
            key_file=_path(base, "tls_server_config.key_file", tls_raw["key_file"]),
            client_auth_type=auth,
            client_ca_file=_path(base, "tls_server_config.client_ca_file", ca) if ca is not None else None,
            **versions,
        )

    http_raw = _check_keys("http_server_config", _section(top, "http_server_config"), _HTTP_SUPPORTED, set())
    if http_raw.get("http2") is True:
        raise WebConfigError("http_server_config.http2: true is valid but not supported (HTTP/1.1 only)")
    headers_raw = http_raw.get("headers", {})
    if not isinstance(headers_raw, Mapping):
        raise WebConfigError("http_server_config.headers: expected a mapping")
    headers: dict[str, str] = {}
    allowed = {h.lower(): h for h in ALLOWED_HEADERS}
    for name, value in headers_raw.items():
        canon = allowed.get(str(name).lower())
        if canon is None:
            raise WebConfigError(
                f"http_server_config.headers: {name!r} is not allowed (one of {', '.join(ALLOWED_HEADERS)})"
            )
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise WebConfigError(f"http_server_config.headers.{canon}: expected a one-line string")
        headers[canon] = value

    users_raw = top.get("basic_auth_users", {})
    if not isinstance(users_raw, Mapping):
        raise WebConfigError("basic_auth_users: expected a mapping of user: bcrypt hash")
    users: dict[str, bytes] = {}
    for user, hashed in users_raw.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"basic_auth_users: invalid user name {user!r}")
        h = hashed.encode() if isinstance(hashed, str) else b""
        if not _BCRYPT_RE.match(h):
            # The hash is not echoed: a mistaken plaintext password must not end up in a log.
            raise WebConfigError(f"basic_auth_users.{user}: not a bcrypt hash ($2a$/$2b$/$2y$, 60 characters)")
        users[user] = h
    return WebConfig(tls=tls, users=users, headers=headers)


def load_web_config(path: Path | str) -> WebConfig:
    """Read, validate and (with TLS) trial-build the context of the file at ``path``.

    Raises:
        WebConfigError: unreadable file, invalid YAML (or JSON without PyYAML), anything :func:`parse_web_config`
            rejects, or certificate/key/CA files that cannot be loaded.

    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{p}: cannot read: {exc}") from exc
    try:
        import yaml
    except ImportError:
        try:
            data = json.loads(text) if text.strip() else None
        except ValueError as exc:
            raise WebConfigError(f"{p}: not JSON, and PyYAML is not installed to read YAML: {exc}") from exc
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise WebConfigError(f"{p}: invalid YAML: {exc}") from exc
    cfg = parse_web_config(data, p.parent)
    cfg.ssl_context()
    return cfg


def build_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """A server-side :class:`ssl.SSLContext` for ``tls`` (version range, certificate chain, client verification).

    Raises:
        WebConfigError: a certificate, key or CA file that is missing or cannot be loaded, or a version the
            local OpenSSL refuses.

    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.minimum_version = TLS_VERSIONS[tls.min_version]
        ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    except (ValueError, ssl.SSLError) as exc:
        raise WebConfigError(f"tls_server_config: version range not supported here: {exc}") from exc
    try:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"tls_server_config: cannot load {tls.cert_file} / {tls.key_file}: {exc}") from exc
    mode, _ = CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(tls.client_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"tls_server_config: cannot load client_ca_file {tls.client_ca_file}: {exc}") from exc
    ctx.verify_mode = mode
    return ctx


class BasicAuth:
    """Checks an HTTP ``Authorization: Basic`` header against bcrypt hashes (thread-safe).

    An unknown user still costs one bcrypt comparison against a dummy hash, so response time does not reveal which
    users exist. Successful checks are cached (see the module docstring); failures are not, so a wrong password
    always costs a bcrypt round.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        """``users``: user name -> bcrypt hash (as :attr:`WebConfig.users`)."""
        self._users = dict(users)
        self._key = os.urandom(32)
        self._ok: set[bytes] = set()
        self._lock = threading.Lock()
        self._dummy = bcrypt.hashpw(b"nomade-dummy", bcrypt.gensalt(rounds=10))

    def _cache_key(self, user: bytes, password: bytes, hashed: bytes) -> bytes:
        msg = b"\0".join((base64.b64encode(user), base64.b64encode(password), hashed))
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def check(self, user: str, password: str) -> bool:
        """True when ``password`` matches the bcrypt hash of ``user``."""
        hashed = self._users.get(user)
        pw = password.encode("utf-8", "surrogateescape")
        if hashed is None:
            try:  # same cost as a known user (bcrypt 5 raises ValueError above 72 bytes)
                bcrypt.checkpw(pw, self._dummy)
            except ValueError:
                pass
            return False
        key = self._cache_key(user.encode("utf-8", "surrogateescape"), pw, hashed)
        with self._lock:
            if key in self._ok:
                return True
        try:
            ok = bcrypt.checkpw(pw, hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                if len(self._ok) >= CACHE_SIZE:
                    self._ok.clear()
                self._ok.add(key)
        return ok

    def check_header(self, header: str | None) -> bool:
        """True when ``header`` (an ``Authorization`` value, or None) carries valid Basic credentials."""
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        return bool(sep) and self.check(user, password)
