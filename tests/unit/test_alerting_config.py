"""The monitoring configuration (nomade.alerting.config): defaults, TOML loading, validation."""

from __future__ import annotations

import dataclasses
import re
import textwrap
import tomllib

import pytest

import nomade.alerting.config as config_module
from nomade.alerting.config import (
    DEFAULT_SHARED_FSTYPES,
    ConfigError,
    MonitoringConfig,
    Thresholds,
    load_monitoring_config,
    monitoring_config_from_dict,
)


def _write(tmp_path, text: str):
    p = tmp_path / "monitoring.toml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def test_defaults_carry_the_seed_values():
    cfg = load_monitoring_config(None)
    assert cfg == MonitoringConfig()
    assert (cfg.cluster_label, cfg.exporter_job, cfg.analytics_job) == ("cluster", "nomade", "nomade-analytics")
    t = cfg.thresholds
    # ../shared/seed: disk_warning_percent 85, disk_critical_percent 95, queue_stuck_days 7, gpu_temp_warning 83
    assert (t.filesystem_warning_ratio, t.filesystem_critical_ratio) == (0.85, 0.95)
    assert t.pending_stuck == 7 * 86400
    assert t.gpu_temperature_celsius == 83
    # node-mixin NodeFilesystemSpaceFillingUp: 24 h warning, 4 h critical
    assert (t.filesystem_full_within, t.filesystem_full_within_critical) == (86400, 14400)
    assert cfg.shared_fstypes == DEFAULT_SHARED_FSTYPES and "nfs4" in cfg.shared_fstypes
    assert cfg.runbook("NomadeNodeDown") == (
        "https://github.com/nomade-hpc/nomade/blob/main/docs/runbooks/NomadeNodeDown.md"
    )


def _docstring_toml() -> dict:
    """The TOML example of the module docstring (the indented block after ``::``)."""
    lines = config_module.__doc__.split("::\n", 1)[1].splitlines()
    block = []
    for line in lines:
        if line.strip() and not line.startswith("    "):
            break  # the first paragraph after the example
        block.append(line)
    assert len(block) > 30
    return tomllib.loads(textwrap.dedent("\n".join(block)))


def test_the_documented_example_lists_every_key_with_its_default():
    data = _docstring_toml()
    assert set(data["monitoring"]["thresholds"]) == {f.name for f in dataclasses.fields(Thresholds)}
    documented_top = set(data["monitoring"]) - {"thresholds"}
    assert documented_top == {"cluster_label", "exporter_job", "analytics_job", "runbook_url", "shared_fstypes"}
    assert monitoring_config_from_dict(data) == MonitoringConfig()


def test_every_threshold_has_its_source_in_the_docstring():
    doc = Thresholds.__doc__
    for f in dataclasses.fields(Thresholds):
        m = re.search(rf"^\s+{f.name}: (.+?)(?=^\s+\w+: |\Z)", doc, re.M | re.S)
        assert m, f"{f.name} is not documented"
        text = m.group(1)
        assert re.search(
            r"seed|node-mixin|slurm\.conf|NØMADE default|DEFAULT_WATCHES|derivatives|watch|IBM|analytics", text
        ), f"{f.name}: no source given"


