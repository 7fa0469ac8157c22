"""Scrape orchestration: run the enabled collectors concurrently under one deadline and add self-metrics.

Each scrape starts every enabled collector in a thread pool and waits at most ``scrape_timeout`` seconds in
total. A collector that raises, or that has not finished by the deadline, is reported with
``nomade_collector_up 0`` and contributes nothing else; the others are exposed as usual. A collector still
already running (a concurrent scrape, or a run left over from a timed-out scrape) is joined rather than started a
second time, so concurrent scrapers share one collection and a frozen source can never pile up threads.

Prometheus sends its own scrape timeout in the ``X-Prometheus-Scrape-Timeout-Seconds`` header; the HTTP server
passes it to :meth:`ScrapeOrchestrator.timeout`, and the scrape then ends half a second before Prometheus would
give up, so a frozen slurmctld shows as ``nomade_collector_up 0`` instead of a failed scrape (the blackbox
exporter handles the header the same way).
"""

from __future__ import annotations

import contextlib
import logging
import platform
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait

from prometheus_client.core import Metric

from . import __version__
from .collectors.base import Collector
from .metrics import MetricSet, MetricSpec
from .runner import CommandRunner

log = logging.getLogger("nomade.exporter")

SELF_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "nomade_collector_up",
        "gauge",
        "1 if the collector's source answered in the last scrape, else 0.",
        ("collector",),
    ),
    MetricSpec(
        "nomade_collector_duration_seconds",
        "gauge",
        "Time the collector took in the last scrape.",
        ("collector",),
        "seconds",
    ),
    MetricSpec(
        "nomade_collector_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the collector's last successful collection.",
        ("collector",),
        "seconds",
    ),
    MetricSpec(
        "nomade_collector_failures_total",
        "counter",
        "Collections that failed, by reason (error, timeout).",
        ("collector", "reason"),
    ),
    MetricSpec(
        "nomade_collector_parse_errors_total",
        "counter",
        "Input lines or fields the collector skipped because they could not be parsed.",
        ("collector",),
    ),
    MetricSpec(
        "nomade_exporter_command_errors_total",
        "counter",
        "External command runs that failed, by command and reason (missing, timeout, exit).",
        ("command", "reason"),
    ),
    MetricSpec(
        "nomade_exporter_command_runs_total",
        "counter",
        "External command runs (cache misses), by command.",
        ("command",),
    ),
    MetricSpec(
        "nomade_exporter_build_info",
        "info",
        "Version of the exporter and of the Python running it.",
        ("version", "python_version"),
    ),
    MetricSpec("nomade_exporter_scrapes_total", "counter", "Scrapes served since start.", ()),
    MetricSpec("nomade_exporter_scrape_series", "gauge", "Samples in the previous scrape's collector output.", ()),
)


