"""Prometheus recording and alerting rules, generated from the monitoring configuration (DESIGN.md principle 8).

Pure functions of a :class:`~nomade.alerting.config.MonitoringConfig`:

* :func:`recording_rules` -> rule groups of recording rules named ``level:metric:operations`` (the Prometheus
  naming practice): ``level`` lists the labels the result keeps (``cluster`` stands for the configured
  ``cluster_label``, whatever its name), ``metric`` the metric, ``operations`` what was applied (``sum``, ``max``,
  ``rate15m``, ``ratio``...). They hold what is costly or shared by dashboards and alerts: queue sums per partition,
  failed-job rates per class, node CPU busy/iowait averages, filesystem used ratios (shared filesystems once,
  not once per client), NFS retransmission and latency rates, license usage ratios, job-risk aggregates.
* :func:`alert_rules` -> rule groups of alerts. Every alert has ``labels.severity`` (``critical``, ``warning`` or
  ``info``) and ``annotations`` ``summary``, ``description`` (with the values that matter) and ``runbook_url``
  (``docs/runbooks/<AlertName>.md``). An alert with two severities (warning and critical thresholds) keeps one
  name, so that Alertmanager's severity inhibition (same ``alertname``) silences the warning while the critical
  fires (:mod:`nomade.alerting.alertmanager`).
* :func:`render_rules` -> the YAML rule file (``prometheus/nomade-rules.yml`` of ``nomade build``), byte-stable.

Every metric name used comes from the catalog (``docs/metrics.md``, :func:`nomade.exporter.catalog.catalog_names`)
or is a recording rule of :data:`RECORDING_RULE_NAMES`; the only other name is Prometheus' own ``up``. GPU XID
errors are not exported by the gpu collector (NVML only delivers them as events, see
:mod:`nomade.exporter.collectors.gpu`), so the GPU alerts use what XIDs signal and the collector does export:
uncorrectable ECC errors (XID 48/94/95), pending or failed row remapping and page retirement (XID 63/64), and
GPUs missing from the node while SLURM still configures them (XID 79, "fallen off the bus").

Thresholds and their sources are documented on :class:`~nomade.alerting.config.Thresholds`; ``for:`` durations
below, with their reasons, next to each alert.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from nomade.alerting.config import MonitoringConfig

Rule = dict[str, Any]
Group = dict[str, Any]

#: Prometheus' synthetic scrape-health series; the one name the rules use that no NØMADE component exports.
PROMETHEUS_NAMES: frozenset[str] = frozenset({"up"})

#: Seconds per day squared and per hour squared: alert values in GB/day² and jobs/h² (DESIGN.md "Derivatives":
#: analytics publish per second²; dashboards and alerts convert).
_DAY2 = 86400 * 86400
_HOUR2 = 3600 * 3600

RECORDING_RULE_HELP: dict[str, str] = {
    # -- SLURM queue, nodes, accounting, scheduler (controller-mode metrics) --
    "cluster_partition_state:nomade_slurm_queue_jobs:sum": "Queued jobs per partition and state.",
    "cluster_state:nomade_slurm_queue_jobs:sum": "Queued jobs per state, each job counted once.",
    "cluster_partition:nomade_slurm_queue_pending_cpus:sum": "CPUs requested by the pending jobs of a partition.",
    "cluster_partition:nomade_slurm_queue_backlog:ratio": "CPUs requested by pending jobs / the partition's CPUs.",
    "cluster_partition:nomade_slurm_queue_eligible_wait_seconds:max": "Longest wait of an eligible pending job.",
    "cluster_partition_failure_class:nomade_slurm_job_finished:rate15m": "Finished jobs per second by class.",
    "cluster_failure_class:nomade_slurm_job_finished:rate15m": "Finished jobs per second by class, whole cluster.",
    "cluster_partition:nomade_slurm_job_finished:increase1h": "Jobs that finished in the last hour.",
    "cluster_partition:nomade_slurm_job_failed:increase1h": (
        "Jobs that failed in the last hour (all classes but success, cancelled, preempted and other)."
    ),
    "cluster_partition:nomade_slurm_job_failed:ratio1h": "Failed / finished jobs over the last hour.",
    "cluster_state:nomade_slurm_node_state:sum": "Nodes per base state.",
    "cluster_flag:nomade_slurm_node_flag:sum": "Nodes per state flag (drain, not_responding...).",
    "cluster:nomade_slurm_node_cpus_allocated:ratio": "Allocated / configured CPUs of all nodes.",
    "cluster:nomade_slurm_node_memory_allocated:ratio": "Allocated / configured memory of all nodes.",
    "cluster_partition:nomade_slurm_partition_cpus_allocated:ratio": "Allocated / configured CPUs of a partition.",
    "cluster:nomade_slurm_scheduler_main_cycle_last_seconds:avg15m": "Mean main scheduling cycle over 15 minutes.",
    "cluster:nomade_slurm_scheduler_backfill_cycle_last_seconds:avg15m": "Mean backfill cycle over 15 minutes.",
    # -- compute nodes (node-mode metrics) --
    "cluster_node:nomade_cpu_busy_average_ratio:avg5m": "Mean per-core busy ratio of a node over 5 minutes.",
    "cluster_node:nomade_cpu_iowait_ratio:avg5m": "Share of a node's CPU time in iowait over 5 minutes.",
    "cluster:nomade_cpu_busy_average_ratio:avg": "Mean of the nodes' 5-minute busy ratios.",
    "cluster:nomade_cpu_iowait_ratio:avg": "Mean of the nodes' 5-minute iowait shares.",
    "cluster_node_device:nomade_disk_utilization_ratio:avg5m": "iostat %util / 100 of a device over 5 minutes.",
    "cluster_filesystem:nomade_filesystem_used_ratio:max": (
        "Used ratio (df Use%) of writable filesystems: per node for local types, once for shared types."
    ),
    "cluster_filesystem:nomade_filesystem_avail_bytes:min": "Bytes available to users, same grouping.",
    "cluster_node_mountpoint:nomade_nfs_retransmissions:ratio_rate5m": "NFS retransmissions per call over 5 min.",
    "cluster_node_mountpoint:nomade_nfs_rtt_seconds:mean_rate5m": "Mean NFS round-trip time per call over 5 min.",
    "cluster_feature:nomade_license_used:ratio": "Used / issued licenses of a license-server feature.",
    "cluster_license:nomade_license_slurm_used:ratio": "Used / issued licenses of a SLURM license.",
    # -- analytics (nomade-analytics) --
    "cluster_filesystem:nomade_trend_time_to_threshold_seconds:min": (
        "Projected seconds until a filesystem is full (filesystem_used watch), same grouping as the used ratio."
    ),
    "cluster_state:nomade_job_risk_threshold:max": (
        "Alert threshold of the model scoring the jobs of a state (PENDING, RUNNING); absent under the baseline."
    ),
    "cluster_partition:nomade_job_risk_high_risk_jobs:sum": "Jobs at or above their risk threshold, per partition.",
    "cluster:nomade_job_risk_high_risk_jobs:sum": "Jobs at or above their risk threshold, whole cluster.",
}
"""Every recording rule name with what it holds (dashboards look names up here)."""

RECORDING_RULE_NAMES: tuple[str, ...] = tuple(sorted(RECORDING_RULE_HELP))
"""Names of the recording rules of :func:`recording_rules` (independent of the configuration)."""

_POWER_FLAGS = "power_down|powered_down|powering_down"
# Flags under which a down/drained node is expected: maintenance reservation, power saving, reboot in progress.
_EXPECTED_DOWN_FLAGS = f"maint|{_POWER_FLAGS}"
_EXPECTED_DRAIN_FLAGS = f"maint|reboot_requested|reboot_issued|{_POWER_FLAGS}"
# sacct classes that are not failures (nomade.exporter.parsers.slurm_outcome): success, user and scheduler
# decisions (cancelled, preempted) and `other` (transitional or unknown states, no outcome).
_NOT_FAILED = "success|cancelled|preempted|other"
# Watches with an alert of their own; NomadeTrendAccelerating covers the others (job_memory has its OOM alert).
_DEDICATED_WATCHES = "filesystem_used|pending_jobs|failed_job_rate|job_memory"


def _num(v: float) -> str:
    """A PromQL number literal: integers without a decimal point, other floats in repr form."""
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def _human(seconds: float) -> str:
    """Alert-text duration: the largest of d, h, m, s dividing it exactly (``2592000`` -> ``30d``), else ms."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def _fs_regex(cfg: MonitoringConfig) -> str:
    # Escape for the regex, then for the PromQL double-quoted string.
    return "|".join(re.escape(t) for t in sorted(cfg.shared_fstypes)).replace("\\", "\\\\")


