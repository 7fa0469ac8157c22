"""The analytics cycle and its publisher: Prometheus history in, ``nomade_trend_*`` gauges out.

One cycle evaluates every watch (:class:`nomade.analytics.config.Watch`) at one instant ``now``:

1. ONE ``query_range`` of the watch's expression over ``[now - window, now]`` at ``step``: every series of the watch
   at once, however many nodes, filesystems or jobs are behind it;
2. at most ONE instant query of its ``threshold_query`` at ``now``;
3. locally: label hygiene, duplicate removal, pairing with thresholds, and the derivative engine
   (:func:`nomade.analytics.derivatives.estimate_many`) over each series' points.

So the number of HTTP queries per cycle is ``sum(watch.queries_per_cycle)``: it depends on the configuration only
(issue 4, "Cost"). ``nomade_analytics_queries_total`` counts them.

Publishing: :class:`AnalyticsService` is a ``prometheus_client`` custom collector. Each scrape serves the results of
the last cycle in which each watch was evaluated successfully. When a cycle cannot reach Prometheus,
``nomade_analytics_up`` drops to 0 and the previous values keep being served, their age visible in
``nomade_analytics_last_success_timestamp_seconds`` (and per watch in
``nomade_analytics_watch_last_success_timestamp_seconds``); the next cycle simply tries again, so the service
recovers without a restart. A watch whose expression Prometheus rejects counts
``nomade_analytics_cycle_errors_total{reason="promql"}`` and keeps its previous values; the other watches are
published as usual.

Label hygiene: a published series carries ``watch`` plus the source series' labels minus ``__name__``, ``job`` and
``instance`` (``keep_labels`` keeps the latter two), so it joins back to its source on ``node``, ``mountpoint``,
``job_id``... A source label named like one the service adds (``watch``, ``horizon``, ``state``) is renamed
``exported_<name>``, as Prometheus does for clashing target labels. Two source series that become identical after
the drop (the same filesystem scraped through two exporters) cannot both be published: the one with more points is
kept and ``nomade_analytics_cycle_errors_total{reason="duplicate_series"}`` counts the others.

Failure risk: with a :class:`nomade.analytics.risk.RiskEngine` (``[analytics.risk]``), each cycle ends with the
engine's harvest, retraining check and scoring; its series (``nomade_job_risk_*``, ``nomade_model_*``,
``nomade_recommendation_*``) are served next to the trends, its queries and problems are counted under
``watch="risk"``, and an engine failure never fails a watch.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from prometheus_client.core import Metric

from nomade.exporter.metrics import MetricSet

from .catalog import SELF_METRICS, TREND_METRICS
from .config import DROPPED_LABELS, AnalyticsConfig, Watch
from .promapi import PrometheusUnavailable, PromQLError, Sample, Series

log = logging.getLogger("nomade.analytics")

RESERVED_LABELS = ("watch", "horizon", "state")
"""Label names the service adds itself; a source label of the same name is published as ``exported_<name>``."""


class QueryClient(Protocol):
    """What the service needs of :class:`nomade.analytics.promapi.PrometheusClient`."""

    def query(self, expr: str, time: float | None = None) -> list[Sample]: ...  # noqa: D102

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]: ...  # noqa: D102


class RiskCycle(Protocol):
    """What the service needs of :class:`nomade.analytics.risk.RiskEngine`."""

    def run_cycle(self, now: float | None = None) -> None: ...  # noqa: D102

    def families(self) -> list[Metric]: ...  # noqa: D102

    def error_counts(self) -> dict[str, int]: ...  # noqa: D102

    def query_counts(self) -> dict[str, int]: ...  # noqa: D102


EstimateMany = Callable[..., list[tuple[Mapping[str, str], Any]]]
"""``estimate_many(series, *, now, window, counter, min_points, stale_after)`` of :mod:`.derivatives`."""


@dataclass
class WatchResult:
    """What one successful evaluation of a watch publishes.

    Attributes:
        computed_at: the cycle's ``now`` (Unix seconds).
        watched: series returned by the query (after the cluster filter and duplicate removal).
        estimated: series that got an estimate.
        families: ``{metric name: Metric}`` holding only this watch's samples (built once per cycle, merged into
            the exposition at each scrape).

    """

    computed_at: float
    watched: int
    estimated: int
    families: dict[str, Metric] = field(default_factory=dict)


class _Abort(Exception):
    """Prometheus could not be reached at all: the rest of the cycle is skipped."""


class AnalyticsService:
    """Runs analytics cycles and serves their results as a ``prometheus_client`` collector.

    Args:
        config: the resolved configuration (its watches, cluster filter and label options are used here; the
            client is built by the caller).
        client: a :class:`~nomade.analytics.promapi.PrometheusClient` or anything with its ``query`` and
            ``query_range``; a ``requests_sent`` attribute, when present, is exported as
            ``nomade_analytics_http_requests_total``.
        estimate_many: the derivative engine (default :func:`nomade.analytics.derivatives.estimate_many`).
        trend_states: the engine's trend classes, for the ``nomade_trend_state`` state set (default
            :data:`nomade.analytics.derivatives.TREND_STATES`).
        clock: wall clock, Unix seconds (replaced in tests).
        risk: the failure-risk engine (:class:`nomade.analytics.risk.RiskEngine`) run after the watches in each
            cycle, or ``None``. Its problems are counted in ``nomade_analytics_cycle_errors_total{watch="risk"}``
            and its queries in ``nomade_analytics_queries_total{watch="risk"}``; they never fail the watches nor
            change ``nomade_analytics_up`` (which describes the trend watches).

    """

    def __init__(
        self,
        config: AnalyticsConfig,
        client: QueryClient,
        *,
        estimate_many: EstimateMany | None = None,
        trend_states: Sequence[str] | None = None,
        clock: Callable[[], float] = time.time,
        risk: RiskCycle | None = None,
    ) -> None:
        if estimate_many is None or trend_states is None:
            from . import derivatives  # numpy-heavy; imported only when the real engine is wanted

            estimate_many = estimate_many or derivatives.estimate_many
            trend_states = trend_states or derivatives.TREND_STATES
        self.config = config
        self.client = client
        self._estimate_many = estimate_many
        self.trend_states = tuple(trend_states)
        self._clock = clock
        self.risk = risk
        self._lock = threading.Lock()
        self._results: dict[str, WatchResult] = {}
        self._queries: Counter[tuple[str, str]] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._cycles: Counter[str] = Counter()
        self._up: float | None = None  # absent until the first cycle ends
        self._last_success: float | None = None
        self._last_duration: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the cycle -------------------------------------------------------------------------------------------

    def run_cycle(self) -> bool:
        """Evaluate every watch once and publish the results.

        Returns:
            ``True`` when the cycle succeeded (``nomade_analytics_up`` 1): Prometheus answered every query it was
            asked and at least one watch (or none is configured) was evaluated. A rejected expression fails only
            its watch.

        Never raises for Prometheus or engine errors: they are counted in ``nomade_analytics_cycle_errors_total``.

        """
        t0 = time.monotonic()
        now = self._clock()
        unavailable = False
        done = 0
        watches = self.config.watches
        for i, w in enumerate(watches):
            try:
                result = self._evaluate(w, now)
            except _Abort as exc:
                skipped = [x.name for x in watches[i + 1 :]]
                log.warning(
                    "watch %s: Prometheus unavailable (%s)%s",
                    w.name,
                    exc,
                    f"; skipping {', '.join(skipped)} this cycle" if skipped else "",
                )
                unavailable = True
                break
            except PrometheusUnavailable as exc:  # the server answered, but not usefully (5xx, 429, 401...)
                log.warning("watch %s: Prometheus unavailable: %s", w.name, exc)
                unavailable = True
                continue
            except PromQLError as exc:
                log.warning("watch %s: query rejected: %s", w.name, exc)
                continue
            except Exception:  # the engine, or a bug: one watch must not take the others down
                log.exception("watch %s: estimation failed", w.name)
                with self._lock:
                    self._errors[(w.name, "estimate")] += 1
                continue
            with self._lock:
                self._results[w.name] = result
            done += 1
        if self.risk is not None:
            try:
                self.risk.run_cycle(now)
            except Exception:  # the engine counts what it expects; a bug must not end the cycle or the watches
                log.exception("risk engine failed")
                with self._lock:
                    self._errors[("risk", "internal")] += 1
        ok = not unavailable and (done > 0 or not watches)
        with self._lock:
            self._up = 1.0 if ok else 0.0
            self._cycles["success" if ok else "failure"] += 1
            self._last_duration = time.monotonic() - t0
            if ok:
                self._last_success = now
            # Watches no longer configured (never the case for a running service, but keep it exact) are dropped.
            for name in set(self._results) - {w.name for w in watches}:
                del self._results[name]
        return ok

    def _query(self, w: Watch, kind: str, call: Callable[[], Any]) -> Any:
        """Run one query for watch ``w``, counting it and classifying its failure.

        Raises:
            _Abort: no HTTP answer at all (refused, DNS, TLS, timeout): the other watches would fail alike.
            PrometheusUnavailable: an HTTP answer that is not usable (5xx, 429, 401...).
            PromQLError: the expression was rejected.

        """
        with self._lock:
            self._queries[(w.name, kind)] += 1
        try:
            return call()
        except PrometheusUnavailable as exc:
            with self._lock:
                self._errors[(w.name, "unavailable")] += 1
            if exc.status_code is None:
                raise _Abort(str(exc)) from exc
            raise
        except PromQLError:
            with self._lock:
                self._errors[(w.name, "promql")] += 1
            raise

    def _evaluate(self, w: Watch, now: float) -> WatchResult:
        keep = w.keep_labels if w.keep_labels is not None else self.config.keep_labels
        drop = frozenset(DROPPED_LABELS).difference(keep) | {"__name__"}
        matrix = self._query(w, "range", lambda: self.client.query_range(w.query, now - w.window, now, w.step))
        series, duplicates = self._clean(matrix, drop, w.step)
        if duplicates:
            with self._lock:
                self._errors[(w.name, "duplicate_series")] += duplicates
        thresholds: dict[tuple[str, ...], float | None] = {}
        if w.threshold_query is not None:
            try:
                samples = self._query(w, "instant", lambda: self.client.query(w.threshold_query, time=now))
            except PromQLError:
                samples = None  # counted; the trends are still published, without time-to-threshold
            if samples is not None:
                thresholds = self._thresholds(w, samples, drop)
        inputs = [(labels, t, v) for labels, (t, v) in series.items()]
        estimates = self._estimate_many(
            [(dict(labels), t, v) for labels, t, v in inputs],
            now=now,
            window=w.window,
            counter=w.counter,
            min_points=w.min_points,
            stale_after=w.effective_stale_after,
        )
        fams = {s.name: Metric(s.name, s.help, s.type) for s in TREND_METRICS}
        estimated = 0
        for (labels_key, _, _), (_, est) in zip(inputs, estimates, strict=True):
            if est is None:
                continue
            labels = _published_labels(w.name, labels_key)
            if w.threshold is not None:
                thr: float | None = w.threshold
            elif w.threshold_query is not None:
                thr = thresholds.get(_match_key(w, labels_key))
            else:
                thr = None
            if self._publish(fams, w, labels, est, thr):
                estimated += 1
        return WatchResult(
            computed_at=now,
            watched=len(series),
            estimated=estimated,
            families={name: m for name, m in fams.items() if m.samples},
        )

    def _clean(
        self, matrix: Iterable[Series], drop: frozenset[str], step: float
    ) -> tuple[dict[tuple[tuple[str, str], ...], tuple[np.ndarray, np.ndarray]], int]:
        """Cluster filter, label drop, non-finite and carried-forward points out, duplicates resolved (most wins)."""
        cl, want = self.config.cluster_label, self.config.cluster
        out: dict[tuple[tuple[str, str], ...], tuple[np.ndarray, np.ndarray]] = {}
        duplicates = 0
        for s in matrix:
            if want is not None and s.labels.get(cl) != want:
                continue
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k not in drop))
            if s.points:
                arr = np.asarray(s.points, dtype=float)
                t, v = arr[:, 0], arr[:, 1]
                ok = np.isfinite(v)
                if not ok.all():  # NaN from 0/0 in the expression, ±Inf from x/0: no information
                    t, v = t[ok], v[ok]
                t, v = drop_carried_forward(t, v, step)
            else:
                t = v = np.empty(0)
            prev = out.get(key)
            if prev is not None:
                duplicates += 1
                if len(prev[0]) >= len(t):
                    continue
            out[key] = (t, v)
        return out, duplicates

    def _thresholds(
        self, w: Watch, samples: Iterable[Sample], drop: frozenset[str]
    ) -> dict[tuple[str, ...], float | None]:
        """``{match key: threshold}``; a key matched by several series maps to ``None`` (ambiguous: not used)."""
        cl, want = self.config.cluster_label, self.config.cluster
        out: dict[tuple[str, ...], float | None] = {}
        ambiguous = 0
        for s in samples:
            if want is not None and s.labels.get(cl) != want:
                continue
            if not math.isfinite(s.value):
                continue
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k not in drop))
            key = _match_key(w, labels)
            if key in out:
                if out[key] is not None and out[key] != s.value:
                    ambiguous += 1
                    out[key] = None
                continue
            out[key] = s.value
        if ambiguous:
            with self._lock:
                self._errors[(w.name, "ambiguous_threshold")] += ambiguous
        return out

    def _publish(self, fams: dict[str, Metric], w: Watch, labels: dict[str, str], est: Any, thr: float | None) -> bool:
        """Add one series' samples to ``fams``; ``False`` (nothing added) when the estimate is not finite."""
        level = float(est.level)
        if not math.isfinite(level):
            return False

        def add(name: str, value: float | None, extra: dict[str, str] | None = None) -> None:
            if value is None:
                return
            value = float(value)
            if math.isnan(value):  # absent beats wrong
                return
            fams[name].add_sample(name, {**labels, **extra} if extra else labels, value)

        add("nomade_trend_level", level)
        add("nomade_trend_level_stderr", est.level_se)
        add("nomade_trend_slope_per_second", est.slope)
        add("nomade_trend_slope_stderr", est.slope_se)
        add("nomade_trend_acceleration_per_second_squared", est.accel)
        add("nomade_trend_acceleration_stderr", est.accel_se)
        add("nomade_trend_residual_stddev", est.residual_sd)
        add("nomade_trend_points", est.n_points)
        add("nomade_trend_window_seconds", est.window_seconds)
        for horizon, seconds in w.horizons:
            value, lower, upper = est.project(seconds)
            h = {"horizon": horizon}
            add("nomade_trend_projected_value", value, h)
            add("nomade_trend_projected_value_lower", lower, h)
            add("nomade_trend_projected_value_upper", upper, h)
        if est.trend in self.trend_states:
            for state in self.trend_states:
                add("nomade_trend_state", 1.0 if state == est.trend else 0.0, {"state": state})
        if thr is not None and math.isfinite(thr):
            add("nomade_trend_threshold", thr)
            # The engine gives 0 when the fitted level is already at or beyond the threshold, None when it never
            # gets there (absent beats wrong).
            ttt = est.time_to_threshold(thr, direction=w.direction)
            value, lower, upper = ttt
            if value is not None and value >= 0:
                add("nomade_trend_time_to_threshold_seconds", value)
                add("nomade_trend_time_to_threshold_lower_seconds", _finite_or_none(lower))
                add("nomade_trend_time_to_threshold_upper_seconds", _finite_or_none(upper))
        return True

    # -- publishing ------------------------------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        """Nothing: the registry must not run a cycle's worth of work at registration."""
        return []

    def collect(self) -> list[Metric]:
        """The exposition: each watch's last good results, then the service's own metrics."""
        with self._lock:
            results = dict(self._results)
            queries, errors, cycles = dict(self._queries), dict(self._errors), dict(self._cycles)
            up, last_success, duration = self._up, self._last_success, self._last_duration
        out: list[Metric] = []
        for spec in TREND_METRICS:
            merged = Metric(spec.name, spec.help, spec.type)
            for w in self.config.watches:
                r = results.get(w.name)
                if r is not None and spec.name in r.families:
                    merged.samples.extend(r.families[spec.name].samples)
            if merged.samples:
                out.append(merged)
        ms = MetricSet(SELF_METRICS)
        ms.add("nomade_analytics_up", up)
        ms.add("nomade_analytics_last_success_timestamp_seconds", last_success)
        ms.add("nomade_analytics_cycle_duration_seconds", duration)
        for (watch, kind), n in queries.items():
            ms.add("nomade_analytics_queries_total", n, watch=watch, kind=kind)
        for (watch, reason), n in errors.items():
            ms.add("nomade_analytics_cycle_errors_total", n, watch=watch, reason=reason)
        for result, n in cycles.items():
            ms.add("nomade_analytics_cycles_total", n, result=result)
        risk_families: list[Metric] = []
        if self.risk is not None:
            for kind, n in self.risk.query_counts().items():
                ms.add("nomade_analytics_queries_total", n, watch="risk", kind=kind)
            for reason, n in self.risk.error_counts().items():
                ms.add("nomade_analytics_cycle_errors_total", n, watch="risk", reason=reason)
            for kind in ("range", "instant"):
                ms.add("nomade_analytics_queries_total", 0, watch="risk", kind=kind)
            try:
                risk_families = self.risk.families()
            except Exception:  # a scrape never fails (DESIGN.md principle 2)
                log.exception("risk engine: cannot build its metrics")
        sent = getattr(self.client, "requests_sent", None)
        if isinstance(sent, int):
            ms.add("nomade_analytics_http_requests_total", sent)
        for w in self.config.watches:
            ms.info("nomade_analytics_watch_info", watch=w.name, unit=w.unit, direction=w.direction, query=w.query)
            # Zero-valued error and query series exist from the start, so that increase() sees the first one.
            for kind in ("range", "instant") if w.threshold_query else ("range",):
                ms.add("nomade_analytics_queries_total", 0, watch=w.name, kind=kind)
            r = results.get(w.name)
            if r is not None:
                ms.add("nomade_analytics_watch_last_success_timestamp_seconds", r.computed_at, watch=w.name)
                ms.add("nomade_analytics_watched_series", r.watched, watch=w.name)
                ms.add("nomade_analytics_estimated_series", r.estimated, watch=w.name)
        for result in ("success", "failure"):
            ms.add("nomade_analytics_cycles_total", 0, result=result)
        return out + ms.families() + risk_families

    # -- background loop -------------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """Run a cycle every ``config.interval`` seconds (start to start) until ``stop`` is set.

        A cycle that overruns the interval is followed at once by the next one; exceptions never end the loop.
        """
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                self.run_cycle()
            except Exception:  # run_cycle counts what it expects; anything else must not stop the service
                log.exception("analytics cycle failed")
            stop.wait(max(0.0, self.config.interval - (time.monotonic() - t0)))

    def start(self) -> threading.Thread:
        """Start :meth:`run_forever` in a daemon thread (the first cycle runs at once); returns the thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, args=(self._stop,), name="analytics", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to end and wait up to ``timeout`` seconds for the cycle in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


