"""Benchmark of the NØMADE analytics service: early warning against a predict_linear rule, and the cost of a cycle.

Prints figures; it is not a test and asserts nothing beyond "the cycles succeeded". Two parts:

**(a) Early warning** over the scenario suite of ``tests/scenarios.py`` (the histories the scenario tests backfill
into Prometheus and VictoriaMetrics; the counter scenario has no threshold and is left out). Each scenario's history
is replayed: at every evaluation time ``tau`` (every ``--replay-step`` seconds) each method sees only the samples
up to ``tau`` and either warns or not:

* ``NOMADE``: :func:`nomade.analytics.derivatives.estimate` at ``now = tau`` with the scenario tests' watch settings
  (6 h window, ``stale_after`` = 2 sample intervals) warns when its time-to-threshold is below the horizon ``H``
  (default 4 h): ``nomade_trend_time_to_threshold_seconds < H``, the alert rule a site would write;
* ``NOMADE band``: the same with the band's earliest crossing (``..._lower_seconds < H``), a more cautious rule;
* ``predict_linear``: the usual mixin rule ``predict_linear(x[6h], H) > threshold`` (node-mixin's
  ``NodeFilesystemSpaceFillingUp`` form). It is computed locally with the formula of Prometheus 2.42
  (``promql/functions.go``, ``funcPredictLinear``/``linearRegression``: unweighted least squares over the raw samples
  of the closed range ``[tau - 6h, tau]``, extrapolated from ``tau``): ``tests/scenarios.py``
  ``promql_predict_linear``, which ``tests/integration/test_analytics_scenarios.py`` checks against a real
  Prometheus's ``deriv()`` and ``predict_linear()`` answers (equal to 1e-6).

NØMADE is fed the raw samples, which is what a range query at the sample interval returns from VictoriaMetrics
(Prometheus' 5-minute lookback also repeats samples into gaps; see that test module). Reported per crossing
scenario: the lead time of the first warning (minutes before the analytic crossing), the lead of the warning that
then stays on until the crossing ("sustained"), the number of warning episodes, and the evaluations that warned
although the truth does not cross within ``H`` ("early": hindsight, from the noiseless curve). Per non-crossing
scenario: evaluations that warned (all false by construction) and episodes. The ideal lead is ``H``.

**(b) Cost** of one cycle on a real Prometheus (``tests/backfill.py``: promtool blocks, loopback server) holding
10,000 filesystem-like series (``--cost-history`` of samples every ``--raw-interval`` seconds) plus their sizes:
one watch shaped like the default ``filesystem_used`` watch (6 h window, 5 m step, ``threshold_query`` on the sizes)
whose query selects 100, 1,000 or 10,000 of them. Reported per size: cycle wall time (median of ``--repeats``),
the part spent in the derivative engine, HTTP requests per cycle (``PrometheusClient.requests_sent``: range chunks
and retries included), series estimated.

Usage::

    .venv/bin/python bench/bench_analytics.py                   # both parts (about 1-2 min on 2 cores)
    .venv/bin/python bench/bench_analytics.py --json out.json   # also write every figure as JSON
    .venv/bin/python bench/bench_analytics.py --skip-cost --horizon 2h --replay-step 30
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # the scenario suite and the server helpers live with the tests

from backfill import (  # noqa: E402
    PROMETHEUS,
    PROMTOOL,
    free_port,
    start_prometheus,
)
from scenarios import HOUR, SCENARIOS, Scenario, promql_predict_linear  # noqa: E402

from nomade.analytics.config import AnalyticsConfig, Watch, parse_duration  # noqa: E402
from nomade.analytics.derivatives import estimate, estimate_many  # noqa: E402
from nomade.analytics.promapi import PrometheusClient  # noqa: E402
from nomade.analytics.service import AnalyticsService  # noqa: E402

WINDOW = 6 * HOUR
METHODS = ("NOMADE", "NOMADE band", "predict_linear")


# -- (a) early warning ------------------------------------------------------------------------------------------


def replay_times(s: Scenario, step: float) -> np.ndarray:
    """Evaluation times: the 10 h before the crossing, or -8 h to +4 h around now for non-crossing scenarios."""
    if s.crossing is not None:
        start, end = s.crossing - 10 * HOUR, s.crossing
    else:
        start, end = -8 * HOUR, 4 * HOUR
    # on the sample grid, so that each evaluation sees a fresh sample at tau (as a live service would)
    k0, k1 = math.ceil(start / step), math.floor(end / step)
    return np.arange(k0, k1 + 1, dtype=float) * step


def warnings_for(s: Scenario, horizon: float, step: float) -> dict[str, Any]:
    """Replay ``s`` and return, per method, the boolean warning series over the evaluation times."""
    taus = replay_times(s, step)
    t, v = s.samples(taus[0] - WINDOW - 2 * s.interval, taus[-1])
    warn = {m: np.zeros(taus.size, dtype=bool) for m in METHODS}
    for i, tau in enumerate(taus):
        hi = np.searchsorted(t, tau, side="right")
        lo = np.searchsorted(t, tau - WINDOW - 1e-9, side="left")
        tt, vv = t[lo:hi], v[lo:hi]
        est = estimate(tt, vv, now=tau, window=WINDOW, stale_after=2 * s.interval)
        if est is not None:
            ttt, early, _ = est.time_to_threshold(s.threshold)
            warn["NOMADE"][i] = ttt is not None and ttt < horizon
            warn["NOMADE band"][i] = early is not None and early < horizon
        pl = promql_predict_linear(tt, vv, tau, WINDOW, horizon)
        warn["predict_linear"][i] = pl is not None and pl > s.threshold
    truth = np.array([s.truth_crosses_within(tau, horizon) for tau in taus])
    return {"taus": taus, "warn": warn, "truth": truth}


def episodes(w: np.ndarray) -> int:
    """Number of runs of consecutive warnings."""
    return int(np.count_nonzero(w[1:] & ~w[:-1]) + (1 if w.size and w[0] else 0))


def intervals(taus: np.ndarray, w: np.ndarray) -> list[tuple[float, float]]:
    """The warning episodes as ``(first, last)`` evaluation times, hours relative to now."""
    edges = np.flatnonzero(np.diff(np.r_[0, w.astype(int), 0]))
    return [(float(taus[a]) / HOUR, float(taus[b - 1]) / HOUR) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def early_warning(horizon: float, step: float) -> list[dict[str, Any]]:
    """Replay every scenario with a threshold; one row per (scenario, method) with the figures of the docstring."""
    rows = []
    for s in SCENARIOS:
        if s.threshold is None:
            continue
        r = warnings_for(s, horizon, step)
        taus, truth = r["taus"], r["truth"]
        for m in METHODS:
            w = r["warn"][m]
            row: dict[str, Any] = {"scenario": s.name, "method": m, "evaluations": int(taus.size)}
            row["episodes"] = episodes(w)
            row["intervals_h"] = intervals(taus, w)
            row["false_warnings"] = int(np.count_nonzero(w & ~truth))
            if s.crossing is not None:
                row["crossing_min"] = s.crossing / 60
                first = np.argmax(w) if w.any() else None
                row["first_lead_min"] = None if first is None else (s.crossing - taus[first]) / 60
                # the warning that stays on until the crossing: the last run that reaches the final evaluation
                if w[-1]:
                    off = np.flatnonzero(~w)
                    start = off[-1] + 1 if off.size else 0
                    row["sustained_lead_min"] = (s.crossing - taus[start]) / 60
                else:
                    row["sustained_lead_min"] = None
            rows.append(row)
    return rows


def _m(x: float | None) -> str:
    return "  never" if x is None else f"{x:7.0f}"


def _iv(row: dict[str, Any]) -> str:
    return " ".join(f"[{a:+.2f},{b:+.2f}]" for a, b in row["intervals_h"]) or "-"


def print_early_warning(rows: list[dict[str, Any]], horizon: float, step: float) -> None:
    """Print part (a)'s two tables."""
    print(
        f"\n(a) Early warning, horizon H = {horizon / HOUR:g} h, 6 h window, evaluated every {step:g} s "
        f"(ideal lead = {horizon / 60:.0f} min)"
    )
    print("Crossing scenarios: minutes before the analytic crossing")
    print(
        f"{'scenario':12s} {'crossing':>8s}  {'method':15s} {'first':>7s} {'sustained':>9s} {'episodes':>8s} "
        f"{'early':>6s}  warning intervals (h from now)"
    )
    for r in rows:
        if "crossing_min" in r:
            print(
                f"{r['scenario']:12s} {r['crossing_min']:6.0f} m  {r['method']:15s} {_m(r['first_lead_min'])} "
                f"{_m(r['sustained_lead_min']):>9s} {r['episodes']:8d} {r['false_warnings']:6d}  {_iv(r)}"
            )
    print("Non-crossing scenarios: evaluations that warned (all false) / evaluations, and warning episodes")
    print(f"{'scenario':12s} {'method':15s} {'false warnings':>16s} {'episodes':>8s}  warning intervals (h from now)")
    for r in rows:
        if "crossing_min" not in r:
            print(
                f"{r['scenario']:12s} {r['method']:15s} {r['false_warnings']:7d} / {r['evaluations']:<6d} "
                f"{r['episodes']:8d}  {_iv(r)}"
            )
    totals = {
        m: sum(r["false_warnings"] for r in rows if r["method"] == m and "crossing_min" not in r) for m in METHODS
    }
    eps = {m: sum(r["episodes"] for r in rows if r["method"] == m and "crossing_min" not in r) for m in METHODS}
    print(
        "Total false warnings on non-crossing scenarios (evaluations / episodes): "
        + ", ".join(f"{m} {totals[m]} / {eps[m]}" for m in METHODS)
    )


