"""Exporter configuration: built-in defaults, then a TOML file, then command-line flags.

File layout (every key optional; ``deploy/nomade.toml.example`` documents them all)::

    [exporter]
    listen_address = "127.0.0.1:9866"   # --web.listen-address
    mode = "auto"                        # auto | node | controller | all
    scrape_timeout = 25.0                # seconds a scrape waits for all collectors
    command_timeout = 10.0               # seconds one external command may run
    cache_ttl = 15.0                     # seconds one command's output is shared
    state_dir = "/var/lib/nomade"        # counters that must survive restarts
    log_level = "info"
    pseudonymize_labels = []             # e.g. ["user", "account"]: keyed hashes instead of names (privacy.py)
    pseudonymize_key_file = "/etc/nomade/pseudonym.key"   # the HMAC key, >= 16 bytes, read from this file only

    [collector.<name>]
    # enabled = true                     # unset: the mode decides; true/false force it (flags
                                         # --collector.<name> / --no-collector.<name> override both)
    # ... collector-specific keys, documented on each collector class
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PORT = 9866
"""The exporter's port. 9866 is outside the ports of the exporters usually found on HPC nodes (node_exporter
9100, slurm_exporter 9341, DCGM 9400, ipmi 9290, ...); the analytics service uses 9867."""

MODES = ("auto", "node", "controller", "all")

PSEUDONYM_CATEGORIES = ("user", "account", "group", "job_name")
"""Values ``[exporter] pseudonymize_labels`` accepts; :mod:`nomade.exporter.privacy` lists the labels each covers."""

DEFAULT_PSEUDONYM_KEY_FILE = Path("/etc/nomade/pseudonym.key")


class ConfigError(ValueError):
    """The configuration file or a flag value is invalid (the message names the key)."""


def _default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/nomade")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local/state")
    return Path(base) / "nomade"


@dataclass
class ExporterConfig:
    """Resolved exporter settings.

    Attributes:
        listen_address: ``host:port`` to serve on (an empty host means all interfaces).
        mode: which collectors run by default: ``node``, ``controller``, ``all`` or ``auto`` (what the
            machine has: node collectors always, controller collectors when ``squeue`` is on ``PATH``).
        scrape_timeout: seconds.
        command_timeout: seconds.
        cache_ttl: seconds.
        state_dir: directory for persistent counters.
        log_level: Python logging level name.
        collectors: ``{name: {option: value}}`` from ``[collector.<name>]`` sections.
        enabled: explicit ``{name: bool}`` choices from flags or ``enabled`` keys.
        pseudonymize_labels: categories of names (:data:`PSEUDONYM_CATEGORIES`) replaced by keyed hashes in
            every exported label; empty (the default) turns pseudonymization off.
        pseudonymize_key_file: file holding the HMAC key (at least 16 bytes); read only when
            ``pseudonymize_labels`` is not empty, never logged.

    """

    listen_address: str = f"127.0.0.1:{DEFAULT_PORT}"
    mode: str = "auto"
    scrape_timeout: float = 25.0
    command_timeout: float = 10.0
    cache_ttl: float = 15.0
    state_dir: Path = field(default_factory=_default_state_dir)
    log_level: str = "info"
    proc_root: Path = Path("/proc")
    sys_root: Path = Path("/sys")
    collectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    enabled: dict[str, bool] = field(default_factory=dict)
    pseudonymize_labels: list[str] = field(default_factory=list)
    pseudonymize_key_file: Path = DEFAULT_PSEUDONYM_KEY_FILE

    def host_port(self) -> tuple[str, int]:
        """Split :attr:`listen_address` into ``(host, port)`` (see :func:`split_host_port`)."""
        return split_host_port(self.listen_address)


def split_host_port(address: str) -> tuple[str, int]:
    """Split a ``host:port`` listen address (``[::1]:9866`` for IPv6) into ``(host, port)``.

    Raises:
        ConfigError: when the port is missing or not an integer.

    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen_address {address!r} is not host:port")
    return host.strip("[]"), int(port)


_FLOAT_KEYS = ("scrape_timeout", "command_timeout", "cache_ttl")


def _categories(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    bad = [v for v in value if v not in PSEUDONYM_CATEGORIES]
    if bad:
        raise ConfigError(f"{where}: unknown {', '.join(map(repr, bad))} (known: {', '.join(PSEUDONYM_CATEGORIES)})")
    return list(dict.fromkeys(value))


def load_config(path: Path | None) -> ExporterConfig:
    """Read a TOML file into an :class:`ExporterConfig` (defaults when ``path`` is None).

    Raises:
        ConfigError: unreadable file, TOML syntax error, unknown ``[exporter]`` key or wrong value type.

    """
    cfg = ExporterConfig()
    if path is None:
        return cfg
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    section = data.get("exporter", {})
    sections = data.get("collector", {})
    if not isinstance(section, dict) or not isinstance(sections, dict):
        raise ConfigError(f"{path}: [exporter] and [collector.<name>] must be tables")
    known = {f for f in ExporterConfig.__dataclass_fields__ if f not in ("collectors", "enabled")}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown key exporter.{key}")
        if key in _FLOAT_KEYS:
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{path}: exporter.{key} must be a positive number")
            value = float(value)
        elif key in ("state_dir", "proc_root", "sys_root", "pseudonymize_key_file"):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{path}: exporter.{key} must be a non-empty path string")
            value = Path(value)
        elif key == "pseudonymize_labels":
            value = _categories(value, f"{path}: exporter.{key}")
        elif key == "mode" and value not in MODES:
            raise ConfigError(f"{path}: exporter.mode must be one of {', '.join(MODES)}")
        setattr(cfg, key, value)
    for name, opts in sections.items():
        if not isinstance(opts, dict):
            raise ConfigError(f"{path}: [collector.{name}] must be a table")
        opts = dict(opts)
        if "enabled" in opts:
            cfg.enabled[name] = bool(opts.pop("enabled"))
        cfg.collectors[name] = opts
    return cfg
