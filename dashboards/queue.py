"""Queue and scheduler: jobs by partition and state, pending reasons and waits, backlog, the analytics trend of the
pending queue, and slurmctld's scheduler statistics (sdiag).

Thresholds drawn as lines are the alerts' (``cfg.thresholds``): ``pending_stuck`` (seed ``queue_stuck_days = 7``),
``pending_backlog_ratio``, ``scheduler_cycle_seconds``, ``backfill_cycle_seconds``, ``dbd_agent_queue_*``.
"""  # noqa: D205

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nomade.dashboards import common as c

if TYPE_CHECKING:
    from nomade.alerting.config import MonitoringConfig

KEY = "queue"
TITLE = "NØMADE / Queue and scheduler"


def build(cfg: MonitoringConfig) -> dict[str, Any]:
    """The queue and scheduler dashboard's JSON model (variables: datasource, cluster, partition)."""
    t = cfg.thresholds
    f = c.Sel(cfg)
    cl = cfg.cluster_label
    q = c.query
    trend = f(partition=True, watch="pending_jobs")
    panels = [
        c.row("Queue"),
        c.timeseries(
            "Jobs by partition and state",
            [q(f"cluster_partition_state:nomade_slurm_queue_jobs:sum{f(partition=True)}", "{{partition}} {{state}}")],
            unit="short",
            description="Queued jobs per partition and state (squeue; a multi-partition pending job counts in each).",
        ),
        c.timeseries(
            "Pending jobs by reason",
            [
                q(
                    f"sum by ({cl}, reason) (nomade_slurm_queue_pending_jobs_by_reason{f(partition=True)})",
                    "{{reason}}",
                )
            ],
            unit="short",
            stack=True,
            fill_opacity=30,
            description="Pending jobs by squeue reason (Priority, Resources, Dependency, QOSMaxJobsPerUserLimit...).",
        ),
        c.timeseries(
            "Wait of eligible pending jobs",
            [
                q(
                    f"nomade_slurm_queue_pending_wait_seconds{f(partition=True, quantile='~0.5|0.9|1')}",
                    "{{partition}} q{{quantile}}",
                )
            ],
            unit="s",
            description="Quantiles of the time eligible pending jobs have waited since becoming eligible (q1 = the "
            "longest wait).",
        ),
        c.timeseries(
            "Oldest pending job",
            [q(f"nomade_slurm_queue_oldest_pending_age_seconds{f(partition=True)}", "{{partition}}")],
            unit="s",
            thresholds=c.steps("green", (t.pending_stuck, "red")),
            threshold_style="line",
            description="Time since submission of the oldest pending job; the red line is the stuck threshold "
            "(monitoring.thresholds.pending_stuck, seed queue_stuck_days = 7).",
        ),
        c.timeseries(
            "Backlog: pending CPUs / partition CPUs",
            [q(f"cluster_partition:nomade_slurm_queue_backlog:ratio{f(partition=True)}", "{{partition}}")],
            unit="percentunit",
            min=0.0,
            thresholds=c.steps("green", (t.pending_backlog_ratio, "red")),
            threshold_style="line",
            description="CPUs requested by pending jobs divided by the partition's CPUs (100 % = one full turnover "
            "of the partition); red line: monitoring.thresholds.pending_backlog_ratio.",
        ),
        c.timeseries(
            "Requested resources by state",
            [
                q(f"sum by ({cl}, state) (nomade_slurm_queue_requested_cpus{f(partition=True)})", "CPUs {{state}}"),
                q(f"sum by ({cl}, state) (nomade_slurm_queue_requested_gpus{f(partition=True)})", "GPUs {{state}}"),
                q(f"sum by ({cl}, state) (nomade_slurm_queue_requested_nodes{f(partition=True)})", "nodes {{state}}"),
            ],
            unit="short",
            description="CPUs, GPUs and nodes of the queued jobs: requested while pending, allocated once running.",
        ),
        c.row("Pending queue trend (nomade-analytics, pending_jobs watch)"),
        c.timeseries(
            "Pending jobs: fitted level and projections",
            [
                q(f"nomade_trend_level{trend}", "{{partition}} fitted"),
                q(f"nomade_trend_projected_value{trend}", "{{partition}} in {{horizon}}"),
            ],
            unit="short",
            description="Local quadratic fit of the pending-job count per partition (3 h window) and its "
            "extrapolation to each horizon.",
        ),
        c.timeseries(
            "Pending jobs: slope",
            [q(f"nomade_trend_slope_per_second{trend} * 3600", "{{partition}}")],
            unit="suffix: jobs/h",
            description="First derivative of the fitted pending-job count, jobs per hour.",
        ),
        c.timeseries(
            "Pending jobs: acceleration",
            [q(f"nomade_trend_acceleration_per_second_squared{trend} * 3600 * 3600", "{{partition}}")],
            unit="suffix: jobs/h²",
            description="Second derivative of the fitted pending-job count, jobs per hour squared (the seed's "
            "queue_acceleration_warning is expressed in this unit).",
        ),
        c.timeseries(
            "Pending jobs: acceleration significance",
            [
                q(
                    f"nomade_trend_acceleration_per_second_squared{trend} / nomade_trend_acceleration_stderr{trend}",
                    "{{partition}}",
                )
            ],
            unit="short",
            thresholds=c.steps("red", (-t.acceleration_z, "green"), (t.acceleration_z, "red")),
            threshold_style="line",
            description="Acceleration divided by its standard error (z); beyond ±"
            f"{t.acceleration_z:g} (monitoring.thresholds.acceleration_z) the acceleration is significant.",
        ),
        c.row("Scheduler (sdiag)"),
        c.timeseries(
            "Main scheduling cycle",
            [
                q(f"nomade_slurm_scheduler_main_cycle_last_seconds{f()}", "last"),
                q(f"nomade_slurm_scheduler_main_cycle_mean_seconds{f()}", "mean since reset"),
                q(f"cluster:nomade_slurm_scheduler_main_cycle_last_seconds:avg15m{f()}", "mean 15 min"),
            ],
            unit="s",
            thresholds=c.steps("green", (t.scheduler_cycle_seconds, "red")),
            threshold_style="line",
            description="Duration of slurmctld's main scheduling cycle; red line: "
            "monitoring.thresholds.scheduler_cycle_seconds (slurm.conf max_sched_time default).",
        ),
        c.timeseries(
            "Backfill cycle",
            [
                q(f"nomade_slurm_scheduler_backfill_cycle_last_seconds{f()}", "last"),
                q(f"nomade_slurm_scheduler_backfill_cycle_mean_seconds{f()}", "mean since reset"),
                q(f"cluster:nomade_slurm_scheduler_backfill_cycle_last_seconds:avg15m{f()}", "mean 15 min"),
            ],
            unit="s",
            thresholds=c.steps("green", (t.backfill_cycle_seconds, "red")),
            threshold_style="line",
            description="Duration of the backfill scheduler's cycle; red line: "
            "monitoring.thresholds.backfill_cycle_seconds (slurm.conf bf_max_time default).",
        ),
        c.timeseries(
            "slurmdbd agent queue",
            [q(f"nomade_slurm_scheduler_dbd_agent_queue_size{f()}", "DBD agent queue")],
            unit="short",
            min=0.0,
            thresholds=c.steps("green", (t.dbd_agent_queue_warning, "orange"), (t.dbd_agent_queue_critical, "red")),
            threshold_style="line",
            description="Messages slurmctld holds for slurmdbd (sdiag 'DBD Agent queue size'); it grows when "
            "slurmdbd or its database is slow or down, and messages beyond MaxDBDMsgs are lost.",
        ),
        c.timeseries(
            "slurmctld threads and queues",
            [
                q(f"nomade_slurm_scheduler_server_threads{f()}", "server threads"),
                q(f"nomade_slurm_scheduler_agent_queue_size{f()}", "agent queue"),
                q(f"nomade_slurm_scheduler_main_queue_length{f()}", "main queue length"),
                q(f"nomade_slurm_scheduler_backfill_queue_length{f()}", "backfill queue length"),
            ],
            unit="short",
            description="sdiag: server threads, agent queue, and the lengths of the main and backfill queues.",
        ),
        c.timeseries(
            "RPCs by message type (top 10)",
            [
                q(
                    f"topk(10, sum by ({cl}, message_type) "
                    f"(rate(nomade_slurm_scheduler_rpc_calls_total{f()}[$__rate_interval])))",
                    "{{message_type}}",
                )
            ],
            unit="reqps",
            description="Remote procedure calls served by slurmctld per second, by message type (sdiag).",
        ),
        c.timeseries(
            "RPC time by user (top 10)",
            [
                q(
                    f"topk(10, sum by ({cl}, user) "
                    f"(rate(nomade_slurm_scheduler_rpc_user_time_seconds_total{f()}[$__rate_interval])))",
                    "{{user}}",
                )
            ],
            unit="percentunit",
            description="Share of wall time slurmctld spent serving each user's RPCs (sdiag; 1 = one thread "
            "busy all the time). A user polling squeue in a loop shows up here.",
        ),
    ]
    return c.dashboard(
        cfg,
        KEY,
        TITLE,
        description="SLURM queue by partition and state, pending reasons and waits, backlog and its trend, and "
        "slurmctld scheduler statistics (sdiag).",
        panels=panels,
        variables=c.standard_variables(cfg, node=False),
    )