# -- (b) cost ---------------------------------------------------------------------------------------------------


def write_cost_history(path: Path, n: int, now: float, history: float, interval: float) -> int:
    """OpenMetrics text of ``n`` used-bytes series (and their sizes) into ``path``; returns the sample count.

    Series ``i`` has labels ``node="nXXXXX"``, ``mountpoint="/scratch"`` and ``shard = i // 100`` (so that the
    watch's selector picks 100, 1,000 or 10,000 of them) and a mix of shapes: lines, quadratics and flat series
    with noise (seeded). Sizes are written every 4 minutes (inside the 5-minute lookback of the instant query).
    """
    rng = np.random.default_rng(7)
    grid = np.arange(now - history, now + 1e-9, interval)
    u = (grid - now) / HOUR
    size = 1e13
    count = 0
    with open(path, "w") as f:
        f.write("# TYPE nomade_bench_used_bytes unknown\n")
        for i in range(n):
            sel = f'nomade_bench_used_bytes{{mountpoint="/scratch",node="n{i:05d}",shard="{i // 100}"}}'
            a, b, c = rng.uniform(0.2, 0.8), rng.uniform(-0.03, 0.05), rng.uniform(-0.004, 0.004) * (i % 3 == 0)
            vals = size * (a + b * u + c * u * u) + rng.normal(0, 1e-3 * size, grid.size)
            f.writelines(f"{sel} {x!r} {t:.3f}\n" for t, x in zip(grid.tolist(), vals.tolist(), strict=True))
            count += grid.size
        f.write("# TYPE nomade_bench_size_bytes unknown\n")
        sgrid = np.arange(now - history, now + 1e-9, 240.0)
        for i in range(n):
            sel = f'nomade_bench_size_bytes{{mountpoint="/scratch",node="n{i:05d}",shard="{i // 100}"}}'
            f.writelines(f"{sel} {size!r} {t:.3f}\n" for t in sgrid.tolist())
            count += sgrid.size
        f.write("# EOF\n")
    return count


