"""The analytics service on REAL Prometheus and VictoriaMetrics servers loaded with the scenario histories.

Every scenario of ``tests/scenarios.py`` (linear, exponential, logistic, step, noisy, clean-up, counter reset, gaps)
is backfilled, 8 h up to "now", into a Prometheus (``promtool tsdb create-blocks-from openmetrics``) and into a
VictoriaMetrics (``/api/v1/import/prometheus``), both started on free loopback ports by ``tests/backfill.py``. The
real :class:`~nomade.analytics.service.AnalyticsService` then runs ONE cycle against each server, with one watch per
scenario (6 h window, the scenario's sample interval as step, the filesystem size series as ``threshold_query``),
and its published values (``collect()``) are asserted against the scenarios' analytic answers:

* the trend class, exactly (``nomade_trend_state{state=...} == 1``);
* time-to-threshold within a stated tolerance of the analytic crossing time (tolerances and why: :data:`TTT_TOL`);
* no time-to-threshold for the scenarios that never cross.

Both servers must pass the same assertions. Where they differ (measured, and asserted so that a change shows):
Prometheus carries a series' last sample forward into a gap for its 5-minute lookback delta (19 extra points at
15 s per gap here), VictoriaMetrics does not (see ``analytics/promapi.py``); the engine's figures differ by less than
the tolerances. PromQL ``deriv()``/``predict_linear()``/``rate()`` at "now" are queried on both servers and set
against NØMADE's estimates in a printed table (``pytest -s`` shows it), with the differences asserted.

"Now" is a whole minute at least two minutes in the past (clear of VictoriaMetrics' 30 s ``-search.latencyOffset``),
and the service's clock is pinned to it. Needs the ``prometheus``, ``promtool`` and ``victoria-metrics`` binaries:
skipped without them, failed under ``NOMADE_LAB=1``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from backfill import (
    PROMETHEUS,
    PROMTOOL,
    VICTORIAMETRICS,
    prometheus_server,
    require_binaries,
    victoriametrics_server,
)
from scenarios import (
    BY_NAME,
    HOUR,
    SCENARIOS,
    SIZE_METRIC,
    Scenario,
    linear_time_to_threshold,
    promql_linear_regression,
)

from nomade.analytics.config import AnalyticsConfig, Watch
from nomade.analytics.promapi import PrometheusClient
from nomade.analytics.service import AnalyticsService

pytestmark = pytest.mark.integration

WINDOW = 6 * HOUR
SPAN = 8 * HOUR  # history loaded: the window plus 2 h, so that PromQL's 6 h range is full as well
SERVERS = ("prometheus", "victoriametrics")
RAW_SUFFIX = "_raw"  # the counter watched again WITHOUT counter=True, to show what reset handling is for

TTT_TOL: dict[str, float] = {
    # Relative tolerance on time-to-threshold against the analytic crossing time, and why.
    # Linear fills: the model is exact, only the noise (sd 0.1 % of the size) moves the estimate; the engine's own
    # 95 % band is +-0.3 % wide here (asserted to hold the truth as well), and a misaligned grid by one step would
    # cost 0.4 % (linear) and 0.1 % (gaps); 2 % catches a wrong slope or level yet is far from flaky
    # (deterministic data: the figure is the same on every run; measured 0.2 % and 0.01 %).
    "linear": 0.02,
    "gaps": 0.02,
    # Exponential: a quadratic cannot follow exp(t / 3 h). Even with the EXACT derivatives at now the Taylor
    # quadratic crosses at 1.743 h instead of 1.679 h (+3.8 %), and the fit sees derivatives averaged over its
    # 1.5 h bandwidth, which lowers slope and curvature a little more: measured +10.6 % on both servers. The error
    # is a model bias in a known direction (LATE: the neglected third derivative is positive), so the test also
    # asserts ttt >= truth; 15 % bounds it. predict_linear is +300 % on the same data (see the comparison).
    "exponential": 0.15,
}


# Gaps: Prometheus's 5-min lookback repeats the last sample into each gap of the raw data (19-20 flat points per
# gap at 15 s), VictoriaMetrics once per gap. Fitted as samples they bent the line into accelerating_growth with
# a time to threshold 5 % early; the service now drops them (analytics.service.drop_carried_forward), so both
# servers give linear_growth and the analytic crossing.


def server_scenarios(scenarios) -> list:
    """``(server, scenario)`` params for every server and scenario."""
    return [pytest.param(server, s, id=f"{s.name}-{server}") for server in SERVERS for s in scenarios]


def now_aligned() -> float:
    """A whole minute at least 2 min ago: every scenario grid (15 s, 60 s) has a sample exactly there."""
    return math.floor(time.time() / 60) * 60 - 120.0


def watch_for(s: Scenario, *, counter: bool | None = None, name: str | None = None) -> Watch:
    """One watch per scenario: its series, the 6 h window, the sample interval as step."""
    sel = f'{{scenario="{s.name}"}}'
    return Watch(
        name=name or s.name,
        query=f"{s.metric}{sel}",
        threshold_query=f"{SIZE_METRIC}{sel}" if s.threshold_series and s.threshold is not None else None,
        threshold=s.threshold if (s.threshold is not None and not s.threshold_series) else None,
        unit=s.unit,
        window=WINDOW,
        step=s.interval,
        horizons=(("1h", HOUR), ("4h", 4 * HOUR)),
        counter=s.counter if counter is None else counter,
    )


def watches() -> list[Watch]:
    out = [watch_for(s) for s in SCENARIOS]
    out.append(watch_for(BY_NAME["counter_reset"], counter=False, name="counter_reset" + RAW_SUFFIX))
    return out


@dataclass
class PromQLFigures:
    """PromQL's view of one scenario at now: deriv(), predict_linear(., 0) (the intercept), rate() for counters."""

    deriv: float | None
    intercept: float | None
    predict_4h: float | None
    rate: float | None = None

    def time_to_threshold(self, threshold: float | None) -> float | None:
        if threshold is None or self.deriv is None or self.intercept is None:
            return None
        return linear_time_to_threshold(self.deriv, self.intercept, threshold)


