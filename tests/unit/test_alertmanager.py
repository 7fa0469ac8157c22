"""The generated Alertmanager configuration (nomade.alerting.alertmanager), checked with Alertmanager's own amtool."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from nomade.alerting.alertmanager import (
    EMAIL_TEXT,
    NODE_DOWN_ALERTS,
    SEVERITY_EQUAL_LABELS,
    SLACK_TEXT,
    SLACK_TITLE,
    AlertmanagerSettings,
    alertmanager_config,
    render_alertmanager,
)
from nomade.alerting.config import ConfigError, MonitoringConfig, load_monitoring_config, monitoring_config_from_dict
from nomade.alerting.rules import alert_names, alert_rules

AMTOOL = "amtool"

# A site configuration exercising every kind of receiver and route. The secret files do not exist: amtool
# check-config does not read them (Alertmanager reads them when it sends).
SITE_TOML = """
[monitoring]
cluster_label = "site"

[alertmanager]
default_receiver = "ops"
group_by = ["alertname", "partition"]
group_wait = "20s"
group_interval = "2m"
repeat_interval = "3h"
resolve_timeout = "10m"

[alertmanager.smtp]
smarthost = "mail.example.org:587"
from = "nomade@example.org"
hello = "hpc.example.org"
auth_username = "nomade"
auth_password_file = "/etc/nomade/secrets/smtp-password"

[alertmanager.receivers.ops]
email = { to = ["hpc-admins@example.org", "noc@example.org"] }

[alertmanager.receivers.oncall]
send_resolved = false
slack = { api_url_file = "/etc/nomade/secrets/slack-url", channel = "#hpc-oncall" }
webhook = { url = "https://pager.example.org/hook", bearer_token_file = "/etc/nomade/secrets/pager-token" }

[alertmanager.receivers.gpu-team]
email = { to = "gpu@example.org", smarthost = "gpu-mail.example.org:25", from = "gpu-alerts@example.org" }

[alertmanager.receivers.storage]
webhook = { url = "http://127.0.0.1:8080/storage", max_alerts = 20 }

[alertmanager.receivers.hpc2-team]
slack = { api_url_file = "/etc/nomade/secrets/slack-hpc2", channel = "#hpc2" }

[alertmanager.receivers.blackhole]

[[alertmanager.routes]]                # 0: every filesystem alert also goes to the storage team
receiver = "storage"
alertname = ["NomadeFilesystemAlmostFull", "NomadeFilesystemFillingUp"]
continue = true

[[alertmanager.routes]]                # 1: critical on the gpu partition
receiver = "gpu-team"
severity = ["critical"]
partition = ["gpu", "gpu-long"]
group_by = ["node"]

[[alertmanager.routes]]                # 2: any other critical
receiver = "oncall"
severity = ["critical"]
group_wait = "10s"
repeat_interval = "1h"

[[alertmanager.routes]]                # 3: the second cluster's own team (raw matcher)
receiver = "hpc2-team"
matchers = ['site="hpc2"']