def test_full_file(tmp_path):
    p = _write(
        tmp_path,
        """
        [monitoring]
        cluster_label = "site"
        exporter_job = "node"
        analytics_job = "trends"
        runbook_url = "https://wiki.example.org/{alertname}"
        shared_fstypes = ["nfs", "lustre"]

        [monitoring.thresholds]
        filesystem_warning_ratio = 0.8
        filesystem_critical_ratio = 0.9
        filesystem_full_within = "2d"
        filesystem_full_within_critical = 7200
        pending_stuck = "3d"
        gpu_temperature_celsius = 80
        failed_job_min_jobs = 20
        dbd_agent_queue_warning = 500
        dbd_agent_queue_critical = 2000
        analytics_stale_after = "15m"
        nfs_latency_seconds = 0.05

        [alertmanager]
        group_wait = "1m"

        [grafana]
        refresh = "5m"
        """,
    )
    cfg = load_monitoring_config(p)
    assert (cfg.cluster_label, cfg.exporter_job, cfg.analytics_job) == ("site", "node", "trends")
    assert cfg.runbook("X") == "https://wiki.example.org/X"
    assert cfg.shared_fstypes == ("nfs", "lustre")
    t = cfg.thresholds
    assert (t.filesystem_warning_ratio, t.filesystem_critical_ratio) == (0.8, 0.9)
    assert (t.filesystem_full_within, t.filesystem_full_within_critical) == (2 * 86400, 7200)
    assert t.pending_stuck == 3 * 86400 and t.analytics_stale_after == 900
    assert t.gpu_temperature_celsius == 80.0 and isinstance(t.gpu_temperature_celsius, float)
    assert t.failed_job_min_jobs == 20 and isinstance(t.failed_job_min_jobs, int)
    assert (t.dbd_agent_queue_warning, t.dbd_agent_queue_critical) == (500, 2000)
    assert t.nfs_latency_seconds == 0.05
    assert t.acceleration_z == 3.0  # untouched keys keep their defaults
    assert cfg.alertmanager.group_wait == "1m"
    assert cfg.grafana.refresh == "5m"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[monitoring]\nclusterlabel = 'x'\n", "monitoring.clusterlabel"),
        ("[monitoring.thresholds]\ndisk_warning = 0.8\n", "monitoring.thresholds.disk_warning"),
        ("[graphana]\nrefresh = '1m'\n", "graphana"),
        ("[monitoring.thresholds]\nfilesystem_warning_ratio = '85%'\n", "filesystem_warning_ratio"),
        ("[monitoring.thresholds]\nfilesystem_warning_ratio = true\n", "filesystem_warning_ratio"),
        ("[monitoring.thresholds]\nfilesystem_warning_ratio = 85\n", "filesystem_warning_ratio"),
        ("[monitoring.thresholds]\nfilesystem_warning_ratio = 0.96\n", "filesystem_warning_ratio"),
        ("[monitoring.thresholds]\nfailed_job_min_jobs = 10.5\n", "failed_job_min_jobs"),
        ("[monitoring.thresholds]\nhigh_risk_jobs = 0\n", "high_risk_jobs"),
        ("[monitoring.thresholds]\nacceleration_z = -1\n", "acceleration_z"),
        ("[monitoring.thresholds]\ngpu_temperature_celsius = inf\n", "gpu_temperature_celsius"),
        ("[monitoring.thresholds]\npending_stuck = '7 days'\n", "pending_stuck"),
        ("[monitoring.thresholds]\njob_oom_within = 0\n", "job_oom_within"),
        ("[monitoring.thresholds]\nfilesystem_full_within_critical = '2d'\n", "filesystem_full_within_critical"),
        ("[monitoring.thresholds]\ndbd_agent_queue_warning = 6000\n", "dbd_agent_queue_warning"),
        ("[monitoring]\nthresholds = 3\n", "monitoring.thresholds"),
        ("[monitoring]\ncluster_label = '1cluster'\n", "monitoring.cluster_label"),
        ("[monitoring]\ncluster_label = '__name__'\n", "monitoring.cluster_label"),
        ("[monitoring]\ncluster_label = 7\n", "monitoring.cluster_label"),
        ("[monitoring]\nexporter_job = 'a\"b'\n", "monitoring.exporter_job"),
        ("[monitoring]\nanalytics_job = ''\n", "monitoring.analytics_job"),
        ("[monitoring]\nrunbook_url = 'https://wiki/runbooks'\n", "monitoring.runbook_url"),
        ("[monitoring]\nrunbook_url = 'https://wiki/{alertname}/{0}'\n", "monitoring.runbook_url"),
        ("[monitoring]\nshared_fstypes = 'nfs'\n", "monitoring.shared_fstypes"),
        ("[monitoring]\nshared_fstypes = []\n", "monitoring.shared_fstypes"),
        ("monitoring = 1\n", "monitoring"),
        ("[grafana]\nrefresh = 'soon'\n", "refresh"),
        ("[grafana]\nfresh = '1m'\n", "fresh"),
    ],
)
def test_invalid_values_name_the_file_and_key(tmp_path, text, key):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_monitoring_config(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}: "), msg
    assert key in msg, msg


def test_unreadable_and_malformed_files(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_monitoring_config(missing)
    bad = _write(tmp_path, "[monitoring\n")
    with pytest.raises(ConfigError, match=r"monitoring\.toml: not valid TOML"):
        load_monitoring_config(bad)


def test_thresholds_validate_when_built_in_code():
    with pytest.raises(ConfigError, match="filesystem_warning_ratio: must be below filesystem_critical_ratio"):
        Thresholds(filesystem_warning_ratio=0.95, filesystem_critical_ratio=0.9)
    with pytest.raises(ConfigError, match="monitoring.cluster_label"):
        MonitoringConfig(cluster_label="a-b")
    assert Thresholds(filesystem_critical_ratio=1.0).filesystem_critical_ratio == 1.0