@dataclass
class ServerRun:
    """What one server gave: the service's exposition after one cycle, and PromQL's figures."""

    server: str
    now: float
    ok: bool
    samples: dict[str, list[tuple[dict[str, str], float]]]
    promql: dict[str, PromQLFigures] = field(default_factory=dict)
    requests_sent: int = 0
    queries_issued: int = 0

    def value(self, name: str, **labels: str) -> float | None:
        hits = [v for lab, v in self.samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
        assert len(hits) <= 1, (name, labels, hits)
        return hits[0] if hits else None

    def state(self, watch: str) -> str | None:
        on = [lab["state"] for lab, v in self.samples.get("nomade_trend_state", []) if lab["watch"] == watch and v]
        assert len(on) <= 1, on
        return on[0] if on else None


def one_value(client: PrometheusClient, expr: str, now: float) -> float | None:
    out = client.query(expr, time=now)
    assert len(out) <= 1, (expr, out)
    return out[0].value if out else None


def run_against(server: str, url: str, now: float) -> ServerRun:
    client = PrometheusClient(url, timeout=30, retries=1)
    cfg = AnalyticsConfig(prometheus_url=url, watches=watches())
    svc = AnalyticsService(cfg, client, clock=lambda: now)
    ok = svc.run_cycle()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in svc.collect():
        for smp in fam.samples:
            samples.setdefault(smp.name, []).append((dict(smp.labels), smp.value))
    run = ServerRun(server, now, ok, samples, requests_sent=client.requests_sent, queries_issued=client.queries_issued)
    for s in SCENARIOS:
        sel = f'{s.metric}{{scenario="{s.name}"}}[6h]'
        run.promql[s.name] = PromQLFigures(
            deriv=one_value(client, f"deriv({sel})", now),
            intercept=one_value(client, f"predict_linear({sel}, 0)", now),
            predict_4h=one_value(client, f"predict_linear({sel}, {4 * HOUR:g})", now),
            rate=one_value(client, f"rate({sel})", now) if s.counter else None,
        )
    client.close()
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, ServerRun]:
    """Both servers loaded with every scenario, one cycle each; the servers are stopped before the tests read."""
    require_binaries(PROMETHEUS, PROMTOOL, VICTORIAMETRICS)
    now = now_aligned()
    history: list[Any] = []
    for s in SCENARIOS:
        history.extend(s.history(now, SPAN))
    out: dict[str, ServerRun] = {}
    with prometheus_server(history, tmp_path_factory.mktemp("prometheus")) as proc:
        out["prometheus"] = run_against("prometheus", proc.url, now)
    with victoriametrics_server(history, tmp_path_factory.mktemp("victoriametrics")) as proc:
        out["victoriametrics"] = run_against("victoriametrics", proc.url, now)
    return out