class ScrapeOrchestrator:
    """A ``prometheus_client`` custom collector running NØMADE collectors.

    Args:
        collectors: the enabled collector instances.
        runner: the shared command runner (its error counters become self-metrics).
        scrape_timeout: total seconds a scrape waits for collectors.
        executor: where collections run (default: a thread pool of ``max(4, len(collectors))`` threads, so a
            frozen source costs only the deadline). An executor whose ``submit`` runs the call at once in the
            caller's thread makes each scrape sequential and the deadline moot; the simulated cluster's history
            uses one, sparing thread hand-offs when no source can hang. ``close`` shuts it down.

    """

    def __init__(
        self,
        collectors: Sequence[Collector],
        runner: CommandRunner,
        scrape_timeout: float = 25.0,
        executor: Executor | None = None,
    ) -> None:
        self.collectors = list(collectors)
        self.runner = runner
        self.scrape_timeout = scrape_timeout
        self._pool = executor or ThreadPoolExecutor(
            max_workers=max(4, len(self.collectors)), thread_name_prefix="collector"
        )
        self._running: dict[str, Future[tuple[MetricSet, float]]] = {}
        self._last_success: dict[str, float] = {}
        self._failures: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self.scrapes = 0
        """Scrapes served so far (``nomade_exporter_scrapes_total``); the simulated cluster's history workers set
        it when they resume a history part-way (:meth:`nomade.sim.world.SimWorld.catch_up`)."""
        self._last_series = 0
        self._local = threading.local()

    @contextlib.contextmanager
    def timeout(self, seconds: float | None) -> Iterator[None]:
        """Within this block, scrapes made by this thread wait at most ``seconds`` (capped by scrape_timeout).

        Args:
            seconds: the scraper's own timeout, e.g. from ``X-Prometheus-Scrape-Timeout-Seconds``; a margin of
                0.5 s (or 10 % when shorter) is kept for encoding and transfer. ``None`` keeps the default.

        """
        prev = getattr(self._local, "timeout", None)
        if seconds is not None and seconds > 0:
            self._local.timeout = min(self.scrape_timeout, max(0.1, seconds - min(0.5, seconds * 0.1)))
        try:
            yield
        finally:
            self._local.timeout = prev

    def effective_timeout(self) -> float:
        """The timeout the next scrape on this thread will use (seconds)."""
        return getattr(self._local, "timeout", None) or self.scrape_timeout

    def _run_one(self, c: Collector) -> tuple[MetricSet, float]:
        start = time.monotonic()
        out = c.new_set()
        c.collect(out)
        return out, time.monotonic() - start

    def collect(self) -> Iterator[Metric]:
        """Run one scrape (called by ``prometheus_client`` for each request)."""
        budget = self.effective_timeout()
        deadline = time.monotonic() + budget
        started: dict[str, Future[tuple[MetricSet, float]]] = {}
        with self._lock:
            self.scrapes += 1
            for c in self.collectors:
                prev = self._running.get(c.name)
                if prev is not None and not prev.done():
                    started[c.name] = prev  # join the collection in flight
                    continue
                fut = self._pool.submit(self._run_one, c)
                self._running[c.name] = fut
                started[c.name] = fut
        if started:
            wait(started.values(), timeout=max(0.0, deadline - time.monotonic()))
        selfset = MetricSet(SELF_METRICS)
        series = 0
        families: list[Metric] = []
        for c in self.collectors:
            fut = started[c.name]
            reason = None
            duration: float | None = None
            if not fut.done():
                reason = "timeout"
                duration = budget
            else:
                exc = fut.exception()
                if exc is not None:
                    reason = "error"
                    log.warning("collector %s failed: %s", c.name, exc)
                else:
                    out, duration = fut.result()
                    families.extend(out.families())
                    series += out.series_count()
                    self._last_success[c.name] = time.time()
            if reason is not None:
                self._failures[(c.name, reason)] += 1
                if reason == "timeout":
                    log.warning("collector %s did not finish within %.1f s", c.name, budget)
            selfset.add("nomade_collector_up", 0 if reason else 1, collector=c.name)
            selfset.add("nomade_collector_duration_seconds", duration, collector=c.name)
            selfset.add("nomade_collector_parse_errors_total", c.parse_errors, collector=c.name)
            if c.name in self._last_success:
                selfset.add(
                    "nomade_collector_last_success_timestamp_seconds",
                    self._last_success[c.name],
                    collector=c.name,
                )
        for (name, reason), n in sorted(self._failures.items()):
            selfset.add("nomade_collector_failures_total", n, collector=name, reason=reason)
        for (cmd, reason), n in sorted(self.runner.errors.items()):
            selfset.add("nomade_exporter_command_errors_total", n, command=cmd, reason=reason)
        for cmd, n in sorted(self.runner.runs.items()):
            selfset.add("nomade_exporter_command_runs_total", n, command=cmd)
        selfset.info("nomade_exporter_build_info", version=__version__, python_version=platform.python_version())
        selfset.add("nomade_exporter_scrapes_total", self.scrapes)
        selfset.add("nomade_exporter_scrape_series", self._last_series)
        self._last_series = series
        yield from families
        yield from selfset.families()

    def close(self) -> None:
        """Stop collectors' background work and the thread pool (does not wait for hung collectors)."""
        for c in self.collectors:
            c.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def all_specs(collector_classes: Iterable[type[Collector]]) -> list[MetricSpec]:
    """Every metric spec of the given collectors plus the self-metrics, in a stable order."""
    specs: list[MetricSpec] = list(SELF_METRICS)
    for cls in collector_classes:
        specs.extend(cls.metrics)
    return specs
