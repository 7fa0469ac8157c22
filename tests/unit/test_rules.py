"""Recording and alerting rules (nomade.alerting.rules): catalog names, promtool check/test, runbooks, determinism."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from backfill import require_binaries

from nomade.alerting.config import MonitoringConfig, Thresholds, load_monitoring_config
from nomade.alerting.rules import (
    PROMETHEUS_NAMES,
    RECORDING_RULE_HELP,
    RECORDING_RULE_NAMES,
    alert_names,
    alert_rules,
    recording_rules,
    render_rules,
)
from nomade.exporter.catalog import catalog_names

ROOT = Path(__file__).resolve().parents[2]
RULE_TESTS = ROOT / "tests" / "rules"
RUNBOOKS = ROOT / "docs" / "runbooks"

# The alerts the issue asks for (issue 6, "Rules and alerts"), by the name that implements each item.
REQUIRED_ALERTS = {
    "NomadeExporterDown",  # exporter down
    "NomadeCollectorDown",  # collector down
    "NomadeNodeDown",
    "NomadeNodeDrained",
    "NomadeNodeNotResponding",
    "NomadeFilesystemAlmostFull",  # warning and critical thresholds
    "NomadeFilesystemFillingUp",  # projected full within N hours (analytics)
    "NomadeFilesystemFillAccelerating",  # acceleration significant
    "NomadeTrendAccelerating",
    "NomadePendingBacklogHigh",
    "NomadePendingBacklogAccelerating",
    "NomadePendingJobsStuck",
    "NomadeFailedJobRatioHigh",
    "NomadeFailedJobRateAccelerating",  # cascading failures
    "NomadeJobMemoryExhaustionPredicted",
    "NomadeJobHighFailureRisk",
    "NomadeManyHighRiskJobs",
    "NomadeGpuTemperatureHigh",
    "NomadeGpuUncorrectableEccErrors",  # what XID 48/94/95 leave in the exported counters
    "NomadeGpuResetRequired",  # XID 63/64
    "NomadeGpuMissing",  # XID 79
    "NomadeNfsRetransmissionsHigh",
    "NomadeNfsLatencyHigh",
    "NomadeLicensePoolNearlyExhausted",
    "NomadeLicenseExpiring",
    "NomadeSlurmdbdAgentQueueHigh",
    "NomadeSlurmSchedulerCycleSlow",
    "NomadeAnalyticsStale",
    "NomadeAnalyticsDown",
}

# -- PromQL metric-name extraction ---------------------------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
_KEYWORDS |= {"inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names of a PromQL expression: identifiers that are not functions, keywords, label names or strings."""
    s = _STRING.sub('""', expr)
    s = _MATCHERS.sub("", s)
    s = _RANGE.sub("", s)
    s = _LABEL_LIST.sub(" ", s)
    names = set()
    for m in _IDENT.finditer(s):
        if m.group(2) or m.group(1).lower() in _KEYWORDS:
            continue  # a function call or a keyword
        names.add(m.group(1))
    return names


def test_metric_names_extracts_exactly_the_metrics():
    expr = (
        'sum by (cluster, node) (rate(nomade_nfs_rtt_seconds_total{op!~"READ|WRITE",x="a{b}"}[5m])) '
        "/ on (cluster) group_left (reason) topk by (node) (1, nomade_slurm_node_reason_info) > 1e9 "
        'or label_replace(cluster:foo:sum offset 5m, "scheduler", "main", "", "") unless absent(up{job="x"}) '
        "and time() - nomade_analytics_up > -3 * Inf"
    )
    assert metric_names(expr) == {
        "nomade_nfs_rtt_seconds_total",
        "nomade_slurm_node_reason_info",
        "cluster:foo:sum",
        "up",
        "nomade_analytics_up",
    }


@pytest.fixture(scope="module")
def cfg() -> MonitoringConfig:
    return load_monitoring_config(None)


def _all_rules(cfg: MonitoringConfig) -> list[dict]:
    return [r for g in recording_rules(cfg) + alert_rules(cfg) for r in g["rules"]]


def test_every_metric_name_is_in_the_catalog_or_a_recording_rule(cfg):
    known = catalog_names() | set(RECORDING_RULE_NAMES) | PROMETHEUS_NAMES
    used: set[str] = set()
    for rule in _all_rules(cfg):
        names = metric_names(rule["expr"])
        assert names, f"no metric found in {rule['expr']!r}"
        unknown = names - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')}: not in the catalog: {sorted(unknown)}"
        used |= names
    # the extraction really sees the expressions: analytics, exporter and recording-rule names are all used
    assert {"nomade_trend_time_to_threshold_seconds", "nomade_trend_acceleration_stderr", "nomade_trend_state"} <= used
    assert {"nomade_slurm_scheduler_dbd_agent_queue_size", "nomade_job_risk_score", "nomade_model_threshold"} <= used
    assert "cluster_filesystem:nomade_filesystem_used_ratio:max" in used
    assert len(used) >= 60


