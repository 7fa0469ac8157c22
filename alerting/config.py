"""The monitoring configuration: one object from which rules, alerts, Alertmanager and dashboards are generated.

This is NØMADE's equivalent of a monitoring mixin's ``_config`` (DESIGN.md principle 8). It is read from TOML by
:func:`load_monitoring_config`; every key is optional and every default is given below with its source::

    [monitoring]
    cluster_label = "cluster"      # label carried by every series when several clusters share one Prometheus
                                   # (Prometheus external_labels / target labels; the analytics service shards by it)
    exporter_job = "nomade"        # Prometheus `job` of the nomade-exporter targets (deploy/lab/prometheus.yml.in)
    analytics_job = "nomade-analytics"  # Prometheus `job` of the nomade-analytics target (same file)
    runbook_url = "https://github.com/nomade-hpc/nomade/blob/main/docs/runbooks/{alertname}.md"
    shared_fstypes = ["nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "cifs", "smb3", "fuse.glusterfs"]
                                   # filesystems seen alike from every node: alerted once, not once per node

    [monitoring.thresholds]        # see Thresholds for the source of every default
    filesystem_warning_ratio = 0.85
    filesystem_critical_ratio = 0.95
    filesystem_full_within = "24h"
    filesystem_full_within_critical = "4h"
    filesystem_accelerating_within = "7d"
    acceleration_z = 3.0
    pending_stuck = "7d"
    pending_backlog_ratio = 2.0
    failed_job_ratio = 0.5
    failed_job_min_jobs = 10
    job_oom_within = "15m"
    high_risk_jobs = 10
    gpu_temperature_celsius = 83
    nfs_retransmission_ratio = 0.05
    nfs_latency_seconds = 0.1
    license_usage_ratio = 0.9
    license_expiry_within = "30d"
    dbd_agent_queue_warning = 1000
    dbd_agent_queue_critical = 5000
    scheduler_cycle_seconds = 5.0
    backfill_cycle_seconds = 30.0
    analytics_stale_after = "10m"

    [alertmanager]                 # nomade.alerting.alertmanager.AlertmanagerSettings.from_toml
    [grafana]                      # nomade.dashboards.config.GrafanaSettings.from_toml

Durations are Prometheus duration strings (``"90s"``, ``"5m"``, ``"7d"``) or numbers of seconds, and are held in
seconds. Unknown keys, wrong types and out-of-range values raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nomade.alerting.alertmanager import AlertmanagerSettings
from nomade.analytics.config import ConfigError as _DurationError
from nomade.analytics.config import format_duration, parse_duration
from nomade.dashboards.config import GrafanaSettings

__all__ = [
    "ConfigError",
    "MonitoringConfig",
    "Thresholds",
    "format_duration",
    "load_monitoring_config",
    "monitoring_config_from_dict",
]

DEFAULT_RUNBOOK_URL = "https://github.com/nomade-hpc/nomade/blob/main/docs/runbooks/{alertname}.md"
"""Where the ``runbook_url`` annotation points; ``{alertname}`` is replaced by the alert's name."""

DEFAULT_SHARED_FSTYPES: tuple[str, ...] = (
    "nfs",
    "nfs4",
    "lustre",
    "gpfs",
    "beegfs",
    "cephfs",
    "cifs",
    "smb3",
    "fuse.glusterfs",
)
"""Network and parallel filesystem types (``fstype`` label values as /proc/mounts spells them)."""

