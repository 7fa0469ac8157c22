"""End to end: generated rules fire a real alert, the generated Alertmanager configuration delivers it.

No SLURM lab needed: everything runs on free loopback ports (never the lab's 9090/9093/9866/9867).

* :func:`test_filesystem_alert_reaches_webhook_and_smtp` - a 4 MiB tmpfs (mounted by the test: needs root) is the only
  mount point of a real ``nomade-exporter`` (filesystem collector only); a real Prometheus scrapes it every second
  and evaluates the GENERATED rules (``nomade.alerting.rules.render_rules``); a real Alertmanager runs the
  GENERATED configuration (``render_alertmanager``) whose route sends the alert to a receiver with a webhook
  (:class:`alerting_sinks.WebhookSink`, bearer token from a file) and e-mail (:class:`alerting_sinks.SmtpSink`,
  SMTP AUTH with the password read from ``auth_password_file``). Filling the tmpfs above the critical threshold must
  deliver the alert to both within :data:`DELIVERY_TIMEOUT_S`.
* :func:`test_inhibitions_in_a_running_alertmanager` - alerts posted to a real Alertmanager running the generated
  configuration: a node down inhibits the other alerts of that node (not of another node), a critical alert
  inhibits the warning of the same alertname and mount point.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from alerting_sinks import SmtpSink, WebhookSink, wait_until
from backfill import PROMETHEUS, Proc, _spawn, free_port, require_binaries

from nomade.alerting.alertmanager import NODE_DOWN_ALERTS, render_alertmanager
from nomade.alerting.config import MonitoringConfig, monitoring_config_from_dict
from nomade.alerting.rules import render_rules

pytestmark = pytest.mark.integration

ALERTMANAGER = "prometheus-alertmanager"
DELIVERY_TIMEOUT_S = 90.0
#: The generated alert made to fire (alerting/rules.py: used ratio >= filesystem_critical_ratio, severity critical).
ALERT = "NomadeFilesystemAlmostFull"
TMPFS_BYTES = 4 * 1024 * 1024
PAGE = 4096
NODE = "e2e-node"
CLUSTER = "e2e"
REPO = Path(__file__).resolve().parents[2]
EXPORTER = REPO / ".venv" / "bin" / "nomade-exporter"
WEBHOOK_TOKEN = secrets.token_hex(16)


def _skip_or_fail(msg: str) -> None:
    if os.environ.get("NOMADE_LAB") == "1":
        pytest.fail(f"NOMADE_LAB=1 but {msg}", pytrace=False)
    pytest.skip(msg)


# -- servers ---------------------------------------------------------------------------------------------------------


def start_alertmanager(config_file: Path, workdir: Path) -> Proc:
    """A real Alertmanager on a free loopback port, no clustering, its own storage; returns once ready."""
    port = free_port()
    data = workdir / f"alertmanager-{port}"
    data.mkdir(parents=True)
    argv = [
        ALERTMANAGER,
        f"--config.file={config_file}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=debug",
    ]
    return _spawn("alertmanager", argv, port, data, "/-/ready", "http", {})


def start_prometheus(workdir: Path, rules_file: Path, exporter_port: int, am_port: int, exporter_job: str) -> Proc:
    """A real Prometheus scraping the exporter and evaluating ``rules_file`` every second, sending to Alertmanager."""
    port = free_port()
    tsdb = workdir / f"prometheus-{port}"
    tsdb.mkdir(parents=True)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [
            {
                "job_name": exporter_job,
                "honor_labels": True,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{exporter_port}"], "labels": {"node": NODE, "cluster": CLUSTER}}
                ],
            }
        ],
    }
    config_file = workdir / f"prometheus-{port}.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=True))
    argv = [
        PROMETHEUS,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={tsdb}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return _spawn("prometheus", argv, port, tsdb, "/-/ready", "http", {})


def start_exporter(workdir: Path, mountpoint: Path) -> Proc:
    """nomade-exporter serving only the filesystem collector, restricted to ``mountpoint``."""
    from nomade.exporter.collectors import collector_classes

    port = free_port()
    state = workdir / f"exporter-{port}"
    state.mkdir(parents=True)
    config = state / "exporter.toml"
    config.write_text(f'[collector.filesystem]\nmount_points = ["{mountpoint}"]\n')
    flags = [f"--collector.{n}" if n == "filesystem" else f"--no-collector.{n}" for n in collector_classes()]
    argv = [
        str(EXPORTER),
        f"--config={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--state.dir={state}",
        *flags,
    ]
    return _spawn("nomade-exporter", argv, port, state, "/metrics", "http", {})


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted under ``tmp_path`` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        _skip_or_fail("mounting a tmpfs needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES // 1024}k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        proc = subprocess.run(["umount", str(mnt)], capture_output=True, text=True)
        if proc.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


# -- configuration ---------------------------------------------------------------------------------------------------


def e2e_config(webhook_url: str, smtp: SmtpSink, secrets_dir: Path, alertname: str) -> MonitoringConfig:
    """Monitoring configuration: the alert under test routed to ``oncall`` (webhook + e-mail), the rest nowhere."""
    (secrets_dir / "smtp-password").write_text(smtp.password or "")
    (secrets_dir / "webhook-token").write_text(WEBHOOK_TOKEN)
    return monitoring_config_from_dict(
        {
            "monitoring": {"exporter_job": "nomade-e2e"},
            "alertmanager": {
                "default_receiver": "blackhole",
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
                "smtp": {
                    "smarthost": smtp.smarthost,
                    "from": "nomade@e2e.example.org",
                    "auth_username": smtp.username or "",
                    "auth_password_file": str(secrets_dir / "smtp-password"),
                    "require_tls": False,
                },
                "receivers": {
                    "blackhole": {},
                    "oncall": {
                        "email": {"to": ["oncall@e2e.example.org"]},
                        "webhook": {
                            "url": f"{webhook_url}/alerts",
                            "bearer_token_file": str(secrets_dir / "webhook-token"),
                        },
                    },
                },
                "routes": [{"receiver": "oncall", "alertname": [alertname], "severity": ["critical"]}],
            },
        }
    )


def generated_rules(cfg: MonitoringConfig) -> dict[str, Any]:
    """The generated rule groups, with the ``for:`` of the critical :data:`ALERT` shortened to 1 s.

    That is the only change made to the generated rules: the alert's own ``for: 5m`` would make the test wait
    minutes; its expression (over the generated recording rule), labels and annotations are as generated.
    """
    doc = yaml.safe_load(render_rules(cfg))
    critical = [
        rule
        for group in doc["groups"]
        for rule in group["rules"]
        if rule.get("alert") == ALERT and rule["labels"]["severity"] == "critical"
    ]
    assert len(critical) == 1, f"one critical {ALERT} expected in the generated rules"
    critical[0]["for"] = "1s"
    return doc


def fill(mnt: Path, ratio: float) -> int:
    """Write one file so that the tmpfs is ``ratio`` full (whole pages); returns the bytes written."""
    size = int(TMPFS_BYTES * ratio) // PAGE * PAGE
    with open(mnt / "fill.bin", "wb") as f:
        f.write(b"\xa5" * size)
        f.flush()
        os.fsync(f.fileno())
    return size


def prom_vector(url: str, expr: str) -> list[dict[str, Any]]:
    r = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


# -- tests -----------------------------------------------------------------------------------------------------------


def test_filesystem_alert_reaches_webhook_and_smtp(tmp_path: Path, tmpfs: Path) -> None:
    require_binaries(PROMETHEUS, ALERTMANAGER)
    if not EXPORTER.exists():
        _skip_or_fail(f"{EXPORTER} missing (make venv)")
    procs: list[Proc] = []
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    with WebhookSink() as webhook, SmtpSink(username="nomade", password=secrets.token_hex(12)) as smtp:
        try:
            alertname = ALERT
            cfg = e2e_config(webhook.url, smtp, secrets_dir, alertname)
            rules = generated_rules(cfg)
            critical = cfg.thresholds.filesystem_critical_ratio
            rules_file = tmp_path / "nomade-rules.yml"
            rules_file.write_text(yaml.safe_dump(rules, sort_keys=False))
            check = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
            am_file = tmp_path / "alertmanager.yml"
            am_file.write_text(render_alertmanager(cfg))

            am = start_alertmanager(am_file, tmp_path)
            procs.append(am)
            exporter = start_exporter(tmp_path, tmpfs)
            procs.append(exporter)
            prom = start_prometheus(tmp_path, rules_file, exporter.port, am.port, cfg.exporter_job)
            procs.append(prom)

            # Baseline: the empty tmpfs is scraped, its rule is evaluated and does not fire.
            series = f'nomade_filesystem_used_ratio{{mountpoint="{tmpfs}",node="{NODE}"}}'
            assert wait_until(lambda: prom_vector(prom.url, series), 30), prom.log_tail()
            assert float(prom_vector(prom.url, series)[0]["value"][1]) == 0.0
            time.sleep(3)  # a few evaluations of the rule on the empty filesystem
            assert prom_vector(prom.url, f'ALERTS{{alertname="{alertname}"}}') == []
            assert webhook.posts == [] and smtp.messages == []

            written = fill(tmpfs, 0.98)
            t0 = time.monotonic()
            ratio = written / TMPFS_BYTES
            assert ratio > critical
            got_hook = wait_until(lambda: [p for p in webhook.posts if p.json and p.json["status"] == "firing"], 90)
            t_hook = time.monotonic() - t0
            got_mail = wait_until(lambda: smtp.messages, max(1.0, DELIVERY_TIMEOUT_S - t_hook))
            t_mail = time.monotonic() - t0
            logs = f"\nprometheus:\n{prom.log_tail()}\nalertmanager:\n{am.log_tail(40)}"
            assert got_hook, f"no webhook POST within {DELIVERY_TIMEOUT_S:g} s{logs}"
            assert got_mail, f"no e-mail within {DELIVERY_TIMEOUT_S:g} s{logs}"
            print(f"\nE2E {alertname}: webhook after {t_hook:.1f} s, e-mail after {t_mail:.1f} s", file=sys.stderr)

            # Webhook: Alertmanager's payload v4, routed to oncall, with the bearer token read from its file.
            post = got_hook[0]
            assert post.path == "/alerts"
            assert post.headers["authorization"] == f"Bearer {WEBHOOK_TOKEN}"
            payload = post.json
            assert payload["version"] == "4"
            assert payload["receiver"] == "oncall"
            firing = [a for a in payload["alerts"] if a["status"] == "firing"]
            assert len(firing) == 1, payload
            alert = firing[0]
            assert alert["labels"]["alertname"] == alertname
            assert alert["labels"]["severity"] == "critical"
            assert alert["labels"]["node"] == NODE
            assert alert["labels"]["mountpoint"] == str(tmpfs)
            summary, description = alert["annotations"]["summary"], alert["annotations"]["description"]
            assert str(tmpfs) in summary + description
            # The value as the generated text prints it ({{ $value | humanizePercentage }}: 4 significant digits),
            # e.g. 97.95% for 1003 of 1024 pages, and the threshold.
            percent = f"{ratio * 100:.4g}%"
            assert percent in summary, summary
            assert percent in description and f"{critical:.0%}" in description, description
            assert alert["annotations"]["runbook_url"] == cfg.runbook(alertname)

            # E-mail: sent to the route's recipient through the sink, authenticated with the file's password.
            mail = got_mail[0]
            assert mail.auth_user == "nomade"
            assert smtp.auth_failures == 0
            assert mail.rcpt_tos == ["oncall@e2e.example.org"]
            assert mail.mail_from == "nomade@e2e.example.org"
            assert f"[FIRING:1] {alertname}" in str(mail.message["Subject"])
            text = mail.text()
            assert f"[FIRING] {alertname} (severity critical)" in text
            assert f"Summary: {summary}" in text
            assert f"Description: {description}" in text

            # Nothing else reached the sinks (the blackhole receiver has no integration).
            assert all(a["labels"]["alertname"] == alertname for p in webhook.posts for a in p.json["alerts"])
            assert len(smtp.messages) == 1
        finally:
            for proc in reversed(procs):
                proc.stop()


def _post_alerts(url: str, alerts: list[dict[str, str]]) -> None:
    now = datetime.now(UTC)
    body = [
        {
            "labels": labels,
            "annotations": {"summary": labels["alertname"]},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=10)).isoformat(),
        }
        for labels in alerts
    ]
    r = requests.post(f"{url}/api/v2/alerts", json=body, timeout=5)
    r.raise_for_status()


def test_inhibitions_in_a_running_alertmanager(tmp_path: Path) -> None:
    require_binaries(ALERTMANAGER)
    with WebhookSink() as webhook:
        cfg = monitoring_config_from_dict(
            {
                "alertmanager": {
                    "default_receiver": "hook",
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "receivers": {"hook": {"webhook": {"url": f"{webhook.url}/am"}}},
                }
            }
        )
        am_file = tmp_path / "alertmanager.yml"
        am_file.write_text(render_alertmanager(cfg))
        with start_alertmanager(am_file, tmp_path) as am:
            down = NODE_DOWN_ALERTS[0]
            mem, fs = "NomadeJobMemoryExhaustionPredicted", "NomadeFilesystemAlmostFull"
            c = {"cluster": CLUSTER}
            _post_alerts(
                am.url,
                [
                    {**c, "alertname": down, "severity": "warning", "node": "n1"},
                    {**c, "alertname": mem, "severity": "warning", "node": "n1", "job_id": "7"},
                    {**c, "alertname": mem, "severity": "warning", "node": "n2", "job_id": "8"},
                    {**c, "alertname": fs, "severity": "critical", "node": "n3", "mountpoint": "/s"},
                    {**c, "alertname": fs, "severity": "warning", "node": "n3", "mountpoint": "/s"},
                    {**c, "alertname": fs, "severity": "warning", "node": "n3", "mountpoint": "/h"},
                    {**c, "alertname": fs, "severity": "warning", "node": "n1", "mountpoint": "/h"},
                ],
            )

            def states() -> dict[tuple[str, str, str, str], str] | None:
                alerts = requests.get(f"{am.url}/api/v2/alerts", timeout=5).json()
                out = {
                    (a["labels"]["alertname"], a["labels"]["severity"], a["labels"]["node"],
                     a["labels"].get("mountpoint", "")): a["status"]["state"]
                    for a in alerts
                }  # fmt: skip
                # Inhibition marks are set when the group is flushed (after group_wait): wait for a suppression.
                return out if len(out) == 7 and "suppressed" in out.values() and webhook.posts else None

            got = wait_until(states, 30)
            assert got, am.log_tail(40)
            assert got == {
                (down, "warning", "n1", ""): "active",
                (mem, "warning", "n1", ""): "suppressed",  # node n1 is down
                (mem, "warning", "n2", ""): "active",  # another node
                (fs, "critical", "n3", "/s"): "active",
                (fs, "warning", "n3", "/s"): "suppressed",  # the critical of the same mount point
                (fs, "warning", "n3", "/h"): "active",  # another mount point
                (fs, "warning", "n1", "/h"): "suppressed",  # node n1 is down
            }
            # The webhook never received an inhibited alert.
            time.sleep(2)
            delivered = {
                (a["labels"]["alertname"], a["labels"]["severity"], a["labels"]["node"], a["labels"].get("mountpoint"))
                for p in webhook.posts
                for a in p.json["alerts"]
            }
            assert (mem, "warning", "n1", None) not in delivered
            assert (fs, "warning", "n3", "/s") not in delivered
            assert (mem, "warning", "n2", None) in delivered
