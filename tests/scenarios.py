"""Deterministic scenario histories with analytic answers, for the analytics tests and benchmark.

Each :class:`Scenario` is a noiseless curve ``f(t)`` of the time ``t`` in seconds RELATIVE to the evaluation time
"now" (``t = 0``), sampled every ``interval`` seconds on a fixed grid, plus seeded Gaussian noise, minus gap
intervals. Its analytic answers at now are:

* ``expected_trend``: the trend class the derivative engine must report (``nomade.analytics.derivatives``);
* ``crossing``: seconds from now until the noiseless curve first reaches ``threshold`` (closed form, see each
  builder), or ``None`` when it never does;
* ``slope_now``: the true first derivative at now (units/s), for the comparison with PromQL ``deriv()``.

The same scenario gives the same samples whatever span is asked for: noise is drawn once, from
``numpy.random.default_rng(seed)``, over the grid ``[-GRID_SPAN, +GRID_SPAN]`` and sliced, so the tests (8 h up to
now) and the benchmark (replays that continue past now to the crossing) see identical values where they overlap.

Most scenarios are filesystem-like: used bytes of a filesystem of size :data:`SIZE` (10 TB), with the size as the
threshold (published as a ``nomade_scenario_size_bytes`` series so that the service's ``threshold_query`` path is
used). Magnitudes follow what a scratch filesystem does: a few % of its size per hour, noise of 0.1 % of the size.

:func:`promql_linear_regression` and :func:`promql_predict_linear` reproduce PromQL's ``deriv()`` and
``predict_linear()`` locally (same samples, same formula) so that the benchmark can replay history cheaply; the
scenario tests check them against real Prometheus answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

HOUR = 3600.0
SIZE = 1e13
"""Filesystem size of the filesystem-like scenarios (bytes): the threshold."""
GRID_SPAN = 24 * HOUR
"""Samples (and noise) exist on ``[-GRID_SPAN, +GRID_SPAN]`` around now."""
USED = "nomade_scenario_used_bytes"
SIZE_METRIC = "nomade_scenario_size_bytes"
COUNTER = "nomade_scenario_events_total"


@dataclass(frozen=True)
class Scenario:
    """One deterministic history and its analytic answers (times in seconds relative to now).

    Attributes:
        name: the ``scenario`` label and the watch name.
        description: what it models.
        func: noiseless value at relative times (vectorised), in ``unit``.
        interval: raw sample spacing, seconds (also the watch's query step).
        noise_sd: standard deviation of the additive Gaussian noise, in ``unit``.
        seed: noise seed.
        threshold: the threshold (``None``: the scenario has none).
        expected_trend: trend class at now.
        crossing: analytic seconds from now to the first crossing of ``threshold`` by ``func``; ``None``: never.
        slope_now: true derivative of ``func`` at now (``unit``/s); for a counter, the true rate.
        metric: metric name of the watched series.
        unit: unit of the values.
        counter: the series is a counter with resets (watched with ``counter=True``).
        gaps: ``(start, end)`` relative intervals without samples.
        resets: relative times at which the counter restarts from 0.
        threshold_series: publish ``threshold`` as a ``nomade_scenario_size_bytes`` series (``threshold_query``).

    """

    name: str
    description: str
    func: Callable[[np.ndarray], np.ndarray]
    interval: float
    noise_sd: float
    seed: int
    threshold: float | None
    expected_trend: str
    crossing: float | None
    slope_now: float
    metric: str = USED
    unit: str = "bytes"
    counter: bool = False
    gaps: tuple[tuple[float, float], ...] = ()
    resets: tuple[float, ...] = ()
    threshold_series: bool = True
    _cache: dict = field(default_factory=dict, repr=False, compare=False, hash=False)

    @property
    def labels(self) -> dict[str, str]:
        """Labels of the watched series (``__name__`` included)."""
        return {"__name__": self.metric, "scenario": self.name, "mountpoint": f"/{self.name}"}

    def _grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Relative times and noisy values over the whole grid (cached; gaps not yet removed)."""
        if "grid" not in self._cache:
            n = int(round(GRID_SPAN / self.interval))
            t = np.arange(-n, n + 1, dtype=float) * self.interval
            rng = np.random.default_rng(self.seed)
            if self.counter:
                # A float counter (CPU seconds, bytes...) growing at exactly the true rate, restarting from 0 at each
                # reset: rate * (t - last_reset). Noise-free on purpose: any per-sample noise becomes a permanent
                # offset once a reset is undone (the value before the reset is added to every later sample, as
                # Prometheus' rate() does), and Poisson increments make the residuals a random walk, which the
                # engine's AR(1) correction does not cover; both make the trend class depend on the seed (see the
                # report of tests/integration/test_analytics_scenarios.py). This scenario isolates reset handling.
                last = np.full_like(t, -GRID_SPAN - self.interval)
                for r in sorted(self.resets):
                    last = np.where(t > r, r, last)  # the scrape at r still read the old process
                v = self.slope_now * (t - last)
            else:
                v = self.func(t) + rng.normal(0.0, self.noise_sd, size=t.size)
            self._cache["grid"] = (t, v)
        return self._cache["grid"]

    def samples(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        """``(t, v)``: samples with ``start <= t <= end`` (relative seconds), gaps removed."""
        t, v = self._grid()
        keep = (t >= start - 1e-9) & (t <= end + 1e-9)
        for a, b in self.gaps:
            keep &= ~((t > a) & (t < b))
        return t[keep], v[keep]

    def history(self, now: float, span: float = 8 * HOUR) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """The last ``span`` seconds up to ``now`` (Unix seconds) as a ``tests/backfill.py`` history.

        Includes the size series (constant ``threshold``, same grid, no gaps) when ``threshold_series`` is set.
        """
        t, v = self.samples(-span, 0.0)
        out = [(self.labels, [(now + float(a), float(b)) for a, b in zip(t, v, strict=True)])]
        if self.threshold_series and self.threshold is not None:
            size_labels = {**self.labels, "__name__": SIZE_METRIC}
            grid = np.arange(-span, 1e-9, self.interval)
            out.append((size_labels, [(now + float(a), float(self.threshold)) for a in grid]))
        return out

    def truth_crosses_within(self, tau: float, horizon: float, resolution: float = 60.0) -> bool:
        """Whether the noiseless curve reaches ``threshold`` within ``[tau, tau + horizon]`` (hindsight truth)."""
        if self.threshold is None:
            return False
        h = np.arange(tau, tau + horizon + 1e-9, resolution)
        return bool(np.any(self.func(h) >= self.threshold))


# -- the scenarios -----------------------------------------------------------------------------------------------


def _linear() -> Scenario:
    # 80 % full, filling at 5 % of the size per hour: full in (1 - 0.8) / 0.05 = 4 h.
    u0, r = 0.8 * SIZE, 0.05 * SIZE / HOUR
    return Scenario(
        name="linear",
        description="used bytes rising at a constant 5 %/h from 80 % of the size",
        func=lambda t: u0 + r * t,
        interval=60.0,
        noise_sd=0.001 * SIZE,
        seed=101,
        threshold=SIZE,
        expected_trend="linear_growth",
        crossing=(SIZE - u0) / r,
        slope_now=r,
    )


def _exponential() -> Scenario:
    # A + B exp(t / tau): a base of 30 % plus a part growing with a 3 h time constant (runaway job output).
    # Crossing: A + B exp(t/tau) = SIZE  =>  t = tau ln((SIZE - A) / B) = 3 h ln(0.7 / 0.4) = 1.679 h.
    a, b, tau = 0.3 * SIZE, 0.4 * SIZE, 3 * HOUR
    return Scenario(
        name="exponential",
        description="used bytes = 30 % + 40 % exp(t / 3 h): 70 % now, accelerating",
        func=lambda t: a + b * np.exp(t / tau),
        interval=60.0,
        noise_sd=0.001 * SIZE,
        seed=102,
        threshold=SIZE,
        expected_trend="accelerating_growth",
        crossing=tau * math.log((SIZE - a) / b),
        slope_now=b / tau,
    )


def _logistic() -> Scenario:
    # L / (1 + exp(-(t - tm) / s)) with a ceiling L = 85 % of the size (a dataset download of known size), at 90 %
    # of it now: (0 - tm) / s = ln 9. Never reaches the size. Slope now L p (1 - p) / s with p = 0.9.
    ceiling, s = 0.85 * SIZE, 1 * HOUR
    tm = -s * math.log(9.0)
    return Scenario(
        name="logistic",
        description="logistic fill towards a ceiling of 85 % of the size, at 90 % of the ceiling now",
        func=lambda t: ceiling / (1.0 + np.exp(-(t - tm) / s)),
        interval=60.0,
        noise_sd=0.001 * SIZE,
        seed=103,
        threshold=SIZE,
        expected_trend="decelerating_growth",
        crossing=None,
        slope_now=ceiling * 0.9 * 0.1 / s,
    )


def _step() -> Scenario:
    # A 45 % jump 3 h 15 min ago (a dataset copied in at once), flat before and after: nothing is growing now.
    at = -3.25 * HOUR
    return Scenario(
        name="step",
        description="flat at 35 %, a step to 80 % 3 h 15 min ago, flat since",
        func=lambda t: np.where(t < at, 0.35 * SIZE, 0.80 * SIZE),
        interval=60.0,
        noise_sd=0.001 * SIZE,
        seed=104,
        threshold=SIZE,
        expected_trend="stable",
        crossing=None,
        slope_now=0.0,
    )


def _noisy() -> Scenario:
    # Flat at 60 % with noise of 0.5 % of the size at 15 s resolution. With white noise and two tests at z = 1.96
    # about 1 seed in 10 reads as a trend (derivatives.py docstring); this seed is one of the other 9, and the test
    # is deterministic because the seed is fixed.
    return Scenario(
        name="noisy",
        description="flat at 60 % of the size with white noise (sd 0.5 % of the size), 15 s samples",
        func=lambda t: np.full_like(t, 0.6 * SIZE),
        interval=15.0,
        noise_sd=0.005 * SIZE,
        seed=105,
        threshold=SIZE,
        expected_trend="stable",
        crossing=None,
        slope_now=0.0,
    )


def _cleanup() -> Scenario:
    # Growth at 4 %/h up to 80 % two hours ago, then a purge deleting 15 %/h (rm -r runs at a steady rate), down to
    # a floor of 20 % (reached 2 h from now). Never crosses: at its peak a 4 h extrapolation gives 96 %.
    peak_t, peak, grow, purge, floor = -2 * HOUR, 0.8 * SIZE, 0.04 * SIZE / HOUR, 0.15 * SIZE / HOUR, 0.2 * SIZE

    def f(t: np.ndarray) -> np.ndarray:
        up = peak + grow * (t - peak_t)
        down = np.maximum(peak - purge * (t - peak_t), floor)
        return np.where(t < peak_t, up, down)

    return Scenario(
        name="cleanup",
        description="growth at 4 %/h to 80 % 2 h ago, then a purge at 15 %/h (50 % now)",
        func=f,
        interval=60.0,
        noise_sd=0.001 * SIZE,
        seed=106,
        threshold=SIZE,
        expected_trend="linear_decline",
        crossing=None,
        slope_now=-purge,
    )


def _counter_reset() -> Scenario:
    # A counter at 5 units/s whose exporter restarted 4 h and 30 min ago (counter back to 0), each time right after a
    # scrape, so that nothing is lost and the reset-corrected counter is exactly the line. A restart in
    # mid-interval loses what was counted since the last scrape (rate() cannot recover it either); on a noise-free
    # counter that dent alone reads as a significant deceleration.
    rate = 5.0
    return Scenario(
        name="counter_reset",
        description="event counter at 5/s, restarted from 0 just after the scrapes at -4 h and -30 min",
        func=lambda t: rate * t,  # only the rate matters: resets make the raw level meaningless
        interval=15.0,
        noise_sd=0.0,
        seed=107,
        threshold=None,
        expected_trend="linear_growth",
        crossing=None,
        slope_now=rate,
        metric=COUNTER,
        unit="events",
        counter=True,
        resets=(-4 * HOUR, -0.5 * HOUR),
        threshold_series=False,
    )


def _gaps() -> Scenario:
    # The linear fill of a 15 s-scraped filesystem whose exporter was down for 2 h (-4.5 h to -2.5 h) and for
    # 15 min (-1 h to -45 min). 60 % now, 8 %/h: full in 0.4 / 0.08 = 5 h.
    u0, r = 0.6 * SIZE, 0.08 * SIZE / HOUR
    return Scenario(
        name="gaps",
        description="linear fill at 8 %/h from 60 %, 15 s samples, missing from -4.5 h to -2.5 h and -1 h to -45 min",
        func=lambda t: u0 + r * t,
        interval=15.0,
        noise_sd=0.001 * SIZE,
        seed=108,
        threshold=SIZE,
        expected_trend="linear_growth",
        crossing=(SIZE - u0) / r,
        slope_now=r,
        gaps=((-4.5 * HOUR, -2.5 * HOUR), (-1 * HOUR, -0.75 * HOUR)),
    )


SCENARIOS: tuple[Scenario, ...] = (
    _linear(),
    _exponential(),
    _logistic(),
    _step(),
    _noisy(),
    _cleanup(),
    _counter_reset(),
    _gaps(),
)
BY_NAME: dict[str, Scenario] = {s.name: s for s in SCENARIOS}


# -- PromQL deriv() / predict_linear() reproduced locally ----------------------------------------------------------


def promql_linear_regression(t: np.ndarray, v: np.ndarray, at: float, range_s: float) -> tuple[float, float] | None:
    """``(slope, intercept_at)`` of PromQL's ``linearRegression`` over the raw samples of ``x[range_s]`` at ``at``.

    Prometheus 2.42 (``promql/functions.go``: ``funcDeriv``, ``funcPredictLinear``, ``linearRegression``): the range
    selector takes the raw samples with ``at - range <= t <= at`` (both ends closed before Prometheus 3.0), x is
    ``t - at`` in seconds, and the slope is the unweighted OLS ``cov(x, y) / var(x)``; the intercept is the fitted
    value at ``at``. A constant series gives slope 0. ``None`` with fewer than 2 samples (PromQL returns nothing).
    ``deriv(x[r])`` is the slope; ``predict_linear(x[r], h)`` is ``intercept + slope * h``.
    """
    keep = (t >= at - range_s - 1e-9) & (t <= at + 1e-9)
    x = t[keep] - at
    y = v[keep]
    if x.size < 2:
        return None
    if np.all(y == y[0]):
        return 0.0, float(y[0])
    n = float(x.size)
    sx, sy = x.sum(), y.sum()
    cov = (x * y).sum() - sx * sy / n
    var = (x * x).sum() - sx * sx / n
    slope = cov / var
    return float(slope), float(sy / n - slope * sx / n)


def promql_predict_linear(t: np.ndarray, v: np.ndarray, at: float, range_s: float, horizon: float) -> float | None:
    """``predict_linear(x[range_s], horizon)`` evaluated at ``at`` (see :func:`promql_linear_regression`)."""
    fit = promql_linear_regression(t, v, at, range_s)
    return None if fit is None else fit[1] + fit[0] * horizon


def linear_time_to_threshold(slope: float, intercept: float, threshold: float) -> float | None:
    """Seconds until the line ``intercept + slope * h`` reaches ``threshold`` from below; ``None`` when never.

    This is what a ``predict_linear`` rule implicitly assumes: the first ``h`` with ``predict_linear(x, h) >=
    threshold`` (0 when already there).
    """
    if intercept >= threshold:
        return 0.0
    if slope <= 0:
        return None
    return (threshold - intercept) / slope
