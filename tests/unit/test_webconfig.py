"""The exporter-toolkit web configuration: parsing, validation errors and the basic-auth credential check."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import bcrypt
import pytest

from nomade.exporter import webconfig
from nomade.exporter.webconfig import BasicAuth, WebConfigError, load_web_config, parse_web_config

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_full_supported_subset_parses_with_relative_paths(tmp_path: Path) -> None:
    cfg = parse_web_config(
        {
            "tls_server_config": {
                "cert_file": "server.crt",
                "key_file": "/abs/server.key",
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": "ca.crt",
                "min_version": "TLS13",
            },
            "http_server_config": {"headers": {"x-frame-options": "deny"}, "http2": False},
            "basic_auth_users": {"prometheus": HASH},
        },
        tmp_path,
    )
    assert cfg.tls is not None
    assert cfg.tls.cert_file == tmp_path / "server.crt"
    assert cfg.tls.key_file == Path("/abs/server.key")
    assert cfg.tls.client_ca_file == tmp_path / "ca.crt"
    assert (cfg.tls.min_version, cfg.tls.max_version) == ("TLS13", "TLS13")
    assert cfg.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert dict(cfg.headers) == {"X-Frame-Options": "deny"}
    assert dict(cfg.users) == {"prometheus": HASH.encode()}


def test_empty_file_means_plain_http_without_auth(tmp_path: Path) -> None:
    f = tmp_path / "web.yml"
    f.write_text("")
    cfg = load_web_config(f)
    assert cfg.tls is None and cfg.basic_auth() is None and cfg.ssl_context() is None


def test_null_values_count_as_absent() -> None:
    cfg = parse_web_config({"tls_server_config": None, "basic_auth_users": None, "rate_limit": None})
    assert cfg.tls is None and not cfg.users


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"tls_config": {}}, "unknown key(s) tls_config"),
        ({"tls_server_config": {"cert_file": "a", "key_file": "b", "certfile": "c"}}, "unknown key(s) certfile"),
        ({"tls_server_config": {"cert_file": "a", "key_file": "b", "cipher_suites": ["X"]}}, "cipher_suites valid"),
        ({"tls_server_config": {"cert": "PEM", "key": "PEM"}}, "cert, key valid"),
        ({"rate_limit": {"interval": "1s"}}, "rate_limit valid"),
        ({"http_server_config": {"http2": True}}, "http2: true is valid but not supported"),
        ({"http_server_config": {"headers": {"Set-Cookie": "a"}}}, "'Set-Cookie' is not allowed"),
        ({"tls_server_config": {"cert_file": "a"}}, "cert_file and key_file are both required"),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "RequireAnyClientCert"}},
            "RequireAnyClientCert is valid but not supported",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "Always"}},
            "unknown value 'Always'",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            },
            "requires client_ca_file",
        ),
        ({"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "TLS14"}}, "min_version: unknown"),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "TLS13", "max_version": "TLS12"}},
            "min_version is above max_version",
        ),
        ({"basic_auth_users": ["alice"]}, "expected a mapping"),
        ({"basic_auth_users": {"a:b": HASH}}, "invalid user name"),
        ([1, 2], "expected a mapping at the top level"),
    ],
)
def test_invalid_or_unsupported_keys_raise_naming_them(data: object, needle: str) -> None:
    with pytest.raises(WebConfigError) as err:
        parse_web_config(data)
    assert needle in str(err.value)


def test_plaintext_password_is_rejected_and_not_echoed() -> None:
    with pytest.raises(WebConfigError) as err:
        parse_web_config({"basic_auth_users": {"alice": "hunter2-plaintext"}})
    assert "alice" in str(err.value) and "not a bcrypt hash" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_yaml_file_and_missing_cert_files_are_reported(tmp_path: Path) -> None:
    f = tmp_path / "web.yml"
    f.write_text("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n")
    with pytest.raises(WebConfigError, match="cannot load .*nope.crt"):
        load_web_config(f)
    with pytest.raises(WebConfigError, match="cannot read"):
        load_web_config(tmp_path / "absent.yml")
    f.write_text("basic_auth_users: [unclosed\n")
    with pytest.raises(WebConfigError, match="invalid YAML"):
        load_web_config(f)
    f.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    assert load_web_config(f).basic_auth() is not None


def test_basic_auth_checks_and_caches_only_successes(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = BasicAuth({"prometheus": HASH.encode()})
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(pw: bytes, hashed: bytes) -> bool:
        calls.append(pw)
        return real(pw, hashed)

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", counting)
    assert auth.check_header(_basic("prometheus", "s3cret")) is True
    assert auth.check_header(_basic("prometheus", "s3cret")) is True
    assert len(calls) == 1  # the second check came from the cache
    assert auth.check_header(_basic("prometheus", "wrong")) is False
    assert auth.check_header(_basic("prometheus", "wrong")) is False
    assert len(calls) == 3  # failures are never cached
    assert auth.check_header(_basic("nobody", "s3cret")) is False
    assert len(calls) == 4  # an unknown user still costs a bcrypt round (dummy hash)
    # The cache holds HMAC digests, never the password itself.
    assert all(b"s3cret" not in k for k in auth._ok) and len(auth._ok) == 1


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer abc", "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode()],
)
def test_malformed_authorization_headers_fail(header: str | None) -> None:
    assert BasicAuth({"prometheus": HASH.encode()}).check_header(header) is False


def test_password_longer_than_72_bytes_fails_without_raising() -> None:
    auth = BasicAuth({"prometheus": HASH.encode()})
    assert auth.check("prometheus", "x" * 100) is False
    assert auth.check("nobody", "x" * 100) is False


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webconfig, "CACHE_SIZE", 2)
    auth = BasicAuth({f"u{i}": HASH.encode() for i in range(3)})
    for i in range(3):
        assert auth.check(f"u{i}", "s3cret")
    assert len(auth._ok) == 1  # cleared when full, then the third success added


def test_checks_log_no_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    auth = BasicAuth({"prometheus": HASH.encode()})
    auth.check_header(_basic("prometheus", "s3cret"))
    auth.check_header(_basic("prometheus", "wrong-pw"))
    assert "s3cret" not in caplog.text and "wrong-pw" not in caplog.text


@pytest.mark.parametrize("prog", ["exporter", "analytics"])
def test_cli_flag_rejects_a_bad_file_with_exit_2(
    prog: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOMADE_CONFIG", raising=False)
    f = tmp_path / "web.yml"
    f.write_text(
        "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"
    )
    if prog == "exporter":
        from nomade.exporter.cli import main
    else:
        from nomade.analytics.cli import main
    assert main(["--web.config.file", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"nomade-{prog}:" in err and "cipher_suites" in err and "not supported" in err