def _by_filesystem(cfg: MonitoringConfig, agg: str, inner: Callable[[str], str], scale: str = "") -> str:
    """``agg`` of ``inner(fstype_matcher)`` per filesystem, each side optionally multiplied (``scale``: `` * k``).

    Local filesystems are grouped per node; shared ones (``cfg.shared_fstypes``) without the node, so that one
    export seen by every client gives one series.
    """
    c = cfg.cluster_label
    shared = _fs_regex(cfg)
    local = inner(f'fstype!~"{shared}"')
    remote = inner(f'fstype=~"{shared}"')
    return (
        f"{agg} by ({c}, node, mountpoint, device, fstype) ({local}){scale}\n"
        f"or\n{agg} by ({c}, mountpoint, device, fstype) ({remote}){scale}"
    )


def _record(name: str, expr: str) -> Rule:
    if name not in RECORDING_RULE_HELP:
        raise KeyError(f"recording rule {name} missing from RECORDING_RULE_HELP")
    return {"record": name, "expr": expr}


def recording_rules(cfg: MonitoringConfig) -> list[Group]:
    """Recording rule groups (Prometheus rule-file ``groups`` entries: ``{"name", "rules"}``).

    Every aggregation keeps ``cfg.cluster_label``. Rules of one group are evaluated in order, so a rule may use an
    earlier one of its group. Returns every name of :data:`RECORDING_RULE_NAMES` exactly once.
    """
    c = cfg.cluster_label
    slurm = [
        _record(
            "cluster_partition_state:nomade_slurm_queue_jobs:sum",
            f"sum by ({c}, partition, state) (nomade_slurm_queue_jobs)",
        ),
        _record("cluster_state:nomade_slurm_queue_jobs:sum", f"sum by ({c}, state) (nomade_slurm_queue_cluster_jobs)"),
        _record(
            "cluster_partition:nomade_slurm_queue_pending_cpus:sum",
            f'sum by ({c}, partition) (nomade_slurm_queue_requested_cpus{{state="pending"}})',
        ),
        _record(
            "cluster_partition:nomade_slurm_queue_backlog:ratio",
            f"cluster_partition:nomade_slurm_queue_pending_cpus:sum\n"
            f"/ on ({c}, partition)\n(sum by ({c}, partition) (nomade_slurm_partition_cpus) > 0)",
        ),
        _record(
            "cluster_partition:nomade_slurm_queue_eligible_wait_seconds:max",
            f'max by ({c}, partition) (nomade_slurm_queue_pending_wait_seconds{{quantile="1"}})',
        ),
        _record(
            "cluster_partition_failure_class:nomade_slurm_job_finished:rate15m",
            f"sum by ({c}, partition, failure_class) (rate(nomade_slurm_job_finished_total[15m]))",
        ),
        _record(
            "cluster_failure_class:nomade_slurm_job_finished:rate15m",
            f"sum by ({c}, failure_class) (rate(nomade_slurm_job_finished_total[15m]))",
        ),
        _record(
            "cluster_partition:nomade_slurm_job_finished:increase1h",
            f"sum by ({c}, partition) (increase(nomade_slurm_job_finished_total[1h]))",
        ),
        _record(
            "cluster_partition:nomade_slurm_job_failed:increase1h",
            f"sum by ({c}, partition) (\n"
            f'  increase(nomade_slurm_job_finished_total{{failure_class!~"{_NOT_FAILED}"}}[1h])\n)',
        ),
        _record(
            "cluster_partition:nomade_slurm_job_failed:ratio1h",
            f"cluster_partition:nomade_slurm_job_failed:increase1h\n"
            f"/ on ({c}, partition)\n(cluster_partition:nomade_slurm_job_finished:increase1h > 0)",
        ),
        _record("cluster_state:nomade_slurm_node_state:sum", f"sum by ({c}, state) (nomade_slurm_node_state)"),
        _record("cluster_flag:nomade_slurm_node_flag:sum", f"sum by ({c}, flag) (nomade_slurm_node_flag)"),
        _record(
            "cluster:nomade_slurm_node_cpus_allocated:ratio",
            f"sum by ({c}) (nomade_slurm_node_cpus_allocated)\n/\n(sum by ({c}) (nomade_slurm_node_cpus) > 0)",
        ),
        _record(
            "cluster:nomade_slurm_node_memory_allocated:ratio",
            f"sum by ({c}) (nomade_slurm_node_memory_allocated_bytes)\n"
            f"/\n(sum by ({c}) (nomade_slurm_node_memory_bytes) > 0)",
        ),
        _record(
            "cluster_partition:nomade_slurm_partition_cpus_allocated:ratio",
            f"sum by ({c}, partition) (nomade_slurm_partition_cpus_allocated)\n"
            f"/\n(sum by ({c}, partition) (nomade_slurm_partition_cpus) > 0)",
        ),
        _record(
            "cluster:nomade_slurm_scheduler_main_cycle_last_seconds:avg15m",
            f"avg by ({c}) (avg_over_time(nomade_slurm_scheduler_main_cycle_last_seconds[15m]))",
        ),
        _record(
            "cluster:nomade_slurm_scheduler_backfill_cycle_last_seconds:avg15m",
            f"avg by ({c}) (avg_over_time(nomade_slurm_scheduler_backfill_cycle_last_seconds[15m]))",
        ),
    ]
    nodes = [
        _record(
            "cluster_node:nomade_cpu_busy_average_ratio:avg5m",
            f"avg by ({c}, node) (avg_over_time(nomade_cpu_busy_average_ratio[5m]))",
        ),
        _record(
            "cluster_node:nomade_cpu_iowait_ratio:avg5m",
            f'avg by ({c}, node) (avg_over_time(nomade_cpu_mode_ratio{{mode="iowait"}}[5m]))',
        ),
        _record(
            "cluster:nomade_cpu_busy_average_ratio:avg",
            f"avg by ({c}) (cluster_node:nomade_cpu_busy_average_ratio:avg5m)",
        ),
        _record("cluster:nomade_cpu_iowait_ratio:avg", f"avg by ({c}) (cluster_node:nomade_cpu_iowait_ratio:avg5m)"),
        _record(
            "cluster_node_device:nomade_disk_utilization_ratio:avg5m",
            f"avg by ({c}, node, device) (avg_over_time(nomade_disk_utilization_ratio[5m]))",
        ),
    ]
    # Read-only filesystems (squashfs images, ro mounts) are always "full" and never fill: left out.
    filesystems = [
        _record(
            "cluster_filesystem:nomade_filesystem_used_ratio:max",
            _by_filesystem(
                cfg,
                "max",
                lambda fs: f"nomade_filesystem_used_ratio{{{fs}}} unless nomade_filesystem_readonly{{{fs}}} == 1",
            ),
        ),
        _record(
            "cluster_filesystem:nomade_filesystem_avail_bytes:min",
            _by_filesystem(
                cfg,
                "min",
                lambda fs: f"nomade_filesystem_avail_bytes{{{fs}}} unless nomade_filesystem_readonly{{{fs}}} == 1",
            ),
        ),
    ]
    nfs_by = f"{c}, node, server, export, mountpoint"
    nfs = [
        _record(
            "cluster_node_mountpoint:nomade_nfs_retransmissions:ratio_rate5m",
            f"sum by ({nfs_by}) (rate(nomade_nfs_retransmissions_total[5m]))\n"
            f"/\n(sum by ({nfs_by}) (rate(nomade_nfs_operations_total[5m])) > 0)",
        ),
        _record(
            "cluster_node_mountpoint:nomade_nfs_rtt_seconds:mean_rate5m",
            f"sum by ({nfs_by}) (rate(nomade_nfs_rtt_seconds_total[5m]))\n"
            f"/\n(sum by ({nfs_by}) (rate(nomade_nfs_operations_total[5m])) > 0)",
        ),
    ]
    licenses = [
        _record(
            "cluster_feature:nomade_license_used:ratio",
            f"sum by ({c}, server, vendor, feature) (nomade_license_used)\n"
            f"/\n(sum by ({c}, server, vendor, feature) (nomade_license_issued) > 0)",
        ),
        _record(
            "cluster_license:nomade_license_slurm_used:ratio",
            f"sum by ({c}, license) (nomade_license_slurm_used)\n"
            f"/\n(sum by ({c}, license) (nomade_license_slurm_issued) > 0)",
        ),
    ]
    analytics = [
        _record(
            "cluster_filesystem:nomade_trend_time_to_threshold_seconds:min",
            _by_filesystem(
                cfg, "min", lambda fs: f'nomade_trend_time_to_threshold_seconds{{watch="filesystem_used",{fs}}}'
            ),
        ),
        # nomade_job_risk_scoring_info says which setting and version score each state; nomade_model_threshold is
        # published per accepted model only. The version join keeps out a state scored by the user-history baseline
        # (version "baseline", which publishes no threshold) while its setting has an accepted model.
        _record(
            "cluster_state:nomade_job_risk_threshold:max",
            f"max by ({c}, state) (\n  nomade_job_risk_scoring_info\n"
            f"  * on ({c}, setting, version) group_left ()\n  max by ({c}, setting, version) (nomade_model_info)\n"
            f"  * on ({c}, setting) group_left ()\n  max by ({c}, setting) (nomade_model_threshold)\n)",
        ),
        _record(
            "cluster_partition:nomade_job_risk_high_risk_jobs:sum",
            f"sum by ({c}, partition) (nomade_job_risk_partition_high_risk_jobs)",
        ),
        _record(
            "cluster:nomade_job_risk_high_risk_jobs:sum", f"sum by ({c}) (nomade_job_risk_partition_high_risk_jobs)"
        ),
    ]
    return [
        {"name": "nomade.slurm.rules", "rules": slurm},
        {"name": "nomade.node.rules", "rules": nodes},
        {"name": "nomade.filesystem.rules", "rules": filesystems},
        {"name": "nomade.nfs.rules", "rules": nfs},
        {"name": "nomade.license.rules", "rules": licenses},
        {"name": "nomade.analytics.rules", "rules": analytics},
    ]