def test_recording_rules_are_level_metric_operations_and_match_the_names_list(cfg):
    records = [r["record"] for g in recording_rules(cfg) for r in g["rules"]]
    assert len(records) == len(set(records))
    assert sorted(records) == list(RECORDING_RULE_NAMES) == sorted(RECORDING_RULE_HELP)
    for name in records:
        level, metric, ops = name.split(":")
        assert level.split("_")[0] == "cluster", name  # every level keeps the cluster label
        assert metric.startswith("nomade_") and ops, name


def test_recording_rules_only_use_earlier_rules_of_their_group(cfg):
    # Rules of a group run in order; a rule reading a later or other-group rule would lag one interval.
    for group in recording_rules(cfg):
        seen: set[str] = set()
        for rule in group["rules"]:
            used = metric_names(rule["expr"]) & set(RECORDING_RULE_NAMES)
            assert used <= seen, f"{rule['record']} uses {sorted(used - seen)} before they are computed"
            seen.add(rule["record"])


def test_alerts_have_severity_annotations_and_runbook(cfg):
    for group in alert_rules(cfg):
        for rule in group["rules"]:
            name = rule["alert"]
            assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
            assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name
            assert rule["annotations"]["runbook_url"] == (
                f"https://github.com/nomade-hpc/nomade/blob/main/docs/runbooks/{name}.md"
            )
            assert re.fullmatch(r"\d+[smh]", rule["for"]), name
            assert "$value" in rule["annotations"]["description"] or name in (
                "NomadeExporterTargetMissing",
                "NomadeNodeDown",
                "NomadeNodeDrained",
                "NomadeNodeNotResponding",
                "NomadeGpuResetRequired",
                "NomadeLicenseServerDown",
                "NomadeCollectorDown",
                "NomadeExporterDown",
                "NomadeAnalyticsDown",
            ), f"{name}: the description shows no value"


def test_required_alerts_exist_and_two_severity_alerts_share_their_labels(cfg):
    names = set(alert_names(cfg))
    assert REQUIRED_ALERTS <= names
    sev: dict[str, list[str]] = {}
    for group in alert_rules(cfg):
        for rule in group["rules"]:
            sev.setdefault(rule["alert"], []).append(rule["labels"]["severity"])
    # one name, two severities: Alertmanager's severity inhibition (same alertname) silences the warning
    assert {n: s for n, s in sev.items() if len(s) > 1} == {
        "NomadeFilesystemAlmostFull": ["warning", "critical"],
        "NomadeFilesystemFillingUp": ["warning", "critical"],
        "NomadeGpuTemperatureHigh": ["warning", "critical"],
        "NomadeSlurmdbdAgentQueueHigh": ["warning", "critical"],
    }


def test_node_down_alerts_are_the_ones_alertmanager_inhibits_on(cfg):
    from nomade.alerting.alertmanager import NODE_DOWN_ALERTS

    assert set(NODE_DOWN_ALERTS) <= set(alert_names(cfg))


def test_every_alert_has_a_runbook(cfg):
    names = alert_names(cfg)
    files = {p.stem for p in RUNBOOKS.glob("*.md")}
    assert set(names) <= files
    assert files - set(names) == set(), "runbooks of alerts that do not exist"
    for name in names:
        text = (RUNBOOKS / f"{name}.md").read_text(encoding="utf-8")
        assert text.startswith(f"# {name}\n"), name
        for heading in ("## Meaning", "## Impact", "## Diagnosis", "## Remedies"):
            assert heading in text, f"{name}: missing {heading}"
        assert "```sh\n" in text, f"{name}: no diagnosis commands"


def test_thresholds_and_jobs_come_from_the_config():
    cfg = MonitoringConfig(
        cluster_label="site",
        exporter_job="node-exp",
        analytics_job="an",
        runbook_url="https://wiki.example.org/rb/{alertname}",
        thresholds=Thresholds(filesystem_warning_ratio=0.8, gpu_temperature_celsius=80, pending_stuck=3 * 86400),
    )
    text = render_rules(cfg)
    assert 'up{job="node-exp"} == 0' in text and 'absent(up{job="node-exp"})' in text
    assert 'up{job="an"} == 0' in text
    assert "cluster_filesystem:nomade_filesystem_used_ratio:max >= 0.8\n" in text
    assert "above the warning threshold of 80%" in text
    assert 'max without (sensor) (nomade_gpu_temperature_celsius{sensor="gpu"}) >= 80\n' in text
    assert "cluster_partition:nomade_slurm_queue_eligible_wait_seconds:max > 259200\n" in text
    assert "more than 3d (the stuck-job limit)" in text
    assert "runbook_url: https://wiki.example.org/rb/NomadeNodeDown\n" in text
    # the cluster label is the configured one in every by/on list, and the default one appears nowhere
    lists = re.findall(r"\b(?:by|on|without)\s*\(([^)]*)\)", text)
    assert lists and not any("cluster" in [x.strip() for x in labels.split(",")] for labels in lists)
    assert sum("site" in [x.strip() for x in labels.split(",")] for labels in lists) >= 50


