"""SLURM scheduler collector: slurmctld's own statistics from ``sdiag`` (controller mode).

Source: one ``sdiag`` run (text; ``sdiag --json`` with option ``json = true``, SLURM 23.02+) per ``interval``,
shared through the runner's cache, so many scrapers cost slurmctld one statistics RPC per interval
(sdiag(1) PERFORMANCE). See :mod:`nomade.exporter.parsers.sdiag` for the formats.

Types (DESIGN.md principle 3): slurmctld zeroes the job counts, cycle statistics, exit reasons and
"backfilled jobs since last stats cycle start" at midnight UTC and on ``sdiag --reset`` (``reset_stats()`` in
``src/slurmctld/statistics.c``), so they are GAUGES named without ``_total``
(``nomade_slurm_scheduler_jobs_submitted``: jobs submitted since ``stats_reset_timestamp_seconds``). What
slurmctld only zeroes at its own restart or on an explicit ``sdiag --reset`` is exported as COUNTERS: the RPC
counts and times by message type and by user, and the backfilled jobs since slurmctld start. Durations are
printed in microseconds and exported in seconds.

Series: about 45 fixed, + 2 per RPC message type seen (typically 20-60) + 2 per user in the RPC table (bounded
by ``max_rpc_users``) + 1 per pending RPC type.

Options (``[collector.slurm_scheduler]``):
    interval (seconds, default 30): cache lifetime of the sdiag output.
    timeout (seconds, default 10): the sdiag timeout.
    json (bool, default false): run ``sdiag --json`` (SLURM 23.02+) instead of the text report.
    rpc_per_user (bool, default true): export the RPC statistics by user.
    max_rpc_users (int, default 50): keep the users with the most RPCs; the number left out is
        ``nomade_slurm_scheduler_rpc_users_dropped``.
    sdiag (str, default "sdiag"): the command.

A missing ``sdiag`` command is not a failure of every scrape: it is logged once and
``nomade_slurm_scheduler_source_available`` is 0. A failing sdiag (slurmctld down) raises, so ``up`` is 0.
"""

from __future__ import annotations

import logging
import shutil

from ..metrics import MetricSet, MetricSpec
from ..parsers.sdiag import SdiagStats, parse_sdiag
from ..runner import CommandError, CommandResult
from .base import Collector, CollectorContext

_S = "nomade_slurm_scheduler_"
_US = 1e-6

