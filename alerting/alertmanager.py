"""Alertmanager configuration generated from the ``[alertmanager]`` table of the monitoring TOML (issue 6).

File layout (every key optional; the values shown are the defaults unless marked "example")::

    [alertmanager]
    default_receiver = "default"          # receiver of the root route (alerts no route matches)
    group_by = ["alertname"]              # the cluster label (MonitoringConfig.cluster_label) is always added;
                                          # ["..."]: Alertmanager's "group by every label"
    group_wait = "30s"                    # root timings: Alertmanager's own defaults (docs/configuration.md,
    group_interval = "5m"                 # <route>); durations are Prometheus duration strings or seconds
    repeat_interval = "4h"
    resolve_timeout = "5m"                # global.resolve_timeout, Alertmanager's default

    [alertmanager.smtp]                   # global e-mail settings (Alertmanager `global.smtp_*`)
    smarthost = "localhost:25"
    from = "nomade@localhost"
    hello = "localhost"
    auth_username = ""
    auth_password_file = ""               # secrets only as files: never inline in the generated YAML
    require_tls = true                    # Alertmanager's default

    [alertmanager.receivers.default]      # a receiver without integration: alerts only visible in Alertmanager

    [alertmanager.receivers.hpc-admins]   # example
    send_resolved = true                  # also notify resolutions (NØMADE default for every integration)
    email = { to = ["hpc-admins@example.org"] }        # optional smarthost/from/auth_username/auth_password_file
    slack = { api_url_file = "/etc/nomade/slack-url", channel = "#hpc-alerts" }
    webhook = { url = "http://127.0.0.1:8080/alerts", bearer_token_file = "/etc/nomade/webhook-token" }

    [[alertmanager.routes]]               # evaluated in order; first match wins unless continue = true
    receiver = "default"
    severity = ["critical"]               # matchers: one value -> label="v", several -> label=~"v1|v2"
    alertname = []
    partition = []
    matchers = []                         # further Alertmanager matchers, e.g. ['cluster="hpc1"']
    group_by = []                         # empty: inherited from the parent route
    group_wait = "10s"
    repeat_interval = "1h"
    continue = false
    # without any [[alertmanager.routes]]: critical (group_wait 10s, repeat 1h) and info (repeat 1d) routes to
    # the default receiver

    [alertmanager.inhibitions]
    severity = true                       # critical silences warning/info, warning silences info, same alertname
    node_down = true                      # a node down / not responding silences that node's other alerts

Generated (:func:`alertmanager_config`): ``global`` (resolve_timeout, smtp_*), the root ``route`` (default receiver,
grouping by the cluster label then ``group_by``, timings) with one child route per ``[[alertmanager.routes]]`` in
order, ``receivers`` sorted by name (e-mail with a plain-text body :data:`EMAIL_TEXT` listing summary, description and
runbook of every alert; Slack with :data:`SLACK_TITLE`/:data:`SLACK_TEXT`; webhook), and ``inhibit_rules``
(:func:`inhibit_rules`). :func:`render_alertmanager` writes it as YAML with sorted keys (byte-stable).

Secrets (SMTP password, Slack webhook URL, webhook bearer token) are accepted only as ``*_file`` paths, which the
generated configuration references (``auth_password_file``, ``api_url_file``, ``credentials_file``, all supported by
Alertmanager 0.25, Debian 12's version). Alertmanager 0.25 has no ``url_file`` for webhooks, so a webhook URL is
written as it is: keep the secret in the bearer token, not in the URL.

Every error is a :class:`ConfigError` naming the key (``alertmanager.routes[1].receiver`` ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # config.py imports this module
    from nomade.alerting.config import MonitoringConfig

__all__ = [
    "DEFAULT_RECEIVER",
    "EMAIL_TEXT",
    "NODE_DOWN_ALERTS",
    "NODE_LABEL",
    "SEVERITIES",
    "SEVERITY_EQUAL_LABELS",
    "SLACK_TEXT",
    "SLACK_TITLE",
    "AlertmanagerSettings",
    "EmailSettings",
    "ReceiverSettings",
    "RouteSettings",
    "SlackSettings",
    "SmtpSettings",
    "WebhookSettings",
    "alertmanager_config",
    "inhibit_rules",
    "render_alertmanager",
]

DEFAULT_RECEIVER = "default"
#: The severities our alert rules carry (issue 6: critical, warning, info), most severe first.
SEVERITIES = ("critical", "warning", "info")

_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MATCHER_RE = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')
_RECEIVER_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _config_error(message: str) -> Exception:
    """The shared :class:`nomade.alerting.config.ConfigError` (imported late: config.py imports this module)."""
    from nomade.alerting.config import ConfigError

    return ConfigError(message)


# -- TOML reading helpers --------------------------------------------------------------------------------------------


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _config_error(f"{key}: expected a table, got {type(value).__name__}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: Sequence[str], key: str) -> None:
    for k in sorted(table):
        if k not in allowed:
            raise _config_error(f"{key}.{k}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _str(table: Mapping[str, Any], name: str, key: str, default: str) -> str:
    value = table.get(name, default)
    if not isinstance(value, str):
        raise _config_error(f"{key}.{name}: expected a string, got {type(value).__name__}")
    return value


def _bool(table: Mapping[str, Any], name: str, key: str, default: bool) -> bool:
    value = table.get(name, default)
    if not isinstance(value, bool):
        raise _config_error(f"{key}.{name}: expected true or false, got {value!r}")
    return value


def _strings(table: Mapping[str, Any], name: str, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
    value = table.get(name, default)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) and v for v in value):
        raise _config_error(f"{key}.{name}: expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def _duration(table: Mapping[str, Any], name: str, key: str, default: str | None) -> str | None:
    """A Prometheus duration string or a number of seconds, normalised to the shortest duration string."""
    value = table.get(name, default)
    if value is None:
        return None
    from nomade.analytics.config import ConfigError as DurationError
    from nomade.analytics.config import format_duration, parse_duration

    try:
        return format_duration(parse_duration(value, f"{key}.{name}"))
    except DurationError as exc:
        raise _config_error(str(exc)) from None


def _labels(table: Mapping[str, Any], name: str, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
    values = _strings(table, name, key, default)
    for v in values:
        if v != "..." and not _LABEL_RE.match(v):
            raise _config_error(f"{key}.{name}: {v!r} is not a label name")
    return values


# -- settings --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    """Global e-mail settings (Alertmanager ``global.smtp_*``), table ``[alertmanager.smtp]``.

    ``smarthost`` is ``host:port``; ``auth_password_file`` is a path read by Alertmanager (never the password).
    ``require_tls`` defaults to true, as in Alertmanager.
    """

    smarthost: str = "localhost:25"
    from_address: str = "nomade@localhost"
    hello: str = "localhost"
    auth_username: str = ""
    auth_password_file: str = ""
    require_tls: bool = True

    @classmethod
    def from_toml(cls, table: Mapping[str, Any], key: str = "alertmanager.smtp") -> SmtpSettings:
        """Read ``[alertmanager.smtp]``; raises ConfigError naming the key on an unknown key or a wrong type."""
        table = _table(table, key)
        _check_keys(
            table,
            ["smarthost", "from", "hello", "auth_username", "auth_password", "auth_password_file", "require_tls"],
            key,
        )
        if "auth_password" in table:
            raise _config_error(f"{key}.auth_password: secrets are accepted only as files (use auth_password_file)")
        d = cls()
        smarthost = _str(table, "smarthost", key, d.smarthost)
        if not re.match(r"^[^:\s]+:\d+$", smarthost):
            raise _config_error(f"{key}.smarthost: expected host:port, got {smarthost!r}")
        return cls(
            smarthost=smarthost,
            from_address=_str(table, "from", key, d.from_address),
            hello=_str(table, "hello", key, d.hello),
            auth_username=_str(table, "auth_username", key, d.auth_username),
            auth_password_file=_str(table, "auth_password_file", key, d.auth_password_file),
            require_tls=_bool(table, "require_tls", key, d.require_tls),
        )


@dataclass(frozen=True)
class EmailSettings:
    """E-mail integration of a receiver: recipients, and optional per-receiver overrides of :class:`SmtpSettings`."""

    to: tuple[str, ...]
    smarthost: str = ""
    from_address: str = ""
    auth_username: str = ""
    auth_password_file: str = ""

    @classmethod
    def from_toml(cls, table: Mapping[str, Any], key: str) -> EmailSettings:
        """Read ``email = {to = [...], ...}``; ``to`` is required (a string or a list of addresses)."""
        table = _table(table, key)
        _check_keys(table, ["to", "smarthost", "from", "auth_username", "auth_password", "auth_password_file"], key)
        if "auth_password" in table:
            raise _config_error(f"{key}.auth_password: secrets are accepted only as files (use auth_password_file)")
        if "to" not in table:
            raise _config_error(f"{key}.to: missing (the recipients)")
        to = _strings(table, "to", key)
        if not to:
            raise _config_error(f"{key}.to: at least one address")
        return cls(
            to=to,
            smarthost=_str(table, "smarthost", key, ""),
            from_address=_str(table, "from", key, ""),
            auth_username=_str(table, "auth_username", key, ""),
            auth_password_file=_str(table, "auth_password_file", key, ""),
        )


@dataclass(frozen=True)
class SlackSettings:
    """Slack integration: the incoming-webhook URL is read by Alertmanager from ``api_url_file``."""

    api_url_file: str
    channel: str = ""

    @classmethod
    def from_toml(cls, table: Mapping[str, Any], key: str) -> SlackSettings:
        """Read ``slack = {api_url_file = "...", channel = "#..."}``; ``api_url`` inline is refused."""
        table = _table(table, key)
        _check_keys(table, ["api_url", "api_url_file", "channel"], key)
        if "api_url" in table:
            raise _config_error(f"{key}.api_url: the Slack URL is a secret, accepted only as a file (api_url_file)")
        path = _str(table, "api_url_file", key, "")
        if not path:
            raise _config_error(f"{key}.api_url_file: missing (file holding the Slack incoming-webhook URL)")
        return cls(api_url_file=path, channel=_str(table, "channel", key, ""))


@dataclass(frozen=True)
class WebhookSettings:
    """Generic webhook integration (Alertmanager's JSON payload, version 4), optional bearer token from a file."""

    url: str
    bearer_token_file: str = ""
    max_alerts: int = 0

    @classmethod
    def from_toml(cls, table: Mapping[str, Any], key: str) -> WebhookSettings:
        """Read ``webhook = {url = "http(s)://...", bearer_token_file = "...", max_alerts = 0}``."""
        table = _table(table, key)
        _check_keys(table, ["url", "url_file", "bearer_token", "bearer_token_file", "max_alerts"], key)
        if "url_file" in table:
            raise _config_error(f"{key}.url_file: not supported by Alertmanager 0.25 (use url and bearer_token_file)")
        if "bearer_token" in table:
            raise _config_error(f"{key}.bearer_token: secrets are accepted only as files (use bearer_token_file)")
        url = _str(table, "url", key, "")
        if not re.match(r"^https?://[^\s/]+", url):
            raise _config_error(f"{key}.url: expected an http:// or https:// URL, got {url!r}")
        max_alerts = table.get("max_alerts", 0)
        if not isinstance(max_alerts, int) or isinstance(max_alerts, bool) or max_alerts < 0:
            raise _config_error(f"{key}.max_alerts: expected an integer >= 0, got {max_alerts!r}")
        return cls(url=url, bearer_token_file=_str(table, "bearer_token_file", key, ""), max_alerts=max_alerts)


@dataclass(frozen=True)
class ReceiverSettings:
    """A named receiver with any of the e-mail, Slack and webhook integrations (none: alerts only in the UI)."""

    name: str
    email: EmailSettings | None = None
    slack: SlackSettings | None = None
    webhook: WebhookSettings | None = None
    send_resolved: bool = True

    @classmethod
    def from_toml(cls, name: str, table: Mapping[str, Any], key: str) -> ReceiverSettings:
        """Read ``[alertmanager.receivers.<name>]``."""
        table = _table(table, key)
        _check_keys(table, ["email", "slack", "webhook", "send_resolved"], key)
        if not _RECEIVER_NAME_RE.match(name):
            raise _config_error(f"{key}: receiver name {name!r} must match [A-Za-z0-9_.-]+")
        return cls(
            name=name,
            email=EmailSettings.from_toml(table["email"], f"{key}.email") if "email" in table else None,
            slack=SlackSettings.from_toml(table["slack"], f"{key}.slack") if "slack" in table else None,
            webhook=WebhookSettings.from_toml(table["webhook"], f"{key}.webhook") if "webhook" in table else None,
            send_resolved=_bool(table, "send_resolved", key, True),
        )


@dataclass(frozen=True)
class RouteSettings:
    """A child route of the root route: matchers on severity/alertname/partition (+ raw matchers), and timings.

    ``group_by``/``group_wait``/``group_interval``/``repeat_interval`` left empty/None are inherited from the root.
    """

    receiver: str
    severity: tuple[str, ...] = ()
    alertname: tuple[str, ...] = ()
    partition: tuple[str, ...] = ()
    matchers: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    group_wait: str | None = None
    group_interval: str | None = None
    repeat_interval: str | None = None
    continue_: bool = False

    @classmethod
    def from_toml(cls, table: Mapping[str, Any], key: str) -> RouteSettings:
        """Read one ``[[alertmanager.routes]]`` entry (``receiver`` is required)."""
        table = _table(table, key)
        _check_keys(
            table,
            [
                "receiver",
                "severity",
                "alertname",
                "partition",
                "matchers",
                "group_by",
                "group_wait",
                "group_interval",
                "repeat_interval",
                "continue",
            ],
            key,
        )
        receiver = _str(table, "receiver", key, "")
        if not receiver:
            raise _config_error(f"{key}.receiver: missing")
        severity = _strings(table, "severity", key)
        for s in severity:
            if s not in SEVERITIES:
                raise _config_error(f"{key}.severity: {s!r} is not one of {', '.join(SEVERITIES)}")
        matchers = _strings(table, "matchers", key)
        for m in matchers:
            if not _MATCHER_RE.match(m):
                raise _config_error(f'{key}.matchers: {m!r} is not a matcher such as cluster="hpc1" or node=~"gpu.*"')
        return cls(
            receiver=receiver,
            severity=severity,
            alertname=_strings(table, "alertname", key),
            partition=_strings(table, "partition", key),
            matchers=matchers,
            group_by=_labels(table, "group_by", key),
            group_wait=_duration(table, "group_wait", key, None),
            group_interval=_duration(table, "group_interval", key, None),
            repeat_interval=_duration(table, "repeat_interval", key, None),
            continue_=_bool(table, "continue", key, False),
        )


def _default_routes(receiver: str = DEFAULT_RECEIVER) -> tuple[RouteSettings, ...]:
    # Critical alerts: notified sooner and repeated hourly; info alerts: once a day (Alertmanager's example
    # configuration uses group_wait 30s / repeat 4h for the rest, our root defaults). NØMADE defaults.
    return (
        RouteSettings(receiver=receiver, severity=("critical",), group_wait="10s", repeat_interval="1h"),
        RouteSettings(receiver=receiver, severity=("info",), repeat_interval="1d"),
    )


@dataclass(frozen=True)
class AlertmanagerSettings:
    """The ``[alertmanager]`` table: receivers, routes, grouping and inhibitions (see the module docstring).

    Defaults: one receiver ``default`` without integration; without ``[[alertmanager.routes]]``, two routes to the
    default receiver: critical (group_wait 10s, repeat 1h) and info (repeat 1d) alerts; root timings 30s/5m/4h
    (Alertmanager's example configuration, doc/examples/simple.yml); both inhibitions on.
    """

    default_receiver: str = DEFAULT_RECEIVER
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"
    resolve_timeout: str = "5m"
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    receivers: tuple[ReceiverSettings, ...] = (ReceiverSettings(name=DEFAULT_RECEIVER),)
    routes: tuple[RouteSettings, ...] = field(default_factory=_default_routes)
    inhibit_severity: bool = True
    inhibit_node_down: bool = True

    @classmethod
    def from_toml(cls, table: Mapping[str, Any] | None) -> AlertmanagerSettings:
        """Build the settings from the ``[alertmanager]`` table (None or {} -> defaults).

        Raises:
            ConfigError: unknown key, wrong type, bad duration/matcher, secret given inline, a route or the
                default receiver naming an undefined receiver; the message starts with the full key.

        """
        key = "alertmanager"
        if table is None:
            table = {}
        table = _table(table, key)
        _check_keys(
            table,
            [
                "default_receiver",
                "group_by",
                "group_wait",
                "group_interval",
                "repeat_interval",
                "resolve_timeout",
                "smtp",
                "receivers",
                "routes",
                "inhibitions",
            ],
            key,
        )
        d = cls()
        receivers = d.receivers
        if "receivers" in table:
            rtable = _table(table["receivers"], f"{key}.receivers")
            receivers = tuple(
                ReceiverSettings.from_toml(name, rtable[name], f"{key}.receivers.{name}") for name in sorted(rtable)
            )
            if not receivers:
                raise _config_error(f"{key}.receivers: at least one receiver")
        names = {r.name for r in receivers}
        default_receiver = _str(table, "default_receiver", key, d.default_receiver)
        if default_receiver not in names:
            raise _config_error(f"{key}.default_receiver: {default_receiver!r} is not a defined receiver")
        routes = _default_routes(default_receiver)
        if "routes" in table:
            raw = table["routes"]
            if not isinstance(raw, Sequence) or isinstance(raw, str):
                raise _config_error(f"{key}.routes: expected an array of tables ([[alertmanager.routes]])")
            routes = tuple(RouteSettings.from_toml(r, f"{key}.routes[{i}]") for i, r in enumerate(raw))
        for i, r in enumerate(routes):
            if r.receiver not in names:
                raise _config_error(f"{key}.routes[{i}].receiver: {r.receiver!r} is not a defined receiver")
        inhibit = _table(table.get("inhibitions", {}), f"{key}.inhibitions")
        _check_keys(inhibit, ["severity", "node_down"], f"{key}.inhibitions")
        group_by = _labels(table, "group_by", key, d.group_by)
        return cls(
            default_receiver=default_receiver,
            group_by=group_by,
            group_wait=_duration(table, "group_wait", key, d.group_wait) or d.group_wait,
            group_interval=_duration(table, "group_interval", key, d.group_interval) or d.group_interval,
            repeat_interval=_duration(table, "repeat_interval", key, d.repeat_interval) or d.repeat_interval,
            resolve_timeout=_duration(table, "resolve_timeout", key, d.resolve_timeout) or d.resolve_timeout,
            smtp=SmtpSettings.from_toml(table["smtp"]) if "smtp" in table else d.smtp,
            receivers=receivers,
            routes=routes,
            inhibit_severity=_bool(inhibit, "severity", f"{key}.inhibitions", True),
            inhibit_node_down=_bool(inhibit, "node_down", f"{key}.inhibitions", True),
        )


#: Alerts saying that a node is down or not responding (defined in alerting/rules.py): while one fires, the
#: other alerts carrying the same cluster and ``node`` label values are inhibited (issue 6: "a node down silences
#: the job alerts of that node").
NODE_DOWN_ALERTS: tuple[str, ...] = ("NomadeNodeDown", "NomadeNodeNotResponding")
#: The label that names a node on every node-level series and alert (DESIGN: node-mode targets carry ``node``).
NODE_LABEL = "node"
#: Labels that identify "the same thing" for the severity inhibition, besides the cluster label and alertname
#: (alerts with a warning and a critical threshold keep one alertname in alerting/rules.py): a critical alert on
#: one mount point (NomadeFilesystemAlmostFull, NomadeFilesystemFillingUp) or one GPU (NomadeGpuTemperatureHigh)
#: silences only the warning of that mount point or GPU.
SEVERITY_EQUAL_LABELS: tuple[str, ...] = ("instance", "node", "mountpoint", "gpu", "partition")

#: Plain-text body of the e-mails (Alertmanager's default template is HTML only) and text of the Slack messages:
#: one paragraph per alert with the annotations our rules set (summary, description, runbook_url).
EMAIL_TEXT = (
    "{{ range .Alerts }}[{{ .Status | toUpper }}] {{ .Labels.alertname }} (severity {{ .Labels.severity }})\n"
    "Summary: {{ .Annotations.summary }}\n"
    "Description: {{ .Annotations.description }}\n"
    "Runbook: {{ .Annotations.runbook_url }}\n"
    "Labels:{{ range .Labels.SortedPairs }} {{ .Name }}={{ .Value }}{{ end }}\n"
    "Started: {{ .StartsAt }}\n\n{{ end }}"
)
SLACK_TITLE = (
    '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] '
    "{{ .CommonLabels.alertname }}"
)
SLACK_TEXT = (
    "{{ range .Alerts }}*{{ .Labels.severity }}* {{ .Annotations.summary }}\n{{ .Annotations.description }}\n"
    "<{{ .Annotations.runbook_url }}|runbook>\n{{ end }}"
)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _matcher(label: str, values: Sequence[str], negate: bool = False) -> str:
    """``label="v"`` for one value, ``label=~"v1|v2"`` (values regex-escaped) for several."""
    if len(values) == 1:
        return f"{label}{'!=' if negate else '='}{_quote(values[0])}"
    regex = "|".join(re.escape(v) for v in values)
    return f"{label}{'!~' if negate else '=~'}{_quote(regex)}"


def _dedupe(labels: Sequence[str]) -> list[str]:
    out: list[str] = []
    for label in labels:
        if label not in out:
            out.append(label)
    return out


def _group_by(cluster_label: str, labels: Sequence[str]) -> list[str]:
    """The cluster label first, then ``labels``; Alertmanager's ``...`` (group by all labels) stands alone."""
    if "..." in labels:
        return ["..."]
    return _dedupe([cluster_label, *labels])


def _route(route: RouteSettings, cluster_label: str) -> dict[str, Any]:
    matchers = []
    for label, values in (("severity", route.severity), ("alertname", route.alertname), ("partition", route.partition)):
        if values:
            matchers.append(_matcher(label, values))
    matchers.extend(m.strip() for m in route.matchers)
    out: dict[str, Any] = {"receiver": route.receiver}
    if matchers:
        out["matchers"] = matchers
    if route.group_by:
        out["group_by"] = _group_by(cluster_label, route.group_by)
    for name in ("group_wait", "group_interval", "repeat_interval"):
        value = getattr(route, name)
        if value is not None:
            out[name] = value
    if route.continue_:
        out["continue"] = True
    return out


def _receiver(receiver: ReceiverSettings) -> dict[str, Any]:
    out: dict[str, Any] = {"name": receiver.name}
    if receiver.email is not None:
        e = receiver.email
        email: dict[str, Any] = {"to": ", ".join(e.to), "send_resolved": receiver.send_resolved, "text": EMAIL_TEXT}
        for key, value in (
            ("smarthost", e.smarthost),
            ("from", e.from_address),
            ("auth_username", e.auth_username),
            ("auth_password_file", e.auth_password_file),
        ):
            if value:
                email[key] = value
        out["email_configs"] = [email]
    if receiver.slack is not None:
        slack: dict[str, Any] = {
            "api_url_file": receiver.slack.api_url_file,
            "send_resolved": receiver.send_resolved,
            "title": SLACK_TITLE,
            "text": SLACK_TEXT,
        }
        if receiver.slack.channel:
            slack["channel"] = receiver.slack.channel
        out["slack_configs"] = [slack]
    if receiver.webhook is not None:
        w = receiver.webhook
        hook: dict[str, Any] = {"url": w.url, "send_resolved": receiver.send_resolved, "max_alerts": w.max_alerts}
        if w.bearer_token_file:
            hook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": w.bearer_token_file}}
        out["webhook_configs"] = [hook]
    return out


def inhibit_rules(settings: AlertmanagerSettings, cluster_label: str) -> list[dict[str, Any]]:
    """The inhibition rules: severity ladder and node down (each switchable in ``[alertmanager.inhibitions]``).

    * critical silences warning and info, warning silences info, when the two alerts have the same cluster,
      alertname and :data:`SEVERITY_EQUAL_LABELS` values (a label both alerts lack counts as equal in Alertmanager,
      so an alert without ``mountpoint`` still matches another without it);
    * one of :data:`NODE_DOWN_ALERTS` silences every other alert with the same cluster and ``node`` values (a target
      alert without a ``node`` label is never silenced: the down alert always carries one).
    """
    rules: list[dict[str, Any]] = []
    if settings.inhibit_severity:
        equal = _dedupe([cluster_label, "alertname", *SEVERITY_EQUAL_LABELS])
        rules.append(
            {
                "source_matchers": [_matcher("severity", ["critical"])],
                "target_matchers": [_matcher("severity", ["warning", "info"])],
                "equal": equal,
            }
        )
        rules.append(
            {
                "source_matchers": [_matcher("severity", ["warning"])],
                "target_matchers": [_matcher("severity", ["info"])],
                "equal": equal,
            }
        )
    if settings.inhibit_node_down:
        rules.append(
            {
                "source_matchers": [_matcher("alertname", NODE_DOWN_ALERTS)],
                "target_matchers": [_matcher("alertname", NODE_DOWN_ALERTS, negate=True), f'{NODE_LABEL}!=""'],
                "equal": _dedupe([cluster_label, NODE_LABEL]),
            }
        )
    return rules


def alertmanager_config(cfg: MonitoringConfig) -> dict[str, Any]:
    """The Alertmanager configuration (the mapping alertmanager.yml holds) for ``cfg`` (a MonitoringConfig).

    Shape: ``{"global": {...}, "route": {...}, "receivers": [...], "inhibit_rules": [...]}``. The root route uses
    the default receiver and groups by the cluster label then ``group_by``; child routes keep the configuration's
    order (Alertmanager evaluates them in order); receivers are sorted by name. Pure: no file is read.
    """
    s = cfg.alertmanager
    smtp: dict[str, Any] = {
        "resolve_timeout": s.resolve_timeout,
        "smtp_smarthost": s.smtp.smarthost,
        "smtp_from": s.smtp.from_address,
        "smtp_hello": s.smtp.hello,
        "smtp_require_tls": s.smtp.require_tls,
    }
    if s.smtp.auth_username:
        smtp["smtp_auth_username"] = s.smtp.auth_username
    if s.smtp.auth_password_file:
        smtp["smtp_auth_password_file"] = s.smtp.auth_password_file
    route: dict[str, Any] = {
        "receiver": s.default_receiver,
        "group_by": _group_by(cfg.cluster_label, s.group_by),
        "group_wait": s.group_wait,
        "group_interval": s.group_interval,
        "repeat_interval": s.repeat_interval,
    }
    if s.routes:
        route["routes"] = [_route(r, cfg.cluster_label) for r in s.routes]
    return {
        "global": smtp,
        "route": route,
        "receivers": [_receiver(r) for r in sorted(s.receivers, key=lambda r: r.name)],
        "inhibit_rules": inhibit_rules(s, cfg.cluster_label),
    }


HEADER = "# Generated by `nomade build` from the [alertmanager] table of the monitoring configuration; do not edit.\n"


def render_alertmanager(cfg: MonitoringConfig) -> str:
    """``alertmanager_config(cfg)`` as YAML: sorted keys, no timestamp, so byte-identical for the same ``cfg``.

    Raises:
        ImportError: PyYAML is missing (``pip install nomade-hpc[build]``).

    """
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # no &id001 anchors: every list written out in full
            return True

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # Multi-line templates as literal blocks (|), readable and diffable; the rest as PyYAML chooses.
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    _Dumper.add_representer(str, _str)
    body = yaml.dump(
        alertmanager_config(cfg),
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=1000,
    )
    return HEADER + body
