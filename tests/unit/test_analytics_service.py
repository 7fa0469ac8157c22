"""The analytics cycle and publisher against a fake Prometheus client with canned matrices.

Most tests use the real derivative engine on exactly linear histories, whose level, slope and time-to-threshold are
known in closed form; a few use a fake engine to check how the service treats its failures.
"""

from __future__ import annotations

import importlib.util
import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nomade.analytics.catalog import ANALYTICS_METRICS, SPECS, TREND_METRICS
from nomade.analytics.config import AnalyticsConfig, Watch
from nomade.analytics.derivatives import TREND_STATES, estimate
from nomade.analytics.promapi import PrometheusUnavailable, PromQLError, Sample, Series
from nomade.analytics.service import AnalyticsService

NOW = 1_700_000_000.0
STEP = 60.0
WINDOW = 3600.0
GB = 1e9


def line(labels: dict[str, str], a: float, b: float, *, now: float = NOW, start: float | None = None) -> Series:
    """A range-query series v(t) = a + b (t - now) sampled every STEP over the window ending at ``now``."""
    t0 = now - WINDOW if start is None else start
    ts = np.arange(t0, now + 1e-9, STEP)
    return Series(dict(labels), tuple((float(t), a + b * (t - now)) for t in ts))


class FakeClient:
    """query/query_range from canned answers keyed by expression; an Exception as answer is raised."""

    def __init__(self, ranges=None, instants=None):
        self.ranges = dict(ranges or {})
        self.instants = dict(instants or {})
        self.calls: list[tuple] = []
        self.requests_sent = 0

    def query_range(self, expr, start, end, step):
        self.calls.append(("range", expr, start, end, step))
        self.requests_sent += 1
        ans = self.ranges[expr]
        if isinstance(ans, Exception):
            raise ans
        return ans

    def query(self, expr, time=None):
        self.calls.append(("instant", expr, time))
        self.requests_sent += 1
        ans = self.instants[expr]
        if isinstance(ans, Exception):
            raise ans
        return ans


FS = Watch(
    name="filesystem_used",
    query="used",
    threshold_query="size",
    match_on=("cluster", "node", "mountpoint"),
    unit="bytes",
    window=WINDOW,
    step=STEP,
    horizons=(("1h", 3600.0), ("1d", 86400.0)),
)
ROOT = {"mountpoint": "/", "device": "/dev/sda1", "fstype": "ext4", "node": "c01"}
SCRATCH = {"mountpoint": "/scratch", "device": "/dev/sdb1", "fstype": "xfs", "node": "c02"}
SRC = {"job": "nomade", "instance": "127.0.0.1:9866"}


def fs_client(**over) -> FakeClient:
    ranges = {
        # / fills at 1 kB/s from 40 GB; /scratch empties at 2 kB/s from 900 GB
        "used": [line({**ROOT, **SRC}, 40 * GB, 1000.0), line({**SCRATCH, **SRC}, 900 * GB, -2000.0)],
    }
    instants = {
        "size": [
            Sample({"__name__": "nomade_filesystem_size_bytes", **ROOT, **SRC}, 100 * GB, NOW),
            Sample({"__name__": "nomade_filesystem_size_bytes", **SCRATCH, **SRC}, 1000 * GB, NOW),
        ]
    }
    ranges.update(over.pop("ranges", {}))
    instants.update(over.pop("instants", {}))
    return FakeClient(ranges, instants)


def service(watches, client, **kw) -> AnalyticsService:
    cfg = AnalyticsConfig(watches=list(watches), **kw.pop("cfg", {}))
    clock = kw.pop("clock", lambda: NOW)
    return AnalyticsService(cfg, client, clock=clock, **kw)