# (sdiag JSON key, metric suffix, help, unit, scale)
VALUE_GAUGES: tuple[tuple[str, str, str, str, float], ...] = (
    ("server_thread_count", "server_threads", "Active slurmctld threads (sdiag 'Server thread count').", "", 1),
    ("agent_queue_size", "agent_queue_size", "Outgoing RPCs queued in the agent retry list (sdiag 'Agent queue "
     "size').", "", 1),
    ("agent_count", "agents", "Agent threads (sdiag 'Agent count').", "", 1),
    ("agent_thread_count", "agent_threads", "Active threads created by all agent threads (sdiag 'Agent thread "
     "count').", "", 1),
    ("dbd_agent_queue_size", "dbd_agent_queue_size", "Messages queued for slurmdbd; grows while slurmdbd or its "
     "database is unreachable (sdiag 'DBD Agent queue size', limit MaxDBDMsgs).", "", 1),
    ("jobs_submitted", "jobs_submitted", "Jobs submitted since the statistics were last reset (midnight UTC).", "", 1),
    ("jobs_started", "jobs_started", "Jobs started since the last reset, backfilled ones included.", "", 1),
    ("jobs_completed", "jobs_completed", "Jobs completed since the last reset.", "", 1),
    ("jobs_canceled", "jobs_canceled", "Jobs canceled since the last reset.", "", 1),
    ("jobs_failed", "jobs_failed", "Jobs failed because of slurmd or other internal issues since the last reset.",
     "", 1),
    ("jobs_pending", "jobs_pending", "Pending jobs when slurmctld last counted them (job_states_timestamp_seconds).",
     "", 1),
    ("jobs_running", "jobs_running", "Running jobs when slurmctld last counted them.", "", 1),
    ("job_states_ts", "job_states_timestamp_seconds", "When slurmctld counted the pending and running jobs.",
     "seconds", 1),
    ("schedule_cycle_last", "main_cycle_last_seconds", "Duration of the last main scheduling cycle.", "seconds", _US),
    ("schedule_cycle_max", "main_cycle_max_seconds", "Longest main scheduling cycle since the last reset.",
     "seconds", _US),
    ("schedule_cycle_mean", "main_cycle_mean_seconds", "Mean main scheduling cycle since the last reset.",
     "seconds", _US),
    ("schedule_cycle_total", "main_cycles", "Main scheduling cycles since the last reset (sdiag 'Total cycles', "
     "schedule_cycle_counter: a count).", "", 1),
    ("schedule_cycle_mean_depth", "main_cycle_mean_depth", "Mean number of jobs examined per main scheduling cycle.",
     "", 1),
    ("schedule_cycle_per_minute", "main_cycles_per_minute", "Main scheduling cycles per minute since the last reset.",
     "", 1),
    ("schedule_queue_length", "main_queue_length", "Pending jobs in the main scheduler's queue at its last cycle.",
     "", 1),
    ("bf_last_backfilled_jobs", "backfilled_jobs_since_reset", "Jobs started by the backfill scheduler since the "
     "last reset (sdiag 'since last stats cycle start').", "", 1),
    ("bf_backfilled_het_jobs", "backfilled_het_job_components", "Heterogeneous job components started by backfill "
     "since the last reset.", "", 1),
    ("bf_cycle_counter", "backfill_cycles", "Backfill cycles since the last reset.", "", 1),
    ("bf_when_last_cycle", "backfill_last_cycle_timestamp_seconds", "When the last backfill cycle ran (absent if "
     "none ran since slurmctld start).", "seconds", 1),
    ("bf_cycle_last", "backfill_cycle_last_seconds", "Run time of the last backfill cycle, sleeps excluded.",
     "seconds", _US),
    ("bf_cycle_max", "backfill_cycle_max_seconds", "Longest backfill cycle since the last reset.", "seconds", _US),
    ("bf_cycle_mean", "backfill_cycle_mean_seconds", "Mean backfill cycle since the last reset.", "seconds", _US),
    ("bf_last_depth", "backfill_last_depth", "Jobs examined in the last backfill cycle.", "", 1),
    ("bf_last_depth_try", "backfill_last_depth_try", "Jobs of the last backfill cycle that could start on "
     "available resources ('try sched').", "", 1),
    ("bf_depth_mean", "backfill_depth_mean", "Mean jobs examined per backfill cycle since the last reset.", "", 1),
    ("bf_depth_mean_try", "backfill_depth_try_mean", "Mean 'try sched' jobs per backfill cycle.", "", 1),
    ("bf_queue_len", "backfill_queue_length", "Pending jobs (per partition) in the last backfill cycle's queue.",
     "", 1),
    ("bf_queue_len_mean", "backfill_queue_length_mean", "Mean backfill queue length since the last reset.", "", 1),
    ("bf_table_size", "backfill_table_size", "Time slots tested in the last backfill cycle.", "", 1),
    ("bf_table_size_mean", "backfill_table_size_mean", "Mean time slots tested per backfill cycle.", "", 1),
    ("req_time_start", "stats_reset_timestamp_seconds", "Start of the statistics period (sdiag 'Data since'): "
     "the last midnight UTC, sdiag --reset or slurmctld start.", "seconds", 1),
)  # fmt: skip

SOURCE_AVAILABLE = _S + "source_available"


def report_unavailable(collector: Collector, out: MetricSet, metric: str, why: str) -> None:
    """Export ``metric`` = 0 and log ``why`` once per collector instance (a missing tool is not a failure).

    Used by the SLURM scheduler-view collectors when their command is missing or SLURM says the source does
    not exist here (sprio under ``priority/basic``): the scrape stays ``up`` and nothing else is reported.
    """
    out.add(metric, 0)
    if not getattr(collector, "_unavailable_logged", False):
        collector.log.log(logging.WARNING, "%s: %s; reporting %s 0 (logged once)", collector.name, why, metric)
        collector._unavailable_logged = True  # type: ignore[attr-defined]


