"""SLURM pending-priority collector: the priority of pending jobs and its factors, summarised per partition.

Source: one ``sprio --format=%i|%r|%u|%Y|%S|%A|%B|%F|%J|%P|%Q|%N|%T`` run per ``interval`` (see
:mod:`nomade.exporter.parsers.sprio`), shared through the runner cache. sprio lists every pending job once per
partition it waits in, with its WEIGHTED factors (factor x PriorityWeight*), whose sum is the job priority
(``get_priority_from_factors`` in ``src/sprio/print.c``; the TRES factors are summed into ``tres``).

Per partition: the number of pending job lines, and for the priority and each factor the nearest-rank quantiles
(:func:`~nomade.exporter.collectors.slurm_queue.weighted_quantile`, Hyndman & Fan definition 1; ``quantile="1"``
is the maximum, ``"0"`` the minimum) and the mean. No per-job or per-user series.

Series per partition: 1 + (1 + 9 factors) x (#quantiles + 1) = 51 with the default 4 quantiles.

sprio works only with ``PriorityType=priority/multifactor`` (sprio(1) DESCRIPTION); under priority/basic it
exits 1 with "You are not running a supported priority plugin". That, or a missing sprio, is not a failure of
every scrape: it is logged once and ``nomade_slurm_priority_source_available`` is 0. Other sprio failures
(slurmctld down) raise, so ``up`` is 0.

Options (``[collector.slurm_priority]``):
    interval (seconds, default 60): cache lifetime of the sprio output.
    timeout (seconds, default 30): the sprio timeout.
    quantiles (list of float, default [0, 0.5, 0.9, 1]): the quantiles exported.
    sprio (str, default "sprio"): the command.
"""

from __future__ import annotations

import shutil
from collections import defaultdict

from ..metrics import MetricSet, MetricSpec
from ..parsers.sprio import SPRIO_FORMAT, PriorityRow, parse_sprio
from ..runner import CommandError, CommandResult
from .base import Collector, CollectorContext
from .slurm_queue import weighted_quantile
from .slurm_scheduler import report_unavailable

_P = "nomade_slurm_priority_"
SOURCE_AVAILABLE = _P + "source_available"
DEFAULT_QUANTILES = (0.0, 0.5, 0.9, 1.0)
# Texts sprio prints when the multifactor plugin is not in use (src/sprio/sprio.c).
UNSUPPORTED_MARKERS = ("supported priority plugin", "priority/basic", "only 'priority/multifactor'")


def plugin_unsupported(exc: CommandError) -> bool:
    """Whether a failed sprio run means "no multifactor priority plugin here" (not a transient failure)."""
    detail = exc.detail.lower()
    return exc.reason == "exit" and any(m in detail for m in UNSUPPORTED_MARKERS)


class SlurmPriorityCollector(Collector):
    """Pending-job priority and factors per partition from ``sprio`` (controller mode)."""

    name = "slurm_priority"
    mode = "controller"
    description = "sprio: quantiles and means of pending jobs' priority and weighted factors per partition."
    metrics = (
        MetricSpec(_P + "pending_jobs", "gauge", "Pending job lines sprio reports per partition (a job pending in "
                   "several partitions counts in each).", ("partition",)),
        MetricSpec(_P + "job_priority", "gauge", "Quantiles of the pending jobs' priority (nearest rank; "
                   "quantile 1 = max, 0 = min).", ("partition", "quantile")),
        MetricSpec(_P + "job_priority_mean", "gauge", "Mean priority of the pending jobs.", ("partition",)),
        MetricSpec(_P + "factor", "gauge", "Quantiles of a weighted priority factor over the pending jobs (age, "
                   "assoc, fairshare, jobsize, partition, qos, site, nice, tres).",
                   ("partition", "factor", "quantile")),
        MetricSpec(_P + "factor_mean", "gauge", "Mean of a weighted priority factor over the pending jobs.",
                   ("partition", "factor")),
        MetricSpec(SOURCE_AVAILABLE, "gauge", "1 when sprio works here (multifactor priority plugin), 0 when "
                   "the command is missing or the priority plugin is not supported."),
    )  # fmt: skip

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.interval = float(self.option("interval", 60))
        self.timeout = float(self.option("timeout", 30))
        self.quantiles = [float(q) for q in self.option("quantiles", DEFAULT_QUANTILES)]
        self.sprio = str(self.option("sprio", "sprio"))
        if any(not 0.0 <= q <= 1.0 for q in self.quantiles):
            raise ValueError("slurm_priority: quantiles must lie in [0, 1]")
        self._last: tuple[CommandResult, list[PriorityRow]] | None = None

    @classmethod
    def available(cls) -> bool:
        """Whether ``sprio`` is on the PATH (whether the plugin supports it is only known by running it)."""
        return shutil.which("sprio") is not None

    def argv(self) -> list[str]:
        """The sprio command line."""
        return [self.sprio, f"--format={SPRIO_FORMAT}"]

    def collect(self, out: MetricSet) -> None:
        """Run sprio (cached per interval) and fill the per-partition summaries.

        Raises:
            CommandError: sprio timed out or failed for another reason than an unsupported plugin.

        """
        try:
            res = self.ctx.runner.run(self.argv(), timeout=self.timeout, ttl=self.interval)
        except CommandError as exc:
            if exc.reason == "missing":
                report_unavailable(self, out, SOURCE_AVAILABLE, f"{self.sprio} not found")
                return
            if plugin_unsupported(exc):
                report_unavailable(self, out, SOURCE_AVAILABLE, "sprio needs PriorityType=priority/multifactor")
                return
            raise
        out.add(SOURCE_AVAILABLE, 1)
        if self._last is not None and self._last[0] is res:
            rows = self._last[1]
        else:
            parsed = parse_sprio(res.stdout)
            self.count_parse_errors(len(parsed.issues))
            rows = parsed.records
            self._last = (res, rows)
        fill(out, rows, self.quantiles)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def fill(out: MetricSet, rows: list[PriorityRow], quantiles: list[float]) -> None:
    """Summarise sprio rows per partition into ``out`` (``partition=""`` when sprio printed no partition)."""
    jobs: dict[str, int] = defaultdict(int)
    prio: dict[str, list[float]] = defaultdict(list)
    factors: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        part = r.partition or ""
        jobs[part] += 1
        if r.priority is not None:
            prio[part].append(r.priority)
        for name, v in r.factors.items():
            factors[(part, name)].append(v)
    for part, n in jobs.items():
        out.add(_P + "pending_jobs", n, partition=part)
    for part, values in prio.items():
        pairs = [(v, 1) for v in values]
        for q in quantiles:
            out.add(_P + "job_priority", weighted_quantile(pairs, q), partition=part, quantile=f"{q:g}")
        out.add(_P + "job_priority_mean", _mean(values), partition=part)
    for (part, name), values in factors.items():
        pairs = [(v, 1) for v in values]
        for q in quantiles:
            out.add(_P + "factor", weighted_quantile(pairs, q), partition=part, factor=name, quantile=f"{q:g}")
        out.add(_P + "factor_mean", _mean(values), partition=part, factor=name)


COLLECTOR = SlurmPriorityCollector