[[alertmanager.routes]]                # 4: info alerts are only visible in Alertmanager
receiver = "blackhole"
severity = ["info"]
repeat_interval = "24h"
"""

# (labels, expected receivers in routing order): one case per route, the continue case, and the default.
ROUTE_CASES = [
    pytest.param({"alertname": "NomadeFilesystemAlmostFull", "severity": "warning"}, "storage", id="route0-storage"),
    pytest.param(
        {"alertname": "NomadeGpuTemperatureHigh", "severity": "critical", "partition": "gpu-long"},
        "gpu-team",
        id="route1-gpu-critical",
    ),
    pytest.param({"alertname": "NomadeExporterDown", "severity": "critical", "partition": "a"}, "oncall", id="route2"),
    pytest.param(
        {"alertname": "NomadePendingJobsStuck", "severity": "warning", "site": "hpc2"}, "hpc2-team", id="route3"
    ),
    pytest.param({"alertname": "NomadeJobHighFailureRisk", "severity": "info"}, "blackhole", id="route4-info"),
    pytest.param({"alertname": "NomadeFilesystemFillingUp", "severity": "critical"}, "storage,oncall", id="continue"),
    pytest.param({"alertname": "NomadeSlurmSchedulerCycleSlow", "severity": "warning"}, "ops", id="default"),
    # A warning on the gpu partition is not critical: route 1 must not catch it.
    pytest.param(
        {"alertname": "NomadeGpuResetRequired", "severity": "warning", "partition": "gpu"}, "ops", id="gpu-warn"
    ),
]


def site_config() -> MonitoringConfig:
    return monitoring_config_from_dict(tomllib.loads(SITE_TOML))


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which(AMTOOL) is None:
        pytest.fail("amtool not installed (Debian package prometheus-alertmanager; deploy/lab/lab.sh install)")
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def site_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("am") / "alertmanager.yml"
    path.write_text(render_alertmanager(site_config()))
    return path


# -- amtool ----------------------------------------------------------------------------------------------------------


def test_site_config_passes_amtool_check_config(site_file: Path) -> None:
    proc = amtool("check-config", str(site_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    assert " - 3 inhibit rules" in proc.stdout
    assert " - 6 receivers" in proc.stdout


def test_default_config_passes_amtool_check_config(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(render_alertmanager(load_monitoring_config(None)))
    proc = amtool("check-config", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " - 1 receivers" in proc.stdout
    assert " - 3 inhibit rules" in proc.stdout


@pytest.mark.parametrize(("labels", "expected"), ROUTE_CASES)
def test_routes(site_file: Path, labels: dict[str, str], expected: str) -> None:
    argv = [f"{k}={v}" for k, v in sorted(labels.items())]
    proc = amtool("config", "routes", "test", f"--config.file={site_file}", f"--verify.receivers={expected}", *argv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == expected


def test_every_route_has_a_case() -> None:
    # One case per configured route (the receiver of each route appears as the first expected receiver).
    routes = alertmanager_config(site_config())["route"]["routes"]
    first = {case.values[1].split(",")[0] for case in ROUTE_CASES}
    assert [r["receiver"] for r in routes] == ["storage", "gpu-team", "oncall", "hpc2-team", "blackhole"]
    assert {r["receiver"] for r in routes} <= first
    assert "ops" in first  # the default


def test_default_routes_with_amtool(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(render_alertmanager(load_monitoring_config(None)))
    cfg = yaml.safe_load(path.read_text())
    assert [r["matchers"] for r in cfg["route"]["routes"]] == [['severity="critical"'], ['severity="info"']]
    assert cfg["route"]["routes"][0]["repeat_interval"] == "1h"
    assert cfg["route"]["routes"][1]["repeat_interval"] == "1d"
    proc = amtool("config", "routes", "--config.file", str(path))
    assert proc.returncode == 0, proc.stderr
    assert '{severity="critical"}  receiver: default' in proc.stdout
    assert '{severity="info"}  receiver: default' in proc.stdout


# -- structure -------------------------------------------------------------------------------------------------------


def test_site_config_structure() -> None:
    cfg = alertmanager_config(site_config())
    assert cfg["global"] == {
        "resolve_timeout": "10m",
        "smtp_smarthost": "mail.example.org:587",
        "smtp_from": "nomade@example.org",
        "smtp_hello": "hpc.example.org",
        "smtp_require_tls": True,
        "smtp_auth_username": "nomade",
        "smtp_auth_password_file": "/etc/nomade/secrets/smtp-password",
    }
    route = cfg["route"]
    assert route["receiver"] == "ops"
    assert route["group_by"] == ["site", "alertname", "partition"]  # the cluster label first, always
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("20s", "2m", "3h")
    r0, r1, r2, r3, r4 = route["routes"]
    assert r0 == {
        "receiver": "storage",
        "matchers": ['alertname=~"NomadeFilesystemAlmostFull|NomadeFilesystemFillingUp"'],
        "continue": True,
    }
    assert r1 == {
        "receiver": "gpu-team",
        "matchers": ['severity="critical"', 'partition=~"gpu|gpu\\\\-long"'],
        "group_by": ["site", "node"],
    }
    assert r2 == {
        "receiver": "oncall",
        "matchers": ['severity="critical"'],
        "group_wait": "10s",
        "repeat_interval": "1h",
    }
    assert r3 == {"receiver": "hpc2-team", "matchers": ['site="hpc2"']}
    assert r4 == {"receiver": "blackhole", "matchers": ['severity="info"'], "repeat_interval": "1d"}
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert [r["name"] for r in cfg["receivers"]] == sorted(receivers)
    assert receivers["blackhole"] == {"name": "blackhole"}
    assert receivers["ops"]["email_configs"] == [
        {"to": "hpc-admins@example.org, noc@example.org", "send_resolved": True, "text": EMAIL_TEXT}
    ]
    assert receivers["gpu-team"]["email_configs"][0]["smarthost"] == "gpu-mail.example.org:25"
    assert receivers["gpu-team"]["email_configs"][0]["from"] == "gpu-alerts@example.org"
    assert receivers["oncall"]["slack_configs"] == [
        {
            "api_url_file": "/etc/nomade/secrets/slack-url",
            "channel": "#hpc-oncall",
            "send_resolved": False,
            "title": SLACK_TITLE,
            "text": SLACK_TEXT,
        }
    ]
    assert receivers["oncall"]["webhook_configs"] == [
        {
            "url": "https://pager.example.org/hook",
            "send_resolved": False,
            "max_alerts": 0,
            "http_config": {"authorization": {"type": "Bearer", "credentials_file": "/etc/nomade/secrets/pager-token"}},
        }
    ]
    assert receivers["storage"]["webhook_configs"][0]["max_alerts"] == 20


def test_inhibition_rules() -> None:
    rules = alertmanager_config(site_config())["inhibit_rules"]
    assert len(rules) == 3
    crit, warn, node = rules
    assert crit["source_matchers"] == ['severity="critical"']
    assert crit["target_matchers"] == ['severity=~"warning|info"']
    assert warn["source_matchers"] == ['severity="warning"']
    assert warn["target_matchers"] == ['severity="info"']
    for rule in (crit, warn):
        assert rule["equal"][:2] == ["site", "alertname"]
        assert {"instance", "node", "mountpoint"} <= set(rule["equal"])
    names = "|".join(NODE_DOWN_ALERTS)
    assert node == {
        "source_matchers": [f'alertname=~"{names}"'],
        "target_matchers": [f'alertname!~"{names}"', 'node!=""'],
        "equal": ["site", "node"],
    }


def test_inhibitions_can_be_switched_off(tmp_path: Path) -> None:
    cfg = monitoring_config_from_dict({"alertmanager": {"inhibitions": {"severity": False}}})
    rules = alertmanager_config(cfg)["inhibit_rules"]
    assert [r["equal"] for r in rules] == [["cluster", "node"]]
    cfg = monitoring_config_from_dict({"alertmanager": {"inhibitions": {"severity": False, "node_down": False}}})
    assert alertmanager_config(cfg)["inhibit_rules"] == []
    path = tmp_path / "am.yml"
    path.write_text(render_alertmanager(cfg))
    proc = amtool("check-config", str(path))
    assert proc.returncode == 0 and " - 0 inhibit rules" in proc.stdout, proc.stdout + proc.stderr


def test_inhibitions_match_the_generated_rules() -> None:
    # The node-down inhibition's sources are alerts of alerting/rules.py, one series per (cluster, node).
    cfg = load_monitoring_config(None)
    alerts: dict[str, list[dict[str, Any]]] = {}
    for group in alert_rules(cfg):
        for rule in group["rules"]:
            alerts.setdefault(rule["alert"], []).append(rule)
    for name in NODE_DOWN_ALERTS:
        assert name in alerts, f"{name} not among {sorted(alerts)}"
        assert "max by (cluster, node)" in alerts[name][0]["expr"], alerts[name][0]["expr"]
    # The severity inhibition relies on a warning and its critical sharing one alertname.
    both = sorted(n for n, rs in alerts.items() if {r["labels"]["severity"] for r in rs} >= {"warning", "critical"})
    assert "NomadeFilesystemAlmostFull" in both and "NomadeGpuTemperatureHigh" in both, both
    # ... and the labels telling two mount points or two GPUs apart are compared.
    assert {"mountpoint", "gpu", "node"} <= set(SEVERITY_EQUAL_LABELS)
    # Every alert name used by the routing cases exists.
    used = {case.values[0]["alertname"] for case in ROUTE_CASES}
    assert used <= set(alert_names(cfg)), used - set(alert_names(cfg))


# -- templates -------------------------------------------------------------------------------------------------------


def _render_template(tmp_path: Path, text: str, data: dict[str, Any]) -> str:
    (tmp_path / "empty.tmpl").write_text('{{ define "nomade.empty" }}{{ end }}')
    (tmp_path / "data.json").write_text(json.dumps(data))
    proc = amtool(
        "template",
        "render",
        f"--template.glob={tmp_path / 'empty.tmpl'}",
        f"--template.data={tmp_path / 'data.json'}",
        f"--template.text={text}",
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


TEMPLATE_DATA = {
    "receiver": "ops",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "NomadeFilesystemFull", "severity": "critical", "node": "n1", "mountpoint": "/s"},
            "annotations": {
                "summary": "Filesystem /s on n1 is 97% full",
                "description": "/s on n1: 97.2% used (critical threshold 95%).",
                "runbook_url": "https://example.org/runbooks/NomadeFilesystemFull.md",
            },
            "startsAt": "2026-11-29T18:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": "0123456789abcdef",
        }
    ],
    "groupLabels": {"alertname": "NomadeFilesystemFull"},
    "commonLabels": {"alertname": "NomadeFilesystemFull", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager",
}


def test_email_text_template_renders(tmp_path: Path) -> None:
    out = _render_template(tmp_path, EMAIL_TEXT, TEMPLATE_DATA)
    assert out.splitlines()[:6] == [
        "[FIRING] NomadeFilesystemFull (severity critical)",
        "Summary: Filesystem /s on n1 is 97% full",
        "Description: /s on n1: 97.2% used (critical threshold 95%).",
        "Runbook: https://example.org/runbooks/NomadeFilesystemFull.md",
        "Labels: alertname=NomadeFilesystemFull mountpoint=/s node=n1 severity=critical",
        "Started: 2026-11-29 18:00:00 +0000 UTC",
    ]


def test_slack_templates_render(tmp_path: Path) -> None:
    assert _render_template(tmp_path, SLACK_TITLE, TEMPLATE_DATA).strip() == "[FIRING:1] NomadeFilesystemFull"
    text = _render_template(tmp_path, SLACK_TEXT, TEMPLATE_DATA)
    assert text.splitlines()[:3] == [
        "*critical* Filesystem /s on n1 is 97% full",
        "/s on n1: 97.2% used (critical threshold 95%).",
        "<https://example.org/runbooks/NomadeFilesystemFull.md|runbook>",
    ]


# -- secrets, determinism --------------------------------------------------------------------------------------------


def test_secrets_are_referenced_by_file_never_inline(tmp_path: Path) -> None:
    secrets = {"smtp": "s3cr3t-smtp-pw", "slack": "https://hooks.slack.com/services/T0/B0/XYZ", "token": "tok-42"}
    for name, value in secrets.items():
        (tmp_path / name).write_text(value)
    cfg = monitoring_config_from_dict(
        {
            "alertmanager": {
                "default_receiver": "r",
                "smtp": {"auth_username": "u", "auth_password_file": str(tmp_path / "smtp")},
                "receivers": {
                    "r": {
                        "email": {"to": ["a@example.org"], "auth_password_file": str(tmp_path / "smtp")},
                        "slack": {"api_url_file": str(tmp_path / "slack")},
                        "webhook": {"url": "http://127.0.0.1:1/x", "bearer_token_file": str(tmp_path / "token")},
                    }
                },
            }
        }
    )
    text = render_alertmanager(cfg)
    for value in secrets.values():
        assert value not in text
    for name in secrets:
        assert str(tmp_path / name) in text
    flat = yaml.safe_load(text)
    keys = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            keys.update(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(flat)
    assert {"smtp_auth_password_file", "auth_password_file", "api_url_file", "credentials_file"} <= keys
    assert not keys & {"smtp_auth_password", "auth_password", "api_url", "slack_api_url", "credentials", "auth_secret"}


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"smtp": {"auth_password": "x"}}, "alertmanager.smtp.auth_password"),
        ({"receivers": {"r": {"email": {"to": "a@b.c", "auth_password": "x"}}}}, "alertmanager.receivers.r.email"),
        ({"receivers": {"r": {"slack": {"api_url": "https://hooks.slack.com/x"}}}}, "alertmanager.receivers.r.slack"),
        ({"receivers": {"r": {"webhook": {"url": "http://h/x", "bearer_token": "t"}}}}, "receivers.r.webhook"),
    ],
)
def test_inline_secrets_are_refused(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        AlertmanagerSettings.from_toml({"default_receiver": "r", **table} if "receivers" in table else table)


def test_render_is_deterministic() -> None:
    a = render_alertmanager(site_config())
    b = render_alertmanager(site_config())
    assert a == b
    # Receivers declared in another order give the same bytes (they are sorted by name).
    data = tomllib.loads(SITE_TOML)
    data["alertmanager"]["receivers"] = dict(reversed(list(data["alertmanager"]["receivers"].items())))
    assert render_alertmanager(monitoring_config_from_dict(data)) == a
    assert a.startswith("# Generated by `nomade build`")
    assert "&id" not in a and "*id" not in a  # no YAML anchors/aliases
    assert yaml.safe_load(a) == alertmanager_config(site_config())


def test_group_by_everything(tmp_path: Path) -> None:
    cfg = monitoring_config_from_dict({"alertmanager": {"group_by": ["..."]}})
    assert alertmanager_config(cfg)["route"]["group_by"] == ["..."]
    path = tmp_path / "am.yml"
    path.write_text(render_alertmanager(cfg))
    proc = amtool("check-config", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_durations_are_normalised() -> None:
    s = AlertmanagerSettings.from_toml({"group_wait": 90, "group_interval": "120s", "repeat_interval": "1h30m"})
    assert (s.group_wait, s.group_interval, s.repeat_interval) == ("1m30s", "2m", "1h30m")


# -- errors ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[alertmanager]\ngroupby = ['x']\n", "alertmanager.groupby"),
        ("[alertmanager]\ndefault_receiver = 'nobody'\n", "alertmanager.default_receiver"),
        ("[alertmanager]\ngroup_wait = 'soon'\n", "alertmanager.group_wait"),
        ("[alertmanager]\ngroup_by = ['not-a-label']\n", "alertmanager.group_by"),
        ("[alertmanager.smtp]\nsmarthost = 'mail.example.org'\n", "alertmanager.smtp.smarthost"),
        ("[alertmanager.smtp]\nrequire_tls = 'yes'\n", "alertmanager.smtp.require_tls"),
        ("[alertmanager.receivers.x]\nemail = { too = 'a@b.c' }\n", "alertmanager.receivers.x.email.too"),
        ("[alertmanager.receivers.x]\nemail = {}\n", "alertmanager.receivers.x.email.to"),
        ("[alertmanager.receivers.x]\npager = {}\n", "alertmanager.receivers.x.pager"),
        ("[alertmanager.receivers.x]\nslack = { channel = '#a' }\n", "alertmanager.receivers.x.slack.api_url_file"),
        ("[alertmanager.receivers.x]\nwebhook = { url = 'ftp://h/x' }\n", "alertmanager.receivers.x.webhook.url"),
        ("[alertmanager.receivers.x]\nwebhook = { url_file = '/f' }\n", "alertmanager.receivers.x.webhook.url_file"),
        ("[alertmanager.receivers.x]\nwebhook = { url = 'http://h', max_alerts = -1 }\n", "webhook.max_alerts"),
        ("[alertmanager.receivers.'a b']\n", "alertmanager.receivers.a b"),
        ("[[alertmanager.routes]]\nseverity = ['critical']\n", "alertmanager.routes[0].receiver"),
        ("[[alertmanager.routes]]\nreceiver = 'nobody'\n", "alertmanager.routes[0].receiver"),
        ("[[alertmanager.routes]]\nreceiver = 'default'\nseverity = ['page']\n", "alertmanager.routes[0].severity"),
        ("[[alertmanager.routes]]\nreceiver = 'default'\nmatchers = ['node=n1']\n", "alertmanager.routes[0].matchers"),
        ("[[alertmanager.routes]]\nreceiver = 'default'\ncontinue = 1\n", "alertmanager.routes[0].continue"),
        ("[[alertmanager.routes]]\nreceiver = 'default'\nrepeat_interval = '-1h'\n", "routes[0].repeat_interval"),
        (
            "[[alertmanager.routes]]\nreceiver = 'default'\n[[alertmanager.routes]]\nreceivr = 'x'\n",
            "routes[1].receivr",
        ),
        ("[alertmanager.inhibitions]\nnode = true\n", "alertmanager.inhibitions.node"),
        ("[alertmanager]\nroutes = 'all'\n", "alertmanager.routes"),
    ],
)
def test_bad_toml_names_the_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "monitoring.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_monitoring_config(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ")
    assert key in message, message


def test_defaults() -> None:
    s = AlertmanagerSettings.from_toml({})
    assert s == AlertmanagerSettings()
    assert AlertmanagerSettings.from_toml(None) == s
    assert (s.default_receiver, s.group_by, s.group_wait, s.group_interval, s.repeat_interval) == (
        "default",
        ("alertname",),
        "30s",
        "5m",
        "4h",
    )
    assert [r.name for r in s.receivers] == ["default"]
    assert s.inhibit_severity and s.inhibit_node_down
    cfg = alertmanager_config(load_monitoring_config(None))
    assert cfg["route"]["group_by"] == ["cluster", "alertname"]
    assert cfg["receivers"] == [{"name": "default"}]