def selector(n: int) -> str:
    """Label matcher selecting the first ``n`` (100, 1,000 or 10,000) series of the cost history."""
    if n <= 100:
        return 'shard="0"'
    if n <= 1000:
        return 'shard=~"[0-9]"'
    return 'shard=~".+"'


def cost(sizes: list[int], repeats: int, history: float, interval: float) -> tuple[list[dict[str, Any]], dict]:
    """Backfill the cost history, start Prometheus, run ``repeats`` cycles per size; ``(rows, setup figures)``."""
    n_max = max(sizes)
    if n_max > 10_000:
        raise SystemExit("--sizes: at most 10000 (the shard selectors cover 100 shards of 100 series)")
    now = math.floor(time.time() / 60) * 60 - 120.0
    setup: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nomade-bench-analytics-") as tmp:
        om = Path(tmp) / "history.om"
        t0 = time.monotonic()
        setup["samples"] = write_cost_history(om, n_max, now, history, interval)
        setup["write_s"] = time.monotonic() - t0
        tsdb = Path(tmp) / "prometheus-data"
        t0 = time.monotonic()
        subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(om), str(tsdb)],
            check=True,
            capture_output=True,
        )
        setup["promtool_s"] = time.monotonic() - t0
        om.unlink()
        proc = start_prometheus(tsdb, free_port())
        try:
            for n in sizes:
                sel = selector(n)
                w = Watch(
                    name="filesystem_used",
                    query=f"nomade_bench_used_bytes{{{sel}}}",
                    threshold_query=f"nomade_bench_size_bytes{{{sel}}}",
                    match_on=("node", "mountpoint"),
                    unit="bytes",
                    window=WINDOW,
                    step=300.0,
                )
                client = PrometheusClient(proc.url, timeout=120, retries=0)
                engine_s: list[float] = []

                def timed_engine(*args: Any, _acc: list[float] = engine_s, **kw: Any) -> Any:
                    t = time.perf_counter()
                    out = estimate_many(*args, **kw)
                    _acc.append(time.perf_counter() - t)
                    return out

                svc = AnalyticsService(
                    AnalyticsConfig(prometheus_url=proc.url, watches=[w]),
                    client,
                    estimate_many=timed_engine,
                    trend_states=None,
                    clock=lambda: now,
                )
                walls, reqs = [], []
                for _ in range(repeats):
                    before = client.requests_sent
                    t = time.perf_counter()
                    ok = svc.run_cycle()
                    walls.append(time.perf_counter() - t)
                    reqs.append(client.requests_sent - before)
                    if not ok:
                        raise SystemExit(f"cycle failed for {n} series: {svc.collect()}")
                watched = next(
                    s.value for fam in svc.collect() for s in fam.samples if s.name.endswith("watched_series")
                )
                estimated = next(
                    s.value for fam in svc.collect() for s in fam.samples if s.name.endswith("estimated_series")
                )
                rows.append(
                    {
                        "series": n,
                        "watched": int(watched),
                        "estimated": int(estimated),
                        "cycle_s": statistics.median(walls),
                        "cycle_max_s": max(walls),
                        "engine_s": statistics.median(engine_s),
                        "http_requests": statistics.median(reqs),
                        "queries": w.queries_per_cycle,
                        "points_per_series": int(WINDOW // w.step) + 1,
                    }
                )
                client.close()
        finally:
            proc.stop()
    return rows, setup


def print_cost(rows: list[dict[str, Any]], setup: dict, repeats: int, interval: float) -> None:
    """Print part (b)'s table."""
    print(
        f"\n(b) Cost of one cycle: one filesystem-like watch (6 h window, 5 m step, threshold_query), real Prometheus "
        f"on loopback, raw samples every {interval:g} s; median of {repeats} cycles"
    )
    print(
        f"setup: {setup['samples']:,} samples written in {setup['write_s']:.1f} s, promtool blocks in "
        f"{setup['promtool_s']:.1f} s"
    )
    print(
        f"{'series':>7s} {'estimated':>9s} {'HTTP req':>8s} {'cycle s':>8s} {'engine s':>9s} {'query s':>8s} "
        f"{'ms/series':>9s}"
    )
    for r in rows:
        print(
            f"{r['series']:7d} {r['estimated']:9d} {r['http_requests']:8.0f} {r['cycle_s']:8.3f} {r['engine_s']:9.3f} "
            f"{r['cycle_s'] - r['engine_s']:8.3f} {1000 * r['cycle_s'] / r['series']:9.3f}"
        )


# -- main -------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (1 when a binary is missing or a cycle failed)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--horizon", default="4h", help="warning horizon H (Prometheus duration; default 4h)")
    p.add_argument("--replay-step", type=float, default=60.0, help="seconds between replayed evaluations (60)")
    p.add_argument("--sizes", default="100,1000,10000", help="watched series counts for the cost part")
    p.add_argument("--repeats", type=int, default=3, help="cycles per size (median reported)")
    p.add_argument("--cost-history", default="6h30m", help="history loaded for the cost part (default 6h30m)")
    p.add_argument("--raw-interval", type=float, default=60.0, help="raw sample spacing of the cost history (s)")
    p.add_argument("--skip-warning", action="store_true", help="skip part (a)")
    p.add_argument("--skip-cost", action="store_true", help="skip part (b)")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    args = p.parse_args(argv)
    horizon = parse_duration(args.horizon, "--horizon")
    out: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "horizon_s": horizon,
    }
    print(
        f"NØMADE analytics benchmark on {platform.node()} ({os.cpu_count()} CPUs, Python {platform.python_version()})"
    )
    if not args.skip_warning:
        t0 = time.monotonic()
        rows = early_warning(horizon, args.replay_step)
        print_early_warning(rows, horizon, args.replay_step)
        print(f"(replay took {time.monotonic() - t0:.1f} s)")
        out["early_warning"] = rows
    if not args.skip_cost:
        import shutil

        missing = [b for b in (PROMETHEUS, PROMTOOL) if shutil.which(b) is None]
        if missing:
            print(f"cost part skipped: {', '.join(missing)} not installed (deploy/lab/lab.sh install)")
            return 1
        sizes = [int(x) for x in args.sizes.split(",") if x]
        history = parse_duration(args.cost_history, "--cost-history")
        rows, setup = cost(sizes, args.repeats, history, args.raw_interval)
        print_cost(rows, setup, args.repeats, args.raw_interval)
        out["cost"] = {"rows": rows, "setup": setup, "raw_interval_s": args.raw_interval}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float))
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