def raw_samples(s: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """The scenario's raw samples over the loaded span, relative times (what both servers hold)."""
    return s.samples(-SPAN, 0.0)


# -- the analytic answers are what the scenarios claim (no server needed) -----------------------------------------


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.name)
def test_scenario_analytic_answers_are_consistent(s):
    t = np.arange(0.0, 12 * HOUR, 1.0)
    if s.threshold is not None and not s.counter:
        f = s.func(t)
        if s.crossing is None:
            assert np.all(f < s.threshold), "a non-crossing scenario reaches its threshold within 12 h"
        else:
            first = t[np.argmax(f >= s.threshold)]
            assert f[-1] >= s.threshold and abs(first - s.crossing) <= 1.0
            assert s.func(np.array([s.crossing]))[0] == pytest.approx(s.threshold, rel=1e-9)
    # slope_now is the derivative of the noiseless curve (central difference), or the counter's rate
    if not s.counter:
        d = (s.func(np.array([1.0])) - s.func(np.array([-1.0])))[0] / 2.0
        assert d == pytest.approx(s.slope_now, rel=1e-6, abs=1e-6)
    else:
        tt, v = s.samples(-3 * HOUR, -0.5 * HOUR)  # between the two resets
        assert np.allclose(np.diff(v) / np.diff(tt), s.slope_now)
    # the same samples whatever the span asked
    a = s.samples(-SPAN, 0.0)
    b = s.samples(-12 * HOUR, 2 * HOUR)
    keep = (b[0] >= -SPAN) & (b[0] <= 0.0)
    assert np.array_equal(a[0], b[0][keep]) and np.array_equal(a[1], b[1][keep])


# -- the service on each server ---------------------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
def test_cycle_succeeds_with_one_range_query_per_watch(runs, server):
    run = runs[server]
    assert run.ok
    assert run.value("nomade_analytics_up") == 1.0
    assert run.value("nomade_analytics_last_success_timestamp_seconds") == run.now
    ws = watches()
    for w in ws:
        assert run.value("nomade_analytics_queries_total", watch=w.name, kind="range") == 1
        expected_instant = 1 if w.threshold_query else None
        assert run.value("nomade_analytics_queries_total", watch=w.name, kind="instant") == expected_instant
        assert run.value("nomade_analytics_watched_series", watch=w.name) == 1
        assert run.value("nomade_analytics_estimated_series", watch=w.name) == 1
    # the cycle's HTTP cost (counted before the test's own PromQL queries): one range query per watch and one
    # instant query per threshold_query, no retries, no range splitting
    cycle = sum(w.queries_per_cycle for w in ws)
    assert cycle == len(ws) + sum(1 for w in ws if w.threshold_query)
    assert run.queries_issued == run.requests_sent == cycle
    assert run.value("nomade_analytics_http_requests_total") == cycle


