"""Cluster overview: the first screen — jobs, allocation, node problems, storage, risk and collector health.

Each stat links to the dashboard that explains it. Cluster-wide ratios come from the recording rules of
:mod:`nomade.alerting.rules` (``cluster:...:ratio``), so the overview stays cheap on large clusters. Thresholds come
from ``cfg.thresholds`` (the same values as the alerts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nomade.dashboards import common as c

if TYPE_CHECKING:
    from nomade.alerting.config import MonitoringConfig

KEY = "overview"
TITLE = "NØMADE / Cluster overview"


def build(cfg: MonitoringConfig) -> dict[str, Any]:
    """The overview dashboard's JSON model (variables: datasource, cluster, partition)."""
    t = cfg.thresholds
    f = c.Sel(cfg)
    cl = cfg.cluster_label
    fs_steps = c.steps("green", (t.filesystem_warning_ratio, "orange"), (t.filesystem_critical_ratio, "red"))
    problem = c.steps("green", (1, "red"))
    panels = [
        c.row("Now"),
        c.stat(
            "Running jobs",
            [f"sum(nomade_slurm_queue_cluster_jobs{f(state='running')})"],
            unit="short",
            description="Jobs in state running (squeue), each job counted once.",
            links=[c.dashboard_link(cfg, "queue", "Queue and scheduler")],
        ),
        c.stat(
            "Pending jobs",
            [f"sum(nomade_slurm_queue_cluster_jobs{f(state='pending')})"],
            unit="short",
            description="Jobs in state pending (squeue), each job counted once.",
            links=[c.dashboard_link(cfg, "queue", "Queue and scheduler")],
        ),
        c.stat(
            "CPUs allocated",
            [f"cluster:nomade_slurm_node_cpus_allocated:ratio{f()}"],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="Allocated / configured CPUs of all nodes (scontrol CPUAlloc / CPUTot).",
            links=[c.dashboard_link(cfg, "nodes", "Nodes")],
        ),
        c.stat(
            "Memory allocated",
            [f"cluster:nomade_slurm_node_memory_allocated:ratio{f()}"],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="Allocated / configured memory of all nodes (scontrol AllocMem / RealMemory).",
            links=[c.dashboard_link(cfg, "nodes", "Nodes")],
        ),
        c.stat(
            "Nodes down",
            [f"sum(nomade_slurm_node_state{f(state='down')}) or vector(0)"],
            unit="short",
            thresholds=problem,
            color_mode="background",
            graph_mode="none",
            description="Nodes whose base state is DOWN (scontrol show node).",
            links=[c.dashboard_link(cfg, "nodes", "Nodes")],
        ),
        c.stat(
            "Nodes draining or drained",
            [f"sum(nomade_slurm_node_flag{f(flag='drain')}) or vector(0)"],
            unit="short",
            thresholds=problem,
            color_mode="background",
            graph_mode="none",
            description="Nodes carrying the DRAIN flag (drained when idle, draining while jobs finish).",
            links=[c.dashboard_link(cfg, "nodes", "Nodes")],
        ),
        c.stat(
            "Failed jobs, last hour",
            [f"sum(cluster_partition:nomade_slurm_job_failed:increase1h{f(partition=True)})"],
            unit="short",
            decimals=0,
            description="Jobs that ended in the last hour in a failure class (all but success, cancelled and "
            "preempted), from sacct.",
            links=[c.dashboard_link(cfg, "jobs-risk", "Jobs and risk")],
        ),
        c.stat(
            "Failed share, last hour",
            [f"max(cluster_partition:nomade_slurm_job_failed:ratio1h{f(partition=True)})"],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=c.steps("green", (t.failed_job_ratio, "red")),
            description="Highest failed / finished ratio of the selected partitions over the last hour (alert "
            "threshold: monitoring.thresholds.failed_job_ratio).",
            links=[c.dashboard_link(cfg, "jobs-risk", "Jobs and risk")],
        ),
        c.stat(
            "Fullest filesystem",
            [f"max(cluster_filesystem:nomade_filesystem_used_ratio:max{f()})"],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=fs_steps,
            description="Highest used share (df Use%) of the writable filesystems; colours at the warning and "
            "critical thresholds (seed: 85 % and 95 %).",
            links=[c.dashboard_link(cfg, "storage", "Storage")],
        ),
        c.stat(
            "Soonest filesystem full",
            [f"min(cluster_filesystem:nomade_trend_time_to_threshold_seconds:min{f()})"],
            unit="s",
            thresholds=c.steps(
                "red", (t.filesystem_full_within_critical, "orange"), (t.filesystem_full_within, "green")
            ),
            graph_mode="none",
            no_value="not filling",
            description="Shortest projected time until a filesystem is full (nomade-analytics, filesystem_used "
            "watch: local quadratic fit); empty when no filesystem is projected to fill.",
            links=[c.dashboard_link(cfg, "storage", "Storage")],
        ),
        c.stat(
            "High-risk jobs",
            [f"cluster:nomade_job_risk_high_risk_jobs:sum{f()}"],
            unit="short",
            thresholds=c.steps("green", (1, "orange"), (t.high_risk_jobs, "red")),
            description="Pending and running jobs at or above their model's risk threshold (nomade-analytics).",
            links=[c.dashboard_link(cfg, "jobs-risk", "Jobs and risk")],
        ),
        c.stat(
            "Collectors failing",
            [f"sum(1 - nomade_collector_up{f()})"],
            unit="short",
            thresholds=problem,
            color_mode="background",
            graph_mode="none",
            description="Collectors whose source did not answer in the last scrape, over all exporters.",
            links=[c.dashboard_link(cfg, "health", "Exporter and analytics health")],
        ),
        c.row("Over time"),
        c.timeseries(
            "Jobs by state",
            [c.query(f"cluster_state:nomade_slurm_queue_jobs:sum{f()}", "{{state}}")],
            unit="short",
            stack=True,
            fill_opacity=30,
            description="Queued jobs by state, each job counted once (squeue).",
        ),
        c.timeseries(
            "CPU allocation by partition",
            [
                c.query(
                    f"cluster_partition:nomade_slurm_partition_cpus_allocated:ratio{f(partition=True)}", "{{partition}}"
                )
            ],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="Allocated / configured CPUs per partition (scontrol show partition, node CPU counts).",
        ),
        c.timeseries(
            "Finished jobs by class",
            [
                c.query(
                    f"sum by ({cl}, failure_class) "
                    f"(rate(nomade_slurm_job_finished_total{f(partition=True)}[$__rate_interval])) * 3600",
                    "{{failure_class}}",
                )
            ],
            unit="suffix: jobs/h",
            stack=True,
            fill_opacity=30,
            description="Jobs reaching a terminal state per hour, by failure class (sacct, deduplicated by job id).",
        ),
        c.timeseries(
            "Node CPU busy and iowait (cluster mean)",
            [
                c.query(f"cluster:nomade_cpu_busy_average_ratio:avg{f()}", "busy"),
                c.query(f"cluster:nomade_cpu_iowait_ratio:avg{f()}", "iowait"),
            ],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="Mean over the nodes of the 5-minute mean per-core busy ratio (mpstat) and iowait share.",
            links=[c.dashboard_link(cfg, "node-resources", "Node I/O, CPU and memory")],
        ),
    ]
    return c.dashboard(
        cfg,
        KEY,
        TITLE,
        description="NØMADE cluster overview: jobs, allocation, node problems, storage, risk and collector health.",
        panels=panels,
        variables=c.standard_variables(cfg, node=False),
    )
