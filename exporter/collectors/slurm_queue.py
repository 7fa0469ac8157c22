"""The SLURM queue collector: jobs by partition and state, pending reasons, waits, arrays, requested resources.

Source: one ``squeue`` run (:data:`~nomade.exporter.parsers.squeue.SQUEUE_ARGV`, header kept, 0x1F
delimiter, no ``-r``), shared through the runner's cache by every scraper.

Counting rules:

* A job counts once per partition it is queued in: a pending job submitted to ``p1,p2`` (one line with
  partition ``p1,p2``, or one line per partition under ``squeue -P``) adds 1 to both ``p1`` and ``p2`` in the
  per-partition gauges, and 1 (de-duplicated by job id) to ``nomade_slurm_queue_cluster_jobs``.
* A grouped line of pending array tasks (``123_[1-100%5]``) counts as its number of tasks (100) in the job
  gauges and in the requested-resource gauges (per-task request x tasks), and once in
  ``nomade_slurm_queue_arrays`` (arrays with at least one job in that partition and state).
* When a task count is unknown (expression possibly truncated by ``SLURM_BITSTR_LEN``), every gauge that
  would need it for that partition and state is left out rather than under-counted.
* Waits: ``oldest_pending_age_seconds`` is now - ``SubmitTime`` of the oldest pending job (its age in the
  queue, whatever the reason). ``pending_wait_seconds`` is the distribution of now - ``EligibleTime`` over
  pending jobs that are eligible now (a dependency leaves EligibleTime unset, ``--begin`` puts it in the
  future; both are left out), so it describes how long runnable work waits for resources. Quantiles are
  nearest-rank (the smallest value with at least q of the jobs at or below it; Hyndman & Fan 1996 definition 1),
  weighted by task count; ``quantile="1"`` is the maximum.

Series: per partition, ``5 x #states`` (jobs, arrays, CPUs, nodes, GPUs) + ``#pending reasons`` + 6 (oldest age,
eligible count, 4 quantiles); plus one cluster series per state. A cluster with 10 partitions, 3 live states and
5 reasons exports about 260 series, independent of the number of jobs.

Per-job series (opt-in, ``per_job = true``): one ``nomade_slurm_queue_job_info`` (value 1, labels job_id, user,
account, partition, state in SLURM's upper-case spelling, job_name, nodelist) and up to 7 gauges keyed by
``job_id`` per queued job: requested CPUs, nodes, memory (total for the job, bytes), GPUs, time limit (absent when
UNLIMITED), submit time, and start time (started jobs only). For pending jobs "requested" is the request; for
started jobs it is the allocation (squeue reports the allocation once a job runs). A grouped line of pending array
tasks is one entry (``job_id`` = the array's meta job id) with per-task requests. Jobs are ranked started jobs
first (by start time), then pending jobs by submit time (oldest first), ties by job id; the first ``max_jobs`` get
series and the rest are counted in ``nomade_slurm_queue_job_series_dropped``. Cost: at most 8 series per queued
job, 8,000 per 1,000 jobs, 40,000 at the default cap. With ``per_job`` on, the collector runs
:data:`~nomade.exporter.parsers.squeue.SQUEUE_JOBS_ARGV` (the default fields plus UserName, Account, StartTime,
TimeLimit, NodeList and Name) INSTEAD of the default command, and computes the aggregate gauges from the same
lines, so slurmctld still answers one squeue per cache interval. ``job_name`` is free text; label values are
cleaned at exposition (:func:`nomade.exporter.metrics._label_dict`).

Options (``[collector.slurm_queue]``):
    bitstr_len (int, default 0): the ``SLURM_BITSTR_LEN`` squeue runs with. The command runner sets
        ``SLURM_BITSTR_LEN=0`` (no truncation), so long array expressions are trusted; set 64 only when
        squeue is known to run with SLURM's default length.
    quantiles (list of float, default [0.5, 0.9, 0.99, 1.0]): the wait quantiles exported.
    per_job (bool, default false): export the per-job series described above.
    max_jobs (int >= 0, default 5000): cap on the jobs with per-job series.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from ..metrics import MetricSet, MetricSpec
from ..parsers.squeue import SQUEUE_ARGV, SQUEUE_JOBS_ARGV, QueueJob, QueueJobDetail, parse_squeue, parse_squeue_jobs
from .base import Collector, CollectorContext

_P = "nomade_slurm_queue_"
_J = ("job_id",)
JOB_INFO = _P + "job_info"
JOB_DROPPED = _P + "job_series_dropped"
JOB_INFO_LABELS = ("job_id", "user", "account", "partition", "state", "job_name", "nodelist")

# (metric name, help, unit) of the numeric per-job gauges, in the order of _job_values().
_PER_JOB: tuple[tuple[str, str, str], ...] = (
    (_P + "job_requested_cpus", "CPUs of a queued job (squeue NumCPUs: requested while pending, allocated once "
     "started).", ""),
    (_P + "job_requested_nodes", "Nodes of a queued job (squeue NumNodes: requested while pending, allocated once "
     "started).", ""),
    (_P + "job_requested_memory_bytes", "Total memory of a queued job (mem of squeue tres-alloc: requested TRES "
     "while pending, allocated once started; per-node or per-CPU requests already multiplied out).", "bytes"),
    (_P + "job_requested_gpus", "GPUs of a queued job (gres/gpu of squeue tres-alloc; 0 when none).", ""),
    (_P + "job_timelimit_seconds", "Time limit of a queued job (absent when UNLIMITED).", "seconds"),
    (_P + "job_submit_timestamp_seconds", "Submission time of a queued job, Unix seconds.", "seconds"),
    (_P + "job_start_timestamp_seconds", "Start time of a started job, Unix seconds (absent while pending: "
     "squeue's StartTime of a pending job is only an estimate).", "seconds"),
)  # fmt: skip


def weighted_quantile(values: Iterable[tuple[float, int]], q: float) -> float | None:
    """Nearest-rank quantile of weighted values (Hyndman & Fan 1996, definition 1: inverse of the ECDF).

    Args:
        values: ``(value, weight)`` pairs; weights are positive integers (task counts).
        q: the quantile in [0, 1]; 0 gives the minimum and 1 the maximum.

    Returns:
        The smallest value whose cumulative weight reaches ``ceil(q * total)`` (at least 1), or ``None`` for
        no values.

    """
    pairs = sorted((v, w) for v, w in values if w > 0)
    total = sum(w for _, w in pairs)
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for v, w in pairs:
        seen += w
        if seen >= rank:
            return v
    return pairs[-1][0]


class SlurmQueueCollector(Collector):
    """Queue state from ``squeue`` (controller mode)."""

    name = "slurm_queue"
    mode = "controller"
    description = "Jobs by partition/state, pending reasons and waits, job arrays, requested CPUs/nodes/GPUs."
    metrics = (
        MetricSpec(_P + "jobs", "gauge", "Jobs in the queue by partition and state (a multi-partition pending "
                   "job counts in each; array tasks count one each).", ("partition", "state")),
        MetricSpec(_P + "cluster_jobs", "gauge", "Jobs in the queue by state, each job counted once.", ("state",)),
        MetricSpec(_P + "pending_jobs_by_reason", "gauge", "Pending jobs by partition and reason token.",
                   ("partition", "reason")),
        MetricSpec(_P + "oldest_pending_age_seconds", "gauge", "Time since submission of the oldest pending job.",
                   ("partition",), "seconds"),
        MetricSpec(_P + "pending_wait_seconds", "gauge", "Quantiles of the time eligible pending jobs have waited "
                   "since becoming eligible (nearest rank; quantile 1 = max).", ("partition", "quantile"),
                   "seconds"),
        MetricSpec(_P + "pending_eligible_jobs", "gauge", "Pending jobs with an eligible time (the population of "
                   "pending_wait_seconds).", ("partition",)),
        MetricSpec(_P + "arrays", "gauge", "Job arrays with at least one job in this partition and state.",
                   ("partition", "state")),
        MetricSpec(_P + "requested_cpus", "gauge", "CPUs of the queued jobs (requested when pending, allocated "
                   "when running).", ("partition", "state")),
        MetricSpec(_P + "requested_nodes", "gauge", "Nodes of the queued jobs (requested when pending, allocated "
                   "when running).", ("partition", "state")),
        MetricSpec(_P + "requested_gpus", "gauge", "GPUs (TRES gres/gpu) of the queued jobs (requested when "
                   "pending, allocated when running).", ("partition", "state")),
        MetricSpec(JOB_INFO, "info", "A queued job with its text attributes (per_job = true; state in SLURM's "
                   "upper-case spelling, nodelist empty while pending).", JOB_INFO_LABELS),
        *(MetricSpec(n, "gauge", h, _J, u) for n, h, u in _PER_JOB),
        MetricSpec(JOB_DROPPED, "gauge", "Queued jobs left without per-job series because of max_jobs (per_job "
                   "= true).", ()),
    )  # fmt: skip

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.per_job = bool(self.option("per_job", False))
        self.max_jobs = int(self.option("max_jobs", 5000))
        if self.max_jobs < 0:
            raise ValueError("slurm_queue: max_jobs must be >= 0")

    def collect(self, out: MetricSet) -> None:
        """Run squeue once and fill the queue gauges.

        Raises:
            CommandError: when squeue is missing, times out or fails (``up`` becomes 0).

        """
        bitstr_len = int(self.option("bitstr_len", 0))
        quantiles = [float(q) for q in self.option("quantiles", [0.5, 0.9, 0.99, 1.0])]
        if not self.per_job:
            res = self.ctx.runner.run(SQUEUE_ARGV)
            parsed = parse_squeue(res.stdout, bitstr_len)
            self.count_parse_errors(len(parsed.issues))
            fill(out, parsed.records, self.ctx.clock(), quantiles)
            return
        res = self.ctx.runner.run(SQUEUE_JOBS_ARGV)
        details = parse_squeue_jobs(res.stdout, bitstr_len)
        self.count_parse_errors(len(details.issues))
        fill(out, [d.job for d in details.records], self.ctx.clock(), quantiles)
        fill_per_job(out, details.records, self.max_jobs)


def _sum(acc: dict, key: tuple, value: float | None) -> None:
    """Accumulate ``value`` into ``acc[key]``; a ``None`` poisons the key (the total becomes unknown)."""
    if value is None or acc.get(key, 0.0) is None:
        acc[key] = None
    else:
        acc[key] = acc.get(key, 0.0) + value


def _times(value: int | float | None, tasks: int | None) -> float | None:
    return None if value is None or tasks is None else float(value) * tasks


def fill(out: MetricSet, jobs: list[QueueJob], now: float, quantiles: list[float]) -> None:
    """Aggregate parsed queue lines into ``out`` (separated from :meth:`collect` for tests)."""
    jobs_by: dict[tuple[str, str], float | None] = {}
    cpus_by: dict[tuple[str, str], float | None] = {}
    nodes_by: dict[tuple[str, str], float | None] = {}
    gpus_by: dict[tuple[str, str], float | None] = {}
    arrays: dict[tuple[str, str], set[str]] = defaultdict(set)
    reasons: dict[tuple[str, str], float | None] = {}
    oldest: dict[str, float] = {}
    waits: dict[str, list[tuple[float, int]]] = defaultdict(list)
    wait_unknown: set[str] = set()
    cluster: dict[str, dict[str, int | None]] = defaultdict(dict)
    seen: set[tuple[str, str]] = set()
    partitions: set[str] = set()
    for job in jobs:
        state, job_id, tasks = job.state, job.job_id, job.tasks
        cluster[state][job_id] = tasks
        # The per-task values times the task count, as _times() computes them, once per line.
        cpus = None if job.cpus is None or tasks is None else float(job.cpus) * tasks
        nodes = None if job.nodes is None or tasks is None else float(job.nodes) * tasks
        gpus = None if job.gpus is None or tasks is None else float(job.gpus) * tasks
        for part in job.partitions:
            if (job_id, part) in seen:  # squeue -P copies, or a partition listed twice
                continue
            seen.add((job_id, part))
            partitions.add(part)
            key = (part, state)
            # _sum() inlined (this loop runs once per queued job): a None poisons the key.
            acc = jobs_by.get(key, 0.0)
            jobs_by[key] = None if tasks is None or acc is None else acc + tasks
            acc = cpus_by.get(key, 0.0)
            cpus_by[key] = None if cpus is None or acc is None else acc + cpus
            acc = nodes_by.get(key, 0.0)
            nodes_by[key] = None if nodes is None or acc is None else acc + nodes
            acc = gpus_by.get(key, 0.0)
            gpus_by[key] = None if gpus is None or acc is None else acc + gpus
            if job.array_job_id is not None:
                arrays[key].add(job.array_job_id)
            if state != "pending":
                continue
            _sum(reasons, (part, job.reason or "None"), tasks)
            if job.submit_time is not None:
                oldest[part] = min(oldest.get(part, math.inf), job.submit_time)
            # A future EligibleTime (--begin) means "not eligible yet": not part of the wait distribution.
            if job.eligible_time is not None and job.eligible_time <= now:
                if job.tasks is None:
                    wait_unknown.add(part)
                else:
                    waits[part].append((now - job.eligible_time, job.tasks))
    for (part, state), n in jobs_by.items():
        out.add(_P + "jobs", n, partition=part, state=state)
        out.add(_P + "requested_cpus", cpus_by.get((part, state)), partition=part, state=state)
        out.add(_P + "requested_nodes", nodes_by.get((part, state)), partition=part, state=state)
        out.add(_P + "requested_gpus", gpus_by.get((part, state)), partition=part, state=state)
        out.add(_P + "arrays", len(arrays.get((part, state), ())), partition=part, state=state)
    for state, by_id in cluster.items():
        counts = list(by_id.values())
        out.add(_P + "cluster_jobs", None if None in counts else sum(c or 0 for c in counts), state=state)
    for (part, reason), n in reasons.items():
        out.add(_P + "pending_jobs_by_reason", n, partition=part, reason=reason)
    for part, submit in oldest.items():
        out.add(_P + "oldest_pending_age_seconds", max(0.0, now - submit), partition=part)
    for part in sorted(partitions):
        if part in wait_unknown:
            continue  # a task count is unknown: quantiles would be wrong
        if any(state == "pending" for (p, state) in jobs_by if p == part):
            out.add(_P + "pending_eligible_jobs", sum(w for _, w in waits.get(part, [])), partition=part)
        for q in quantiles:
            out.add(_P + "pending_wait_seconds", weighted_quantile(waits.get(part, []), q), partition=part,
                    quantile=f"{q:g}")  # fmt: skip


def _job_id_key(job_id: str) -> tuple[int, str]:
    """Numeric order of raw job ids (``"9"`` before ``"10"``), text order for anything else."""
    return (int(job_id), "") if job_id.isdigit() else (1 << 62, job_id)


def select_jobs(jobs: list[QueueJobDetail], max_jobs: int) -> tuple[list[QueueJobDetail], int]:
    """Choose the queued jobs that get per-job series.

    Order: started jobs (any state but ``pending``) by start time, then pending jobs by submit time (oldest
    first); a missing time sorts last within its group, ties go by job id. A job id seen twice (the per-partition
    copies of ``squeue -P``) keeps its first line.

    Args:
        jobs: parsed lines of :data:`~nomade.exporter.parsers.squeue.SQUEUE_JOBS_ARGV`.
        max_jobs: how many to keep (>= 0).

    Returns:
        ``(kept, dropped)``: the first ``max_jobs`` jobs in that order and the number of distinct jobs left out.

    """
    unique: dict[str, QueueJobDetail] = {}
    for d in jobs:
        unique.setdefault(d.job.job_id, d)

    def key(d: QueueJobDetail) -> tuple:
        pending = d.job.state == "pending"
        t = d.job.submit_time if pending else d.start_time
        return (pending, t is None, t or 0.0, _job_id_key(d.job.job_id))

    ordered = sorted(unique.values(), key=key)
    return ordered[:max_jobs], max(0, len(ordered) - max_jobs)


def _job_values(d: QueueJobDetail) -> tuple[float | int | None, ...]:
    """The per-job gauge values of ``d`` in :data:`_PER_JOB` order."""
    j = d.job
    return (j.cpus, j.nodes, d.memory_bytes, j.gpus, d.timelimit_seconds, j.submit_time, d.start_time)


def fill_per_job(out: MetricSet, jobs: list[QueueJobDetail], max_jobs: int) -> None:
    """Add the per-job series of the selected jobs (:func:`select_jobs`) and the dropped count to ``out``."""
    kept, dropped = select_jobs(jobs, max_jobs)
    info: dict[tuple[str, ...], float] = {}
    gauges: list[dict[tuple[str, ...], float]] = [{} for _ in _PER_JOB]
    for d in kept:
        job_id = d.job.job_id
        info[(job_id, d.user or "", d.account or "", d.partition, d.job.state.upper(), d.name, d.nodelist)] = 1.0
        for samples, v in zip(gauges, _job_values(d), strict=True):
            if v is not None:
                samples[(job_id,)] = float(v)
    out.extend(JOB_INFO, info)
    for (name, _, _), samples in zip(_PER_JOB, gauges, strict=True):
        out.extend(name, samples)
    out.add(JOB_DROPPED, dropped)


COLLECTOR = SlurmQueueCollector
