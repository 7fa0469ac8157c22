"""SLURM accounting collector: finished jobs from ``sacct`` - outcome counters, efficiency histograms, per-job series.

Source: one ``sacct`` call per ``interval`` (cached and shared through the command runner), for all users, over the
last ``lookback`` seconds, terminal states only, steps included (``MaxRSS`` lives on step lines)::

    sacct --allusers --parsable2 --noheader --delimiter=<0x1F> --format=JobIDRaw,JobID,...,JobName
          --state=CA,CD,DL,F,NF,OOM,PR,TO,BF --starttime=now-<lookback> --endtime=now

sacct(1): with ``--state`` and a start/end time, sacct selects jobs that were in one of those states during the
window; "now-<n>" is "now minus n seconds" (sacct(1) "Valid time formats"). The window is relative so the argv -
the runner's cache key - is the same on every call and the TTL cache works.

Options (``[collector.slurm_accounting]``):

- ``lookback`` (seconds, default 3600): the sacct window; per-job series cover jobs that ended within it.
- ``interval`` (seconds, default 60): cache lifetime of the sacct output (``ttl`` of the runner), so frequent
  scrapes cost slurmdbd one query per interval (sacct(1) "PERFORMANCE").
- ``timeout`` (seconds, default 30): the sacct timeout.
- ``per_job`` (bool, default true): export the per-job series.
- ``max_jobs`` (default 5000): cap on jobs with per-job series, most recently ended first; the rest are counted in
  ``nomade_slurm_accounting_window_jobs_dropped``.
- ``sacct`` (default ``"sacct"``): the command.

Counting (``nomade_slurm_job_finished_total`` and the two histograms) goes through
:class:`~nomade.exporter.accounting_store.AccountingStore` (``<state_dir>/slurm_accounting.sqlite3``): each
``JobIDRaw`` is counted once, ever (once per accounting record: a requeued job's earlier NODE_FAIL/PREEMPTED
record and its final outcome are two records, see :func:`dedup_key`), and the totals survive restarts and jobs
ageing out of squeue. On the first start, the jobs already in the window are counted. A job whose end lies more
than 2 x lookback in the past is never counted (its dedup row would already be pruned). Array tasks and
heterogeneous components each have their own ``JobIDRaw`` and count as jobs.

Cardinality: the counter has at most partitions x 9 states x 13 classes series (in practice a few per partition);
each histogram (bucket count + 2) series per partition. Per job: 1 info + 16 gauges = 17 series, so 17,000 per
1,000 jobs in the window; ``max_jobs`` bounds it (85,000 at the default 5,000), ``per_job = false`` removes it.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
import shutil
from typing import ClassVar

from ..accounting_store import AccountingStore, Labels, Observation, StoreError, labels_of
from ..metrics import MetricSet, MetricSpec
from ..parsers.job_arrays import ArrayHealth, array_health
from ..parsers.sacct import SACCT_DELIMITER, SACCT_FIELDS, SacctJob, parse_sacct
from ..parsers.slurm_outcome import STATE_CODES, TERMINAL_STATES
from ..parsers.slurm_units import gc_paused
from ..runner import CommandResult
from .base import Collector, CollectorContext, CollectorError

#: Histogram bounds for both efficiency ratios: tenths up to 1, then 1.5 and 2 because the memory ratio exceeds 1
#: when MaxRSS passes an unenforced request and CPU time can slightly exceed Elapsed x AllocCPUS.
EFFICIENCY_BUCKETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0)

FINISHED = "nomade_slurm_job_finished_total"
CPU_EFF = "nomade_slurm_job_cpu_efficiency_ratio"
MEM_EFF = "nomade_slurm_job_memory_efficiency_ratio"

_TERMINAL_LONG = frozenset(STATE_CODES[c] for c in TERMINAL_STATES)

_J = ("job_id",)

# (metric name, help, unit) of the numeric per-job gauges; values come from _per_job_values.
_PER_JOB: tuple[tuple[str, str, str], ...] = (
    ("nomade_slurm_job_requested_cpus", "CPUs the finished job requested (sacct ReqCPUS).", ""),
    ("nomade_slurm_job_allocated_cpus", "CPUs allocated to the finished job (sacct AllocCPUS).", ""),
    (
        "nomade_slurm_job_requested_memory_bytes",
        "Total memory the job requested: ReqMem per node x nodes, per CPU x CPUs, or the total (SLURM >= 21.08).",
        "bytes",
    ),
    ("nomade_slurm_job_max_rss_bytes", "Peak resident set size: maximum MaxRSS over the job's steps.", "bytes"),
    ("nomade_slurm_job_requested_gpus", "GPUs requested (gres/gpu of ReqTRES, else AllocTRES).", ""),
    ("nomade_slurm_job_timelimit_seconds", "Time limit of the job (absent when UNLIMITED).", "seconds"),
    ("nomade_slurm_job_elapsed_seconds", "Wall-clock run time of the job (sacct Elapsed).", "seconds"),
    ("nomade_slurm_job_cpu_seconds", "User + system CPU time of the job's steps (sacct TotalCPU).", "seconds"),
    ("nomade_slurm_job_nodes", "Nodes allocated to the job (sacct NNodes).", ""),
    ("nomade_slurm_job_exit_code", "Exit status of the job script (sacct ExitCode before the colon).", ""),
    (
        "nomade_slurm_job_exit_signal",
        "Signal that ended the job script, 0 if none (sacct ExitCode after the colon).",
        "",
    ),
    ("nomade_slurm_job_submit_timestamp_seconds", "Submission time of the job, Unix seconds.", "seconds"),
    ("nomade_slurm_job_start_timestamp_seconds", "Start time of the job, Unix seconds.", "seconds"),
    ("nomade_slurm_job_end_timestamp_seconds", "End time of the job, Unix seconds.", "seconds"),
    (
        "nomade_slurm_job_cpu_utilization_ratio",
        "This job's CPU efficiency TotalCPU / (Elapsed x AllocCPUS) (seff's figure; the histogram of all jobs is "
        "nomade_slurm_job_cpu_efficiency_ratio).",
        "ratio",
    ),
    (
        "nomade_slurm_job_memory_utilization_ratio",
        "This job's memory efficiency: peak step MaxRSS / requested memory; may exceed 1 (the histogram of all jobs "
        "is nomade_slurm_job_memory_efficiency_ratio).",
        "ratio",
    ),
)


def _per_job_values(j: SacctJob, cpu_eff: float | None, mem_eff: float | None) -> tuple[float | int | None, ...]:
    """The per-job gauge values of ``j`` in :data:`_PER_JOB` order (``cpu_eff``/``mem_eff``: its efficiencies)."""
    return (
        j.req_cpus,
        j.alloc_cpus,
        j.requested_memory_bytes,
        j.max_rss_bytes,
        j.requested_gpus,
        j.timelimit_seconds,
        j.elapsed_seconds,
        j.total_cpu_seconds,
        j.nnodes,
        j.exit_code,
        j.exit_signal,
        j.submit,
        j.start,
        j.end,
        cpu_eff,
        mem_eff,
    )


ARRAY_METRICS = (
    MetricSpec(
        "nomade_job_hygiene_array_failed_ratio",
        "gauge",
        "Share of an array's finished, not cancelled tasks that failed (sacct window).",
        ("array_job_id",),
        "ratio",
    ),
    MetricSpec(
        "nomade_job_hygiene_array_tasks",
        "gauge",
        "Finished tasks of a job array in the sacct window, by outcome (succeeded, failed, cancelled).",
        ("array_job_id", "outcome"),
    ),
)
"""Declarations of the job-array health figures (share of failed tasks per array), computed from sacct."""


ARRAY_MIN_TASKS = 2
"""Arrays with fewer finished tasks in the window are left out, which bounds the ``array_job_id`` label set."""


def add_array_health(out: MetricSet, arrays: list[ArrayHealth]) -> None:
    """Fill :data:`ARRAY_METRICS` from :func:`~nomade.exporter.parsers.job_arrays.array_health` results."""
    for a in arrays:
        out.add("nomade_job_hygiene_array_failed_ratio", a.failed_ratio, array_job_id=a.array_job_id)
        for outcome, n in (("succeeded", a.succeeded), ("failed", a.failed), ("cancelled", a.cancelled)):
            out.add("nomade_job_hygiene_array_tasks", n, array_job_id=a.array_job_id, outcome=outcome)


def dedup_key(job: SacctJob) -> str:
    """The key a finished job is counted under: ``JobIDRaw@<submit time>`` (``JobIDRaw`` alone without one).

    A requeued job keeps its ``JobIDRaw`` but gets a new accounting record with a new ``Submit`` (seen on the
    lab's SLURM 22.05: a NODE_FAIL record submitted 15:19:42, the requeued run 15:20:16; ``sacct -D`` lists both).
    Each record is a separate terminal outcome and counts once; the submit time of a record never changes.
    """
    if job.submit is None:
        return job.job_id_raw
    return f"{job.job_id_raw}@{int(job.submit)}"


class _JobSeries:
    """What one job contributes to the per-job families: its end, info labels and gauge values."""

    __slots__ = ("end", "index", "info", "job_id", "values")

    def __init__(self, index: int, job: SacctJob, cls: str, cpu_eff: float | None, mem_eff: float | None) -> None:
        self.index = index  # position among the terminal jobs (input order breaks ties of the end time)
        self.end = job.end
        self.job_id = (job.job_id,)
        self.info = (
            self.job_id[0],
            job.name or "",
            job.user or "",
            job.account or "",
            job.partition or "",
            (job.state or "").lower(),
            cls,
            job.nodelist or "",
        )
        self.values = _per_job_values(job, cpu_eff, mem_eff)


class _Prepared:
    """Everything :meth:`SlurmAccountingCollector.collect` derives from one sacct output.

    Built once per :class:`CommandResult`; a scrape that gets the cached result only applies the scrape time
    (the horizon, the window and the place of jobs without an end time). Holds no :class:`SacctJob`: the
    observations of the terminal jobs (in sacct order), their sorted end times, and the per-job series of the
    jobs that can ever be exported from this output: the ``max_jobs`` most recently ended ones and those
    without an end time (which sort as "now").
    """

    def __init__(self, result: CommandResult, jobs: list[SacctJob], max_jobs: int) -> None:
        self.result = result
        terminal = [j for j in jobs if j.state in _TERMINAL_LONG]
        known = [i for i, j in enumerate(terminal) if j.end is not None]
        end_of = [j.end for j in terminal]
        # The known-end jobs in the order collect() exports them: most recent end first, sacct order among equal
        # ends (nlargest is documented equal to a stable descending sort). Only the first max_jobs can be kept.
        top = heapq.nlargest(max_jobs, known, key=end_of.__getitem__) if max_jobs else []
        wanted = set(top)
        self.obs: list[Observation] = []
        self.no_end: list[int] = []  # positions in obs of the jobs without an end time
        series: dict[int, _JobSeries] = {}
        counter_labels: dict[tuple[str, str, str], Labels] = {}
        part_labels: dict[str, Labels] = {}
        for i, j in enumerate(terminal):
            part = j.partition or ""
            state = (j.state or "").lower()
            cls = j.failure_class
            cpu_eff, mem_eff = j.cpu_efficiency, j.memory_efficiency
            clab = counter_labels.get((part, state, cls))
            if clab is None:
                clab = counter_labels[(part, state, cls)] = labels_of(partition=part, state=state, failure_class=cls)
            samples = []
            for hist, value in ((CPU_EFF, cpu_eff), (MEM_EFF, mem_eff)):
                if value is not None and math.isfinite(value):
                    plab = part_labels.get(part)
                    if plab is None:
                        plab = part_labels[part] = labels_of(partition=part)
                    samples.append((hist, plab, value))
            self.obs.append(
                Observation(
                    key=dedup_key(j),
                    end_time=j.end if j.end is not None else math.nan,  # no end: the poll time, set per scrape
                    counters=((FINISHED, clab, 1.0),),
                    samples=tuple(samples),
                )
            )
            if j.end is None:
                self.no_end.append(i)
            if (i in wanted or j.end is None) and max_jobs:
                series[i] = _JobSeries(i, j, cls, cpu_eff, mem_eff)
        self.ends_sorted = sorted(end_of[i] for i in known)
        self.min_end = self.ends_sorted[0] if self.ends_sorted else math.inf
        # Job-array health over the same records (bounded: arrays with at least ARRAY_MIN_TASKS finished tasks).
        self.arrays = array_health(jobs, min_tasks=ARRAY_MIN_TASKS)
        self.series_top = [series[i] for i in top]
        self.series_no_end = [series[i] for i in self.no_end if i in series]
        self._cache: tuple[int, dict[str, dict[tuple[str, ...], float]]] | None = None

    def observations(self, now: float, horizon: float) -> list[Observation]:
        """Observations for one scrape: jobs that ended before ``horizon`` left out, those without an end at ``now``."""
        if not self.no_end and self.min_end >= horizon:
            return self.obs
        no_end = set(self.no_end)
        out = []
        for i, ob in enumerate(self.obs):
            if i in no_end:
                out.append(dataclasses.replace(ob, end_time=now))
            elif ob.end_time >= horizon:
                out.append(ob)
        return out

    def window_size(self, window_start: float) -> int:
        """Terminal jobs that ended at or after ``window_start`` or have no end time."""
        return len(self.no_end) + len(self.ends_sorted) - bisect.bisect_left(self.ends_sorted, window_start)

    def per_job_samples(self, now: float, window_start: float, kept: int) -> dict[str, dict[tuple[str, ...], float]]:
        """The per-job families of the ``kept`` most recently ended jobs of the window, ready for ``extend``.

        A job without an end time sorts as ``now`` (it has just been recorded as terminal); equal ends keep
        sacct order. Cached while ``kept`` stays the same and no job lacks an end time.
        """
        if not self.series_no_end:
            if self._cache is not None and self._cache[0] == kept:
                return self._cache[1]
            entries = self.series_top[:kept]  # the window is a prefix of this order
        else:
            cand = [e for e in self.series_top if e.end >= window_start] + self.series_no_end
            cand.sort(key=lambda e: e.index)
            cand.sort(key=lambda e: e.end if e.end is not None else now, reverse=True)
            entries = cand[:kept]
        info: dict[tuple[str, ...], float] = {}
        gauges: list[dict[tuple[str, ...], float]] = [{} for _ in _PER_JOB]
        for e in entries:
            info[e.info] = 1.0
            for samples, v in zip(gauges, e.values, strict=True):
                if v is not None and v == v:  # MetricSet.add drops None and NaN
                    samples[e.job_id] = float(v)
        fams = {"nomade_slurm_job_info": info, **{n: g for (n, _, _), g in zip(_PER_JOB, gauges, strict=True)}}
        if not self.series_no_end:
            self._cache = (kept, fams)
        return fams


class SlurmAccountingCollector(Collector):
    """Finished SLURM jobs from sacct: deduplicated outcome counters, efficiency histograms and per-job series.

    Labels: ``state`` is the sacct state in lower case without ``by <uid>`` (``completed``, ``cancelled``,
    ``out_of_memory``...); ``failure_class`` is one of
    :data:`nomade.exporter.parsers.slurm_outcome.FAILURE_CLASSES`; ``partition`` is empty when sacct gave none.

    Raises (from :meth:`collect`):
        CommandError: sacct missing, timed out or failed (``up`` 0; the store is not touched).
        CollectorError: the state store cannot be opened or written.
    """

    name = "slurm_accounting"
    mode = "controller"
    description = "Finished jobs from sacct: outcome counters, CPU/memory efficiency histograms, per-job series."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec(
            FINISHED,
            "counter",
            "Jobs that reached a terminal state, counted once per JobIDRaw, by partition, sacct state and "
            "failure class; persisted across exporter restarts.",
            ("partition", "state", "failure_class"),
        ),
        MetricSpec(
            CPU_EFF,
            "histogram",
            "CPU efficiency TotalCPU / (Elapsed x AllocCPUS) of finished jobs, one observation per job.",
            ("partition",),
            "ratio",
        ),
        MetricSpec(
            MEM_EFF,
            "histogram",
            "Memory efficiency (peak step MaxRSS / requested memory) of finished jobs, one observation per "
            "job; can exceed 1.",
            ("partition",),
            "ratio",
        ),
        MetricSpec(
            "nomade_slurm_job_info",
            "info",
            "A job that ended within the lookback window, with its text attributes.",
            ("job_id", "job_name", "user", "account", "partition", "state", "failure_class", "nodelist"),
        ),
        *(MetricSpec(n, "gauge", h, _J, u) for n, h, u in _PER_JOB),
        MetricSpec(
            "nomade_slurm_accounting_window_jobs", "gauge", "Finished jobs sacct returned for the lookback window.", ()
        ),
        MetricSpec(
            "nomade_slurm_accounting_window_jobs_dropped",
            "gauge",
            "Jobs in the window left without per-job series because of max_jobs.",
            (),
        ),
        MetricSpec(
            "nomade_slurm_accounting_window_seconds", "gauge", "Length of the sacct lookback window.", (), "seconds"
        ),
        *ARRAY_METRICS,
    )

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.lookback = int(self.option("lookback", 3600))
        self.interval = float(self.option("interval", 60))
        self.timeout = float(self.option("timeout", 30))
        self.per_job = bool(self.option("per_job", True))
        self.max_jobs = int(self.option("max_jobs", 5000))
        self.sacct = str(self.option("sacct", "sacct"))
        if self.lookback <= 0 or self.max_jobs < 0:
            raise ValueError("slurm_accounting: lookback must be > 0 and max_jobs >= 0")
        self._store: AccountingStore | None = None
        self._last: _Prepared | None = None

    @classmethod
    def available(cls) -> bool:
        """Whether ``sacct`` is on the PATH."""
        return shutil.which("sacct") is not None

    def argv(self) -> list[str]:
        """The sacct command line (see the module docstring)."""
        return [
            self.sacct,
            "--allusers",
            "--parsable2",
            "--noheader",
            f"--delimiter={SACCT_DELIMITER}",
            "--format=" + ",".join(SACCT_FIELDS),
            "--state=" + ",".join(TERMINAL_STATES),
            f"--starttime=now-{self.lookback}",
            "--endtime=now",
        ]

    def store(self) -> AccountingStore:
        """The state store, opened on first use (so a bad state_dir gives ``up`` 0 rather than a dead exporter)."""
        if self._store is None:
            try:
                self._store = AccountingStore(
                    self.ctx.state_dir / "slurm_accounting.sqlite3",
                    {CPU_EFF: EFFICIENCY_BUCKETS, MEM_EFF: EFFICIENCY_BUCKETS},
                )
            except StoreError as exc:
                raise CollectorError(str(exc)) from exc
        return self._store

    def _prepared(self) -> _Prepared:
        """The state derived from the current sacct output, rebuilt only when the runner gave a new result.

        The runner returns the same :class:`CommandResult` object while its cache is valid, so a scrape within
        ``interval`` reuses everything derived from it (parse issues were counted when it was parsed).
        """
        result = self.ctx.runner.run(self.argv(), timeout=self.timeout, ttl=self.interval)
        if self._last is not None and self._last.result is result:
            return self._last
        self._last = None  # let the previous state go before building the next one
        # One garbage-collector pause over parsing, deriving and freeing the records (see gc_paused): only
        # the derived state survives it, so the collector's first pass afterwards scans just that.
        with gc_paused():
            parsed = parse_sacct(result.stdout, fields=SACCT_FIELDS, delimiter=SACCT_DELIMITER)
            self.count_parse_errors(len(parsed.issues))
            prep = _Prepared(result, parsed.records, self.max_jobs if self.per_job else 0)
            del parsed
        self._last = prep
        return prep

    def collect(self, out: MetricSet) -> None:
        """Poll sacct, count newly finished jobs in the store, expose totals and per-job series."""
        prep = self._prepared()
        now = float(self.ctx.clock())
        horizon = now - 2 * self.lookback
        window_start = now - self.lookback
        store = self.store()
        try:
            store.record(prep.observations(now, horizon), now=now, prune_before=horizon)
            counters = store.counters(FINISHED)
            hists = {h: store.histograms(h) for h in (CPU_EFF, MEM_EFF)}
        except StoreError as exc:
            raise CollectorError(str(exc)) from exc
        for labels, value in counters.items():
            out.add(FINISHED, value, **dict(labels))
        for h, children in hists.items():
            for labels, (buckets, total, count) in children.items():
                out.histogram(h, buckets, total, count, **dict(labels))

        add_array_health(out, prep.arrays)
        window = prep.window_size(window_start)
        out.add("nomade_slurm_accounting_window_jobs", window)
        out.add("nomade_slurm_accounting_window_seconds", self.lookback)
        if not self.per_job:
            return
        kept = min(window, self.max_jobs)
        out.add("nomade_slurm_accounting_window_jobs_dropped", window - kept)
        for name, samples in prep.per_job_samples(now, window_start, kept).items():
            out.extend(name, samples)

    def close(self) -> None:
        """Close the state store."""
        if self._store is not None:
            self._store.close()
            self._store = None


COLLECTOR = SlurmAccountingCollector
