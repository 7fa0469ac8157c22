"""``nomade status``: a one-screen overview of the cluster, read from Prometheus through its HTTP API.

Two halves, so that the screen can be tested without a server and the queries without a terminal:

* :func:`gather` issues one PromQL query per metric family or optional section (fourteen in all, whatever the
  number of nodes or jobs, DESIGN.md principle 6) at one evaluation time and folds the samples into a
  :class:`StatusSnapshot`;
* :func:`render` is a pure function of the snapshot, the width and the colour switch.

The core sections (filesystems, queue, nodes, finished jobs, collectors) are always printed, saying why when
they are empty. The optional ones (scheduler, running jobs, jobs at risk, GPUs, NFS, licenses, quotas, node
health: :data:`OPTIONAL_SECTIONS`) are printed only where their collectors report series, so a site without GPUs or NFS
sees no empty GPU or NFS section.

Label values are operator-controlled text (a drain reason can hold quotes, newlines, escape sequences or
right-to-left overrides): every label is passed through :func:`sanitize` before layout, and column widths count
terminal cells (wide East Asian characters take two), so no label can break or forge the layout.
"""

from __future__ import annotations

import math
import re
import time as _time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from nomade.analytics.promapi import PrometheusClient, PromQLError, Sample

# -- data model ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilesystemRow:
    """One mounted filesystem.

    Attributes:
        node: the ``node`` label (machine reporting it), ``""`` when absent or when collapsed (``nodes`` > 1).
        nodes: number of nodes reporting this shared (network) filesystem; 1 for a local one.
        size_bytes, avail_bytes, free_bytes: statvfs figures (``f_blocks``, ``f_bavail``, ``f_bfree`` × frsize).
        trend, slope_bytes_per_second, time_to_full_seconds: from ``nomade-analytics`` (watch ``filesystem_used``):
            trend class, first derivative of used bytes, and time until used reaches the size; ``None`` when the
            analytics service publishes nothing for this filesystem (or, for the time, when it never fills).

    """

    mountpoint: str
    device: str = ""
    fstype: str = ""
    node: str = ""
    size_bytes: float | None = None
    avail_bytes: float | None = None
    free_bytes: float | None = None
    cluster: str = ""
    nodes: int = 1
    trend: str | None = None
    slope_bytes_per_second: float | None = None
    time_to_full_seconds: float | None = None

    @property
    def used_bytes(self) -> float | None:
        """``size - free`` (as df's "Used"); ``size - avail`` when free is unknown (overstates by the root reserve)."""
        if self.size_bytes is None:
            return None
        other = self.free_bytes if self.free_bytes is not None else self.avail_bytes
        return None if other is None else max(0.0, self.size_bytes - other)

    @property
    def used_ratio(self) -> float | None:
        """Fraction full as df's "Use%": used / (used + avail), so the root-reserved blocks count as unavailable.

        Source: GNU coreutils df.c (``pct = used * 100 / (used + available)``). ``None`` when unknown.
        """
        used = self.used_bytes
        if used is None:
            return None
        if self.avail_bytes is None or self.free_bytes is None:
            return used / self.size_bytes if self.size_bytes else None
        denom = used + self.avail_bytes
        return used / denom if denom > 0 else None


@dataclass(frozen=True)
class QueueRow:
    """Jobs of one partition by SLURM state (long names: ``RUNNING``, ``PENDING``, ``COMPLETING``...).

    Attributes:
        states: job count per state.
        oldest_pending_age_seconds: age of the oldest pending job, ``None`` when not reported.

    """

    partition: str
    states: Mapping[str, float] = field(default_factory=dict)
    oldest_pending_age_seconds: float | None = None
    cluster: str = ""

    @property
    def running(self) -> float:
        """Jobs in state RUNNING."""
        return self.states.get("RUNNING", 0.0)

    @property
    def pending(self) -> float:
        """Jobs in state PENDING."""
        return self.states.get("PENDING", 0.0)

    @property
    def other(self) -> float:
        """Jobs in any other state (COMPLETING, CONFIGURING, SUSPENDED, REQUEUED...)."""
        return sum(v for k, v in self.states.items() if k not in ("RUNNING", "PENDING"))


@dataclass(frozen=True)
class NodeRow:
    """One SLURM node.

    Attributes:
        state: base state, lower case as SLURM's parser gives it (``idle``, ``mixed``, ``down``...), or ``None``.
        flags: state flags, lower case (``drain``, ``not_responding``...), sorted.
        cpu_load: SLURM's CPULoad (the node's 1-minute load average); ``None`` when not reported.
        reason, reason_user: the drain/down reason and who set it.

    """

    node: str
    state: str | None = None
    flags: tuple[str, ...] = ()
    cpu_load: float | None = None
    cpus: float | None = None
    cpus_allocated: float | None = None
    reason: str | None = None
    reason_user: str | None = None
    cluster: str = ""

    @property
    def problem(self) -> bool:
        """True when the node cannot take work or needs attention (down/fail state, drain or unresponsive)."""
        return (self.state or "") in PROBLEM_STATES or bool(PROBLEM_FLAGS.intersection(self.flags))


@dataclass(frozen=True)
class FinishedRow:
    """Finished jobs of one failure class (``SUCCESS``, ``FAILED``, ``TIMEOUT``, ``OUT_OF_MEMORY``...).

    Attributes:
        last_hour: ``increase(...[1h])`` (extrapolated by Prometheus, hence possibly fractional).
        total: the counter's value (since the collector's counter started).

    """

    failure_class: str
    last_hour: float | None = None
    total: float | None = None
    cluster: str = ""


@dataclass(frozen=True)
class CollectorRow:
    """Health of one collector across every exporter that runs it.

    Attributes:
        up: exporters whose last scrape had ``nomade_collector_up == 1``.
        targets: exporters reporting the collector at all.
        down_on: the ``node`` (else ``instance``) of the exporters where it is down, sorted.
        last_success_oldest, last_success_newest: Unix times of the stalest and freshest last success.

    """

    collector: str
    up: int = 0
    targets: int = 0
    down_on: tuple[str, ...] = ()
    last_success_oldest: float | None = None
    last_success_newest: float | None = None
    cluster: str = ""


# -- optional sections: shown only where their collectors report (issue 3) ------------------------------------


@dataclass(frozen=True)
class SchedulerRow:
    """slurmctld's scheduler statistics (sdiag) of one cluster; ``None`` where not reported.

    Attributes:
        main_cycle_last_seconds, main_cycle_mean_seconds: last and mean main scheduling cycle.
        backfill_cycle_last_seconds, backfill_cycle_mean_seconds: last and mean backfill cycle (sleeps excluded).
        backfill_last_depth: jobs examined in the last backfill cycle.
        agent_queue_size, dbd_agent_queue_size: outgoing RPCs queued; messages queued for slurmdbd.
        server_threads: active slurmctld threads.
        jobs_submitted, jobs_started, jobs_completed, jobs_canceled, jobs_failed: counts since the statistics
            were reset (midnight UTC by default, or ``sdiag --reset``, or a slurmctld restart).
        stats_reset_timestamp: start of that period, Unix seconds (sdiag 'Data since').

    """

    cluster: str = ""
    main_cycle_last_seconds: float | None = None
    main_cycle_mean_seconds: float | None = None
    backfill_cycle_last_seconds: float | None = None
    backfill_cycle_mean_seconds: float | None = None
    backfill_last_depth: float | None = None
    agent_queue_size: float | None = None
    dbd_agent_queue_size: float | None = None
    server_threads: float | None = None
    jobs_submitted: float | None = None
    jobs_started: float | None = None
    jobs_completed: float | None = None
    jobs_canceled: float | None = None
    jobs_failed: float | None = None
    stats_reset_timestamp: float | None = None


@dataclass(frozen=True)
class GpuNodeRow:
    """The GPUs of one node, aggregated by PromQL.

    Attributes:
        node: the ``node`` label (else ``instance``).
        gpus: GPUs known to the collector (``nomade_gpu_info`` series); ``None`` when not reported.
        utilization_ratio: mean over the node's GPUs of the busy share (``engine="gpu"``), 0-1.
        memory_used_bytes, memory_total_bytes: framebuffer used and size, summed over the GPUs.
        temperature_max_celsius: hottest GPU die (``sensor="gpu"``).
        throttled: GPUs with at least one throttle reason active other than idle / application clocks.
        throttle_reasons: those reasons, sorted.
        with_jobs: GPUs held by at least one SLURM job (``nomade_gpu_job_info``).

    """

    node: str
    cluster: str = ""
    gpus: int | None = None
    utilization_ratio: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    temperature_max_celsius: float | None = None
    throttled: int = 0
    throttle_reasons: tuple[str, ...] = ()
    with_jobs: int = 0

    @property
    def memory_ratio(self) -> float | None:
        """Framebuffer used / size, ``None`` when either is unknown or the size is 0."""
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return self.memory_used_bytes / self.memory_total_bytes


@dataclass(frozen=True)
class NfsMountRow:
    """One NFS export (server, export) over every client node mounting it.

    Attributes:
        clients: nodes reporting a mount of it.
        operations_per_second, read_bytes_per_second, write_bytes_per_second: summed over the clients.
        rtt_max_seconds: worst mean round-trip time over the operations and clients (nfsiostat avg RTT).
        retransmission_ratio_max: worst retransmissions per request over operations and clients.

    """

    server: str
    export: str
    cluster: str = ""
    clients: int = 0
    operations_per_second: float | None = None
    read_bytes_per_second: float | None = None
    write_bytes_per_second: float | None = None
    rtt_max_seconds: float | None = None
    retransmission_ratio_max: float | None = None


@dataclass(frozen=True)
class LicenseRow:
    """A license feature: used of issued, from a license server (FlexLM/RLM) or from SLURM's license table.

    Attributes:
        server: the license server (``port@host``); ``""`` for a SLURM license (``slurm`` is then True).
        vendor: the vendor daemon (FlexLM) / ISV (RLM); ``""`` for SLURM.

    """

    feature: str
    used: float | None = None
    issued: float | None = None
    server: str = ""
    vendor: str = ""
    slurm: bool = False
    cluster: str = ""

    @property
    def ratio(self) -> float | None:
        """Used / issued, ``None`` when unknown or nothing is issued."""
        if self.used is None or not self.issued:
            return None
        return self.used / self.issued


@dataclass(frozen=True)
class LicenseDaemonRow:
    """A license server (``kind="server"``, ``name`` its host) or vendor daemon (``kind="vendor"``) and its state."""

    server: str
    name: str
    kind: str
    up: bool
    cluster: str = ""


@dataclass(frozen=True)
class LicenseExpiryRow:
    """A license feature expiring within :data:`LICENSE_EXPIRY_WINDOW_SECONDS` (negative: already expired)."""

    feature: str
    seconds_left: float
    server: str = ""
    vendor: str = ""
    cluster: str = ""


@dataclass(frozen=True)
class QuotaRow:
    """A quota entry among the nearest to their hard space limit on a filesystem.

    Attributes:
        type: ``user``, ``group`` or ``project`` (the collector's ``type`` label); ``name`` the entry.
        used_bytes, hard_limit_bytes: space used and its hard limit.
        ratio: used / hard limit (over 1 when above it).

    """

    filesystem: str
    type: str
    name: str
    ratio: float
    used_bytes: float | None = None
    hard_limit_bytes: float | None = None
    cluster: str = ""


@dataclass(frozen=True)
class QuotaOverRow:
    """Entries of one type over a limit on a filesystem (``nomade_quota_over_limit_entries``)."""

    filesystem: str
    type: str
    entries: float
    cluster: str = ""


@dataclass(frozen=True)
class JobCountRow:
    """Running jobs seen by the job_usage collectors of one cluster.

    Attributes:
        jobs: job cgroups summed over the nodes (a job spanning several nodes counts once per node).
        nodes: nodes reporting; busy_nodes: those with at least one job.

    """

    cluster: str = ""
    jobs: float = 0.0
    nodes: int = 0
    busy_nodes: int = 0


@dataclass(frozen=True)
class JobMemoryRow:
    """A job's cgroup on one node among the nearest to its memory limit.

    Attributes:
        ratio: memory charged (page cache included, as the kernel charges it) / the cgroup's limit.
        usage_bytes, limit_bytes, rss_bytes: charged memory, limit, anonymous memory (what reclaim cannot free).

    """

    job_id: str
    node: str
    ratio: float
    user: str = ""
    usage_bytes: float | None = None
    limit_bytes: float | None = None
    rss_bytes: float | None = None
    cluster: str = ""


@dataclass(frozen=True)
class HealthCounts:
    """What the node_health and reachability collectors checked, summed over clusters (problems aside).

    Attributes:
        services, service_nodes: daemon liveness checks and the nodes they ran on.
        edac_nodes: nodes with EDAC memory controllers; sensor_nodes, sensors: hwmon temperature sensors.
        endpoints: endpoints probed by reachability.

    """

    services: int = 0
    service_nodes: int = 0
    edac_nodes: int = 0
    sensors: int = 0
    sensor_nodes: int = 0
    endpoints: int = 0


