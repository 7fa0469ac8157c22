"""The ``[grafana]`` table of the monitoring configuration: how the generated dashboards meet Grafana.

Part of the one configuration object (:class:`nomade.alerting.config.MonitoringConfig`, its ``.grafana``)::

    [grafana]
    datasource_name = "Prometheus"            # name of the provisioned Prometheus data source
    datasource_uid = "nomade-prometheus"      # its uid (the dashboards' default data source)
    datasource_url = "http://127.0.0.1:9090"  # URL written into the data-source provisioning file
    folder = "NØMADE"                         # Grafana folder of the provisioned dashboards
    refresh = "1m"                            # dashboard auto-refresh
    time_from = "now-6h"                      # default time range: time_from .. now
    uid_prefix = "nomade-"                    # dashboard uids are uid_prefix + the dashboard key
    tags = ["nomade"]                         # tags of every dashboard (the dashboard links select on the first)
    editable = true                           # whether Grafana users may edit the provisioned dashboards

Every key is optional; an unknown key or a value of the wrong type raises ``ConfigError`` (of
:mod:`nomade.alerting.config`) naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Self

_UID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_REFRESH_RE = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
_TIME_RE = re.compile(r"^now(-[0-9]+[smhdwMy](/[smhdwMy])?)?$")
UID_MAX_LENGTH = 40
"""Grafana rejects dashboard and data-source uids longer than 40 characters (``util.IsValidShortUID``)."""


def _config_error(message: str) -> Exception:
    """Build the monitoring configuration's ``ConfigError`` (imported late: that module imports this one)."""
    from nomade.alerting.config import ConfigError

    return ConfigError(message)


@dataclass(frozen=True)
class GrafanaSettings:
    """Grafana-side settings of the generated dashboards and provisioning files.

    Attributes:
        datasource_name: Name of the Prometheus data source (provisioning file; default of the ``datasource``
            variable's picker).
        datasource_uid: Uid of that data source (at most 40 characters of ``[A-Za-z0-9_-]``).
        datasource_url: URL of Prometheus as Grafana's server reaches it (provisioning file only).
        folder: Grafana folder the dashboards are provisioned into.
        refresh: Auto-refresh interval of every dashboard, a Grafana duration such as ``"1m"``.
        time_from: Start of the default time range (``now-6h``: relative to now, Grafana syntax).
        uid_prefix: Prefix of every dashboard uid; uid = prefix + dashboard key (stable across runs).
        tags: Tags of every dashboard; the first one selects the dashboards listed in each dashboard's links.
        editable: Whether the provisioned dashboards may be edited in Grafana's UI.

    """

    datasource_name: str = "Prometheus"
    datasource_uid: str = "nomade-prometheus"
    datasource_url: str = "http://127.0.0.1:9090"
    folder: str = "NØMADE"
    refresh: str = "1m"
    time_from: str = "now-6h"
    uid_prefix: str = "nomade-"
    tags: tuple[str, ...] = ("nomade",)
    editable: bool = True

    def __post_init__(self) -> None:
        """Check the values (raises ``ConfigError`` naming the key)."""
        for name in ("datasource_name", "datasource_url", "folder"):
            if not getattr(self, name):
                raise _config_error(f"[grafana] {name} must not be empty")
        if not _UID_RE.match(self.datasource_uid) or len(self.datasource_uid) > UID_MAX_LENGTH:
            raise _config_error(
                f"[grafana] datasource_uid {self.datasource_uid!r}: "
                f"at most {UID_MAX_LENGTH} characters of A-Z a-z 0-9 _ -"
            )
        if self.uid_prefix and not _UID_RE.match(self.uid_prefix):
            raise _config_error(f"[grafana] uid_prefix {self.uid_prefix!r}: only A-Z a-z 0-9 _ - are allowed")
        if len(self.uid_prefix) > UID_MAX_LENGTH - 8:
            raise _config_error(f"[grafana] uid_prefix is longer than {UID_MAX_LENGTH - 8} characters")
        if not _REFRESH_RE.match(self.refresh):
            raise _config_error(f"[grafana] refresh {self.refresh!r} is not a duration such as '30s' or '1m'")
        if not _TIME_RE.match(self.time_from):
            raise _config_error(f"[grafana] time_from {self.time_from!r} is not of the form 'now-6h'")
        if not self.tags or not all(isinstance(t, str) and t for t in self.tags):
            raise _config_error("[grafana] tags must be a non-empty list of non-empty strings")

    @classmethod
    def from_toml(cls, table: dict[str, Any]) -> Self:
        """Build the settings from the parsed ``[grafana]`` table (missing keys keep their defaults).

        Raises:
            ConfigError: on an unknown key, a value of the wrong type or an invalid value (the message names the key).

        """
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in sorted(table.items()):
            if key not in known:
                raise _config_error(f"[grafana] unknown key {key!r} (known: {', '.join(sorted(known))})")
            if key == "tags":
                if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                    raise _config_error("[grafana] tags must be a list of strings")
                value = tuple(value)
            elif key == "editable":
                if not isinstance(value, bool):
                    raise _config_error("[grafana] editable must be true or false")
            elif not isinstance(value, str):
                raise _config_error(f"[grafana] {key} must be a string")
            kwargs[key] = value
        return cls(**kwargs)