class SlurmSchedulerCollector(Collector):
    """slurmctld scheduler statistics from ``sdiag`` (controller mode)."""

    name = "slurm_scheduler"
    mode = "controller"
    description = "sdiag: main and backfill scheduler cycles, job counters, agent/DBD queues, RPC statistics."
    metrics = (
        *(MetricSpec(_S + suffix, "gauge", help_, (), unit) for _, suffix, help_, unit, _ in VALUE_GAUGES),
        MetricSpec(_S + "backfilled_jobs_since_start_total", "counter", "Jobs started by the backfill scheduler "
                   "since slurmctld started (reset only by a restart or sdiag --reset)."),
        MetricSpec(_S + "backfill_active", "gauge", "1 when a backfill cycle was running as sdiag was taken."),
        MetricSpec(_S + "main_cycle_exits", "gauge", "Main scheduling cycles since the last reset by the reason "
                   "they ended (end_job_queue, default_queue_depth, max_job_start, max_rpc_cnt, max_sched_time, "
                   "blocked_on_licenses).", ("reason",)),
        MetricSpec(_S + "backfill_cycle_exits", "gauge", "Backfill cycles since the last reset by the reason "
                   "they ended (end_job_queue, bf_max_job_start, bf_max_job_test, state_changed, "
                   "bf_node_space_size, bf_max_time).", ("reason",)),
        MetricSpec(_S + "rpc_calls_total", "counter", "RPCs slurmctld processed since its start or sdiag --reset, "
                   "by message type.", ("message_type",)),
        MetricSpec(_S + "rpc_time_seconds_total", "counter", "Time slurmctld spent on those RPCs, by message type.",
                   ("message_type",), "seconds"),
        MetricSpec(_S + "rpc_user_calls_total", "counter", "RPCs slurmctld processed since its start or sdiag "
                   "--reset, by user (top max_rpc_users users).", ("user",)),
        MetricSpec(_S + "rpc_user_time_seconds_total", "counter", "Time slurmctld spent on RPCs, by user.",
                   ("user",), "seconds"),
        MetricSpec(_S + "rpc_users_dropped", "gauge", "Users of the sdiag RPC table left out by max_rpc_users."),
        MetricSpec(_S + "pending_rpcs", "gauge", "Outgoing RPCs waiting in the slurmctld agent queue, by message "
                   "type (sdiag 'Pending RPC statistics', refreshed every 30 s by slurmctld).", ("message_type",)),
        MetricSpec(SOURCE_AVAILABLE, "gauge", "1 when the sdiag command exists on this host, 0 otherwise."),
    )  # fmt: skip

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.interval = float(self.option("interval", 30))
        self.timeout = float(self.option("timeout", 10))
        self.json = bool(self.option("json", False))
        self.rpc_per_user = bool(self.option("rpc_per_user", True))
        self.max_rpc_users = int(self.option("max_rpc_users", 50))
        self.sdiag = str(self.option("sdiag", "sdiag"))
        if self.max_rpc_users < 0:
            raise ValueError("slurm_scheduler: max_rpc_users must be >= 0")
        self._last: tuple[CommandResult, SdiagStats | None] | None = None

    @classmethod
    def available(cls) -> bool:
        """Whether ``sdiag`` is on the PATH."""
        return shutil.which("sdiag") is not None

    def argv(self) -> list[str]:
        """The sdiag command line."""
        return [self.sdiag, "--json"] if self.json else [self.sdiag]

    def collect(self, out: MetricSet) -> None:
        """Run sdiag (cached per interval) and fill the scheduler gauges and RPC counters.

        Raises:
            CommandError: sdiag timed out or failed (slurmctld unreachable): ``up`` 0.

        """
        try:
            res = self.ctx.runner.run(self.argv(), timeout=self.timeout, ttl=self.interval)
        except CommandError as exc:
            if exc.reason == "missing":
                report_unavailable(self, out, SOURCE_AVAILABLE, f"{self.sdiag} not found")
                return
            raise
        out.add(SOURCE_AVAILABLE, 1)
        if self._last is not None and self._last[0] is res:
            stats = self._last[1]  # cached output: parsed once, its issues counted once
        else:
            parsed = parse_sdiag(res.stdout)
            self.count_parse_errors(len(parsed.issues))
            stats = parsed.records[0] if parsed.records else None
            self._last = (res, stats)
        if stats is not None:
            fill(out, stats, self.max_rpc_users if self.rpc_per_user else None)


def fill(out: MetricSet, stats: SdiagStats, max_rpc_users: int | None) -> None:
    """Put one parsed sdiag report into ``out``; ``max_rpc_users=None`` leaves the per-user RPC series out."""
    for key, suffix, _, _, scale in VALUE_GAUGES:
        v = stats.values.get(key)
        out.add(_S + suffix, None if v is None else v * scale)
    out.add(_S + "backfilled_jobs_since_start_total", stats.values.get("bf_backfilled_jobs"))
    if stats.bf_active is not None:
        out.add(_S + "backfill_active", 1 if stats.bf_active else 0)
    for reason, n in stats.main_exit.items():
        out.add(_S + "main_cycle_exits", n, reason=reason)
    for reason, n in stats.bf_exit.items():
        out.add(_S + "backfill_cycle_exits", n, reason=reason)
    for row in stats.rpc_by_type:
        out.add(_S + "rpc_calls_total", row.count, message_type=row.name)
        if row.total_time_us is not None:
            out.add(_S + "rpc_time_seconds_total", row.total_time_us * _US, message_type=row.name)
    if max_rpc_users is not None:
        users = sorted(stats.rpc_by_user, key=lambda r: (-r.count, r.name))
        kept = users[:max_rpc_users]
        out.add(_S + "rpc_users_dropped", len(users) - len(kept))
        for row in kept:
            out.add(_S + "rpc_user_calls_total", row.count, user=row.name)
            if row.total_time_us is not None:
                out.add(_S + "rpc_user_time_seconds_total", row.total_time_us * _US, user=row.name)
    for mtype, n in stats.pending_rpcs.items():
        out.add(_S + "pending_rpcs", n, message_type=mtype)


COLLECTOR = SlurmSchedulerCollector