@dataclass(frozen=True)
class HealthProblem:
    """One node-health finding.

    Attributes:
        kind: ``service`` (a daemon down), ``edac`` (uncorrectable memory errors), ``temperature`` (the hottest
            sensor of the node above its max) or ``unreachable`` (a reachability target down).
        node: where (node, else instance); ``""`` for ``unreachable``.
        subject: service name, sensor (``chip label``), or target name.
        detail: the target's address (``unreachable``).
        reason: why the probe failed (dns, refused, timeout, unreachable, error), ``""`` when unknown.
        value: error count (``edac``) or degrees Celsius (``temperature``).
        limit: the sensor's max in degrees Celsius (``temperature``).

    """

    kind: str
    node: str = ""
    subject: str = ""
    detail: str = ""
    reason: str = ""
    value: float | None = None
    limit: float | None = None
    cluster: str = ""


@dataclass(frozen=True)
class RiskJobRow:
    """A pending or running job among the highest failure risks (``nomade_job_risk_*``, analytics risk engine).

    Attributes:
        score: calibrated probability that the job fails (``nomade_job_risk_score``), 0-1.
        drivers: ``(feature, contribution to the score)`` by rank (``nomade_job_risk_driver``; published only for
            jobs at or above the alert threshold).
        neighbour_shares: ``(failure_class, share)`` of the most similar finished jobs, largest first
            (``nomade_job_risk_neighbour_share``); ``neighbours``: how many were looked at.
        ood: the job lies outside the training distribution (``nomade_job_risk_ood``), ``None`` when not reported.

    """

    job_id: str
    score: float
    user: str = ""
    account: str = ""
    partition: str = ""
    state: str = ""
    cluster: str = ""
    drivers: tuple[tuple[str, float], ...] = ()
    neighbour_shares: tuple[tuple[str, float], ...] = ()
    neighbours: int | None = None
    ood: bool | None = None


@dataclass(frozen=True)
class RiskModelRow:
    """The served risk model of one setting (``submit`` or ``run``): ``nomade_model_*``.

    Attributes:
        version, models: labels of ``nomade_model_info`` (``models``: the component models).
        trained_timestamp: Unix time of the training; training_jobs: jobs it was trained on.
        threshold: alert threshold on the score, 0-1 (chosen from the cost ratio).
        auc: holdout AUC-ROC by model (``baseline`` = the user-history baseline), sorted by model name.
        brier: holdout Brier score.

    """

    setting: str
    cluster: str = ""
    version: str = ""
    models: str = ""
    trained_timestamp: float | None = None
    training_jobs: float | None = None
    threshold: float | None = None
    auc: tuple[tuple[str, float], ...] = ()
    brier: float | None = None


@dataclass(frozen=True)
class RiskPartitionRow:
    """Scored jobs of one partition: at or above the threshold, and the mean score."""

    partition: str
    cluster: str = ""
    high_risk_jobs: float | None = None
    mean_score: float | None = None


@dataclass
class StatusSnapshot:
    """Everything the status screen shows, at one evaluation time.

    Attributes:
        prometheus_url: the endpoint read.
        time: evaluation time, Unix seconds.
        clusters: distinct ``cluster`` label values seen (empty when no series carries one).
        scheduler ... health_problems, risk_*: the optional sections (:data:`OPTIONAL_SECTIONS`); empty (``None``
            for ``health``) where their collectors report nothing, and then not shown. ``risk_scored`` maps
            ``(cluster, state)`` to the number of jobs the risk engine scored, ``risk_scoring`` to the setting
            whose model scores that state (``nomade_job_risk_scoring_info``).
        errors: section name → message, for sections whose query the server rejected.
        queries: number of PromQL queries issued to build it.

    """

    prometheus_url: str
    time: float
    clusters: tuple[str, ...] = ()
    filesystems: list[FilesystemRow] = field(default_factory=list)
    queue: list[QueueRow] = field(default_factory=list)
    nodes: list[NodeRow] = field(default_factory=list)
    finished: list[FinishedRow] = field(default_factory=list)
    collectors: list[CollectorRow] = field(default_factory=list)
    scheduler: list[SchedulerRow] = field(default_factory=list)
    gpus: list[GpuNodeRow] = field(default_factory=list)
    nfs: list[NfsMountRow] = field(default_factory=list)
    licenses: list[LicenseRow] = field(default_factory=list)
    license_daemons: list[LicenseDaemonRow] = field(default_factory=list)
    license_expiring: list[LicenseExpiryRow] = field(default_factory=list)
    quotas: list[QuotaRow] = field(default_factory=list)
    quota_over: list[QuotaOverRow] = field(default_factory=list)
    job_counts: list[JobCountRow] = field(default_factory=list)
    near_oom: list[JobMemoryRow] = field(default_factory=list)
    health: HealthCounts | None = None
    health_problems: list[HealthProblem] = field(default_factory=list)
    risk_jobs: list[RiskJobRow] = field(default_factory=list)
    risk_models: list[RiskModelRow] = field(default_factory=list)
    risk_partitions: list[RiskPartitionRow] = field(default_factory=list)
    risk_scored: dict[tuple[str, str], float] = field(default_factory=dict)
    risk_scoring: dict[tuple[str, str], str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    queries: int = 0


# Which collector feeds which section (names of nomade.exporter.collectors), for the "no data" message.
SECTION_COLLECTOR = {
    "filesystems": "filesystem",
    "queue": "slurm_queue",
    "nodes": "slurm_nodes",
    "finished": "slurm_accounting",
}

# Node conditions that put a node on top of the list. States and flags as parsed by
# nomade.exporter.parsers.slurm_units.parse_node_state (sinfo(1)/scontrol(1) NODE STATE CODES, lower case).
PROBLEM_STATES = frozenset({"down", "fail", "failing", "unknown", "inval"})
PROBLEM_FLAGS = frozenset(
    {"drain", "not_responding", "fail", "maint", "maintenance", "reboot_requested", "reboot_issued", "invalid_reg"}
)
_RED_STATES = frozenset({"down", "fail", "failing", "inval"})
_RED_FLAGS = frozenset({"not_responding", "fail"})

# Network/parallel filesystem types: the same export mounted on many nodes is one filesystem, shown once.
SHARED_FSTYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "beegfs",
        "cifs",
        "smb3",
        "ceph",
        "cephfs",
        "glusterfs",
        "fuse.glusterfs",
        "panfs",
        "wekafs",
        "fuse.cephfs",
        "orangefs",
        "pvfs2",
    }
)
# Classes counted as a good outcome in the failure share (DESIGN.md "Job outcome model": COMPLETED exit 0).
SUCCESS_CLASSES = frozenset({"success", "completed"})

# Sections shown only where their collectors report (one query each); in screen order.
OPTIONAL_SECTIONS = ("scheduler", "jobs", "risk", "gpus", "nfs", "licenses", "quotas", "health")
# Throttle reasons that are no problem: the GPU is idle, or an administrator set its application clocks
# (NVML nvmlClocksEventReasonGpuIdle / ApplicationsClocksSetting; "idle" is older nvidia-smi's name).
GPU_BENIGN_THROTTLE_REASONS = ("idle", "gpu_idle", "applications_clocks_setting")
# License features expiring sooner than this are listed (display choice: a month's notice to renew).
LICENSE_EXPIRY_WINDOW_SECONDS = 30 * 86400
# Rows per group in the "nearest to the limit" lists (quotas per filesystem, jobs per cluster).
TOP_N = 5
# Jobs listed per cluster in "Jobs at risk" (highest scores), and the neighbour classes shown per job.
RISK_TOP_N = 10
RISK_NEIGHBOUR_CLASSES = 4
# sdiag metrics of the Scheduler section → SchedulerRow field.
_SCHEDULER_FIELDS = {
    "nomade_slurm_scheduler_main_cycle_last_seconds": "main_cycle_last_seconds",
    "nomade_slurm_scheduler_main_cycle_mean_seconds": "main_cycle_mean_seconds",
    "nomade_slurm_scheduler_backfill_cycle_last_seconds": "backfill_cycle_last_seconds",
    "nomade_slurm_scheduler_backfill_cycle_mean_seconds": "backfill_cycle_mean_seconds",
    "nomade_slurm_scheduler_backfill_last_depth": "backfill_last_depth",
    "nomade_slurm_scheduler_agent_queue_size": "agent_queue_size",
    "nomade_slurm_scheduler_dbd_agent_queue_size": "dbd_agent_queue_size",
    "nomade_slurm_scheduler_server_threads": "server_threads",
    "nomade_slurm_scheduler_jobs_submitted": "jobs_submitted",
    "nomade_slurm_scheduler_jobs_started": "jobs_started",
    "nomade_slurm_scheduler_jobs_completed": "jobs_completed",
    "nomade_slurm_scheduler_jobs_canceled": "jobs_canceled",
    "nomade_slurm_scheduler_jobs_failed": "jobs_failed",
    "nomade_slurm_scheduler_stats_reset_timestamp_seconds": "stats_reset_timestamp",
}

# -- gathering ----------------------------------------------------------------------------------------------------


def _selector(names: Iterable[str], cluster: str | None, watch: str | None = None) -> str:
    """``{__name__=~"a|b", cluster="x"}``: one query for a metric family, however many nodes report it."""
    matchers = [f'__name__=~"{"|".join(names)}"']
    if cluster is not None:
        matchers.append(f"cluster={_promql_string(cluster)}")
    if watch is not None:
        matchers.append(f"watch={_promql_string(watch)}")
    return "{" + ", ".join(matchers) + "}"


FS_WATCH = "filesystem_used"
"""The analytics watch whose trends the filesystem section shows (analytics/config.py DEFAULT_WATCHES)."""