def _alert(
    cfg: MonitoringConfig, name: str, expr: str, for_: str, severity: str, summary: str, description: str
) -> Rule:
    if severity not in ("critical", "warning", "info"):
        raise ValueError(f"{name}: unknown severity {severity}")
    rule: Rule = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"description": description, "runbook_url": cfg.runbook(name), "summary": summary}
    return rule


def _with_reason(cfg: MonitoringConfig, nodes: str) -> str:
    """``nodes`` (one series per node) with the node's SLURM reason and its author as labels, when there is one."""
    c = cfg.cluster_label
    reason = f"topk by ({c}, node) (1, nomade_slurm_node_reason_info)"
    return (
        f"(\n  {nodes}\n) * on ({c}, node) group_left (reason, user) {reason}\n"
        f"or\n(\n  {nodes}\n) unless on ({c}, node) nomade_slurm_node_reason_info"
    )


def _accelerating(cfg: MonitoringConfig, watch: str, state: str = "accelerating_growth", sign: str = ">") -> str:
    """Series of ``watch`` whose acceleration is significant at ``acceleration_z`` and whose trend class is ``state``.

    ``watch`` is a label matcher body (``watch="pending_jobs"``). The value is the acceleration (unit/s²).
    """
    z = _num(cfg.thresholds.acceleration_z)
    bound = ("" if sign == ">" else "-") + f"{z} * nomade_trend_acceleration_stderr{{{watch}}}"
    return (
        f"(nomade_trend_acceleration_per_second_squared{{{watch}}} {sign} {bound})\n"
        f'and ignoring (state) (nomade_trend_state{{{watch},state="{state}"}} == 1)'
    )