_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ConfigError(ValueError):
    """The monitoring configuration is invalid; the message names the file (when there is one) and the key."""


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds, shared by the alerting rules and the dashboards' threshold colours.

    Ratios are 0-1, durations seconds, temperatures degrees Celsius. Sources of the defaults:

    Attributes:
        filesystem_warning_ratio: used ratio (df Use%) for the warning alert; 0.85 = the seed's
            ``disk_warning_percent = 85``.
        filesystem_critical_ratio: used ratio for the critical alert; 0.95 = the seed's ``disk_critical_percent = 95``.
        filesystem_full_within: warn when the analytics projection reaches full (avail = 0) within this many seconds;
            24 h = the node-mixin's ``NodeFilesystemSpaceFillingUp`` warning (``predict_linear(...[6h], 24*60*60)``).
        filesystem_full_within_critical: the same, critical; 4 h = the node-mixin's critical variant
            (``predict_linear(...[6h], 4*60*60)``).
        filesystem_accelerating_within: a significantly accelerating fill is reported when the projection reaches full
            within this; 7 d = the longest default horizon of the ``filesystem_used`` watch
            (:data:`nomade.analytics.config.DEFAULT_WATCHES`).
        acceleration_z: an acceleration is significant when it exceeds ``z`` times its standard error; 3 =
            :mod:`nomade.analytics.derivatives`' advice for alerting on many series (its own classification uses
            1.96, which flags about 10 % of pure-noise series).
        pending_stuck: an eligible job pending longer than this is stuck; 7 d = the seed's ``queue_stuck_days = 7``.
        pending_backlog_ratio: backlog alert when the CPUs requested by pending jobs exceed this multiple of the
            partition's CPUs; 2 = NØMADE default (the partition would need two full turnovers to drain its queue;
            no published convention exists, tune per site).
        failed_job_ratio: share of a partition's jobs finished in the last hour that failed (any class but success,
            cancelled and preempted, which are user and scheduler decisions, and other, which is no outcome);
            0.5 = NØMADE default (more failures than
            successes).
        failed_job_min_jobs: the failed-job ratio alert needs at least this many finished jobs in the hour, so that
            one failure out of one job does not page; 10 = NØMADE default.
        job_oom_within: warn when a job's memory is projected to reach its cgroup limit within this; 15 min = the
            shortest default horizon of the ``job_memory`` watch.
        high_risk_jobs: warning when a partition has at least this many pending or running jobs at or above their
            model's risk threshold; 10 = NØMADE default (single high-risk jobs are info alerts).
        gpu_temperature_celsius: GPU core temperature warning; 83 °C = the seed's ``gpu_temp_warning = 83`` (the
            critical alert uses the GPU's own slowdown temperature, nvidia-smi -q "GPU Slowdown Temp").
        nfs_retransmission_ratio: retransmissions per NFS call; 0.05 = IBM AIX performance guide (nfsstat -c: a
            retrans rate above 5 % of calls means timeouts too short or an overloaded server or network).
        nfs_latency_seconds: mean round-trip time per NFS operation; 0.1 s = NØMADE default (LAN NFS RTTs are
            typically below 10 ms; ten times that is felt interactively).
        license_usage_ratio: used / issued licenses of a feature; 0.9 = NØMADE default.
        license_expiry_within: warn before a feature's licenses expire; 30 d = NØMADE default (time to renew).
        dbd_agent_queue_warning: messages queued for slurmdbd (sdiag "DBD Agent queue size"); 1000 = a tenth of the
            minimum MaxDBDMsgs (slurm.conf(5): at least 10000; messages beyond it are lost).
        dbd_agent_queue_critical: the same, critical; 5000 = half of the minimum MaxDBDMsgs (slurm.conf(5)).
        scheduler_cycle_seconds: mean main scheduling cycle over 15 min; 5 s = slurm.conf(5) SchedulerParameters
            ``max_sched_time`` default (half of MessageTimeout, default 10 s): cycles that long are being cut.
        backfill_cycle_seconds: mean backfill cycle over 15 min; 30 s = slurm.conf(5) ``bf_max_time`` default
            (= ``bf_interval``, default 30 s).
        analytics_stale_after: the analytics values are stale when the last successful cycle is older; 10 min = ten
            cycles of the default ``[analytics] interval = "60s"``.

    """

    filesystem_warning_ratio: float = 0.85
    filesystem_critical_ratio: float = 0.95
    filesystem_full_within: float = 24 * 3600.0
    filesystem_full_within_critical: float = 4 * 3600.0
    filesystem_accelerating_within: float = 7 * 86400.0
    acceleration_z: float = 3.0
    pending_stuck: float = 7 * 86400.0
    pending_backlog_ratio: float = 2.0
    failed_job_ratio: float = 0.5
    failed_job_min_jobs: int = 10
    job_oom_within: float = 900.0
    high_risk_jobs: int = 10
    gpu_temperature_celsius: float = 83.0
    nfs_retransmission_ratio: float = 0.05
    nfs_latency_seconds: float = 0.1
    license_usage_ratio: float = 0.9
    license_expiry_within: float = 30 * 86400.0
    dbd_agent_queue_warning: int = 1000
    dbd_agent_queue_critical: int = 5000
    scheduler_cycle_seconds: float = 5.0
    backfill_cycle_seconds: float = 30.0
    analytics_stale_after: float = 600.0

    def __post_init__(self) -> None:
        """Check ranges and orderings (raises :class:`ConfigError` naming the key)."""
        for name in (
            "filesystem_warning_ratio",
            "filesystem_critical_ratio",
            "failed_job_ratio",
            "license_usage_ratio",
        ):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ConfigError(f"monitoring.thresholds.{name}: must be in (0, 1], got {v!r}")
        if self.filesystem_warning_ratio >= self.filesystem_critical_ratio:
            raise ConfigError(
                "monitoring.thresholds.filesystem_warning_ratio: must be below filesystem_critical_ratio "
                f"({self.filesystem_warning_ratio} >= {self.filesystem_critical_ratio})"
            )
        if self.filesystem_full_within_critical >= self.filesystem_full_within:
            raise ConfigError(
                "monitoring.thresholds.filesystem_full_within_critical: must be shorter than filesystem_full_within"
            )
        if self.dbd_agent_queue_warning >= self.dbd_agent_queue_critical:
            raise ConfigError(
                "monitoring.thresholds.dbd_agent_queue_warning: must be below dbd_agent_queue_critical "
                f"({self.dbd_agent_queue_warning} >= {self.dbd_agent_queue_critical})"
            )
        for f in fields(self):
            v = getattr(self, f.name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"monitoring.thresholds.{f.name}: must be a positive finite number, got {v!r}")

    @classmethod
    def from_toml(cls, table: dict[str, Any]) -> Thresholds:
        """Build from the ``[monitoring.thresholds]`` table.

        Args:
            table: key -> value; durations as Prometheus duration strings or seconds, the rest numbers.

        Raises:
            ConfigError: unknown key, wrong type, or a value out of range.

        """
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in table.items():
            where = f"monitoring.thresholds.{key}"
            if key not in kinds:
                raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(kinds))})")
            if key in _DURATION_KEYS:
                try:
                    values[key] = parse_duration(value, where)
                except _DurationError as exc:
                    raise ConfigError(str(exc)) from None
            elif kinds[key] == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"{where}: expected an integer, got {value!r}")
                values[key] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"{where}: expected a number, got {value!r}")
                values[key] = float(value)
        return cls(**values)


_DURATION_KEYS = frozenset(
    {
        "filesystem_full_within",
        "filesystem_full_within_critical",
        "filesystem_accelerating_within",
        "pending_stuck",
        "job_oom_within",
        "license_expiry_within",
        "analytics_stale_after",
    }
)
"""Threshold keys that are durations (TOML strings such as ``"24h"`` or numbers of seconds)."""


@dataclass(frozen=True)
class MonitoringConfig:
    """Everything the generators need (rules, alerts, Alertmanager configuration, dashboards).

    Attributes:
        cluster_label: label that tells clusters apart when several share one Prometheus; every aggregation of the
            rules keeps it (``sum by (cluster, partition)``), so a single-cluster site without the label loses nothing
            (an absent label groups as empty). Default ``cluster`` (the analytics watches' ``match_on`` use it too).
        exporter_job: ``job`` label of the nomade-exporter scrape targets; default ``nomade`` (the lab's scrape
            configuration, deploy/lab/prometheus.yml.in).
        analytics_job: ``job`` label of the nomade-analytics target; default ``nomade-analytics`` (same file).
        runbook_url: runbook address template; ``{alertname}`` is replaced by the alert name. Default: the
            repository's ``docs/runbooks/<AlertName>.md``.
        shared_fstypes: filesystem types mounted alike on many nodes (network and parallel filesystems): their
            usage and projections are aggregated without the ``node`` label so that one full NFS export gives one
            alert, not one per client. Default: the network/parallel types of mount(8) and their FUSE spellings
            (:data:`DEFAULT_SHARED_FSTYPES`).
        thresholds: :class:`Thresholds`.
        alertmanager: :class:`nomade.alerting.alertmanager.AlertmanagerSettings` (the ``[alertmanager]`` table).
        grafana: :class:`nomade.dashboards.config.GrafanaSettings` (the ``[grafana]`` table).

    """

    cluster_label: str = "cluster"
    exporter_job: str = "nomade"
    analytics_job: str = "nomade-analytics"
    runbook_url: str = DEFAULT_RUNBOOK_URL
    shared_fstypes: tuple[str, ...] = DEFAULT_SHARED_FSTYPES
    thresholds: Thresholds = field(default_factory=Thresholds)
    alertmanager: AlertmanagerSettings = field(default_factory=AlertmanagerSettings)
    grafana: GrafanaSettings = field(default_factory=GrafanaSettings)

    def __post_init__(self) -> None:
        """Validate the label name, job names and the runbook template (raises :class:`ConfigError`)."""
        if not _LABEL_RE.match(self.cluster_label) or self.cluster_label.startswith("__"):
            raise ConfigError(f"monitoring.cluster_label: {self.cluster_label!r} is not a valid label name")
        for key in ("exporter_job", "analytics_job"):
            value = getattr(self, key)
            if not value or '"' in value or "\\" in value or "\n" in value:
                raise ConfigError(f"monitoring.{key}: must be a non-empty string without quotes, got {value!r}")
        if not self.shared_fstypes or any(not t or '"' in t or "\\" in t for t in self.shared_fstypes):
            raise ConfigError(f"monitoring.shared_fstypes: expected non-empty type names, got {self.shared_fstypes!r}")
        if "{alertname}" not in self.runbook_url:
            raise ConfigError(f"monitoring.runbook_url: must contain {{alertname}}, got {self.runbook_url!r}")
        try:
            self.runbook_url.format(alertname="X")
        except (IndexError, KeyError, ValueError) as exc:
            raise ConfigError(f"monitoring.runbook_url: bad template {self.runbook_url!r}: {exc}") from None

    def runbook(self, alertname: str) -> str:
        """The runbook address of ``alertname`` (``runbook_url`` with ``{alertname}`` filled in)."""
        return self.runbook_url.format(alertname=alertname)


_MONITORING_KEYS = ("cluster_label", "exporter_job", "analytics_job", "runbook_url")
_TOP_KEYS = ("monitoring", "alertmanager", "grafana")


def monitoring_config_from_dict(data: dict[str, Any]) -> MonitoringConfig:
    """Build a :class:`MonitoringConfig` from parsed TOML (the whole document).

    Tables other than ``monitoring``, ``alertmanager`` and ``grafana`` are refused, so that a file shared with
    other NØMADE components must be split (it would otherwise hide typos).

    Raises:
        ConfigError: unknown table or key, wrong type, invalid value (also when G2's/G3's ``from_toml`` raise
            ``ValueError``/``TypeError``: re-raised naming their table).

    """
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{key}: unknown table (known: {', '.join(_TOP_KEYS)})")
    mon = _table(data, "monitoring")
    kwargs: dict[str, Any] = {}
    for key, value in mon.items():
        if key == "thresholds":
            if not isinstance(value, dict):
                raise ConfigError("monitoring.thresholds: expected a table")
            kwargs["thresholds"] = Thresholds.from_toml(value)
        elif key == "shared_fstypes":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"monitoring.shared_fstypes: expected a list of strings, got {value!r}")
            kwargs[key] = tuple(value)
        elif key in _MONITORING_KEYS:
            if not isinstance(value, str):
                raise ConfigError(f"monitoring.{key}: expected a string, got {value!r}")
            kwargs[key] = value
        else:
            known = ", ".join((*_MONITORING_KEYS, "shared_fstypes", "thresholds"))
            raise ConfigError(f"monitoring.{key}: unknown key (known: {known})")
    for key, cls in (("alertmanager", AlertmanagerSettings), ("grafana", GrafanaSettings)):
        table = _table(data, key)
        try:
            kwargs[key] = cls.from_toml(table)
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{key}: {exc}") from None
    return MonitoringConfig(**kwargs)


def load_monitoring_config(path: str | Path | None) -> MonitoringConfig:
    """Read the monitoring configuration from a TOML file; ``None`` gives every default.

    Args:
        path: the TOML file, or ``None``.

    Returns:
        The configuration.

    Raises:
        ConfigError: unreadable or malformed file, unknown table or key, wrong type, invalid value; the message
            starts with the file name.

    """
    if path is None:
        return monitoring_config_from_dict({})
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return monitoring_config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a table, got {value!r}")
    return value