def samples(svc: AnalyticsService) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in svc.collect():
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(svc: AnalyticsService, name: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` whose labels include ``labels`` (None when absent)."""
    hits = [v for lab, v in samples(svc).get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(hits) <= 1, (name, labels, hits)
    return hits[0] if hits else None


# -- publishing --------------------------------------------------------------------------------------------------


def test_cycle_publishes_trends_with_exact_label_sets():
    client = fs_client()
    svc = service([FS], client)
    assert svc.run_cycle() is True
    got = samples(svc)
    want_root = {"watch": "filesystem_used", **ROOT}  # no __name__, job, instance
    want_scratch = {"watch": "filesystem_used", **SCRATCH}
    assert sorted(lab["mountpoint"] for lab, _ in got["nomade_trend_level"]) == ["/", "/scratch"]
    for name in (
        "nomade_trend_level",
        "nomade_trend_slope_per_second",
        "nomade_trend_slope_stderr",
        "nomade_trend_acceleration_per_second_squared",
        "nomade_trend_acceleration_stderr",
        "nomade_trend_points",
        "nomade_trend_window_seconds",
        "nomade_trend_threshold",
    ):
        assert sorted((tuple(sorted(lab.items())) for lab, _ in got[name])) == sorted(
            [tuple(sorted(want_root.items())), tuple(sorted(want_scratch.items()))]
        ), name
    assert value(svc, "nomade_trend_level", mountpoint="/") == pytest.approx(40 * GB, rel=1e-9)
    assert value(svc, "nomade_trend_slope_per_second", mountpoint="/") == pytest.approx(1000.0, rel=1e-6)
    assert value(svc, "nomade_trend_slope_per_second", mountpoint="/scratch") == pytest.approx(-2000.0, rel=1e-6)
    assert value(svc, "nomade_trend_threshold", mountpoint="/") == 100 * GB
    # (100 GB - 40 GB) / 1 kB/s = 6e7 s; a clean line has a zero-width band
    assert value(svc, "nomade_trend_time_to_threshold_seconds", mountpoint="/") == pytest.approx(6e7, rel=1e-6)
    assert value(svc, "nomade_trend_time_to_threshold_lower_seconds", mountpoint="/") == pytest.approx(6e7, rel=1e-6)
    assert value(svc, "nomade_trend_time_to_threshold_upper_seconds", mountpoint="/") == pytest.approx(6e7, rel=1e-6)
    assert [lab for lab, _ in got["nomade_trend_time_to_threshold_seconds"]] == [want_root]
    # a shrinking filesystem never fills: no time-to-threshold at all (absent beats wrong)
    assert value(svc, "nomade_trend_time_to_threshold_seconds", mountpoint="/scratch") is None
    assert value(svc, "nomade_trend_time_to_threshold_upper_seconds", mountpoint="/scratch") is None
    # projections at each horizon, with the horizon label
    proj = {lab["horizon"]: v for lab, v in got["nomade_trend_projected_value"] if lab["mountpoint"] == "/"}
    assert proj == pytest.approx({"1h": 40 * GB + 3.6e6, "1d": 40 * GB + 8.64e7}, rel=1e-9)
    assert {lab["horizon"] for lab, _ in got["nomade_trend_projected_value_lower"]} == {"1h", "1d"}
    # the engine's own count of the points it used (about window / step) is passed through
    root = fs_client().ranges["used"][0]
    t, v = np.array(root.points).T
    assert value(svc, "nomade_trend_points", mountpoint="/") == estimate(t, v, now=NOW, window=WINDOW).n_points
    assert 55 <= value(svc, "nomade_trend_points", mountpoint="/") <= 61
    assert value(svc, "nomade_trend_window_seconds", mountpoint="/") == WINDOW
    # one range query over [now - window, now] at step, one instant threshold query at now
    assert client.calls == [("range", "used", NOW - WINDOW, NOW, STEP), ("instant", "size", NOW)]


def test_state_set_has_exactly_one_state_at_one_per_series():
    svc = service([FS], fs_client())
    svc.run_cycle()
    states = samples(svc)["nomade_trend_state"]
    by_series: dict[str, dict[str, float]] = {}
    for lab, v in states:
        by_series.setdefault(lab["mountpoint"], {})[lab["state"]] = v
    assert set(by_series) == {"/", "/scratch"}
    for states_of in by_series.values():
        assert set(states_of) == set(TREND_STATES)
        assert sum(states_of.values()) == 1.0
    assert by_series["/"]["linear_growth"] == 1.0
    assert by_series["/scratch"]["linear_decline"] == 1.0


def test_exposition_is_valid_text_and_every_name_is_cataloged():
    svc = service([FS], fs_client())
    svc.run_cycle()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(svc)
    text = generate_latest(reg).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    declared = {s.name.removesuffix("_total") if s.type == "counter" else s.name for s in ANALYTICS_METRICS}
    assert set(fams) <= declared
    for fam in fams.values():
        spec = SPECS.get(fam.name) or SPECS[fam.name + "_total"]
        assert fam.type == ("gauge" if spec.type == "info" else spec.type)
    # the families whose labels vary with the watch still parse (mixed label sets in one family)
    assert {"nomade_trend_level", "nomade_trend_state", "nomade_analytics_up"} <= set(fams)
    assert "nomade_analytics_up 1.0" in text


def test_self_metrics_after_a_cycle():
    client = fs_client()
    ticks = iter([NOW, NOW + 1.0])
    svc = service([FS], client, clock=lambda: next(ticks))
    svc.run_cycle()
    assert value(svc, "nomade_analytics_up") == 1.0
    assert value(svc, "nomade_analytics_last_success_timestamp_seconds") == NOW
    assert value(svc, "nomade_analytics_watch_last_success_timestamp_seconds", watch="filesystem_used") == NOW
    assert value(svc, "nomade_analytics_watched_series", watch="filesystem_used") == 2
    assert value(svc, "nomade_analytics_estimated_series", watch="filesystem_used") == 2
    assert value(svc, "nomade_analytics_queries_total", watch="filesystem_used", kind="range") == 1
    assert value(svc, "nomade_analytics_queries_total", watch="filesystem_used", kind="instant") == 1
    assert value(svc, "nomade_analytics_http_requests_total") == 2
    assert value(svc, "nomade_analytics_cycles_total", result="success") == 1
    assert value(svc, "nomade_analytics_cycles_total", result="failure") == 0
    assert value(svc, "nomade_analytics_cycle_duration_seconds") >= 0
    info = samples(svc)["nomade_analytics_watch_info"]
    assert info == [({"watch": "filesystem_used", "unit": "bytes", "direction": "above", "query": "used"}, 1.0)]


def test_no_up_before_the_first_cycle():
    svc = service([FS], fs_client())
    got = samples(svc)
    assert "nomade_analytics_up" not in got and "nomade_trend_level" not in got
    assert value(svc, "nomade_analytics_cycles_total", result="success") == 0


def test_duplicate_series_keep_the_longest_and_are_counted():
    # the same filesystem through two exporters: equal once job/instance are dropped
    long = line({**ROOT, "job": "nomade", "instance": "a:9866"}, 40 * GB, 1000.0)
    short = line({**ROOT, "job": "nomade", "instance": "b:9866"}, 10 * GB, 5.0, start=NOW - WINDOW / 2)
    for order in ([long, short], [short, long]):
        svc = service([FS], fs_client(ranges={"used": order}))
        svc.run_cycle()
        levels = samples(svc)["nomade_trend_level"]
        assert len(levels) == 1
        assert levels[0][1] == pytest.approx(40 * GB)
        assert (
            value(svc, "nomade_analytics_cycle_errors_total", watch="filesystem_used", reason="duplicate_series") == 1
        )
        assert value(svc, "nomade_analytics_watched_series", watch="filesystem_used") == 1


def test_keep_labels_keeps_instance_so_no_duplicate():
    a = line({**ROOT, "job": "nomade", "instance": "a:9866"}, 40 * GB, 1000.0)
    b = line({**ROOT, "job": "nomade", "instance": "b:9866"}, 41 * GB, 1000.0)
    w = Watch(name="fs", query="used", unit="bytes", window=WINDOW, step=STEP, keep_labels=("instance",))
    svc = service([w], fs_client(ranges={"used": [a, b]}))
    svc.run_cycle()
    labels = sorted(lab["instance"] for lab, _ in samples(svc)["nomade_trend_level"])
    assert labels == ["a:9866", "b:9866"]
    assert all("job" not in lab for lab, _ in samples(svc)["nomade_trend_level"])
    assert "nomade_analytics_cycle_errors_total" not in samples(svc)
    # the service-wide option does the same
    svc = service(
        [Watch(name="fs", query="used", window=WINDOW, step=STEP)],
        fs_client(ranges={"used": [a, b]}),
        cfg={"keep_labels": ("instance", "job")},
    )
    svc.run_cycle()
    assert {(lab["job"], lab["instance"]) for lab, _ in samples(svc)["nomade_trend_level"]} == {
        ("nomade", "a:9866"),
        ("nomade", "b:9866"),
    }


def test_absent_threshold_gives_no_time_to_threshold():
    client = fs_client(instants={"size": [Sample({**ROOT, **SRC}, 100 * GB, NOW)]})  # no size for /scratch
    svc = service([FS], client)
    svc.run_cycle()
    assert value(svc, "nomade_trend_threshold", mountpoint="/") == 100 * GB
    assert value(svc, "nomade_trend_threshold", mountpoint="/scratch") is None
    assert value(svc, "nomade_trend_time_to_threshold_seconds", mountpoint="/scratch") is None
    assert value(svc, "nomade_trend_level", mountpoint="/scratch") == pytest.approx(900 * GB)


def test_threshold_matches_on_match_on_labels_only():
    # the limit series carries other labels than the usage series; match_on pairs them by (node, job_id)
    w = Watch(
        name="job_memory",
        query="usage",
        threshold_query="limit",
        match_on=("node", "job_id"),
        unit="bytes",
        window=WINDOW,
        step=STEP,
    )
    usage = [
        line({"job_id": "11", "node": "c01", **SRC}, 1 * GB, 1e5),
        line({"job_id": "11", "node": "c02", **SRC}, 3 * GB, 1e5),
    ]
    limits = [
        Sample({"job_id": "11", "node": "c01", "cgroup": "v2", **SRC}, 2 * GB, NOW),
        Sample({"job_id": "11", "node": "c02", "cgroup": "v2", **SRC}, 4 * GB, NOW),
    ]
    svc = service([w], FakeClient({"usage": usage}, {"limit": limits}))
    svc.run_cycle()
    assert value(svc, "nomade_trend_threshold", node="c01") == 2 * GB
    assert value(svc, "nomade_trend_time_to_threshold_seconds", node="c01") == pytest.approx(1e4, rel=1e-6)
    assert value(svc, "nomade_trend_time_to_threshold_seconds", node="c02") == pytest.approx(1e4, rel=1e-6)


def test_threshold_without_match_on_matches_all_labels():
    w = Watch(name="fs", query="used", threshold_query="size", window=WINDOW, step=STEP)
    svc = service([w], fs_client())
    svc.run_cycle()
    assert value(svc, "nomade_trend_threshold", mountpoint="/") == 100 * GB
    assert value(svc, "nomade_trend_threshold", mountpoint="/scratch") == 1000 * GB


def test_ambiguous_threshold_is_not_used():
    sizes = [
        Sample({**ROOT, **SRC}, 100 * GB, NOW),
        Sample({**ROOT, "device": "/dev/other", **SRC}, 200 * GB, NOW),  # same (node, mountpoint), other size
        Sample({**SCRATCH, **SRC}, 1000 * GB, NOW),
    ]
    svc = service([FS], fs_client(instants={"size": sizes}))
    svc.run_cycle()
    assert value(svc, "nomade_trend_threshold", mountpoint="/") is None
    assert value(svc, "nomade_trend_threshold", mountpoint="/scratch") == 1000 * GB
    assert value(svc, "nomade_analytics_cycle_errors_total", watch="filesystem_used", reason="ambiguous_threshold") == 1


def test_static_threshold_below_and_already_past():
    w = Watch(name="avail", query="avail", threshold=10 * GB, direction="below", window=WINDOW, step=STEP)
    client = FakeClient(
        {
            "avail": [
                line({"node": "c01"}, 30 * GB, -1000.0),  # falls to 10 GB in 2e7 s
                line({"node": "c02"}, 5 * GB, -1.0),  # already below
                line({"node": "c03"}, 30 * GB, 500.0),  # rising: never
            ]
        }
    )
    svc = service([w], client)
    svc.run_cycle()
    assert value(svc, "nomade_trend_time_to_threshold_seconds", node="c01") == pytest.approx(2e7, rel=1e-6)
    assert value(svc, "nomade_trend_time_to_threshold_seconds", node="c02") == 0.0
    assert value(svc, "nomade_trend_time_to_threshold_seconds", node="c03") is None
    assert value(svc, "nomade_trend_threshold", node="c03") == 10 * GB
    assert client.calls == [("range", "avail", NOW - WINDOW, NOW, STEP)]  # a constant threshold needs no query


def test_reserved_label_names_are_renamed():
    src = {"watch": "theirs", "state": "idle", "horizon": "x", "node": "c01"}
    w = Watch(name="mine", query="q", window=WINDOW, step=STEP)
    svc = service([w], FakeClient({"q": [line(src, 5.0, 0.001)]}))
    svc.run_cycle()
    ((lab, _),) = samples(svc)["nomade_trend_level"]
    assert lab == {
        "watch": "mine",
        "exported_watch": "theirs",
        "exported_state": "idle",
        "exported_horizon": "x",
        "node": "c01",
    }


def test_cluster_filter():
    w = Watch(name="q", query="q", window=WINDOW, step=STEP)
    ranges = {"q": [line({"cluster": "a", "node": "n1"}, 1.0, 0.01), line({"cluster": "b", "node": "n1"}, 2.0, 0.01)]}
    svc = service([w], FakeClient(ranges), cfg={"cluster": "b"})
    svc.run_cycle()
    assert [lab["cluster"] for lab, _ in samples(svc)["nomade_trend_level"]] == ["b"]
    assert value(svc, "nomade_analytics_watched_series", watch="q") == 1


def test_non_finite_points_are_dropped_and_short_or_stale_series_are_absent():
    good = line({"node": "c01"}, 10.0, 0.01)
    pts = list(good.points)
    pts[5] = (pts[5][0], math.nan)
    pts[9] = (pts[9][0], math.inf)
    short = Series({"node": "c02"}, good.points[-4:])  # 4 points < min_points 6
    stale = line({"node": "c03"}, 10.0, 0.01, now=NOW - 1800, start=NOW - WINDOW)  # nothing for 30 min
    w = Watch(name="q", query="q", window=WINDOW, step=STEP)
    svc = service([w], FakeClient({"q": [Series({"node": "c01"}, tuple(pts)), short, stale]}))
    svc.run_cycle()
    assert [lab["node"] for lab, _ in samples(svc)["nomade_trend_level"]] == ["c01"]
    t, v = np.array(pts).T
    assert (
        value(svc, "nomade_trend_points", node="c01")
        == estimate(t[np.isfinite(v)], v[np.isfinite(v)], now=NOW, window=WINDOW).n_points
    )
    assert value(svc, "nomade_analytics_watched_series", watch="q") == 3
    assert value(svc, "nomade_analytics_estimated_series", watch="q") == 1


# -- failures and recovery ---------------------------------------------------------------------------------------


GPU = Watch(name="gpu_temperature", query="temp", threshold=85.0, unit="celsius", window=WINDOW, step=STEP)


def gpu_series(a: float, now: float = NOW) -> list[Series]:
    return [line({"gpu": "0", "node": "gpu01"}, a, 0.001, now=now)]


def test_prometheus_down_keeps_last_values_sets_up_0_and_recovers():
    clock = [NOW]
    client = fs_client(ranges={"temp": gpu_series(60.0)})
    svc = service([FS, GPU], client, clock=lambda: clock[0])
    assert svc.run_cycle() is True
    before = samples(svc)
    assert value(svc, "nomade_trend_level", mountpoint="/") == pytest.approx(40 * GB)

    # Prometheus goes away: connection refused on the first query; the rest of the cycle is skipped
    clock[0] = NOW + 60
    refused = PrometheusUnavailable("Connection refused", "http://127.0.0.1:9090/api/v1/query_range")
    client.ranges["used"] = refused
    client.calls.clear()
    assert svc.run_cycle() is False
    assert client.calls == [("range", "used", NOW + 60 - WINDOW, NOW + 60, STEP)]
    after = samples(svc)
    for name in (
        "nomade_trend_level",
        "nomade_trend_slope_per_second",
        "nomade_trend_state",
        "nomade_trend_time_to_threshold_seconds",
    ):
        assert after[name] == before[name], name  # the last good values keep being served
    assert value(svc, "nomade_analytics_up") == 0.0
    assert value(svc, "nomade_analytics_last_success_timestamp_seconds") == NOW
    assert value(svc, "nomade_analytics_watch_last_success_timestamp_seconds", watch="gpu_temperature") == NOW
    assert value(svc, "nomade_analytics_cycle_errors_total", watch="filesystem_used", reason="unavailable") == 1
    assert value(svc, "nomade_analytics_cycle_errors_total", watch="gpu_temperature", reason="unavailable") is None
    assert value(svc, "nomade_analytics_cycles_total", result="failure") == 1

    # it comes back: the next cycle publishes fresh values, no restart needed
    clock[0] = NOW + 120
    client.ranges["used"] = [line({**ROOT, **SRC}, 41 * GB, 1000.0, now=NOW + 120)]
    client.ranges["temp"] = gpu_series(61.0, now=NOW + 120)
    assert svc.run_cycle() is True
    assert value(svc, "nomade_analytics_up") == 1.0
    assert value(svc, "nomade_analytics_last_success_timestamp_seconds") == NOW + 120
    assert value(svc, "nomade_trend_level", mountpoint="/") == pytest.approx(41 * GB)
    assert value(svc, "nomade_trend_level", mountpoint="/scratch") is None  # gone from the source, gone here
    assert value(svc, "nomade_trend_level", watch="gpu_temperature") == pytest.approx(61.0)
    assert value(svc, "nomade_analytics_cycles_total", result="success") == 2


def test_promql_error_fails_only_its_watch():
    bad = PromQLError('parse error: unexpected "}"', "bad_data", "used", 400)
    client = fs_client(ranges={"used": bad, "temp": gpu_series(60.0)})
    svc = service([FS, GPU], client)
    assert svc.run_cycle() is True  # Prometheus answered; one expression is wrong
    assert value(svc, "nomade_analytics_up") == 1.0
    assert value(svc, "nomade_analytics_cycle_errors_total", watch="filesystem_used", reason="promql") == 1
    assert value(svc, "nomade_analytics_cycle_errors_total", watch="gpu_temperature", reason="promql") is None
    assert value(svc, "nomade_trend_level", watch="gpu_temperature") == pytest.approx(60.0)
    assert value(svc, "nomade_trend_level", watch="filesystem_used") is None
    assert value(svc, "nomade_analytics_watch_last_success_timestamp_seconds", watch="filesystem_used") is None


def test_http_error_on_one_watch_does_not_skip_the_others_but_sets_up_0():
    busy = PrometheusUnavailable("HTTP 503 Service Unavailable: timeout: query timed out", "u", 503)
    client = fs_client(ranges={"used": busy, "temp": gpu_series(60.0)})
    svc = service([FS, GPU], client)
    assert svc.run_cycle() is False
    assert value(svc, "nomade_analytics_up") == 0.0
    assert value(svc, "nomade_trend_level", watch="gpu_temperature") == pytest.approx(60.0)
    assert value(svc, "nomade_analytics_cycle_errors_total", watch="filesystem_used", reason="unavailable") == 1


def test_rejected_threshold_query_still_publishes_the_trend():
    client = fs_client(instants={"size": PromQLError("unknown function", "bad_data", "size", 400)})
    svc = service([FS], client)
    assert svc.run_cycle() is True
    assert value(svc, "nomade_trend_level", mountpoint="/") == pytest.approx(40 * GB)
    assert value(svc, "nomade_trend_time_to_threshold_seconds", mountpoint="/") is None
    assert value(svc, "nomade_analytics_cycle_errors_total", watch="filesystem_used", reason="promql") == 1


def test_engine_failure_is_counted_and_keeps_the_others():
    from nomade.analytics.derivatives import estimate_many

    def flaky(series, **kw):
        if any(labels.get("mountpoint") for labels, _, _ in series):
            raise FloatingPointError("boom")
        return estimate_many(series, **kw)

    svc = service(
        [FS, GPU], fs_client(ranges={"temp": gpu_series(60.0)}), estimate_many=flaky, trend_states=TREND_STATES
    )
    assert svc.run_cycle() is True
    assert value(svc, "nomade_analytics_cycle_errors_total", watch="filesystem_used", reason="estimate") == 1
    assert value(svc, "nomade_trend_level", watch="gpu_temperature") == pytest.approx(60.0)


def test_engine_receives_the_watch_settings():
    seen = {}

    def spy(series, **kw):
        seen.update(kw, n=len(series))
        return [(labels, None) for labels, _, _ in series]

    w = Watch(name="c", query="c", counter=True, min_points=9, window=7200.0, step=120.0)
    svc = service([w], FakeClient({"c": [line({"a": "1"}, 0.0, 1.0)]}), estimate_many=spy, trend_states=TREND_STATES)
    svc.run_cycle()
    assert seen == {"now": NOW, "window": 7200.0, "counter": True, "min_points": 9, "stale_after": 240.0, "n": 1}
    assert value(svc, "nomade_analytics_estimated_series", watch="c") == 0


# -- cost ----------------------------------------------------------------------------------------------------------


def many_fs(n: int) -> FakeClient:
    used, size = [], []
    for i in range(n):
        lab = {"node": f"c{i:04d}", "mountpoint": "/", "device": "/dev/sda1", "fstype": "ext4", **SRC}
        used.append(line(lab, 10 * GB + i, 100.0 + i))
        size.append(Sample(lab, 100 * GB, NOW))
    temps = [line({"gpu": str(i % 8), "node": f"g{i // 8:04d}"}, 50.0, 0.001) for i in range(n)]
    return FakeClient({"used": used, "temp": temps, "pend": used[: max(1, n // 10)]}, {"size": size})


def test_query_count_depends_on_watches_not_series():
    pend = Watch(name="pending", query="pend", window=WINDOW, step=STEP)
    counts = {}
    for n in (1, 1000):
        client = many_fs(n)
        svc = service([FS, GPU, pend], client)
        assert svc.run_cycle() is True
        assert svc.run_cycle() is True
        counts[n] = len(client.calls)
        total = sum(v for _, v in samples(svc)["nomade_analytics_queries_total"])
        assert total == len(client.calls)
        assert value(svc, "nomade_analytics_estimated_series", watch="filesystem_used") == n
        assert len(samples(svc)["nomade_trend_level"]) == n + n + max(1, n // 10)
    # two cycles x (2 for the filesystem watch + 1 + 1), whatever the number of series
    assert counts == {1: 8, 1000: 8}


# -- loop, CLI, signal ---------------------------------------------------------------------------------------------


def test_background_loop_runs_cycles_and_stops():
    client = fs_client()
    cfg = AnalyticsConfig(watches=[FS], interval=0.02)
    svc = AnalyticsService(cfg, client, clock=lambda: NOW)
    svc.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (value(svc, "nomade_analytics_cycles_total", result="success") or 0) < 3:
        time.sleep(0.01)
    svc.stop(timeout=5)
    assert not svc._thread.is_alive()
    n = value(svc, "nomade_analytics_cycles_total", result="success")
    assert n >= 3
    time.sleep(0.1)
    assert value(svc, "nomade_analytics_cycles_total", result="success") == n  # really stopped


def _load_fakeprom():
    path = Path(__file__).resolve().parents[1] / "fixtures" / "prom" / "fakeprom.py"
    spec = importlib.util.spec_from_file_location("nomade_test_fakeprom_analytics", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _matrix(series: list[Series]) -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": dict(s.labels), "values": [[t, repr(float(v))] for t, v in s.points]} for s in series
            ],
        },
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config_file(tmp_path: Path, url: str) -> Path:
    p = tmp_path / "analytics.toml"
    p.write_text(
        f"""
[analytics]
prometheus_url = "{url}"
retries = 0
timeout = 2
include_default_watches = false

[analytics.risk]
enabled = false

[[analytics.watch]]
name = "gpu_temperature"
query = "temp"
threshold = 85
window = "1h"
step = "1m"
stale_after = "3650d"
"""
    )
    return p


def test_cli_once_over_http(tmp_path, capsys):
    from nomade.analytics import cli

    fakeprom = _load_fakeprom()
    now = time.time()
    with fakeprom.FakePrometheus({"temp": [(200, _matrix(gpu_series(60.0, now=now)))]}) as fake:
        assert cli.main(["--config", str(_config_file(tmp_path, fake.url)), "--once"]) == 0
        assert [path for path, _ in fake.requests] == ["/api/v1/query_range"]
    out = capsys.readouterr().out
    fams = {f.name: f for f in text_string_to_metric_families(out)}
    (level,) = fams["nomade_trend_level"].samples
    assert level.labels == {"watch": "gpu_temperature", "gpu": "0", "node": "gpu01"}
    assert level.value == pytest.approx(60.0, abs=0.1)
    assert fams["nomade_analytics_up"].samples[0].value == 1.0


def test_cli_once_without_prometheus_fails_with_up_0(tmp_path, capsys):
    from nomade.analytics import cli

    url = f"http://127.0.0.1:{_free_port()}"
    assert cli.main(["--config", str(_config_file(tmp_path, url)), "--once"]) == 1
    out = capsys.readouterr().out
    assert "nomade_analytics_up 0.0" in out
    assert 'nomade_analytics_cycle_errors_total{reason="unavailable",watch="gpu_temperature"} 1.0' in out


def test_cli_config_error_exits_2(tmp_path, capsys):
    from nomade.analytics import cli

    bad = tmp_path / "bad.toml"
    bad.write_text("[analytics]\ninterval = 'often'\n")
    assert cli.main(["--config", str(bad), "--once"]) == 2
    assert "analytics.interval: 'often' is not a duration" in capsys.readouterr().err
    assert cli.main(["--prometheus.url", "ftp://x", "--once"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err


def test_nomade_analytics_subcommand_passes_arguments_through(tmp_path, capsys):
    from nomade.cli.main import SUBCOMMANDS, main

    assert "analytics" in SUBCOMMANDS
    url = f"http://127.0.0.1:{_free_port()}"
    assert main(["analytics", "--config", str(_config_file(tmp_path, url)), "--once"]) == 1
    assert "nomade_analytics_up 0.0" in capsys.readouterr().out


def test_service_serves_recovers_and_stops_on_sigterm(tmp_path):
    """The real process: serves /metrics, goes up 0 while Prometheus errs, back to 1, exits 0 on SIGTERM."""
    fakeprom = _load_fakeprom()
    port = _free_port()
    now = time.time()
    with fakeprom.FakePrometheus({"temp": [(200, _matrix(gpu_series(60.0, now=now)))]}) as fake:
        cfg = _config_file(tmp_path, fake.url)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nomade.analytics.cli",
                "--config",
                str(cfg),
                "--interval",
                "200ms",
                "--web.listen-address",
                f"127.0.0.1:{port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:

            def metric(name: str) -> float | None:
                try:
                    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                except requests.RequestException:
                    return None
                for fam in text_string_to_metric_families(text):
                    for s in fam.samples:
                        if s.name == name:
                            return s.value
                return None

            def wait(name: str, want: float) -> None:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and metric(name) != want:
                    time.sleep(0.05)
                assert metric(name) == want, name

            wait("nomade_analytics_up", 1.0)
            level = metric("nomade_trend_level")
            assert level == pytest.approx(60.0, abs=0.1)
            fake.routes["temp"] = [(503, "overloaded")]
            wait("nomade_analytics_up", 0.0)
            assert metric("nomade_trend_level") == level  # stale values still served
            fake.routes["temp"] = [(200, _matrix(gpu_series(70.0, now=now)))]
            wait("nomade_analytics_up", 1.0)
            assert metric("nomade_trend_level") == pytest.approx(70.0, abs=0.1)
        finally:
            proc.send_signal(15)
            try:
                rc = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    assert rc == 0, proc.stdout.read()


def test_trend_catalog_shape():
    from nomade.exporter.catalog import catalog

    names = [s.name for s in ANALYTICS_METRICS]
    assert len(names) == len(set(names))
    # Part of the one metric catalog, owned by the analytics service and by nothing else.
    owners = {spec.name: owner for owner, spec in catalog()}
    assert {owners[n] for n in names} == {
        "analytics",
        "analytics-self",
        "analytics-risk",
        "analytics-model",
        "analytics-recommend",
    }
    assert all(s.name.startswith("nomade_trend_") and s.labels[0] == "watch" for s in TREND_METRICS)
    prefix = {
        "analytics-self": "nomade_analytics_",
        "analytics-risk": "nomade_job_risk_",
        "analytics-model": "nomade_model_",
        "analytics-recommend": "nomade_recommendation_",
    }
    for s in ANALYTICS_METRICS:
        if s not in TREND_METRICS:
            assert s.name.startswith(prefix[owners[s.name]]), s.name


class CrashingRisk:
    """A risk engine with bugs: its cycle and its metrics raise; its counters still work."""

    def __init__(self):
        self.cycles = 0

    def run_cycle(self, now=None):
        self.cycles += 1
        raise RuntimeError("bug")

    def families(self):
        raise ValueError("another bug")

    def error_counts(self):
        return {"store": 2}

    def query_counts(self):
        return {"range": 3}


def test_a_failing_risk_engine_never_breaks_the_watches():
    risk = CrashingRisk()
    svc = service([FS], fs_client(), risk=risk)
    assert svc.run_cycle() is True
    assert risk.cycles == 1
    assert value(svc, "nomade_analytics_up") == 1.0
    assert value(svc, "nomade_trend_level", watch="filesystem_used", mountpoint="/") == pytest.approx(40 * GB)
    assert value(svc, "nomade_analytics_cycle_errors_total", watch="risk", reason="internal") == 1
    assert value(svc, "nomade_analytics_cycle_errors_total", watch="risk", reason="store") == 2
    assert value(svc, "nomade_analytics_queries_total", watch="risk", kind="range") == 3
    assert value(svc, "nomade_analytics_queries_total", watch="risk", kind="instant") == 0
    assert value(svc, "nomade_analytics_queries_total", watch="filesystem_used", kind="range") == 1


def test_cli_once_with_risk_enabled_and_prometheus_down(tmp_path, capsys):
    """The CLI wires the risk engine: cold start (baseline), its errors under watch="risk", no crash."""
    from nomade.analytics import cli

    url = f"http://127.0.0.1:{_free_port()}"
    cfg = _config_file(tmp_path, url)
    text = cfg.read_text().replace(
        "[analytics.risk]\nenabled = false\n",
        f'[analytics.risk]\nstore = "{tmp_path}/jobs.sqlite"\nmodel_dir = "{tmp_path}/models"\n',
    )
    cfg.write_text(text)
    assert cli.main(["--config", str(cfg), "--once"]) == 1
    out = capsys.readouterr().out
    assert 'nomade_analytics_cycle_errors_total{reason="unavailable",watch="risk"} 1.0' in out
    assert 'nomade_job_risk_scored_jobs{state="PENDING"} 0.0' not in out  # no active-job fetch: no scoring
    assert "nomade_model_info" not in out  # no accepted model
    assert 'nomade_model_retrains_total{result="accepted",setting="run"} 0.0' in out
    assert (tmp_path / "jobs.sqlite").exists()  # the store was created; no model yet, so no model_dir
    assert not (tmp_path / "models").exists()


def test_thread_safety_of_collect_during_cycles():
    client = many_fs(200)
    svc = service([FS, GPU], client)
    svc.run_cycle()
    errors = []

    def scrape():
        try:
            for _ in range(20):
                assert len(samples(svc)["nomade_trend_level"]) == 400
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=scrape)
    t.start()
    for _ in range(5):
        svc.run_cycle()
    t.join()
    assert errors == []


def test_cli_flags_override_the_file(tmp_path):
    from nomade.analytics import cli

    cfg_file = _config_file(tmp_path, "http://prom.example:9090")
    args = cli.build_parser().parse_args(
        [
            "--config",
            str(cfg_file),
            "--interval",
            "15",
            "--web.listen-address",
            "0.0.0.0:1234",
            "--prometheus.url",
            "http://other:9090",
        ]
    )
    cfg = cli.resolve(args)
    assert (cfg.interval, cfg.listen_address, cfg.prometheus_url) == (15.0, "0.0.0.0:1234", "http://other:9090")
    assert [w.name for w in cfg.watches] == ["gpu_temperature"]
    assert cli.resolve(cli.build_parser().parse_args(["--interval", "1m"])).interval == 60.0