def test_shared_filesystems_are_aggregated_without_the_node(cfg):
    expr = next(r["expr"] for g in recording_rules(cfg) for r in g["rules"] if r["record"].endswith("used_ratio:max"))
    local, shared = expr.split("\nor\n")
    assert local.startswith("max by (cluster, node, mountpoint, device, fstype) (")
    assert shared.startswith("max by (cluster, mountpoint, device, fstype) (")
    assert 'fstype=~"beegfs|cephfs|cifs|fuse\\\\.glusterfs|gpfs|lustre|nfs|nfs4|smb3"' in shared
    assert 'fstype!~"beegfs|' in local


def test_render_is_deterministic_across_runs_and_hash_seeds(cfg):
    first = render_rules(cfg)
    assert first == render_rules(load_monitoring_config(None))
    code = (
        "import sys; from nomade.alerting.config import load_monitoring_config as l; "
        "from nomade.alerting.rules import render_rules; sys.stdout.write(render_rules(l(None)))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out == first
    doc = yaml.safe_load(first)
    assert [g["name"] for g in doc["groups"]][:1] == ["nomade.slurm.rules"]
    assert sum(len(g["rules"]) for g in doc["groups"]) == len(_all_rules(cfg))


def _promtool() -> str:
    require_binaries("promtool")
    return shutil.which("promtool") or "promtool"


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_promtool_check_rules_passes_without_warnings(cfg, tmp_path):
    path = tmp_path / "nomade-rules.yml"
    path.write_text(render_rules(cfg), encoding="utf-8")
    res = _check(path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert f"SUCCESS: {len(_all_rules(cfg))} rules found" in out
    assert "warning" not in out.lower() and "failed" not in out.lower(), out


def test_promtool_check_rules_with_another_cluster_label(tmp_path):
    cfg = MonitoringConfig(cluster_label="site", shared_fstypes=("nfs", "fuse.sshfs"))
    path = tmp_path / "nomade-rules.yml"
    path.write_text(render_rules(cfg), encoding="utf-8")
    res = _check(path)
    assert res.returncode == 0 and "warning" not in (res.stdout + res.stderr).lower(), res.stdout + res.stderr


def test_promtool_check_rules_fails_on_a_broken_rule(cfg, tmp_path):
    # the check above can fail: a rule with a PromQL syntax error is rejected
    path = tmp_path / "nomade-rules.yml"
    path.write_text(render_rules(cfg).replace("nomade_collector_up == 0", "nomade_collector_up == == 0"), "utf-8")
    res = _check(path)
    assert res.returncode != 0


def _rule_test_files() -> list[Path]:
    files = sorted(RULE_TESTS.glob("*.yml"))
    assert files, f"no promtool test files in {RULE_TESTS}"
    return files


def test_every_alert_has_a_firing_and_a_not_firing_promtool_case(cfg):
    firing: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for path in _rule_test_files():
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["rule_files"] == ["nomade-rules.yml"], path
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                name = case["alertname"]
                target = firing if case.get("exp_alerts") else quiet
                target[name] = target.get(name, 0) + 1
                for alert in case.get("exp_alerts") or []:
                    assert alert["exp_labels"]["severity"] in ("critical", "warning", "info")
                    assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}, name
    names = set(alert_names(cfg))
    assert names - set(firing) == set(), "alerts without a firing case"
    assert names - set(quiet) == set(), "alerts without a not-firing case"
    assert set(firing) | set(quiet) <= names, "test cases of alerts that do not exist"


def test_promtool_test_rules(cfg, tmp_path):
    promtool = _promtool()
    (tmp_path / "nomade-rules.yml").write_text(render_rules(cfg), encoding="utf-8")
    files = _rule_test_files()
    for path in files:
        shutil.copy(path, tmp_path / path.name)
    res = subprocess.run(
        [promtool, "test", "rules", *(p.name for p in files)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert out.count("SUCCESS") == len(files), out
    assert "FAILED" not in out


def test_promtool_test_rules_detects_a_wrong_expectation(cfg, tmp_path):
    # the rule tests can fail: change one expected value and promtool must report it
    (tmp_path / "nomade-rules.yml").write_text(render_rules(cfg), encoding="utf-8")
    text = (RULE_TESTS / "hardware.yml").read_text(encoding="utf-8")
    assert "has counted 2 uncorrectable ECC errors" in text
    (tmp_path / "hardware.yml").write_text(text.replace("has counted 2 uncorrectable", "has counted 3 uncorrectable"))
    res = subprocess.run(
        [_promtool(), "test", "rules", "hardware.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert res.returncode != 0 and "NomadeGpuUncorrectableEccErrors" in res.stdout + res.stderr