@pytest.mark.parametrize(("server", "s"), server_scenarios(SCENARIOS))
def test_trend_class_is_exact(runs, server, s):
    run = runs[server]
    assert run.state(s.name) == s.expected_trend
    # exactly one state of the set is 1
    states = [v for lab, v in run.samples["nomade_trend_state"] if lab["watch"] == s.name]
    assert sorted(states) == [0.0] * (len(states) - 1) + [1.0]


@pytest.mark.parametrize(("server", "s"), server_scenarios([s for s in SCENARIOS if s.crossing is not None]))
def test_time_to_threshold_matches_the_analytic_crossing(runs, server, s):
    run = runs[server]
    ttt = run.value("nomade_trend_time_to_threshold_seconds", watch=s.name)
    lower = run.value("nomade_trend_time_to_threshold_lower_seconds", watch=s.name)
    upper = run.value("nomade_trend_time_to_threshold_upper_seconds", watch=s.name)
    assert run.value("nomade_trend_threshold", watch=s.name) == s.threshold
    assert ttt is not None and lower is not None and upper is not None
    assert lower <= ttt <= upper
    assert ttt == pytest.approx(s.crossing, rel=TTT_TOL[s.name])
    if s.name == "exponential":
        assert ttt >= s.crossing  # the quadratic's truncation error is late, never early
    else:
        assert lower <= s.crossing <= upper  # exact model: the 95 % band holds the truth
    # the projected value 1 h ahead matches the noiseless curve there as well as the time does
    # (1 %; 2 % for the exponential, whose quadratic is 1.35 % low 1 h ahead, measured: the same model bias)
    proj = run.value("nomade_trend_projected_value", watch=s.name, horizon="1h")
    truth = float(s.func(np.array([HOUR]))[0])
    assert proj == pytest.approx(truth, rel=0.02 if s.name == "exponential" else 0.01)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("s", [s for s in SCENARIOS if s.crossing is None], ids=lambda s: s.name)
def test_no_time_to_threshold_when_it_never_crosses(runs, server, s):
    run = runs[server]
    assert run.value("nomade_trend_level", watch=s.name) is not None  # estimated...
    for name in (
        "nomade_trend_time_to_threshold_seconds",
        "nomade_trend_time_to_threshold_lower_seconds",
        "nomade_trend_time_to_threshold_upper_seconds",
    ):
        assert run.value(name, watch=s.name) is None  # ...but no time to a threshold it will not reach
    assert run.value("nomade_trend_threshold", watch=s.name) == s.threshold


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("name", ["linear", "gaps", "cleanup", "counter_reset", "exponential"])
def test_slope_matches_the_true_derivative(runs, server, name):
    # exact models (lines, the purge, the reset-corrected counter) within 2 %; the exponential within 5 %: the
    # quadratic fit over 1.5 h of exp(t / 3 h) is biased low (measured 2.5 %).
    s = BY_NAME[name]
    run = runs[server]
    slope = run.value("nomade_trend_slope_per_second", watch=name)
    assert slope == pytest.approx(s.slope_now, rel=0.05 if name == "exponential" else 0.02)


@pytest.mark.parametrize("server", SERVERS)
def test_counter_resets_are_undone_only_with_counter_true(runs, server):
    run = runs[server]
    s = BY_NAME["counter_reset"]
    raw = "counter_reset" + RAW_SUFFIX
    assert run.state("counter_reset") == "linear_growth"
    assert run.value("nomade_trend_slope_per_second", watch="counter_reset") == pytest.approx(s.slope_now, rel=1e-3)
    # The same series read as a gauge: the drop to 0 thirty minutes ago dominates the fit.
    assert run.state(raw) != "linear_growth"
    assert abs(run.value("nomade_trend_slope_per_second", watch=raw) - s.slope_now) > 0.5 * s.slope_now