LOOKBACK_DELTA = 300.0
"""Prometheus's default ``--query.lookback-delta`` (5 minutes): how long a range query repeats a series' last sample."""


def drop_carried_forward(
    t: np.ndarray, v: np.ndarray, step: float, lookback: float = LOOKBACK_DELTA
) -> tuple[np.ndarray, np.ndarray]:
    """Remove the points a range query invented by repeating a sample over a gap in the raw data.

    ``query_range`` evaluates at every step; where the raw series has a gap, Prometheus repeats the last sample
    for up to its lookback delta (VictoriaMetrics once per gap), so the matrix shows a flat run just before each
    gap. Those repeats are not observations: fitted as such they bend the local quadratic (the "gaps" scenario
    read as accelerating growth with a time-to-threshold 5 % early). Within a run of equal values that ends right
    before a gap longer than 1.5 steps, the points in the run's last ``lookback`` seconds are dropped, except the
    run's first point, which is the real sample (an older part of a long flat run is real data and kept).

    Args:
        t: sample times (seconds, increasing).
        v: values at those times.
        step: the range query's step, seconds.
        lookback: the server's lookback delta, seconds (repeats happen at most this long after a sample).

    Returns:
        ``(t, v)`` without the repeats; the input arrays when there is no gap.

    """
    if t.size < 3:
        return t, v
    gaps = np.flatnonzero(np.diff(t) > 1.5 * step)  # index of the last point before each gap
    if gaps.size == 0:
        return t, v
    keep = np.ones(t.size, dtype=bool)
    for end in gaps:
        start = end
        while start > 0 and v[start - 1] == v[end]:
            start -= 1
        if start == end:
            continue
        cut = max(t[start], t[end] - lookback)
        keep[start + 1 : end + 1] &= ~(t[start + 1 : end + 1] > cut)
        # the run's first point stays; points of a long flat run older than the lookback are real and stay
    return t[keep], v[keep]


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) and x >= 0 else None


def _published_labels(watch: str, source: tuple[tuple[str, str], ...]) -> dict[str, str]:
    labels = {"watch": watch}
    for k, v in source:
        labels[f"exported_{k}" if k in RESERVED_LABELS else k] = v
    return labels


def _match_key(w: Watch, labels: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """The labels pairing a series with its threshold: ``match_on`` (missing = ""), or every label."""
    if not w.match_on:
        return tuple(f"{k}={v}" for k, v in labels)
    d = dict(labels)
    return tuple(d.get(name, "") for name in w.match_on)


__all__ = ["AnalyticsService", "QueryClient", "RESERVED_LABELS", "WatchResult"]