def _promql_string(s: str) -> str:
    """A PromQL double-quoted string literal (Go escaping: backslash and double quote)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _metric(name: str, cluster: str | None, *matchers: str) -> str:
    """``name{matchers, cluster="x"}`` (just ``name`` without matchers)."""
    ms = list(matchers)
    if cluster is not None:
        ms.append(f"cluster={_promql_string(cluster)}")
    return name + ("{" + ", ".join(ms) + "}" if ms else "")


def _tagged(parts: Mapping[str, str]) -> str:
    """One query out of several aggregations: each result gets a ``stat`` label naming its part, then ``or``.

    ``label_replace(v, "stat", "x", "", "")`` sets the label unconditionally (the empty regex matches the empty
    source), so the parts never collide in ``or`` and the fold tells them apart.
    """
    return " or ".join(f'label_replace({expr}, "stat", "{stat}", "", "")' for stat, expr in parts.items())


def _optional_queries(cluster: str | None) -> dict[str, str]:
    """One query per optional section; the aggregations keep the answer small whatever the cluster size."""

    def m(name: str, *matchers: str) -> str:
        return _metric(name, cluster, *matchers)

    node = "cluster, node, instance"  # node-mode series: one exporter per node (instance where no node label)
    benign = f'reason!~"{"|".join(GPU_BENIGN_THROTTLE_REASONS)}"'
    throttling = f"{m('nomade_gpu_throttle_reason', benign)} == 1"
    gpu_busy = m("nomade_gpu_utilization_ratio", 'engine="gpu"')
    gpu_temp = m("nomade_gpu_temperature_celsius", 'sensor="gpu"')  # the die; memory sensors have other limits
    nfs = "cluster, server, export"
    lic = "cluster, server, vendor, feature"
    quota = "cluster, filesystem, type, name"
    quota_top = (
        f"topk by (cluster, filesystem) ({TOP_N}, max by ({quota}) ({m('nomade_quota_used_bytes')})"
        f" / max by ({quota}) ({m('nomade_quota_hard_limit_bytes')} > 0))"
    )
    job = "cluster, node, instance, job_id"
    oom_top = (
        f"topk by (cluster) ({TOP_N}, {m('nomade_job_usage_memory_usage_bytes')}"
        f" / ({m('nomade_job_usage_memory_limit_bytes')} > 0))"
    )
    # the hottest sensor of each node among those above their max (a max of 0 means the chip gives none)
    hot = (
        f"topk by ({node}) (1, {m('nomade_node_health_temperature_celsius')}"
        f" > ({m('nomade_node_health_temperature_max_celsius')} > 0))"
    )
    # the highest risk scores; max by the score's own labels: two analytics replicas publish the same figures
    risk_top = (
        f"topk by (cluster) ({RISK_TOP_N}, max by (cluster, job_id, user, account, partition, state)"
        f" ({m('nomade_job_risk_score')}))"
    )
    risk_job = "cluster, job_id"
    return {
        "scheduler": _selector(list(_SCHEDULER_FIELDS), cluster),
        "jobs": _tagged(
            {
                "jobs": f"sum by (cluster) ({m('nomade_job_usage_jobs')})",
                "nodes": f"count by (cluster) ({m('nomade_job_usage_jobs')})",
                "busy_nodes": f"count by (cluster) ({m('nomade_job_usage_jobs')} > 0)",
                "ratio": oom_top,
                "usage": f"{m('nomade_job_usage_memory_usage_bytes')} and on ({job}) {oom_top}",
                "limit": f"{m('nomade_job_usage_memory_limit_bytes')} and on ({job}) {oom_top}",
                "rss": f"{m('nomade_job_usage_memory_rss_bytes')} and on ({job}) {oom_top}",
                "user": f"max by ({job}, user) ({m('nomade_job_usage_info')}) and on ({job}) {oom_top}",
            }
        ),
        "risk": _tagged(
            {
                "score": risk_top,
                "driver": f"max by ({risk_job}, rank, feature) ({m('nomade_job_risk_driver')})"
                f" and on ({risk_job}) {risk_top}",
                "share": f"max by ({risk_job}, failure_class) ({m('nomade_job_risk_neighbour_share')})"
                f" and on ({risk_job}) {risk_top}",
                "neighbours": f"max by ({risk_job}) ({m('nomade_job_risk_neighbours')}) and on ({risk_job}) {risk_top}",
                "ood": f"max by ({risk_job}) ({m('nomade_job_risk_ood')}) and on ({risk_job}) {risk_top}",
                "model": f"max by (cluster, setting, version, models) ({m('nomade_model_info')})",
                "trained": f"max by (cluster, setting) ({m('nomade_model_trained_timestamp_seconds')})",
                "training_jobs": f"max by (cluster, setting) ({m('nomade_model_training_jobs')})",
                "threshold": f"max by (cluster, setting) ({m('nomade_model_threshold')})",
                "brier": f"max by (cluster, setting) ({m('nomade_model_brier_score')})",
                "auc": f"max by (cluster, setting, model) ({m('nomade_model_auc_roc')})",
                "high": f"max by (cluster, partition) ({m('nomade_job_risk_partition_high_risk_jobs')})",
                "mean": f"max by (cluster, partition) ({m('nomade_job_risk_partition_mean_score')})",
                "scored": f"max by (cluster, state) ({m('nomade_job_risk_scored_jobs')})",
                "scoring": f"max by (cluster, state, setting) ({m('nomade_job_risk_scoring_info')})",
            }
        ),
        "gpus": _tagged(
            {
                "gpus": f"count by ({node}) ({m('nomade_gpu_info')})",
                "util": f"avg by ({node}) ({gpu_busy})",
                "mem_used": f"sum by ({node}) ({m('nomade_gpu_memory_used_bytes')})",
                "mem_total": f"sum by ({node}) ({m('nomade_gpu_memory_total_bytes')})",
                "temp": f"max by ({node}) ({gpu_temp})",
                "throttled": f"count by ({node}) (count by ({node}, gpu) ({throttling}))",
                "reason": f"count by ({node}, reason) ({throttling})",
                "with_jobs": f"count by ({node}) (count by ({node}, gpu) ({m('nomade_gpu_job_info')}))",
            }
        ),
        "nfs": _tagged(
            {
                "clients": f"count by ({nfs}) (count by ({nfs}, node, instance) ({m('nomade_nfs_mount_info')}))",
                "ops": f"sum by ({nfs}) ({m('nomade_nfs_mount_operations_per_second')})",
                "read": f"sum by ({nfs}) ({m('nomade_nfs_read_bytes_per_second')})",
                "write": f"sum by ({nfs}) ({m('nomade_nfs_write_bytes_per_second')})",
                "rtt": f"max by ({nfs}) ({m('nomade_nfs_rtt_average_seconds')})",
                "retrans": f"max by ({nfs}) ({m('nomade_nfs_retransmission_ratio')})",
            }
        ),
        # max/min by the series' own labels: two controller exporters (primary, backup) report the same figures
        "licenses": _tagged(
            {
                "used": f"max by ({lic}) ({m('nomade_license_used')})",
                "issued": f"max by ({lic}) ({m('nomade_license_issued')})",
                "server_up": f"min by (cluster, server, host) ({m('nomade_license_server_up')})",
                "vendor_up": f"min by (cluster, server, vendor) ({m('nomade_license_vendor_daemon_up')})",
                "expiry": f"min by ({lic}) ({m('nomade_license_expiry_timestamp_seconds')}) - time()"
                f" < {LICENSE_EXPIRY_WINDOW_SECONDS}",
                "slurm_used": f"max by (cluster, license) ({m('nomade_license_slurm_used')})",
                "slurm_issued": f"max by (cluster, license) ({m('nomade_license_slurm_issued')})",
            }
        ),
        "quotas": _tagged(
            {
                "ratio": quota_top,
                "used": f"max by ({quota}) ({m('nomade_quota_used_bytes')}) and on ({quota}) {quota_top}",
                "hard": f"max by ({quota}) ({m('nomade_quota_hard_limit_bytes')}) and on ({quota}) {quota_top}",
                "over": f"max by (cluster, filesystem, type) ({m('nomade_quota_over_limit_entries')})",
            }
        ),
        "health": _tagged(
            {
                "services": f"count by (cluster) ({m('nomade_node_health_service_up')})",
                "service_nodes": f"count by (cluster) (count by ({node}) ({m('nomade_node_health_service_up')}))",
                "service_down": f"min by ({node}, service) ({m('nomade_node_health_service_up')}) == 0",
                "edac_nodes": f"count by (cluster) (count by ({node}) "
                f"({m('nomade_node_health_edac_uncorrectable_errors_total')}))",
                "edac": f"sum by ({node}) ({m('nomade_node_health_edac_uncorrectable_errors_total')}) > 0",
                "sensors": f"count by (cluster) ({m('nomade_node_health_temperature_celsius')})",
                "sensor_nodes": f"count by (cluster) (count by ({node}) "
                f"({m('nomade_node_health_temperature_celsius')}))",
                "hot": hot,
                "hot_max": f"{m('nomade_node_health_temperature_max_celsius')}"
                f" and on ({node}, chip, device, sensor, label) {hot}",
                "endpoints": f"min by (cluster, target, address) ({m('nomade_reachability_up')})",
                "reason": f"max by (cluster, target, address, reason) ({m('nomade_reachability_failure_info')})",
            }
        ),
    }


def status_queries(cluster: str | None = None) -> dict[str, str]:
    """The PromQL expressions :func:`gather` issues, by section (``finished`` has two: ``finished_1h``, ``_total``).

    Fourteen in all, whatever the number of nodes, jobs or GPUs: six for the core sections, then one per
    optional section (:data:`OPTIONAL_SECTIONS`), each folding several aggregations into one answer with
    :func:`_tagged`.

    The finished-job counters are first reduced with ``max by`` the counter's own labels, so that two exporters
    reporting the same sacct data (a primary and a backup controller) are not counted twice.
    """
    cm = "" if cluster is None else f"{{cluster={_promql_string(cluster)}}}"
    fin = f"nomade_slurm_job_finished_total{cm}"
    inner = "cluster, partition, state, failure_class"
    return {
        # One query: the statvfs figures, plus the analytics service's trend of used bytes (watch filesystem_used)
        # when it runs: slope, time to full and the current trend state.
        "filesystems": (
            _selector(
                ["nomade_filesystem_size_bytes", "nomade_filesystem_avail_bytes", "nomade_filesystem_free_bytes"],
                cluster,
            )
            + " or "
            + _selector(["nomade_trend_slope_per_second", "nomade_trend_time_to_threshold_seconds"], cluster, FS_WATCH)
            + " or ("
            + _selector(["nomade_trend_state"], cluster, FS_WATCH)
            + " == 1)"
        ),
        "queue": _selector(
            ["nomade_slurm_queue_jobs", "nomade_slurm_queue_oldest_pending_age_seconds", "nomade_slurm_partition_info"],
            cluster,
        ),
        "nodes": _selector(
            [
                "nomade_slurm_node_state",
                "nomade_slurm_node_flag",
                "nomade_slurm_node_cpu_load",
                "nomade_slurm_node_cpus",
                "nomade_slurm_node_cpus_allocated",
                "nomade_slurm_node_reason_info",
            ],
            cluster,
        ),
        # Exact where per-job series exist (jobs whose end is within the hour); else the counters' increase,
        # which misses jobs counted before the counter's first sample (Prometheus extrapolates from there).
        "finished_1h": (
            f"count by (cluster, failure_class) (max by (cluster, job_id, failure_class) (nomade_slurm_job_info{cm})"
            f" and on (cluster, job_id) ((time() - max by (cluster, job_id) "
            f"(nomade_slurm_job_end_timestamp_seconds{cm})) < 3600))"
            f" or sum by (cluster, failure_class) (max by ({inner}) (increase({fin}[1h])))"
        ),
        "finished_total": f"sum by (cluster, failure_class) (max by ({inner}) ({fin}))",
        "collectors": _selector(["nomade_collector_up", "nomade_collector_last_success_timestamp_seconds"], cluster),
        **_optional_queries(cluster),
    }


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _slurm_node(labels: Mapping[str, str]) -> str:
    """SLURM's node name on a controller metric.

    A scrape job that attaches a ``node`` target label to the controller exporter (without ``honor_labels``)
    makes Prometheus rename the metric's own ``node`` to ``exported_node``; that one is then the SLURM node.
    """
    return labels.get("exported_node") or labels.get("node", "")


def _fold_filesystems(samples: list[Sample]) -> list[FilesystemRow]:
    fields = {
        "nomade_filesystem_size_bytes": "size_bytes",
        "nomade_filesystem_avail_bytes": "avail_bytes",
        "nomade_filesystem_free_bytes": "free_bytes",
    }
    per: dict[tuple[str, str, str, str, str], dict[str, float | None]] = defaultdict(dict)
    trends: dict[tuple[str, str, str, str, str], dict[str, object]] = defaultdict(dict)
    for s in samples:
        lb = s.labels
        key = (
            lb.get("cluster", ""),
            lb.get("node", ""),
            lb.get("mountpoint", ""),
            lb.get("device", ""),
            lb.get("fstype", ""),
        )
        if s.name == "nomade_trend_state":
            trends[key]["trend"] = lb.get("state")
        elif s.name == "nomade_trend_slope_per_second":
            trends[key]["slope"] = _finite(s.value)
        elif s.name == "nomade_trend_time_to_threshold_seconds":
            trends[key]["ttf"] = _finite(s.value)
        elif (f := fields.get(s.name)) is not None:
            per[key][f] = _finite(s.value)
    local: list[FilesystemRow] = []
    shared: dict[tuple[str, str, str, str], list[FilesystemRow]] = defaultdict(list)
    for (cluster, node, mnt, dev, fstype), vals in per.items():
        tr = trends.get((cluster, node, mnt, dev, fstype), {})
        row = FilesystemRow(
            mnt,
            dev,
            fstype,
            node,
            vals.get("size_bytes"),
            vals.get("avail_bytes"),
            vals.get("free_bytes"),
            cluster,
            trend=tr.get("trend"),  # type: ignore[arg-type]
            slope_bytes_per_second=tr.get("slope"),  # type: ignore[arg-type]
            time_to_full_seconds=tr.get("ttf"),  # type: ignore[arg-type]
        )
        if fstype.lower() in SHARED_FSTYPES:
            shared[(cluster, mnt, dev, fstype)].append(row)
        else:
            local.append(row)
    out = list(local)
    for rows in shared.values():
        if len(rows) == 1:
            out.append(rows[0])
            continue
        # nodes see the same export at slightly different scrape times: show the least available (conservative)
        worst = min(rows, key=lambda r: math.inf if r.avail_bytes is None else r.avail_bytes)
        out.append(
            FilesystemRow(
                worst.mountpoint,
                worst.device,
                worst.fstype,
                "",
                worst.size_bytes,
                worst.avail_bytes,
                worst.free_bytes,
                worst.cluster,
                nodes=len(rows),
                trend=worst.trend,
                slope_bytes_per_second=worst.slope_bytes_per_second,
                time_to_full_seconds=worst.time_to_full_seconds,
            )
        )
    out.sort(key=lambda r: (r.cluster, r.nodes == 1, natural_key(r.node), r.mountpoint))
    return out


def _fold_queue(samples: list[Sample]) -> list[QueueRow]:
    # max, not sum, across exporters: two controller exporters (primary, backup) report the same queue
    states: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    oldest: dict[tuple[str, str], float] = {}
    for s in samples:
        key = (s.labels.get("cluster", ""), s.labels.get("partition", ""))
        v = _finite(s.value)
        if v is None:
            continue
        if s.name == "nomade_slurm_queue_jobs":
            st = s.labels.get("state", "").upper()
            states[key][st] = max(v, states[key].get(st, v))
        elif s.name == "nomade_slurm_partition_info":
            states.setdefault(key, {})  # every partition gets a row, also one with an empty queue
        elif s.name == "nomade_slurm_queue_oldest_pending_age_seconds":
            states.setdefault(key, {})
            oldest[key] = max(v, oldest.get(key, v))
    rows = [QueueRow(p, dict(st), oldest.get((c, p)), c) for (c, p), st in states.items()]
    rows.sort(key=lambda r: (r.cluster, natural_key(r.partition)))
    return rows


def _fold_nodes(samples: list[Sample]) -> list[NodeRow]:
    data: dict[tuple[str, str], dict[str, object]] = defaultdict(lambda: {"flags": set(), "states": set()})
    for s in samples:
        node = _slurm_node(s.labels)
        if not node:
            continue
        d = data[(s.labels.get("cluster", ""), node)]
        v = _finite(s.value)
        name = s.name
        if name == "nomade_slurm_node_state":
            if v is not None and v >= 0.5:  # 1 marks the current state; tolerate 0-valued siblings
                d["states"].add(s.labels.get("state", ""))
        elif name == "nomade_slurm_node_flag":
            if v is not None and v >= 0.5:
                d["flags"].add(s.labels.get("flag", ""))
        elif name == "nomade_slurm_node_reason_info":
            d["reason"] = s.labels.get("reason") or None
            d["reason_user"] = s.labels.get("user") or None
        elif name in ("nomade_slurm_node_cpu_load", "nomade_slurm_node_cpus", "nomade_slurm_node_cpus_allocated"):
            d[name.removeprefix("nomade_slurm_node_")] = v
    rows = []
    for (cluster, node), d in data.items():
        states = sorted(x for x in d["states"] if x)
        rows.append(
            NodeRow(
                node=node,
                state="+".join(states) or None,
                flags=tuple(sorted(x for x in d["flags"] if x)),
                cpu_load=d.get("cpu_load"),
                cpus=d.get("cpus"),
                cpus_allocated=d.get("cpus_allocated"),
                reason=d.get("reason"),
                reason_user=d.get("reason_user"),
                cluster=cluster,
            )
        )
    rows.sort(key=lambda r: (r.cluster, natural_key(r.node)))
    return rows


def _fold_finished(last_hour: list[Sample], total: list[Sample]) -> list[FinishedRow]:
    lh = {(s.labels.get("cluster", ""), s.labels.get("failure_class", "")): _finite(s.value) for s in last_hour}
    tot = {(s.labels.get("cluster", ""), s.labels.get("failure_class", "")): _finite(s.value) for s in total}
    rows = [FinishedRow(fc, lh.get((c, fc)), tot.get((c, fc)), c) for c, fc in set(lh) | set(tot)]
    rows.sort(
        key=lambda r: (r.cluster, r.failure_class.lower() not in SUCCESS_CLASSES, -(r.total or 0), r.failure_class)
    )
    return rows


def _fold_collectors(samples: list[Sample]) -> list[CollectorRow]:
    up: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    last: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for s in samples:
        key = (s.labels.get("cluster", ""), s.labels.get("collector", ""))
        where = s.labels.get("node") or s.labels.get("instance") or "?"
        v = _finite(s.value)
        if v is None:
            continue
        if s.name == "nomade_collector_up":
            up[key][where] = v
        elif s.name == "nomade_collector_last_success_timestamp_seconds":
            last[key][where] = v
    rows = []
    for key in set(up) | set(last):
        ups = up.get(key, {})
        times = list(last.get(key, {}).values())
        rows.append(
            CollectorRow(
                collector=key[1],
                up=sum(1 for v in ups.values() if v >= 0.5),
                targets=len(ups),
                down_on=tuple(sorted((w for w, v in ups.items() if v < 0.5), key=natural_key)),
                last_success_oldest=min(times) if times else None,
                last_success_newest=max(times) if times else None,
                cluster=key[0],
            )
        )
    rows.sort(key=lambda r: (r.cluster, r.collector))
    return rows


def _by_stat(samples: list[Sample]) -> dict[str, list[Sample]]:
    """Split a :func:`_tagged` answer by its ``stat`` label, dropping non-finite values (absent beats wrong)."""
    out: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if math.isfinite(s.value):
            out[s.labels.get("stat", "")].append(s)
    return out


def _where(labels: Mapping[str, str]) -> str:
    """The node a node-mode series comes from: its ``node`` target label, else its ``instance``."""
    return labels.get("node") or labels.get("instance", "")


def _fold_scheduler(samples: list[Sample]) -> list[SchedulerRow]:
    per: dict[str, dict[str, float]] = defaultdict(dict)
    for s in samples:
        f = _SCHEDULER_FIELDS.get(s.name)
        v = _finite(s.value)
        if f is None or v is None:
            continue
        d = per[s.labels.get("cluster", "")]
        d[f] = max(v, d.get(f, v))  # primary and backup controllers read the same sdiag
    return [SchedulerRow(cluster=c, **d) for c, d in sorted(per.items())]  # type: ignore[arg-type]


def _fold_gpus(samples: list[Sample]) -> list[GpuNodeRow]:
    per: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    reasons: dict[tuple[str, str], set[str]] = defaultdict(set)
    for stat, rows in _by_stat(samples).items():
        for s in rows:
            key = (s.labels.get("cluster", ""), _where(s.labels))
            if stat == "reason":
                reasons[key].add(s.labels.get("reason", ""))
                per.setdefault(key, {})
            else:
                per[key][stat] = s.value
    out = []
    for (cluster, node), d in per.items():
        gpus = d.get("gpus")
        out.append(
            GpuNodeRow(
                node=node,
                cluster=cluster,
                gpus=None if gpus is None else round(gpus),
                utilization_ratio=d.get("util"),
                memory_used_bytes=d.get("mem_used"),
                memory_total_bytes=d.get("mem_total"),
                temperature_max_celsius=d.get("temp"),
                throttled=round(d.get("throttled", 0)),
                throttle_reasons=tuple(sorted(r for r in reasons.get((cluster, node), ()) if r)),
                with_jobs=round(d.get("with_jobs", 0)),
            )
        )
    out.sort(key=lambda r: (r.cluster, natural_key(r.node)))
    return out


def _fold_nfs(samples: list[Sample]) -> list[NfsMountRow]:
    fields = {
        "clients": "clients",
        "ops": "operations_per_second",
        "read": "read_bytes_per_second",
        "write": "write_bytes_per_second",
        "rtt": "rtt_max_seconds",
        "retrans": "retransmission_ratio_max",
    }
    per: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for stat, rows in _by_stat(samples).items():
        f = fields.get(stat)
        if f is None:
            continue
        for s in rows:
            lb = s.labels
            per[(lb.get("cluster", ""), lb.get("server", ""), lb.get("export", ""))][f] = s.value
    out = []
    for (cluster, server, export), d in per.items():
        clients = round(d.pop("clients", 0))
        out.append(NfsMountRow(server, export, cluster, clients, **d))  # type: ignore[arg-type]
    out.sort(key=lambda r: (r.cluster, natural_key(r.server), r.export))
    return out


def _fold_licenses(
    samples: list[Sample],
) -> tuple[list[LicenseRow], list[LicenseDaemonRow], list[LicenseExpiryRow]]:
    stats = _by_stat(samples)
    counts: dict[tuple[str, bool, str, str, str], dict[str, float]] = defaultdict(dict)
    for stat in ("used", "issued", "slurm_used", "slurm_issued"):
        slurm = stat.startswith("slurm_")
        for s in stats.get(stat, []):
            lb = s.labels
            key = (
                (lb.get("cluster", ""), True, "", "", lb.get("license", ""))
                if slurm
                else (lb.get("cluster", ""), False, lb.get("server", ""), lb.get("vendor", ""), lb.get("feature", ""))
            )
            counts[key][stat.removeprefix("slurm_")] = s.value
    features = [
        LicenseRow(feature, d.get("used"), d.get("issued"), server, vendor, slurm, cluster)
        for (cluster, slurm, server, vendor, feature), d in counts.items()
    ]
    features.sort(key=lambda r: (r.cluster, not r.slurm, natural_key(r.server), r.vendor, r.feature))
    daemons = [
        LicenseDaemonRow(
            s.labels.get("server", ""), s.labels.get("host", ""), "server", s.value >= 0.5, s.labels.get("cluster", "")
        )
        for s in stats.get("server_up", [])
    ] + [
        LicenseDaemonRow(
            s.labels.get("server", ""),
            s.labels.get("vendor", ""),
            "vendor",
            s.value >= 0.5,
            s.labels.get("cluster", ""),
        )
        for s in stats.get("vendor_up", [])
    ]
    daemons.sort(key=lambda r: (r.cluster, r.kind, natural_key(r.server), r.name))
    expiring = [
        LicenseExpiryRow(
            s.labels.get("feature", ""),
            s.value,
            s.labels.get("server", ""),
            s.labels.get("vendor", ""),
            s.labels.get("cluster", ""),
        )
        for s in stats.get("expiry", [])
    ]
    expiring.sort(key=lambda r: (r.seconds_left, r.cluster, r.feature))
    return features, daemons, expiring


def _fold_quotas(samples: list[Sample]) -> tuple[list[QuotaRow], list[QuotaOverRow]]:
    stats = _by_stat(samples)
    per: dict[tuple[str, str, str, str], dict[str, float]] = defaultdict(dict)
    for stat in ("ratio", "used", "hard"):
        for s in stats.get(stat, []):
            lb = s.labels
            per[(lb.get("cluster", ""), lb.get("filesystem", ""), lb.get("type", ""), lb.get("name", ""))][stat] = (
                s.value
            )
    top = [
        QuotaRow(fs, typ, name, d["ratio"], d.get("used"), d.get("hard"), cluster)
        for (cluster, fs, typ, name), d in per.items()
        if "ratio" in d
    ]
    top.sort(key=lambda r: (r.cluster, r.filesystem, -r.ratio, r.type, r.name))
    over = [
        QuotaOverRow(s.labels.get("filesystem", ""), s.labels.get("type", ""), s.value, s.labels.get("cluster", ""))
        for s in stats.get("over", [])
    ]
    over.sort(key=lambda r: (r.cluster, r.filesystem, r.type))
    return top, over


def _fold_jobs(samples: list[Sample]) -> tuple[list[JobCountRow], list[JobMemoryRow]]:
    stats = _by_stat(samples)
    counts: dict[str, dict[str, float]] = defaultdict(dict)
    for stat in ("jobs", "nodes", "busy_nodes"):
        for s in stats.get(stat, []):
            counts[s.labels.get("cluster", "")][stat] = s.value
    rows = [
        JobCountRow(c, d.get("jobs", 0.0), round(d.get("nodes", 0)), round(d.get("busy_nodes", 0)))
        for c, d in sorted(counts.items())
    ]
    per: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    users: dict[tuple[str, str, str], str] = {}
    for stat in ("ratio", "usage", "limit", "rss", "user"):
        for s in stats.get(stat, []):
            key = (s.labels.get("cluster", ""), _where(s.labels), s.labels.get("job_id", ""))
            if stat == "user":
                users[key] = s.labels.get("user", "")
            else:
                per[key][stat] = s.value
    oom = [
        JobMemoryRow(
            job_id, node, d["ratio"], users.get((c, node, job_id), ""), d.get("usage"), d.get("limit"), d.get("rss"), c
        )
        for (c, node, job_id), d in per.items()
        if "ratio" in d
    ]
    oom.sort(key=lambda r: (r.cluster, -r.ratio, natural_key(r.job_id), natural_key(r.node)))
    return rows, oom


def _fold_health(samples: list[Sample]) -> tuple[HealthCounts | None, list[HealthProblem]]:
    stats = _by_stat(samples)
    if not stats:
        return None, []

    def total(stat: str) -> int:
        return round(sum(s.value for s in stats.get(stat, [])))

    endpoints = stats.get("endpoints", [])
    counts = HealthCounts(
        services=total("services"),
        service_nodes=total("service_nodes"),
        edac_nodes=total("edac_nodes"),
        sensors=total("sensors"),
        sensor_nodes=total("sensor_nodes"),
        endpoints=len(endpoints),
    )
    problems = [
        HealthProblem("service", _where(s.labels), s.labels.get("service", ""), cluster=s.labels.get("cluster", ""))
        for s in stats.get("service_down", [])
    ]
    problems += [
        HealthProblem("edac", _where(s.labels), value=s.value, cluster=s.labels.get("cluster", ""))
        for s in stats.get("edac", [])
    ]
    # one hot sensor per node at most (topk 1 by node), so the node keys its max
    limits = {(s.labels.get("cluster", ""), _where(s.labels)): s.value for s in stats.get("hot_max", [])}
    for s in stats.get("hot", []):
        lb = s.labels
        key = (lb.get("cluster", ""), _where(lb))
        sensor = " ".join(x for x in (lb.get("chip", ""), lb.get("label") or lb.get("sensor", "")) if x)
        problems.append(
            HealthProblem("temperature", key[1], sensor, value=s.value, limit=limits.get(key), cluster=key[0])
        )
    reasons = {
        (s.labels.get("cluster", ""), s.labels.get("target", ""), s.labels.get("address", "")): s.labels.get(
            "reason", ""
        )
        for s in stats.get("reason", [])
    }
    for s in endpoints:
        if s.value >= 0.5:
            continue
        key = (s.labels.get("cluster", ""), s.labels.get("target", ""), s.labels.get("address", ""))
        problems.append(HealthProblem("unreachable", "", key[1], key[2], reasons.get(key, ""), cluster=key[0]))
    kinds = ("service", "edac", "temperature", "unreachable")
    problems.sort(key=lambda p: (kinds.index(p.kind), p.cluster, natural_key(p.node), p.subject, p.detail))
    return counts, problems


def _fold_risk(
    samples: list[Sample],
) -> tuple[
    list[RiskJobRow],
    list[RiskModelRow],
    list[RiskPartitionRow],
    dict[tuple[str, str], float],
    dict[tuple[str, str], str],
]:
    stats = _by_stat(samples)

    def job_key(lb: Mapping[str, str]) -> tuple[str, str]:
        return lb.get("cluster", ""), lb.get("job_id", "")

    drivers: dict[tuple[str, str], list[tuple[float, str, float]]] = defaultdict(list)
    for s in stats.get("driver", []):
        try:
            rank = float(s.labels.get("rank", ""))
        except ValueError:
            rank = math.inf
        drivers[job_key(s.labels)].append((rank, s.labels.get("feature", ""), s.value))
    shares: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    for s in stats.get("share", []):
        shares[job_key(s.labels)].append((s.labels.get("failure_class", ""), s.value))
    neighbours = {job_key(s.labels): round(s.value) for s in stats.get("neighbours", [])}
    ood = {job_key(s.labels): s.value >= 0.5 for s in stats.get("ood", [])}
    jobs = []
    for s in stats.get("score", []):
        lb = s.labels
        key = job_key(lb)
        jobs.append(
            RiskJobRow(
                job_id=key[1],
                score=s.value,
                user=lb.get("user", ""),
                account=lb.get("account", ""),
                partition=lb.get("partition", ""),
                state=lb.get("state", ""),
                cluster=key[0],
                drivers=tuple((f, v) for _, f, v in sorted(drivers.get(key, []), key=lambda d: (d[0], d[1]))),
                neighbour_shares=tuple(sorted(shares.get(key, []), key=lambda x: (-x[1], x[0]))),
                neighbours=neighbours.get(key),
                ood=ood.get(key),
            )
        )
    jobs.sort(key=lambda r: (r.cluster, -r.score, natural_key(r.job_id)))

    models: dict[tuple[str, str], dict[str, object]] = defaultdict(dict)
    for s in stats.get("model", []):
        d = models[(s.labels.get("cluster", ""), s.labels.get("setting", ""))]
        d["version"] = s.labels.get("version", "")
        d["models"] = s.labels.get("models", "")
    fields = {"trained": "trained_timestamp", "training_jobs": "training_jobs", "threshold": "threshold"}
    fields["brier"] = "brier"
    for stat, f in fields.items():
        for s in stats.get(stat, []):
            models[(s.labels.get("cluster", ""), s.labels.get("setting", ""))][f] = s.value
    aucs: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    for s in stats.get("auc", []):
        key = (s.labels.get("cluster", ""), s.labels.get("setting", ""))
        models.setdefault(key, {})
        aucs[key].append((s.labels.get("model", ""), s.value))
    model_rows = [
        RiskModelRow(setting, cluster, auc=tuple(sorted(aucs.get((cluster, setting), []))), **d)  # type: ignore[arg-type]
        for (cluster, setting), d in sorted(models.items())
    ]

    parts: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for stat in ("high", "mean"):
        for s in stats.get(stat, []):
            parts[(s.labels.get("cluster", ""), s.labels.get("partition", ""))][stat] = s.value
    part_rows = [
        RiskPartitionRow(p, c, d.get("high"), d.get("mean"))
        for (c, p), d in sorted(parts.items(), key=lambda kv: (kv[0][0], natural_key(kv[0][1])))
    ]
    scored = {(s.labels.get("cluster", ""), s.labels.get("state", "")): s.value for s in stats.get("scored", [])}
    scoring = {
        (s.labels.get("cluster", ""), s.labels.get("state", "").upper()): s.labels.get("setting", "")
        for s in stats.get("scoring", [])
    }
    return jobs, model_rows, part_rows, scored, scoring


def gather(client: PrometheusClient, now: float | None = None, cluster: str | None = None) -> StatusSnapshot:
    """Read the status figures from Prometheus in fourteen queries (:func:`status_queries`), all at ``now``.

    Args:
        client: the query client.
        now: evaluation time (Unix seconds); the local clock when ``None``.
        cluster: keep only series whose ``cluster`` label equals it; all clusters when ``None``.

    Returns:
        The snapshot. A section whose query the server rejects (:class:`PromQLError`) is left empty and its
        message stored in ``errors``, so one unsupported expression does not blank the whole screen. An optional
        section whose collector reports nothing is simply empty (and not shown).

    Raises:
        PrometheusUnavailable: the server cannot be reached or answers 5xx (after the client's retries).

    """
    t = _time.time() if now is None else float(now)
    queries = status_queries(cluster)
    before = client.queries_issued
    results: dict[str, list[Sample]] = {}
    errors: dict[str, str] = {}
    for key, expr in queries.items():
        try:
            results[key] = client.query(expr, time=t)
        except PromQLError as exc:
            section = "finished" if key.startswith("finished") else key
            errors.setdefault(section, str(exc))
            results[key] = []
    clusters = sorted({s.labels["cluster"] for v in results.values() for s in v if s.labels.get("cluster")})
    licenses, license_daemons, license_expiring = _fold_licenses(results["licenses"])
    quotas, quota_over = _fold_quotas(results["quotas"])
    job_counts, near_oom = _fold_jobs(results["jobs"])
    health, health_problems = _fold_health(results["health"])
    risk_jobs, risk_models, risk_partitions, risk_scored, risk_scoring = _fold_risk(results["risk"])
    return StatusSnapshot(
        prometheus_url=client.base_url,
        time=t,
        clusters=tuple(clusters),
        filesystems=_fold_filesystems(results["filesystems"]),
        queue=_fold_queue(results["queue"]),
        nodes=_fold_nodes(results["nodes"]),
        finished=_fold_finished(results["finished_1h"], results["finished_total"]),
        collectors=_fold_collectors(results["collectors"]),
        scheduler=_fold_scheduler(results["scheduler"]),
        gpus=_fold_gpus(results["gpus"]),
        nfs=_fold_nfs(results["nfs"]),
        licenses=licenses,
        license_daemons=license_daemons,
        license_expiring=license_expiring,
        quotas=quotas,
        quota_over=quota_over,
        job_counts=job_counts,
        near_oom=near_oom,
        health=health,
        health_problems=health_problems,
        risk_jobs=risk_jobs,
        risk_models=risk_models,
        risk_partitions=risk_partitions,
        risk_scored=risk_scored,
        risk_scoring=risk_scoring,
        errors=errors,
        queries=client.queries_issued - before,
    )


# -- text helpers -------------------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Bidirectional controls (Unicode TR9): they reorder what follows on the line, so a label could disguise itself.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def natural_key(s: str) -> tuple[object, ...]:
    """Sort key that orders ``node2`` before ``node10``."""
    # ASCII digits only: str.isdigit() accepts "²", which int() refuses
    return tuple((0, int(p), "") if "0" <= p[0] <= "9" else (1, 0, p) for p in re.split(r"([0-9]+)", s) if p)


def sanitize(text: str) -> str:
    r"""Make label text safe to lay out on one terminal line; printable characters, quotes included, are kept.

    Control characters (C0, DEL, C1: newlines, ESC of ANSI sequences), line/paragraph separators, lone
    surrogates and bidirectional controls are replaced by visible escapes (``\n``, ``\x1b``, ``\u202e``).
    """
    out = []
    for ch in text:
        if ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _char_width(ch: str) -> int:
    """Terminal cells of one character (after :func:`sanitize`): 0 for combining marks, 2 for wide/full-width."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Terminal cells that ``text`` occupies, ignoring the SGR colour sequences this module emits."""
    return sum(_char_width(ch) for ch in _ANSI.sub("", text))


def fit(text: str, width: int, align: str = "<", ellipsis: str = "…") -> str:
    """Truncate (with ``ellipsis``) or pad plain ``text`` to exactly ``width`` cells; ``align`` is ``<`` or ``>``."""
    if width <= 0:
        return ""
    w = display_width(text)
    if w > width:
        keep, used = [], 0
        room = width - display_width(ellipsis)
        for ch in text:
            cw = _char_width(ch)
            if used + cw > room:
                break
            keep.append(ch)
            used += cw
        text = "".join(keep) + ellipsis
        w = used + display_width(ellipsis)
    pad = " " * (width - w)
    return pad + text if align == ">" else text + pad


def _clip_line(line: str, width: int, ellipsis: str) -> str:
    """Cut a rendered line (which may hold SGR sequences) to ``width`` cells, resetting colour if cut."""
    if display_width(line) <= width:
        return line.rstrip()
    out, used, room = [], 0, width - display_width(ellipsis)
    pos = 0
    had_sgr = False
    while pos < len(line):
        m = _ANSI.match(line, pos)
        if m:
            out.append(m.group())
            had_sgr = True
            pos = m.end()
            continue
        cw = _char_width(line[pos])
        if used + cw > room:
            break
        out.append(line[pos])
        used += cw
        pos += 1
    return "".join(out) + ellipsis + ("\x1b[0m" if had_sgr else "")


def format_bytes(n: float | None) -> str:
    """IEC binary units with one decimal: ``34.0 GiB``; ``?`` when unknown."""
    if n is None:
        return "?"
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    v, i = float(n), 0
    while abs(v) >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{v:.0f} {units[i]}" if i == 0 else f"{v:.1f} {units[i]}"


def format_age(seconds: float | None) -> str:
    """A compact duration: ``45s``, ``12m``, ``3h05m``, ``2d04h``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _trend_text(r: FilesystemRow) -> str:
    """``  +1.2 GiB/d, full in 3d04h (accelerating growth)``; empty without analytics figures.

    The slope is shown per day (DESIGN.md: dashboards convert the per-second derivatives to GB/day).
    """
    parts = []
    if r.slope_bytes_per_second is not None:
        per_day = r.slope_bytes_per_second * 86400
        parts.append(("+" if per_day >= 0 else "-") + format_bytes(abs(per_day)) + "/d")
    if r.time_to_full_seconds is not None:
        parts.append("full in " + format_age(r.time_to_full_seconds))
    text = ", ".join(parts)
    if r.trend:
        text += f" ({r.trend.replace('_', ' ')})" if text else r.trend.replace("_", " ")
    return "  " + text if text else ""


def format_count(v: float | None) -> str:
    """A job count rounded to an integer with thousands separators (``increase()`` extrapolates fractions)."""
    return "-" if v is None else f"{round(v):,}"


def format_seconds(v: float | None) -> str:
    """A short duration with three significant digits: ``0.85ms``, ``35.2ms``, ``1.25s``; ``-`` when unknown.

    From 100 s on, :func:`format_age` (``2m``, ``1h05m``).
    """
    if v is None or not math.isfinite(v):
        return "-"
    ms = v * 1000
    if ms < 999.5:
        return "0ms" if ms <= 0 else "<0.001ms" if ms < 0.001 else f"{ms:.3g}ms"
    return f"{v:.3g}s" if v < 99.95 else format_age(v)


def format_number(v: float | None) -> str:
    """A gauge for display: integers with thousands separators, else one decimal; ``-`` when unknown."""
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:,.0f}" if v == round(v) or abs(v) >= 1000 else f"{v:,.1f}"


# -- rendering ----------------------------------------------------------------------------------------------------

# Usage colour bands for bars (display only; alerting thresholds live in nomade.alerting's config).
WARN_RATIO = 0.80
CRIT_RATIO = 0.90


@dataclass(frozen=True)
class _Style:
    color: bool
    ascii_only: bool

    def sgr(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def bold(self, t: str) -> str:
        return self.sgr(t, "1")

    def dim(self, t: str) -> str:
        return self.sgr(t, "2")

    def red(self, t: str) -> str:
        return self.sgr(t, "31")

    def yellow(self, t: str) -> str:
        return self.sgr(t, "33")

    def green(self, t: str) -> str:
        return self.sgr(t, "32")

    def by_ratio(self, t: str, ratio: float | None) -> str:
        if ratio is None:
            return t
        return self.red(t) if ratio >= CRIT_RATIO else self.yellow(t) if ratio >= WARN_RATIO else self.green(t)

    @property
    def full(self) -> str:
        return "#" if self.ascii_only else "█"

    @property
    def empty(self) -> str:
        return "." if self.ascii_only else "░"

    @property
    def rule(self) -> str:
        return "=" if self.ascii_only else "═"

    @property
    def branch(self) -> str:
        return "`-" if self.ascii_only else "└─"

    @property
    def ellipsis(self) -> str:
        return "~" if self.ascii_only else "…"

    @property
    def dot(self) -> str:
        return "|" if self.ascii_only else "·"

    def fit(self, text: str, width: int, align: str = "<") -> str:
        return fit(text, width, align, self.ellipsis)

    def label(self, text: str) -> str:
        """Label text made safe for one line (:func:`sanitize`), and ASCII-escaped on ASCII terminals."""
        clean = sanitize(text)
        return clean.encode("ascii", "backslashreplace").decode("ascii") if self.ascii_only else clean


def bar(ratio: float | None, cells: int, full: str = "█", empty: str = "░") -> str:
    """A usage bar of ``cells`` characters, ``round(ratio × cells)`` of them full; blank-filled when unknown."""
    if ratio is None:
        return " " * cells
    n = min(cells, max(0, round(min(max(ratio, 0.0), 1.0) * cells)))
    return full * n + empty * (cells - n)


def _qualify(st: _Style, cluster: str, name: str, multi: bool) -> str:
    """``cluster/name`` when the snapshot spans several clusters, else ``name`` (already sanitised)."""
    return f"{st.label(cluster)}/{name}" if multi and cluster else name


def _partial_error(snap: StatusSnapshot, section: str, st: _Style) -> list[str]:
    """A note under a section that has rows but whose other query failed (``finished``: 1 h vs total)."""
    return [f"  query failed: {st.label(snap.errors[section])}"] if section in snap.errors else []


def _no_data(snap: StatusSnapshot, section: str, st: _Style) -> str:
    """Why a section is empty: its query failed, its collector is absent or down, or it reports no series."""
    if section in snap.errors:
        return f"query failed: {st.label(snap.errors[section])}"
    name = SECTION_COLLECTOR[section]
    rows = [c for c in snap.collectors if c.collector == name]
    if not rows or sum(c.up for c in rows) == 0:
        down = [w for c in rows for w in c.down_on]
        where = f": down on {', '.join(st.label(w) for w in down[:5])}" if down else ""
        return f"no data (collector {name} not reporting{where})"
    return f"no series (collector {name} is up)"


def _header(snap: StatusSnapshot, width: int, st: _Style) -> list[str]:
    title = f" {'NOMADE' if st.ascii_only else 'NØMADE'} status "
    left = st.rule * 3
    right = st.rule * max(3, width - display_width(title) - 3)
    when = _time.strftime("%Y-%m-%d %H:%M:%S %z", _time.localtime(snap.time))
    parts = []
    if snap.clusters:
        parts.append(
            ("cluster " if len(snap.clusters) == 1 else "clusters ") + ", ".join(st.label(c) for c in snap.clusters)
        )
    parts += [when, f"prometheus {st.label(snap.prometheus_url)}"]
    return [st.bold(left + title + right), f" {st.dot} ".join(parts)]


def _render_filesystems(snap: StatusSnapshot, width: int, st: _Style, max_rows: int) -> list[str]:
    lines = [st.bold("Filesystems:")]
    rows = snap.filesystems
    if not rows:
        return lines + ["  " + _no_data(snap, "filesystems", st)]
    multi = len(snap.clusters) > 1
    grouped = any(r.node or r.nodes > 1 for r in rows)
    indent = 4 if grouped else 2
    size_w = 23  # "1023.9 GiB / 1023.9 GiB"
    mount_w = min(32, max(12, width // 5))
    type_w = 7
    trend_w = max((len(_trend_text(r)) for r in rows), default=0)  # the analytics figures, when present
    bar_w = min(40, max(5, width - (indent + mount_w + 1 + type_w + 1 + 2 + 1 + 6 + 2 + size_w + trend_w)))
    shown = rows
    hidden = 0
    if max_rows and len(rows) > max_rows:
        # keep the fullest filesystems, then show them in the usual grouped order
        keep = sorted(rows, key=lambda r: -(r.used_ratio if r.used_ratio is not None else -1))[:max_rows]
        keep_ids = {id(r) for r in keep}
        shown = [r for r in rows if id(r) in keep_ids]
        hidden = len(rows) - len(shown)
    group = None
    for r in shown:
        if grouped:
            g = (r.cluster, r.node, r.nodes)
            if g != group:
                group = g
                label = (
                    _qualify(st, r.cluster, f"shared ({r.nodes} nodes)", multi)
                    if r.nodes > 1
                    else _qualify(st, r.cluster, st.label(r.node), multi) or "(no node label)"
                )
                lines.append("  " + st.fit(label, width - 2))
        ratio = r.used_ratio
        pct = "  n/a" if ratio is None else f"{ratio * 100:5.1f}%"
        sizes = f"{format_bytes(r.used_bytes)} / {format_bytes(r.size_bytes)}"
        lines.append(
            " " * indent
            + st.fit(st.label(r.mountpoint), mount_w)
            + " "
            + st.dim(st.fit(st.label(r.fstype), type_w))
            + " ["
            + st.by_ratio(bar(ratio, bar_w, st.full, st.empty), ratio)
            + "] "
            + st.by_ratio(fit(pct, 6, ">"), ratio)
            + "  "
            + sizes
            + _trend_text(r)
        )
    if hidden:
        lines.append(f"  {st.ellipsis} {hidden} more filesystem{'s' if hidden != 1 else ''} less full")
    return lines


def _render_queue(snap: StatusSnapshot, width: int, st: _Style) -> list[str]:
    lines = [st.bold("Queue:")]
    rows = snap.queue
    if not rows:
        return lines + ["  " + _no_data(snap, "queue", st)]
    multi = len(snap.clusters) > 1
    part_w = min(30, max(10, width - 2 - 37 - 16))
    lines.append(
        st.dim("  " + fit("partition", part_w) + f" {'running':>9} {'pending':>9} {'other':>7}" + "  oldest pending")
    )

    def row(name: str, running: float, pending: float, other: float, age: float | None) -> str:
        age_s = format_age(age)
        return (
            "  " + st.fit(name, part_w) + f" {format_count(running):>9} {format_count(pending):>9}"
            f" {format_count(other):>7}  " + (st.yellow(age_s) if age is not None and age >= 86400 else age_s)
        )

    for r in rows:
        lines.append(
            row(
                _qualify(st, r.cluster, st.label(r.partition), multi),
                r.running,
                r.pending,
                r.other,
                r.oldest_pending_age_seconds,
            )
        )
    if len(rows) > 1:
        ages = [r.oldest_pending_age_seconds for r in rows if r.oldest_pending_age_seconds is not None]
        lines.append(
            st.dim(
                row(
                    "total",
                    sum(r.running for r in rows),
                    sum(r.pending for r in rows),
                    sum(r.other for r in rows),
                    max(ages) if ages else None,
                )
            )
        )
    return lines


def _node_state_text(r: NodeRow) -> str:
    """SLURM's compound notation, as scontrol prints it: ``IDLE+DRAIN+NOT_RESPONDING``."""
    return "+".join([(r.state or "?").upper()] + [f.upper() for f in r.flags])


def _render_nodes(snap: StatusSnapshot, width: int, st: _Style, max_rows: int) -> list[str]:
    lines = [st.bold("Nodes:")]
    rows = snap.nodes
    if not rows:
        return lines + ["  " + _no_data(snap, "nodes", st)]
    multi = len(snap.clusters) > 1
    by_state: dict[str, int] = defaultdict(int)
    by_flag: dict[str, int] = defaultdict(int)
    for r in rows:
        by_state[r.state or "unknown"] += 1
        for f in r.flags:
            by_flag[f] += 1
    summary = f"  {len(rows)} node{'s' if len(rows) != 1 else ''}: " + "  ".join(
        f"{st.label(k)} {v}" for k, v in sorted(by_state.items())
    )
    if by_flag:
        summary += f"  {st.dot}  " + "  ".join(f"{st.label(k)} {v}" for k, v in sorted(by_flag.items()))
    lines.append(summary)
    node_w = min(24, max(8, max(display_width(_qualify(st, r.cluster, st.label(r.node), multi)) for r in rows)))
    state_w = min(28, max(10, width - 2 - node_w - 1 - 22 - 12))
    ordered = sorted(rows, key=lambda r: (not r.problem, r.cluster, natural_key(r.node)))
    shown = ordered[:max_rows] if max_rows else ordered
    for r in shown:
        state = st.fit(st.label(_node_state_text(r)), state_w)
        if (r.state or "") in _RED_STATES or _RED_FLAGS.intersection(r.flags):
            state = st.red(state)
        elif r.problem:
            state = st.yellow(state)
        if r.cpus is not None and r.cpus_allocated is not None:
            pct = f" ({r.cpus_allocated / r.cpus * 100:.0f}%)" if r.cpus > 0 else ""
            cpu = f"CPU {r.cpus_allocated:.0f}/{r.cpus:.0f}{pct}"
        else:
            cpu = "CPU ?"
        load = "load -" if r.cpu_load is None else f"load {r.cpu_load:.2f}"
        lines.append(
            "  "
            + st.fit(_qualify(st, r.cluster, st.label(r.node), multi), node_w)
            + " "
            + state
            + " "
            + fit(cpu, 21)
            + " "
            + load
        )
        if r.reason:
            who = f" ({st.label(r.reason_user)})" if r.reason_user else ""
            lines.append(f"    {st.branch} Reason: {st.label(r.reason)}{who}")
    hidden = len(ordered) - len(shown)
    if hidden:
        lines.append(
            f"  {st.ellipsis} {hidden} more node{'s' if hidden != 1 else ''} "
            f"({sum(1 for r in ordered[len(shown) :] if r.problem)} with problems)"
        )
    return lines


def _render_finished(snap: StatusSnapshot, width: int, st: _Style) -> list[str]:
    lines = [st.bold("Finished jobs:")]
    rows = snap.finished
    if not rows:
        return lines + ["  " + _no_data(snap, "finished", st)]
    multi = len(snap.clusters) > 1
    class_w = min(30, max(16, width - 2 - 24 - 10))
    lines.append(st.dim("  " + fit("failure class", class_w) + f" {'last 1h':>10} {'total':>12}"))
    for r in rows:
        name = _qualify(st, r.cluster, st.label(r.failure_class), multi)
        good = r.failure_class.lower() in SUCCESS_CLASSES
        lh = format_count(r.last_hour)
        if not good and r.last_hour is not None and round(r.last_hour) > 0:
            lh = st.yellow(fit(lh, 10, ">"))
        else:
            lh = fit(lh, 10, ">")
        lines.append("  " + st.fit(name, class_w) + " " + lh + f" {format_count(r.total):>12}")
    done = sum(round(r.last_hour) for r in rows if r.last_hour is not None)
    bad = sum(
        round(r.last_hour) for r in rows if r.last_hour is not None and r.failure_class.lower() not in SUCCESS_CLASSES
    )
    if done:
        lines.append(f"  not successful in the last hour: {bad / done * 100:.1f}% ({bad:,} of {done:,})")
    return lines + _partial_error(snap, "finished", st)


def _render_collectors(snap: StatusSnapshot, width: int, st: _Style) -> list[str]:
    lines = [st.bold("Collectors:")]
    rows = snap.collectors
    if not rows:
        return lines + ["  no data (no nomade exporter reporting nomade_collector_up)"]
    multi = len(snap.clusters) > 1
    name_w = min(28, max(16, max(display_width(_qualify(st, r.cluster, st.label(r.collector), multi)) for r in rows)))
    for r in rows:
        ok = f"up {r.up}/{r.targets}"
        ok = (
            st.green(fit(ok, 11))
            if r.up == r.targets and r.targets
            else (st.red(fit(f"DOWN {r.up}/{r.targets}", 11)) if r.up == 0 else st.yellow(fit(ok, 11)))
        )
        if r.last_success_oldest is None:
            last = "never succeeded" if r.up == 0 else "last success unknown"
        elif (
            r.last_success_newest is not None
            and r.targets > 1
            and (r.last_success_newest - r.last_success_oldest) >= 60
        ):
            last = (
                f"last success {format_age(snap.time - r.last_success_newest)}"
                f"-{format_age(snap.time - r.last_success_oldest)} ago"
            )
        else:
            last = f"last success {format_age(snap.time - r.last_success_oldest)} ago"
        line = "  " + st.fit(_qualify(st, r.cluster, st.label(r.collector), multi), name_w) + " " + ok + " " + last
        if r.down_on:
            more = f" +{len(r.down_on) - 5}" if len(r.down_on) > 5 else ""
            line += "  down on: " + ", ".join(st.label(w) for w in r.down_on[:5]) + more
        lines.append(line)
    return lines


# -- optional sections (issue 3): printed only where their collectors report -------------------------------------


def _optional_failed(snap: StatusSnapshot, section: str, title: str, st: _Style) -> list[str]:
    """An optional section without rows: nothing at all, unless its query was rejected (then say so)."""
    if section not in snap.errors:
        return []
    return [st.bold(title), f"  query failed: {st.label(snap.errors[section])}"]


def _more(st: _Style, hidden: int, what: str) -> list[str]:
    """``… 3 more <what>s`` under a capped list; nothing when none is hidden."""
    return [f"    {st.ellipsis} {hidden} more {what}{'s' if hidden != 1 else ''}"] if hidden > 0 else []


def _cap(rows: list, max_rows: int) -> tuple[list, int]:
    """The first ``max_rows`` rows (all when 0) and how many were left out."""
    shown = rows[:max_rows] if max_rows else rows
    return shown, len(rows) - len(shown)


def _render_scheduler(snap: StatusSnapshot, width: int, st: _Style) -> list[str]:
    if not snap.scheduler:
        return _optional_failed(snap, "scheduler", "Scheduler:", st)
    lines = [st.bold("Scheduler:")]
    multi = len(snap.clusters) > 1
    for r in snap.scheduler:
        ind = "  "
        if multi and r.cluster:
            lines.append("  " + st.label(r.cluster))
            ind = "    "
        if r.main_cycle_last_seconds is not None or r.main_cycle_mean_seconds is not None:
            lines.append(
                ind
                + fit("main cycle", 16)
                + fit(f"last {format_seconds(r.main_cycle_last_seconds)}", 15)
                + f"mean {format_seconds(r.main_cycle_mean_seconds)}"
            )
        if any(v is not None for v in (r.backfill_cycle_last_seconds, r.backfill_cycle_mean_seconds)):
            depth = "" if r.backfill_last_depth is None else f"depth {format_number(r.backfill_last_depth)}"
            lines.append(
                ind
                + fit("backfill cycle", 16)
                + fit(f"last {format_seconds(r.backfill_cycle_last_seconds)}", 15)
                + fit(f"mean {format_seconds(r.backfill_cycle_mean_seconds)}", 15)
                + depth
            )
        queues = [("agent", r.agent_queue_size), ("DBD agent", r.dbd_agent_queue_size)]
        if any(v is not None for _, v in queues) or r.server_threads is not None:
            dbd = f"DBD agent {format_number(r.dbd_agent_queue_size)}"
            # the DBD queue grows while slurmdbd or its database is unreachable (catalog help, sdiag(1))
            dbd = st.yellow(fit(dbd, 15)) if (r.dbd_agent_queue_size or 0) > 0 else fit(dbd, 15)
            lines.append(
                ind
                + fit("queues", 16)
                + fit(f"agent {format_number(r.agent_queue_size)}", 15)
                + dbd
                + f"server threads {format_number(r.server_threads)}"
            )
        jobs = [
            ("submitted", r.jobs_submitted),
            ("started", r.jobs_started),
            ("completed", r.jobs_completed),
            ("canceled", r.jobs_canceled),
            ("failed", r.jobs_failed),
        ]
        if any(v is not None for _, v in jobs):
            if r.stats_reset_timestamp is None:
                since = "the statistics reset"
            else:
                fmt = "%H:%M UTC" if _utc_day(r.stats_reset_timestamp) == _utc_day(snap.time) else "%Y-%m-%d %H:%M UTC"
                since = _time.strftime(fmt, _time.gmtime(r.stats_reset_timestamp))
            parts = []
            for name, v in jobs:
                if v is None:
                    continue
                text = f"{name} {format_count(v)}"
                parts.append(st.yellow(text) if name == "failed" and v > 0 else text)
            lines.append(ind + f"jobs since {since}: " + ", ".join(parts))
    return lines


def _utc_day(t: float) -> tuple[int, int, int]:
    g = _time.gmtime(t)
    return g.tm_year, g.tm_mon, g.tm_mday


def _render_jobs(snap: StatusSnapshot, width: int, st: _Style) -> list[str]:
    if not snap.job_counts and not snap.near_oom:
        return _optional_failed(snap, "jobs", "Running jobs:", st)
    lines = [st.bold("Running jobs:")]
    multi = len(snap.clusters) > 1
    for c in snap.job_counts:
        who = f"{st.label(c.cluster)}: " if multi and c.cluster else ""
        lines.append(
            f"  {who}{format_count(c.jobs)} running job{'s' if round(c.jobs) != 1 else ''} on {c.busy_nodes} of"
            f" {c.nodes} node{'s' if c.nodes != 1 else ''} (a job on several nodes counts on each)"
        )
    if snap.near_oom:
        lines.append("  nearest their memory limit (charged memory, page cache included, / cgroup limit):")
        job_w = min(14, max(6, max(display_width(st.label(r.job_id)) for r in snap.near_oom)))
        user_w = min(12, max(4, max(display_width(st.label(r.user)) for r in snap.near_oom)))
        node_w = min(
            20, max(4, max(display_width(_qualify(st, r.cluster, st.label(r.node), multi)) for r in snap.near_oom))
        )
        bar_w = max(5, min(20, width - (4 + job_w + 1 + user_w + 1 + node_w + 2 + 2 + 7 + 2 + 21 + 15)))
        for r in snap.near_oom:
            lines.append(
                "    "
                + st.fit(st.label(r.job_id), job_w)
                + " "
                + st.fit(st.label(r.user), user_w)
                + " "
                + st.fit(_qualify(st, r.cluster, st.label(r.node), multi), node_w)
                + " ["
                + st.by_ratio(bar(r.ratio, bar_w, st.full, st.empty), r.ratio)
                + "] "
                + st.by_ratio(fit(f"{r.ratio * 100:.1f}%", 6, ">"), r.ratio)
                + f"  {format_bytes(r.usage_bytes)} / {format_bytes(r.limit_bytes)}"
                + ("" if r.rss_bytes is None else f"  rss {format_bytes(r.rss_bytes)}")
            )
    return lines


def _risk_threshold(snap: StatusSnapshot, r: RiskJobRow) -> float | None:
    """The alert threshold of the model that scored the job.

    The setting is the one ``nomade_job_risk_scoring_info`` names for the job's state; without it, pending jobs
    are taken as scored by the submit-time model (``submit``) and others by the run-time one (``run``, else
    ``submit``: the risk engine's fallback, analytics/risk.py).
    """
    ths = {m.setting: m.threshold for m in snap.risk_models if m.cluster == r.cluster and m.threshold is not None}
    setting = snap.risk_scoring.get((r.cluster, r.state.upper()))
    if setting is not None:
        return ths.get(setting)
    if r.state.upper() == "PENDING":
        return ths.get("submit")
    return ths.get("run", ths.get("submit"))


def _render_risk(snap: StatusSnapshot, width: int, st: _Style, max_rows: int) -> list[str]:
    if not (snap.risk_jobs or snap.risk_models or snap.risk_partitions or snap.risk_scored):
        return _optional_failed(snap, "risk", "Jobs at risk:", st)
    multi = len(snap.clusters) > 1
    lines = [st.bold("Jobs at risk:")]
    for m in snap.risk_models:
        head = "  " + _qualify(st, m.cluster, f"model {st.label(m.setting)}", multi)
        if m.version:
            head += f" {st.label(m.version)}"
        if m.models:
            head += f" ({st.label(m.models)})"
        parts = []
        if m.threshold is not None:
            parts.append(f"alert at {m.threshold * 100:.0f}%")
        if m.trained_timestamp is not None:
            on = "" if m.training_jobs is None else f" on {format_count(m.training_jobs)} jobs"
            parts.append(f"trained {format_age(snap.time - m.trained_timestamp)} ago{on}")
        lines.append(head + (": " + ", ".join(parts) if parts else ""))
        quality = []
        if m.auc:
            # what is served (pipeline) first, then its members, and the baseline it must beat last
            ordered = sorted(m.auc, key=lambda kv: (kv[0] != "pipeline", kv[0] == "baseline", kv[0]))
            quality.append("AUC " + ", ".join(f"{st.label(k)} {v:.2f}" for k, v in ordered))
        if m.brier is not None:
            quality.append(f"Brier {m.brier:.3f}")
        if quality:
            lines.append("    holdout: " + "; ".join(quality))
    clusters = sorted({c for c, _ in snap.risk_scored} | {p.cluster for p in snap.risk_partitions})
    for cluster in clusters:
        who = f"{st.label(cluster)}: " if multi and cluster else ""
        scored = sorted(((s, v) for (c, s), v in snap.risk_scored.items() if c == cluster), key=lambda x: x[0])
        if scored:
            lines.append(f"  {who}scored: " + ", ".join(f"{format_count(v)} {st.label(s.lower())}" for s, v in scored))
        parts_c = [p for p in snap.risk_partitions if p.cluster == cluster and p.high_risk_jobs is not None]
        if parts_c:
            high = sorted(
                (p for p in parts_c if round(p.high_risk_jobs or 0) > 0),
                key=lambda p: (-(p.high_risk_jobs or 0), natural_key(p.partition)),
            )
            if not high:
                lines.append(f"  {who}high risk by partition: none at or above the alert threshold")
            else:
                shown, hidden = _cap(high, max_rows)
                text = ", ".join(
                    f"{st.label(p.partition)} {format_count(p.high_risk_jobs)}"
                    + ("" if p.mean_score is None else f" (mean {p.mean_score * 100:.0f}%)")
                    for p in shown
                )
                more = f", +{hidden} more" if hidden else ""
                lines.append(f"  {who}high risk by partition: " + st.yellow(text + more))
    rows = snap.risk_jobs
    if not rows:
        lines.append("  no pending or running job scored")
        return lines
    rows_shown, rows_hidden = _cap(rows, max_rows)
    job_w = min(16, max(3, max(display_width(_qualify(st, r.cluster, st.label(r.job_id), multi)) for r in rows)))
    user_w = min(12, max(4, max(display_width(st.label(r.user)) for r in rows)))
    part_w = min(14, max(9, max(display_width(st.label(r.partition)) for r in rows)))
    state_w = min(10, max(5, max(display_width(st.label(r.state)) for r in rows)))
    lines.append(
        st.dim(
            "  "
            + fit("job", job_w)
            + " "
            + fit("user", user_w)
            + " "
            + fit("partition", part_w)
            + " "
            + fit("state", state_w)
            + f" {'risk':>5}"
        )
    )
    for r in rows_shown:
        threshold = _risk_threshold(snap, r)
        high = threshold is not None and r.score >= threshold
        risk = fit(f"{r.score * 100:.0f}%", 5, ">")
        marks = []
        if high:
            marks.append(st.red("! high"))
        if r.ood:
            # outside the training distribution: the score deserves less trust (OODDetector)
            marks.append(st.yellow("OOD"))
        lines.append(
            "  "
            + st.fit(_qualify(st, r.cluster, st.label(r.job_id), multi), job_w)
            + " "
            + st.fit(st.label(r.user), user_w)
            + " "
            + st.fit(st.label(r.partition), part_w)
            + " "
            + st.fit(st.label(r.state), state_w)
            + " "
            + (st.red(risk) if high else risk)
            + ("  " + " ".join(marks) if marks else "")
        )
        if r.drivers:
            lines.append(f"    {st.branch} drivers: " + ", ".join(f"{st.label(f)} {v:+.2f}" for f, v in r.drivers))
        if r.neighbour_shares:
            n = "" if r.neighbours is None else f"{r.neighbours} "
            mix = ", ".join(
                f"{st.label(c)} {v * 100:.0f}%" for c, v in r.neighbour_shares[:RISK_NEIGHBOUR_CLASSES] if v > 0
            )
            lines.append(f"    {st.branch} {n}most similar finished jobs: {mix or 'no outcome shares'}")
    lines += _more(st, rows_hidden, "scored job")
    return lines


def _render_gpus(snap: StatusSnapshot, width: int, st: _Style, max_rows: int) -> list[str]:
    rows = snap.gpus
    if not rows:
        return _optional_failed(snap, "gpus", "GPUs:", st)
    multi = len(snap.clusters) > 1
    node_w = min(24, max(5, max(display_width(_qualify(st, r.cluster, st.label(r.node), multi)) for r in rows)))
    deg = "C" if st.ascii_only else "°C"
    lines = [
        st.bold("GPUs:"),
        st.dim(
            "  "
            + fit("node", node_w)
            + f" {'GPUs':>4} {'util':>5} {'memory used / total':>21} {'mem':>5} {'temp':>6} {'jobs':>5}  throttled"
        ),
    ]

    def row(
        name: str,
        gpus: int | None,
        util: float | None,
        used: float | None,
        total: float | None,
        temp: float | None,
        jobs: int,
        throttled: int,
        reasons: tuple[str, ...],
    ) -> str:
        mem_ratio = used / total if used is not None and total else None
        mem = f"{format_bytes(used)} / {format_bytes(total)}" if total is not None else "-"
        thr = "-"
        if throttled:
            thr = st.yellow(f"{throttled} ({', '.join(st.label(x) for x in reasons)})" if reasons else str(throttled))
        return (
            "  "
            + st.fit(name, node_w)
            + f" {'?' if gpus is None else gpus:>4}"
            + f" {'-' if util is None else f'{util * 100:.0f}%':>5}"
            + f" {fit(mem, 21, '>')}"
            + f" {'-' if mem_ratio is None else f'{mem_ratio * 100:.0f}%':>5}"
            + f" {'-' if temp is None else f'{temp:.0f}{deg}':>6}"
            + f" {jobs if gpus is None else f'{jobs}/{gpus}':>5}"
            + "  "
            + thr
        )

    ordered = sorted(rows, key=lambda r: (r.throttled == 0, r.cluster, natural_key(r.node)))
    shown, hidden = _cap(ordered, max_rows)
    for r in shown:
        name = _qualify(st, r.cluster, st.label(r.node), multi)
        lines.append(
            row(
                name,
                r.gpus,
                r.utilization_ratio,
                r.memory_used_bytes,
                r.memory_total_bytes,
                r.temperature_max_celsius,
                r.with_jobs,
                r.throttled,
                r.throttle_reasons,
            )
        )
    lines += _more(st, hidden, "GPU node")
    if len(rows) > 1:
        counted = [r for r in rows if r.gpus]
        gpus = sum(r.gpus or 0 for r in rows) if counted else None
        # mean over GPUs: each node's mean weighted by its GPU count
        util_rows = [r for r in counted if r.utilization_ratio is not None]
        weight = sum(r.gpus or 0 for r in util_rows)
        util = sum((r.utilization_ratio or 0) * (r.gpus or 0) for r in util_rows) / weight if weight else None
        used = [r.memory_used_bytes for r in rows if r.memory_used_bytes is not None]
        total = [r.memory_total_bytes for r in rows if r.memory_total_bytes is not None]
        temps = [r.temperature_max_celsius for r in rows if r.temperature_max_celsius is not None]
        reasons = tuple(sorted({x for r in rows for x in r.throttle_reasons}))
        lines.append(
            st.dim(
                row(
                    "total",
                    gpus,
                    util,
                    sum(used) if used else None,
                    sum(total) if total else None,
                    max(temps) if temps else None,
                    sum(r.with_jobs for r in rows),
                    sum(r.throttled for r in rows),
                    reasons,
                )
            )
        )
    return lines


def _render_nfs(snap: StatusSnapshot, width: int, st: _Style, max_rows: int) -> list[str]:
    rows = snap.nfs
    if not rows:
        return _optional_failed(snap, "nfs", "NFS:", st)
    multi = len(snap.clusters) > 1

    def name(r: NfsMountRow) -> str:
        return _qualify(st, r.cluster, st.label(f"{r.server}:{r.export}"), multi)

    fixed = 2 + 8 + 10 + 13 + 13 + 10 + 8
    name_w = min(40, max(12, max(display_width(name(r)) for r in rows)), max(12, width - fixed))
    lines = [
        st.bold("NFS:"),
        st.dim(
            "  "
            + st.fit("server:export", name_w)
            + f" {'clients':>7} {'ops/s':>9} {'read':>12} {'write':>12} {'max RTT':>9} {'retrans':>7}"
        ),
    ]
    # busiest first when capped, then shown in server order
    keep = sorted(rows, key=lambda r: -(r.operations_per_second or 0))
    shown, hidden = _cap(keep, max_rows)
    ids = {id(r) for r in shown}
    for r in rows:
        if id(r) not in ids:
            continue
        rate = [
            "-" if v is None else f"{format_bytes(v)}/s" for v in (r.read_bytes_per_second, r.write_bytes_per_second)
        ]
        rt = r.retransmission_ratio_max
        retrans = fit("-" if rt is None else f"{rt * 100:.1f}%", 7, ">")
        lines.append(
            "  "
            + st.fit(name(r), name_w)
            + f" {r.clients:>7} {format_number(r.operations_per_second):>9} {rate[0]:>12} {rate[1]:>12}"
            + f" {format_seconds(r.rtt_max_seconds):>9} "
            + (st.yellow(retrans) if rt else retrans)  # any retransmission means lost replies (nfsiostat retrans)
        )
    lines += _more(st, hidden, "quieter export")
    return lines


def _render_licenses(snap: StatusSnapshot, width: int, st: _Style, max_rows: int) -> list[str]:
    if not (snap.licenses or snap.license_daemons or snap.license_expiring):
        return _optional_failed(snap, "licenses", "Licenses:", st)
    multi = len(snap.clusters) > 1
    lines = [st.bold("Licenses:")]
    for kind, title in (("server", "license servers"), ("vendor", "vendor daemons")):
        ds = [d for d in snap.license_daemons if d.kind == kind]
        if not ds:
            continue
        down = [d for d in ds if not d.up]
        if not down:
            lines.append(f"  {title}: {len(ds)} up")
            continue
        names = ", ".join(
            _qualify(
                st, d.cluster, f"{st.label(d.server)} ({st.label(d.name)})" if d.name else st.label(d.server), multi
            )
            for d in down[:5]
        )
        more = f" +{len(down) - 5}" if len(down) > 5 else ""
        lines.append(f"  {title}: {len(ds) - len(down)} up, " + st.red(f"{len(down)} down: {names}{more}"))
    rows = snap.licenses
    if rows:

        def source(r: LicenseRow) -> str:
            return _qualify(st, r.cluster, "slurm" if r.slurm else st.label(r.server), multi)

        src_w = min(24, max(6, max(display_width(source(r)) for r in rows)))
        feat_w = min(28, max(7, max(display_width(st.label(r.feature)) for r in rows)))
        bar_w = max(5, min(20, width - (2 + src_w + 1 + feat_w + 2 + 2 + 15 + 7)))
        lines.append(
            st.dim("  " + fit("source", src_w) + " " + fit("feature", feat_w) + " " * (bar_w + 4) + " used of issued")
        )
        keep = sorted(rows, key=lambda r: -(r.ratio if r.ratio is not None else -1))
        shown, hidden = _cap(keep, max_rows)
        ids = {id(r) for r in shown}
        for r in rows:
            if id(r) not in ids:
                continue
            ratio = r.ratio
            pct = "   n/a" if ratio is None else f"{ratio * 100:5.0f}%"
            lines.append(
                "  "
                + st.fit(source(r), src_w)
                + " "
                + st.fit(st.label(r.feature), feat_w)
                + " ["
                + st.by_ratio(bar(ratio, bar_w, st.full, st.empty), ratio)
                + "] "
                + f"{format_count(r.used):>5} of {format_count(r.issued):<6}"
                + st.by_ratio(pct, ratio)
            )
        lines += _more(st, hidden, "less used feature")
    if snap.license_expiring:
        first = snap.license_expiring[0]
        where = f" ({_qualify(st, first.cluster, st.label(first.server), multi)})" if first.server else ""
        when = (
            st.red(f"expired {format_age(-first.seconds_left)} ago")
            if first.seconds_left <= 0
            else st.yellow(f"in {format_age(first.seconds_left)}")
        )
        others = len(snap.license_expiring) - 1
        lines.append(
            f"  expiring within {LICENSE_EXPIRY_WINDOW_SECONDS // 86400} days: {st.label(first.feature)}{where} {when}"
            + (f"; {others} more" if others else "")
        )
    return lines


def _render_quotas(snap: StatusSnapshot, width: int, st: _Style) -> list[str]:
    if not snap.quotas and not snap.quota_over:
        return _optional_failed(snap, "quotas", "Quotas:", st)
    multi = len(snap.clusters) > 1
    lines = [st.bold("Quotas:")]
    filesystems = sorted(
        {(r.cluster, r.filesystem) for r in snap.quotas} | {(r.cluster, r.filesystem) for r in snap.quota_over}
    )
    name_w = min(28, max(10, max((display_width(st.label(f"{r.type} {r.name}")) for r in snap.quotas), default=0)))
    bar_w = max(5, min(20, width - (4 + name_w + 2 + 2 + 7 + 2 + 23)))
    for cluster, fs in filesystems:
        over = [o for o in snap.quota_over if (o.cluster, o.filesystem) == (cluster, fs)]
        head = "  " + _qualify(st, cluster, st.label(fs), multi)
        if over:
            bad = [o for o in over if o.entries > 0]
            if bad:
                head += "  " + st.yellow(
                    "over limit: " + ", ".join(f"{st.label(o.type)} {format_count(o.entries)}" for o in bad)
                )
            else:
                head += "  none over limit"
        lines.append(head)
        for r in (q for q in snap.quotas if (q.cluster, q.filesystem) == (cluster, fs)):
            lines.append(
                "    "
                + st.fit(st.label(f"{r.type} {r.name}"), name_w)
                + " ["
                + st.by_ratio(bar(r.ratio, bar_w, st.full, st.empty), r.ratio)
                + "] "
                + st.by_ratio(fit(f"{r.ratio * 100:.1f}%", 6, ">"), r.ratio)
                + f"  {format_bytes(r.used_bytes)} / {format_bytes(r.hard_limit_bytes)}"
            )
    return lines


def _render_health(snap: StatusSnapshot, width: int, st: _Style, max_rows: int) -> list[str]:
    h = snap.health
    if h is None and not snap.health_problems:
        return _optional_failed(snap, "health", "Node health:", st)
    h = h or HealthCounts()
    multi = len(snap.clusters) > 1
    deg = "C" if st.ascii_only else "°C"
    lines = [st.bold("Node health:")]

    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'s' if n != 1 else ''}"

    def where(p: HealthProblem) -> str:
        return _qualify(st, p.cluster, st.label(p.node), multi)

    def block(kind: str, checked: bool, head: str, ok: str, bad: str, text: Callable[[HealthProblem], str]) -> None:
        """``head, ok`` when nothing is wrong; else ``head, <n> bad`` and one red line per problem."""
        ps = [p for p in snap.health_problems if p.kind == kind]
        if not checked and not ps:
            return
        lines.append(f"  {head}, " + (f"{len(ps)} {bad}" if ps else ok))
        shown, hidden = _cap(ps, max_rows)
        lines.extend("    " + st.red(text(p)) for p in shown)
        lines.extend(_more(st, hidden, f"{kind} problem"))

    n_hot = sum(1 for p in snap.health_problems if p.kind == "temperature")
    block(
        "service",
        h.services > 0,
        f"services: {plural(h.services, 'check')} on {plural(h.service_nodes, 'node')}",
        "all up",
        "down",
        lambda p: f"{where(p)}: {st.label(p.subject)} down",
    )
    block(
        "edac",
        h.edac_nodes > 0,
        f"EDAC: {plural(h.edac_nodes, 'node')}",
        "no uncorrectable memory errors",
        "with uncorrectable memory errors",
        lambda p: f"{where(p)}: {format_count(p.value)} uncorrectable memory error{'s' if p.value != 1 else ''}",
    )
    block(
        "temperature",
        h.sensors > 0,
        f"temperatures: {plural(h.sensors, 'sensor')} on {plural(h.sensor_nodes, 'node')}",
        "none above its max",
        f"node{'s' if n_hot != 1 else ''} above a sensor's max",
        lambda p: (
            f"{where(p)}: {st.label(p.subject)} {p.value:.1f}{deg}"
            + ("" if p.limit is None else f" (max {p.limit:.1f}{deg})")
        ),
    )
    block(
        "unreachable",
        h.endpoints > 0,
        f"reachability: {plural(h.endpoints, 'endpoint')}",
        "all reachable",
        "unreachable",
        lambda p: (
            f"{_qualify(st, p.cluster, st.label(p.subject), multi)} {st.label(p.detail)} unreachable"
            + (f" ({st.label(p.reason)})" if p.reason else "")
        ),
    )
    return lines