@pytest.mark.parametrize(("server", "s"), server_scenarios([BY_NAME["gaps"]]))
def test_gaps_points(runs, server, s):
    # The estimate uses the full 6 h and exactly the raw samples there: the servers' repeats at the start of each
    # gap (VictoriaMetrics: one per gap, 904 points for 902 samples; Prometheus: its 5-min lookback, 941 points)
    # are dropped by the service before fitting.
    run = runs[server]
    bw = run.value("nomade_trend_window_seconds", watch="gaps")
    t, _ = raw_samples(s)
    raw = int(np.count_nonzero(t > -WINDOW))
    points = run.value("nomade_trend_points", watch="gaps")
    assert bw == WINDOW
    assert points == raw


@pytest.mark.parametrize(
    "s",
    [pytest.param(s, id=s.name) for s in SCENARIOS],
)
def test_both_servers_publish_the_same_answers(runs, s):
    # Same classes and presence everywhere; values equal within 1e-9 (same samples, same engine), except the gaps
    # scenario, where each server adds its own repeats at the gaps' starts: within 0.5 % there.
    p, v = runs["prometheus"], runs["victoriametrics"]
    assert p.state(s.name) == v.state(s.name)
    for name in ("nomade_trend_level", "nomade_trend_slope_per_second", "nomade_trend_time_to_threshold_seconds"):
        a, b = p.value(name, watch=s.name), v.value(name, watch=s.name)
        assert (a is None) == (b is None), (s.name, name)
        if a is None:
            continue
        if s.name == "gaps":
            assert a == pytest.approx(b, rel=0.005), (name, a, b)
        else:
            assert a == pytest.approx(b, rel=1e-9, abs=1e-9), (s.name, name, a, b)


# -- NØMADE versus PromQL deriv() / predict_linear() -------------------------------------------------------------


def _fmt_h(x: float | None) -> str:
    return "never" if x is None else f"{x / HOUR:6.2f} h"


def comparison_table(run: ServerRun) -> str:
    rows = [
        f"{'scenario':14s} {'truth':>9s} {'NOMADE ttt':>10s} {'pred_lin ttt':>12s}   "
        f"{'true slope':>11s} {'NOMADE':>11s} {'deriv()':>11s}  NOMADE class"
    ]
    for s in SCENARIOS:
        pq = run.promql[s.name]
        ttt = run.value("nomade_trend_time_to_threshold_seconds", watch=s.name)
        slope = run.value("nomade_trend_slope_per_second", watch=s.name)
        rows.append(
            f"{s.name:14s} {_fmt_h(s.crossing):>9s} {_fmt_h(ttt):>10s} {_fmt_h(pq.time_to_threshold(s.threshold)):>12s}"
            f"   {s.slope_now:11.4g} {slope:11.4g} {pq.deriv:11.4g}  {run.state(s.name)}"
        )
    return "\n".join(rows)