def alert_rules(cfg: MonitoringConfig) -> list[Group]:
    """Alerting rule groups (``{"name", "rules"}``); see the module docstring for the conventions.

    Raises:
        ValueError: never for a valid configuration (an unknown severity in the code would raise).

    """
    c = cfg.cluster_label
    t = cfg.thresholds
    d = _human
    pct = "{{ $value | humanizePercentage }}"

    exporter = [
        # 5 m: node-mixin / kube-prometheus TargetDown style; one missed scrape is not an outage.
        _alert(
            cfg,
            "NomadeExporterDown",
            f'up{{job="{cfg.exporter_job}"}} == 0',
            "5m",
            "critical",
            "nomade-exporter {{ $labels.instance }} is down",
            "Prometheus has failed to scrape the nomade-exporter at {{ $labels.instance }}"
            "{{ with $labels.node }} (node {{ . }}){{ end }} for 5 minutes: the NØMADE metrics of that target are "
            "missing and the alerts that need them cannot fire.",
        ),
        _alert(
            cfg,
            "NomadeExporterTargetMissing",
            f'absent(up{{job="{cfg.exporter_job}"}})',
            "10m",
            "warning",
            f'No Prometheus target has job="{cfg.exporter_job}"',
            f'Prometheus has no scrape target with job="{cfg.exporter_job}" (monitoring.exporter_job): the exporters '
            "are not in the scrape configuration, or the job name differs, and every NØMADE alert is blind.",
        ),
        # 10 m: a collector's source may time out once in a while (slurmctld busy); a persistent failure matters.
        _alert(
            cfg,
            "NomadeCollectorDown",
            "nomade_collector_up == 0",
            "10m",
            "warning",
            "Collector {{ $labels.collector }} of {{ $labels.instance }} is failing",
            "The {{ $labels.collector }} collector of the exporter at {{ $labels.instance }}"
            "{{ with $labels.node }} (node {{ . }}){{ end }} has failed every collection for 10 minutes: its source "
            "(command, file or service) does not answer, and its metrics are missing.",
        ),
    ]

    down = (
        f'max by ({c}, node) (nomade_slurm_node_state{{state="down"}}) == 1\n'
        f'  unless on ({c}, node) nomade_slurm_node_flag{{flag=~"{_EXPECTED_DOWN_FLAGS}"}}'
    )
    not_responding = (
        f'max by ({c}, node) (nomade_slurm_node_flag{{flag="not_responding"}}) == 1\n'
        f'  unless on ({c}, node) nomade_slurm_node_state{{state="down"}}\n'
        f'  unless on ({c}, node) nomade_slurm_node_flag{{flag=~"{_POWER_FLAGS}"}}'
    )
    drained = (
        f'max by ({c}, node) (nomade_slurm_node_flag{{flag="drain"}}) == 1\n'
        f'  unless on ({c}, node) nomade_slurm_node_state{{state="down"}}\n'
        f'  unless on ({c}, node) nomade_slurm_node_flag{{flag=~"{_EXPECTED_DRAIN_FLAGS}"}}'
    )
    reason = "{{ with $labels.reason }} (reason: {{ . }}{{ with $labels.user }}, set by {{ . }}{{ end }}){{ end }}"
    nodes = [
        # 5 m: SLURM itself waits SlurmdTimeout (300 s default) before marking a silent node DOWN.
        _alert(
            cfg,
            "NomadeNodeDown",
            _with_reason(cfg, down),
            "5m",
            "warning",
            "Node {{ $labels.node }} is DOWN",
            f"SLURM has reported node {{{{ $labels.node }}}} DOWN{reason} for 5 minutes; its jobs were requeued or "
            "killed and it takes no new work.",
        ),
        _alert(
            cfg,
            "NomadeNodeNotResponding",
            not_responding,
            "5m",
            "warning",
            "Node {{ $labels.node }} is not responding to slurmctld",
            "slurmctld has not heard from slurmd on node {{ $labels.node }} for 5 minutes (state flag NOT_RESPONDING); "
            "SLURM will mark it DOWN after SlurmdTimeout.",
        ),
        # 30 m: short drains (a reboot, a quick fix) are routine; a forgotten drain wastes capacity.
        _alert(
            cfg,
            "NomadeNodeDrained",
            _with_reason(cfg, drained),
            "30m",
            "warning",
            "Node {{ $labels.node }} is drained",
            f"Node {{{{ $labels.node }}}} has carried the DRAIN flag for 30 minutes{reason}: it finishes its jobs and "
            "takes no new ones.",
        ),
    ]

    fs_where = "{{ $labels.mountpoint }}{{ with $labels.node }} on {{ . }}{{ end }}"
    used = "cluster_filesystem:nomade_filesystem_used_ratio:max"
    ttf = "cluster_filesystem:nomade_trend_time_to_threshold_seconds:min"

    def accel_fs(fs: str) -> str:
        watch = f'watch="filesystem_used",{fs}'
        within = _num(t.filesystem_accelerating_within)
        return f"({_accelerating(cfg, watch)})\nand nomade_trend_time_to_threshold_seconds{{{watch}}} < {within}"

    other_watches = f'watch!~"{_DEDICATED_WATCHES}"'
    growth = _accelerating(cfg, other_watches)
    decline = _accelerating(cfg, other_watches, "accelerating_decline", "<")
    pending_accel = _accelerating(cfg, 'watch="pending_jobs"')
    failed_accel = _accelerating(cfg, 'watch="failed_job_rate"')
    filesystem = [
        # 5 m: df usage moves slowly; the delay only skips momentary spikes (node-mixin NodeFilesystemAlmostOutOfSpace
        # uses 30 m with thresholds of 5 % and 3 % left; the seed's thresholds are tighter, so the delay is shorter).
        _alert(
            cfg,
            "NomadeFilesystemAlmostFull",
            f"{used} >= {_num(t.filesystem_warning_ratio)}",
            "5m",
            "warning",
            f"Filesystem {fs_where} is {pct} full",
            f"Filesystem {fs_where} ({{{{ $labels.fstype }}}}, {{{{ $labels.device }}}}) is {pct} full (df Use%), "
            f"above the warning threshold of {t.filesystem_warning_ratio:.0%}.",
        ),
        _alert(
            cfg,
            "NomadeFilesystemAlmostFull",
            f"{used} >= {_num(t.filesystem_critical_ratio)}",
            "5m",
            "critical",
            f"Filesystem {fs_where} is {pct} full",
            f"Filesystem {fs_where} ({{{{ $labels.fstype }}}}, {{{{ $labels.device }}}}) is {pct} full (df Use%), "
            f"above the critical threshold of {t.filesystem_critical_ratio:.0%}: writes will soon fail.",
        ),
        # 1 h / 30 m: node-mixin NodeFilesystemSpaceFillingUp waits 1 h; the critical one leaves more of its 4 h.
        _alert(
            cfg,
            "NomadeFilesystemFillingUp",
            f"{ttf} < {_num(t.filesystem_full_within)}",
            "1h",
            "warning",
            f"Filesystem {fs_where} is projected full in {{{{ $value | humanizeDuration }}}}",
            f"At its current trend (nomade-analytics, watch filesystem_used), filesystem {fs_where} "
            f"({{{{ $labels.fstype }}}}) will be full in {{{{ $value | humanizeDuration }}}}, within the "
            f"{d(t.filesystem_full_within)} warning horizon.",
        ),
        _alert(
            cfg,
            "NomadeFilesystemFillingUp",
            f"{ttf} < {_num(t.filesystem_full_within_critical)}",
            "30m",
            "critical",
            f"Filesystem {fs_where} is projected full in {{{{ $value | humanizeDuration }}}}",
            f"At its current trend (nomade-analytics, watch filesystem_used), filesystem {fs_where} "
            f"({{{{ $labels.fstype }}}}) will be full in {{{{ $value | humanizeDuration }}}}, within the "
            f"{d(t.filesystem_full_within_critical)} critical horizon.",
        ),
        # 30 m: the fit window is 6 h; half an hour of a significant acceleration is not a blip.
        _alert(
            cfg,
            "NomadeFilesystemFillAccelerating",
            _by_filesystem(cfg, "max", accel_fs, f" * {_DAY2}"),
            "30m",
            "warning",
            f"Filling of {fs_where} is accelerating",
            f"The fill of filesystem {fs_where} is accelerating by {{{{ $value | humanize1024 }}}}B/day² (more than "
            f"{_num(t.acceleration_z)} standard errors above zero, nomade-analytics), and at this trend it is full "
            f"within {d(t.filesystem_accelerating_within)}: something started writing faster.",
        ),
        # 30 m: the same reason as above, for the watches without an alert of their own (site watches included).
        _alert(
            cfg,
            "NomadeTrendAccelerating",
            f"(\n{growth}\n)\n"
            f'and on (watch) nomade_analytics_watch_info{{direction="above"}}\nor\n(\n'
            f"{decline}\n)\n"
            f'and on (watch) nomade_analytics_watch_info{{direction="below"}}',
            "30m",
            "info",
            "Trend {{ $labels.watch }} is accelerating towards its threshold",
            "A series of watch {{ $labels.watch }} accelerates towards its threshold: "
            f'{{{{ printf "%.3g" $value }}}} per second² (more than {_num(t.acceleration_z)} standard errors from '
            "zero, nomade-analytics).",
        ),
    ]

    queue = [
        # 15 m: the wait only grows; the delay skips a job that starts right after crossing the line.
        _alert(
            cfg,
            "NomadePendingJobsStuck",
            f"cluster_partition:nomade_slurm_queue_eligible_wait_seconds:max > {_num(t.pending_stuck)}",
            "15m",
            "warning",
            "A job of partition {{ $labels.partition }} has been pending for {{ $value | humanizeDuration }}",
            "The longest-waiting eligible job of partition {{ $labels.partition }} has been pending for "
            f"{{{{ $value | humanizeDuration }}}}, more than {d(t.pending_stuck)} (the stuck-job limit): it "
            "may never start (limits, impossible request, dead reservation).",
        ),
        # 1 h: backlogs rise and fall with submission waves; only a lasting one is news.
        _alert(
            cfg,
            "NomadePendingBacklogHigh",
            f"cluster_partition:nomade_slurm_queue_backlog:ratio > {_num(t.pending_backlog_ratio)}",
            "1h",
            "info",
            'Partition {{ $labels.partition }} has a pending backlog of {{ printf "%.1f" $value }}x its CPUs',
            'The pending jobs of partition {{ $labels.partition }} request {{ printf "%.1f" $value }} times the '
            f"partition's CPUs (threshold {_num(t.pending_backlog_ratio)}x) for an hour.",
        ),
        _alert(
            cfg,
            "NomadePendingBacklogAccelerating",
            f"(\n{pending_accel}\n) * {_HOUR2}\n"
            f"and on ({c}, partition) (cluster_partition:nomade_slurm_queue_backlog:ratio >= 1)",
            "30m",
            "warning",
            "Pending jobs of partition {{ $labels.partition }} are accelerating",
            "The pending jobs of partition {{ $labels.partition }} grow faster and faster: "
            f"{{{{ $value | humanize }}}} jobs/h² (more than {_num(t.acceleration_z)} standard errors above zero, "
            "nomade-analytics), while the pending jobs already request more CPUs than the partition has.",
        ),
    ]

    job_mem = f'nomade_trend_time_to_threshold_seconds{{watch="job_memory"}} < {_num(t.job_oom_within)}'
    jobs = [
        # 15 m: the ratio is over one hour already; the delay avoids alerts on one burst of failing array tasks.
        _alert(
            cfg,
            "NomadeFailedJobRatioHigh",
            f"cluster_partition:nomade_slurm_job_failed:ratio1h > {_num(t.failed_job_ratio)}\n"
            f"and on ({c}, partition) "
            f"(cluster_partition:nomade_slurm_job_finished:increase1h >= {_num(t.failed_job_min_jobs)})",
            "15m",
            "warning",
            "{{ $value | humanizePercentage }} of the jobs of partition {{ $labels.partition }} failed",
            f"{pct} of the jobs that finished in partition {{{{ $labels.partition }}}} over the last hour failed "
            f"(threshold {t.failed_job_ratio:.0%}, at least {t.failed_job_min_jobs} finished jobs; cancelled and "
            "preempted jobs do not count as failed).",
        ),
        # 15 m: cascades grow within minutes; the trend is already fitted over 6 h.
        _alert(
            cfg,
            "NomadeFailedJobRateAccelerating",
            f"(\n{failed_accel}\n"
            f'and nomade_trend_level{{watch="failed_job_rate"}} >= {_num(t.failed_job_min_jobs / 3600)}\n'
            f") * {_HOUR2}",
            "15m",
            "warning",
            "Job failures in partition {{ $labels.partition }} are accelerating",
            "The rate of failing jobs in partition {{ $labels.partition }} grows faster and faster: "
            f"{{{{ $value | humanize }}}} failures/h² (more than {_num(t.acceleration_z)} standard errors above "
            f"zero, nomade-analytics, at least {t.failed_job_min_jobs} failures per hour): a cascade, such as a bad "
            "node, a full filesystem or a broken software module.",
        ),
        # 2 m: the horizon is short; waiting longer would leave nothing to act on.
        _alert(
            cfg,
            "NomadeJobMemoryExhaustionPredicted",
            f"(\n  {job_mem}\n) * on ({c}, node, job_id) group_left (user) "
            f"topk by ({c}, node, job_id) (1, nomade_job_usage_info)\n"
            f"or\n(\n  {job_mem}\n) unless on ({c}, node, job_id) nomade_job_usage_info",
            "2m",
            "warning",
            "Job {{ $labels.job_id }} will run out of memory in {{ $value | humanizeDuration }}",
            "At its current growth (nomade-analytics, watch job_memory), job {{ $labels.job_id }}"
            "{{ with $labels.user }} of {{ . }}{{ end }} reaches its cgroup memory limit on node {{ $labels.node }} "
            "in {{ $value | humanizeDuration }}; the OOM killer will then end it.",
        ),
        # 10 m: scores are recomputed every analytics cycle; a job must stay above the threshold.
        _alert(
            cfg,
            "NomadeJobHighFailureRisk",
            f"nomade_job_risk_score\n>= on ({c}, state) group_left ()\ncluster_state:nomade_job_risk_threshold:max",
            "10m",
            "info",
            "Job {{ $labels.job_id }} has a failure risk of {{ $value | humanizePercentage }}",
            "{{ $labels.state }} job {{ $labels.job_id }} of {{ $labels.user }} (account {{ $labels.account }}, "
            f"partition {{{{ $labels.partition }}}}) has a failure risk of {pct}, at or above its model's alert "
            "threshold (nomade-analytics).",
        ),
        _alert(
            cfg,
            "NomadeManyHighRiskJobs",
            f"cluster_partition:nomade_job_risk_high_risk_jobs:sum >= {_num(t.high_risk_jobs)}",
            "30m",
            "warning",
            "{{ $value }} high-risk jobs in partition {{ $labels.partition }}",
            "{{ $value }} pending or running jobs of partition {{ $labels.partition }} have a failure risk at or "
            f"above their model's threshold (alert at {t.high_risk_jobs}) for 30 minutes.",
        ),
    ]

    # the core sensor; `sensor` is dropped so that the warning and the critical alert carry the same labels
    gpu_temp = 'max without (sensor) (nomade_gpu_temperature_celsius{sensor="gpu"})'
    gpu_where = "GPU {{ $labels.gpu }} of node {{ $labels.node }}"
    gpus = [
        # 5 m: temperatures swing with load; a sustained high reading matters.
        _alert(
            cfg,
            "NomadeGpuTemperatureHigh",
            f"{gpu_temp} >= {_num(t.gpu_temperature_celsius)}",
            "5m",
            "warning",
            f"{gpu_where} is at {{{{ $value }}}} °C",
            f"{gpu_where} has been at or above {_num(t.gpu_temperature_celsius)} °C (the warning limit) "
            "for 5 minutes: now {{ $value }} °C.",
        ),
        _alert(
            cfg,
            "NomadeGpuTemperatureHigh",
            f'{gpu_temp}\n>= ignoring (threshold)\nnomade_gpu_temperature_threshold_celsius{{threshold="slowdown"}}',
            "2m",
            "critical",
            f"{gpu_where} is at {{{{ $value }}}} °C",
            f"{gpu_where} has reached its slowdown temperature ({{{{ $value }}}} °C): the driver is cutting its clocks "
            "and jobs on it slow down.",
        ),
        # 1 m: an uncorrectable error is a fact, not a fluctuation; the delay only debounces scrapes.
        _alert(
            cfg,
            "NomadeGpuUncorrectableEccErrors",
            f'max by ({c}, node, gpu) (nomade_gpu_ecc_volatile_errors{{type="uncorrected"}}) > 0',
            "1m",
            "critical",
            f"{gpu_where} has uncorrectable memory errors",
            f"{gpu_where} has counted {{{{ $value }}}} uncorrectable ECC errors since the driver loaded (the "
            "condition behind XID 48, 94 and 95): the job that hit them got corrupt data or was killed.",
        ),
        _alert(
            cfg,
            "NomadeGpuResetRequired",
            f"max by ({c}, node, gpu) (nomade_gpu_remapped_rows_pending) == 1\n"
            f"or\nmax by ({c}, node, gpu) (nomade_gpu_remapped_rows_failure) == 1\n"
            f"or\nmax by ({c}, node, gpu) (nomade_gpu_retired_pages_pending) == 1",
            "5m",
            "warning",
            f"{gpu_where} needs a reset",
            f"{gpu_where} has a memory row remap or page retirement pending, or a failed row remap (the condition "
            "behind XID 63 and 64): it needs a GPU reset (or, for a failed remap, a replacement).",
        ),
        # 10 m: a GPU that disappears does not come back by itself; the delay covers driver reloads.
        _alert(
            cfg,
            "NomadeGpuMissing",
            f'sum by ({c}, node) (nomade_slurm_node_gres{{gres="gpu"}})\n> on ({c}, node)\n(\n'
            f"  count by ({c}, node) (nomade_gpu_info)\n"
            f"  or\n  max by ({c}, node) (nomade_gpu_source_available) * 0\n)",
            "10m",
            "critical",
            "Node {{ $labels.node }} lost GPUs",
            "SLURM configures {{ $value }} GPUs on node {{ $labels.node }} but its GPU collector sees fewer: a GPU "
            "has fallen off the bus (XID 79) or the driver lost it; jobs given that GPU will fail.",
        ),
    ]

    nfs = [
        # 15 m: retransmissions come in bursts (a server failover); a lasting rate is a problem.
        _alert(
            cfg,
            "NomadeNfsRetransmissionsHigh",
            f"cluster_node_mountpoint:nomade_nfs_retransmissions:ratio_rate5m > {_num(t.nfs_retransmission_ratio)}",
            "15m",
            "warning",
            "NFS mount {{ $labels.mountpoint }} on {{ $labels.node }} retransmits {{ $value | humanizePercentage }}",
            "{{ $value | humanizePercentage }} of the NFS calls of {{ $labels.mountpoint }} "
            "({{ $labels.server }}:{{ $labels.export }}) on node {{ $labels.node }} were retransmitted over 5 "
            f"minutes (threshold {t.nfs_retransmission_ratio:.0%}): the server or the network drops requests.",
        ),
        _alert(
            cfg,
            "NomadeNfsLatencyHigh",
            f"cluster_node_mountpoint:nomade_nfs_rtt_seconds:mean_rate5m > {_num(t.nfs_latency_seconds)}",
            "15m",
            "warning",
            "NFS mount {{ $labels.mountpoint }} on {{ $labels.node }} answers in {{ $value | humanizeDuration }}",
            "The mean round-trip time of the NFS calls of {{ $labels.mountpoint }} "
            "({{ $labels.server }}:{{ $labels.export }}) on node {{ $labels.node }} has been "
            f"{{{{ $value | humanizeDuration }}}} (threshold {d(t.nfs_latency_seconds)}) for 15 minutes.",
        ),
    ]

    licenses = [
        _alert(
            cfg,
            "NomadeLicensePoolNearlyExhausted",
            f"cluster_feature:nomade_license_used:ratio >= {_num(t.license_usage_ratio)}\n"
            f"or\ncluster_license:nomade_license_slurm_used:ratio >= {_num(t.license_usage_ratio)}",
            "15m",
            "warning",
            "License {{ $labels.feature }}{{ $labels.license }} is {{ $value | humanizePercentage }} used",
            "{{ if $labels.feature }}Feature {{ $labels.feature }} of license server {{ $labels.server }}"
            "{{ else }}SLURM license {{ $labels.license }}{{ end }} has been "
            f"{pct} used for 15 minutes (threshold {t.license_usage_ratio:.0%}): new jobs or checkouts will wait.",
        ),
        # 1 h: expiry dates do not flap; the delay only avoids alerts from a mis-parsed report.
        _alert(
            cfg,
            "NomadeLicenseExpiring",
            f"min by ({c}, server, vendor, feature) (nomade_license_expiry_timestamp_seconds) - time()\n"
            f"< {_num(t.license_expiry_within)}",
            "1h",
            "warning",
            "License feature {{ $labels.feature }} expires in {{ $value | humanizeDuration }}",
            "Licenses of feature {{ $labels.feature }} (vendor {{ $labels.vendor }}, server {{ $labels.server }}) "
            f"expire in {{{{ $value | humanizeDuration }}}}, within {d(t.license_expiry_within)}.",
        ),
        _alert(
            cfg,
            "NomadeLicenseServerDown",
            "nomade_license_server_up == 0",
            "5m",
            "warning",
            "License server {{ $labels.server }} ({{ $labels.host }}) is down",
            "License server {{ $labels.server }} on {{ $labels.host }} (role {{ $labels.role }}) has not answered "
            "for 5 minutes: checkouts fail unless a redundant server takes over.",
        ),
    ]

    dbd = f"max by ({c}) (nomade_slurm_scheduler_dbd_agent_queue_size)"
    main = "cluster:nomade_slurm_scheduler_main_cycle_last_seconds:avg15m"
    backfill = "cluster:nomade_slurm_scheduler_backfill_cycle_last_seconds:avg15m"
    scheduler = [
        _alert(
            cfg,
            "NomadeSlurmdbdAgentQueueHigh",
            f"{dbd} > {_num(t.dbd_agent_queue_warning)}",
            "10m",
            "warning",
            "{{ $value }} messages are waiting for slurmdbd",
            "slurmctld holds {{ $value }} messages for slurmdbd (sdiag DBD Agent queue size, warning at "
            f"{t.dbd_agent_queue_warning}): slurmdbd or its database is slow or unreachable; past MaxDBDMsgs "
            "accounting records are lost.",
        ),
        _alert(
            cfg,
            "NomadeSlurmdbdAgentQueueHigh",
            f"{dbd} > {_num(t.dbd_agent_queue_critical)}",
            "5m",
            "critical",
            "{{ $value }} messages are waiting for slurmdbd",
            "slurmctld holds {{ $value }} messages for slurmdbd (sdiag DBD Agent queue size, critical at "
            f"{t.dbd_agent_queue_critical}): slurmdbd or its database is slow or unreachable; past MaxDBDMsgs "
            "accounting records are lost.",
        ),
        _alert(
            cfg,
            "NomadeSlurmSchedulerCycleSlow",
            f'label_replace({main} > {_num(t.scheduler_cycle_seconds)}, "scheduler", "main", "", "")\nor\n'
            f'label_replace({backfill} > {_num(t.backfill_cycle_seconds)}, "scheduler", "backfill", "", "")',
            "15m",
            "warning",
            "The {{ $labels.scheduler }} scheduler cycle of slurmctld is slow",
            "The {{ $labels.scheduler }} scheduling cycle of slurmctld has averaged {{ $value | humanizeDuration }} "
            f'over 15 minutes, above {{{{ if eq $labels.scheduler "main" }}}}{d(t.scheduler_cycle_seconds)} '
            f"(max_sched_time){{{{ else }}}}{d(t.backfill_cycle_seconds)} (bf_max_time){{{{ end }}}}: cycles are "
            "cut short and jobs start late.",
        ),
    ]

    analytics = [
        _alert(
            cfg,
            "NomadeAnalyticsDown",
            f'up{{job="{cfg.analytics_job}"}} == 0',
            "5m",
            "warning",
            "nomade-analytics {{ $labels.instance }} is down",
            "Prometheus has failed to scrape nomade-analytics at {{ $labels.instance }} for 5 minutes: trends, "
            "projections and risk scores are missing, and the alerts built on them cannot fire.",
        ),
        _alert(
            cfg,
            "NomadeAnalyticsStale",
            f"time() - nomade_analytics_last_success_timestamp_seconds > {_num(t.analytics_stale_after)}\n"
            "or\n(nomade_analytics_up == 0 unless nomade_analytics_last_success_timestamp_seconds)",
            "5m",
            "warning",
            "nomade-analytics values are stale",
            "{{ if gt $value 0.0 }}The last successful nomade-analytics cycle at {{ $labels.instance }} ended "
            "{{ $value | humanizeDuration }} ago{{ else }}No nomade-analytics cycle at {{ $labels.instance }} has "
            f"succeeded since the service started{{{{ end }}}} (stale after {d(t.analytics_stale_after)}): the "
            "trends and risk scores served are old, and the alerts built on them are blind.",
        ),
    ]

    return [
        {"name": "nomade.exporter.alerts", "rules": exporter},
        {"name": "nomade.node.alerts", "rules": nodes},
        {"name": "nomade.filesystem.alerts", "rules": filesystem},
        {"name": "nomade.queue.alerts", "rules": queue},
        {"name": "nomade.job.alerts", "rules": jobs},
        {"name": "nomade.gpu.alerts", "rules": gpus},
        {"name": "nomade.nfs.alerts", "rules": nfs},
        {"name": "nomade.license.alerts", "rules": licenses},
        {"name": "nomade.scheduler.alerts", "rules": scheduler},
        {"name": "nomade.analytics.alerts", "rules": analytics},
    ]


def alert_names(cfg: MonitoringConfig) -> list[str]:
    """Sorted distinct alert names of :func:`alert_rules` (an alert with two severities counts once)."""
    return sorted({r["alert"] for g in alert_rules(cfg) for r in g["rules"]})


def render_rules(cfg: MonitoringConfig) -> str:
    """The Prometheus rule file (YAML) with the recording groups first, then the alert groups.

    Byte-stable: key order is fixed by construction, multi-line expressions use literal blocks, no timestamps.

    Raises:
        ImportError: PyYAML is not installed (the ``build`` extra).

    """
    import yaml  # the `build` extra; imported here so that the rule data can be used without it

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    doc = {"groups": recording_rules(cfg) + alert_rules(cfg)}
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100000, default_flow_style=False)
    return "# Generated by `nomade build` (nomade.alerting.rules); do not edit by hand.\n" + body