def render(
    snapshot: StatusSnapshot, width: int = 100, color: bool = False, *, max_rows: int = 40, ascii_only: bool = False
) -> str:
    """Lay the snapshot out as text for a terminal (pure: no I/O, no clock).

    Args:
        snapshot: what :func:`gather` returned (or a hand-built one).
        width: terminal columns; no output line is wider (lines are cut with an ellipsis). At least 40 is used.
        color: emit ANSI SGR colours (usage bands, down/drain states).
        max_rows: at most this many filesystem and node rows (fullest filesystems and problem nodes kept
            first), and as many rows of each list of the optional sections (GPU nodes, NFS exports, license
            features, node-health problems of one kind, jobs at risk); 0 shows all.
        ascii_only: use ASCII glyphs for bars and rules (terminals that cannot show UTF-8).

    Returns:
        The screen, lines joined by newlines, ending with a newline.

    """
    width = max(40, int(width))
    st = _Style(color, ascii_only)
    sections = [
        _header(snapshot, width, st),
        _render_filesystems(snapshot, width, st, max_rows),
        _render_queue(snapshot, width, st),
        _render_nodes(snapshot, width, st, max_rows),
        _render_finished(snapshot, width, st),
        # the optional sections: an empty list (not printed) where their collectors report nothing
        _render_scheduler(snapshot, width, st),
        _render_jobs(snapshot, width, st),
        _render_risk(snapshot, width, st, max_rows),
        _render_gpus(snapshot, width, st, max_rows),
        _render_nfs(snapshot, width, st, max_rows),
        _render_licenses(snapshot, width, st, max_rows),
        _render_quotas(snapshot, width, st),
        _render_health(snapshot, width, st, max_rows),
        _render_collectors(snapshot, width, st),
    ]
    sections = [sec for sec in sections if sec]
    lines: list[str] = []
    for i, sec in enumerate(sections):
        if i:
            lines.append("")
        lines.extend(sec)
    text = "\n".join(_clip_line(line, width, st.ellipsis) for line in lines) + "\n"
    if ascii_only:
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text