@pytest.mark.parametrize("server", SERVERS)
def test_comparison_with_deriv_and_predict_linear(runs, server):
    run = runs[server]
    print(f"\n{server}: time to threshold (size) and slope at now, 6 h window; truth = analytic (units/s for slopes)")
    print(comparison_table(run))
    pq = run.promql
    ttt = {s.name: run.value("nomade_trend_time_to_threshold_seconds", watch=s.name) for s in SCENARIOS}
    pl_ttt = {s.name: pq[s.name].time_to_threshold(s.threshold) for s in SCENARIOS}

    # Lines (with and without gaps): both are unbiased and agree with the truth and each other within 1 %.
    for name in ("linear", "gaps"):
        truth = BY_NAME[name].crossing
        assert pl_ttt[name] == pytest.approx(truth, rel=0.01)
        assert ttt[name] == pytest.approx(truth, rel=0.01)
        assert ttt[name] == pytest.approx(pl_ttt[name], rel=0.01)

    # Exponential: deriv() is the window's AVERAGE slope (its value about 3 h ago), 0.41 of the slope now, so
    # predict_linear's line reaches the size 4x too late (6.7 h for 1.68 h) and a predict_linear(x[6h], 4h) rule
    # has not fired yet; NØMADE evaluates the slope at now (quadratic term) and is 10 % late.
    s = BY_NAME["exponential"]
    assert pq["exponential"].deriv < 0.5 * s.slope_now
    assert pl_ttt["exponential"] > 3 * s.crossing
    assert pq["exponential"].predict_4h < s.threshold  # the mixin-style rule is silent, 1.7 h before full
    assert abs(ttt["exponential"] - s.crossing) < 0.1 * abs(pl_ttt["exponential"] - s.crossing)

    # Logistic (saturating below the size): deriv() averages the steep middle of the S-curve, 1.9x the slope now,
    # and predict_linear's line crosses the size within 2 h: a false alarm; NØMADE sees the deceleration.
    s = BY_NAME["logistic"]
    assert pq["logistic"].deriv > 1.5 * s.slope_now
    assert pl_ttt["logistic"] is not None and pl_ttt["logistic"] < 2 * HOUR
    assert ttt["logistic"] is None

    # Step (45 % jump 3.25 h ago, flat since): deriv() turns the jump into a slope of ~11 %/h and predict_linear
    # crosses within 1 h; NØMADE's adaptive bandwidth keeps the flat part: stable, no crossing.
    s = BY_NAME["step"]
    assert pq["step"].deriv > 0.1 * s.threshold / HOUR
    assert pl_ttt["step"] is not None and pl_ttt["step"] < HOUR
    assert ttt["step"] is None and run.state("step") == "stable"

    # Clean-up (purge at 15 %/h for 2 h after 4 %/h growth): deriv() still mixes in the growth and reports 6 % of
    # the purge rate; NØMADE the purge rate itself (test_slope_matches_the_true_derivative).
    s = BY_NAME["cleanup"]
    assert 0.2 * s.slope_now < pq["cleanup"].deriv < 0  # both negative: a purge
    assert pl_ttt["cleanup"] is None and ttt["cleanup"] is None

    # Counter reset: deriv() ignores resets and gets the wrong sign; rate() undoes them, as counter=True does.
    s = BY_NAME["counter_reset"]
    assert pq["counter_reset"].deriv < 0
    assert pq["counter_reset"].rate == pytest.approx(s.slope_now, rel=0.01)

    # Noise: neither crosses.
    assert pl_ttt["noisy"] is None and ttt["noisy"] is None


@pytest.mark.parametrize("server", SERVERS)
def test_local_promql_regression_matches_the_server(runs, server):
    # The benchmark replays predict_linear locally (tests/scenarios.py: promql_linear_regression); here it is
    # checked against the servers' own deriv() and predict_linear() on every scenario at now.
    run = runs[server]
    for s in SCENARIOS:
        t, v = raw_samples(s)
        slope, intercept = promql_linear_regression(t, v, 0.0, WINDOW)
        got = run.promql[s.name]
        if server == "prometheus":
            assert got.deriv == pytest.approx(slope, rel=1e-6, abs=1e-9), s.name
            assert got.intercept == pytest.approx(intercept, rel=1e-9), s.name
        else:
            # VictoriaMetrics' range window is left-open (now - 6h, now]: one sample fewer than Prometheus 2.42's
            # closed [now - 6h, now]; the figures differ by that one sample's weight.
            slope_open, intercept_open = promql_linear_regression(t[t > -WINDOW], v[t > -WINDOW], 0.0, WINDOW)
            assert got.deriv == pytest.approx(slope_open, rel=1e-6, abs=1e-9), s.name
            assert got.intercept == pytest.approx(intercept_open, rel=1e-9), s.name
