"""The analytics service in the lab (deploy/lab/lab.sh starts it on 127.0.0.1:9867 with deploy/lab/analytics.toml).

What is checked, through the lab's Prometheus (job ``nomade-analytics``, ``honor_labels: true``):

* the service is scraped and ``nomade_analytics_up`` is 1, and every watch's PromQL was accepted by the real server;
* the filesystem watch publishes ``nomade_trend_level`` for ``/`` with the source's identifying labels, equal to the
  used bytes (size - avail) within 1 %, its threshold is the filesystem size, and it joins back to the source series;
* ``nomade_trend_state`` has exactly one state at 1 per series;
* each cycle sends the same number of queries, fixed by the configuration, whatever the number of series.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from conftest import lab_missing
from prometheus_client.parser import text_string_to_metric_families

from nomade.analytics.config import RISK_WATCH, load_config

pytestmark = pytest.mark.integration

ANALYTICS_URL = "http://127.0.0.1:9867"
LAB_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "lab" / "analytics.toml"
FS = 'watch="filesystem_used",mountpoint="/"'


@pytest.fixture(scope="module")
def analytics(prom_url) -> str:
    try:
        requests.get(f"{ANALYTICS_URL}/metrics", timeout=10).raise_for_status()
    except requests.RequestException as exc:
        lab_missing(f"the analytics service does not answer at {ANALYTICS_URL}/metrics ({exc})")
    return ANALYTICS_URL


def _value(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_analytics_is_scraped_and_up(analytics, prom_query, wait_for):
    up = wait_for(lambda: prom_query('nomade_analytics_up{job="nomade-analytics"} == 1'), timeout=60)
    assert len(up) == 1, "nomade_analytics_up is not 1 (see /var/lib/nomade-lab/log/analytics.log)"
    assert up[0]["metric"]["instance"] == "127.0.0.1:9867"
    # the real Prometheus accepts every watch's expression (defaults included)
    assert prom_query('nomade_analytics_cycle_errors_total{reason=~"promql|unavailable|estimate"} > 0') == []
    configured = {w.name for w in load_config(LAB_CONFIG).watches}
    infos = {r["metric"]["watch"] for r in prom_query('nomade_analytics_watch_info{job="nomade-analytics"}')}
    assert infos == configured


def test_filesystem_level_equals_used_bytes(analytics, prom_query, wait_for):
    level = wait_for(lambda: prom_query(f"nomade_trend_level{{{FS}}}"), timeout=120, interval=2)
    assert level, "no nomade_trend_level for / (the filesystem watch needs about 90 s of history)"
    for series in level:
        labels = series["metric"]
        node = labels["node"]
        # the source's identifying labels, not its scrape target's
        assert set(labels) == {"__name__", "watch", "mountpoint", "device", "fstype", "node", "job", "instance"}
        assert (labels["job"], labels["instance"]) == ("nomade-analytics", "127.0.0.1:9867")
        sel = f'mountpoint="/",node="{node}"'
        used = _value(prom_query(f"nomade_filesystem_size_bytes{{{sel}}} - nomade_filesystem_avail_bytes{{{sel}}}"))
        got = _value(prom_query(f'nomade_trend_level{{{FS},node="{node}"}}'))
        assert got == pytest.approx(used, rel=0.01)
        size = _value(prom_query(f"nomade_filesystem_size_bytes{{{sel}}}"))
        assert _value(prom_query(f'nomade_trend_threshold{{{FS},node="{node}"}}')) == size
        # joins back to the source on its own labels
        ratio = _value(
            prom_query(f'nomade_trend_level{{{FS},node="{node}"}} / on(node, mountpoint) nomade_filesystem_size_bytes')
        )
        assert ratio == pytest.approx(used / size, rel=0.01)
        points = _value(prom_query(f'nomade_trend_points{{{FS},node="{node}"}}'))
        assert points >= 6


def test_trend_state_has_one_state_per_series(analytics, prom_query, wait_for):
    wait_for(lambda: prom_query(f"nomade_trend_state{{{FS}}}"), timeout=120, interval=2)
    counts = prom_query('count without (state) (nomade_trend_state{job="nomade-analytics"})')
    sums = prom_query('sum without (state) (nomade_trend_state{job="nomade-analytics"})')
    assert counts and len(counts) == len(sums)
    assert {float(r["value"][1]) for r in counts} == {7.0}
    assert {float(r["value"][1]) for r in sums} == {1.0}
    # and one state set per published level
    assert len(counts) == len(prom_query('nomade_trend_level{job="nomade-analytics"}'))


def _snapshot() -> dict[str, object]:
    text = requests.get(f"{ANALYTICS_URL}/metrics", timeout=10).text
    queries: dict[tuple[str, str], float] = {}
    risk = 0.0
    cycles = 0.0
    series = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "nomade_analytics_queries_total" and s.labels["watch"] == RISK_WATCH:
                risk += s.value  # the risk engine's harvest, counted apart from the trend watches
            elif s.name == "nomade_analytics_queries_total":
                queries[(s.labels["watch"], s.labels["kind"])] = s.value
            elif s.name == "nomade_analytics_cycles_total":
                cycles += s.value
            elif s.name == "nomade_analytics_watched_series":
                series += s.value
    return {"queries": queries, "risk": risk, "cycles": cycles, "series": series}


def test_queries_per_cycle_depend_on_watches_only(analytics, wait_for):
    watches = load_config(LAB_CONFIG).watches
    per_cycle = sum(w.queries_per_cycle for w in watches)
    assert per_cycle == len(watches) + sum(w.threshold_query is not None for w in watches)

    def between_cycles() -> dict[str, object] | None:
        # every cycle sends each watch's range query once; a snapshot taken during a cycle has some watches one
        # query ahead of the cycle count and is skipped
        snap = _snapshot()
        ranges = {w: n for (w, kind), n in snap["queries"].items() if kind == "range"}
        return snap if snap["cycles"] and set(ranges.values()) == {snap["cycles"]} else None

    first = wait_for(between_cycles, timeout=60, interval=0.5)
    assert first, "no consistent snapshot: a cycle failed (see /var/lib/nomade-lab/log/analytics.log)"
    second = wait_for(
        lambda: (lambda s: s if s and s["cycles"] >= first["cycles"] + 2 else None)(between_cycles()),
        timeout=60,
        interval=1,
    )
    assert second, "the service ran fewer than two cycles in 60 s (interval 15 s)"
    cycles = second["cycles"] - first["cycles"]
    sent = sum(second["queries"].values()) - sum(first["queries"].values())
    assert sent == per_cycle * cycles
    for w in watches:
        d_range = second["queries"][(w.name, "range")] - first["queries"][(w.name, "range")]
        d_instant = second["queries"].get((w.name, "instant"), 0) - first["queries"].get((w.name, "instant"), 0)
        assert (d_range, d_instant) == (cycles, cycles if w.threshold_query else 0), w.name
    # the lab watches more series than it sends queries for (filesystems, nodes, jobs behind each query)
    assert second["series"] >= 1
    # The risk engine's harvest is bounded by a constant too: at most 26 queries for finished jobs and 23 for the
    # queue per cycle (analytics/harvest.py), whatever the number of jobs. Its cycle may straddle a snapshot, so
    # the bound is checked over the whole interval with one cycle of slack.
    risk_sent = second["risk"] - first["risk"]
    assert 0 < risk_sent <= (26 + 23) * (cycles + 1)


def test_status_shows_the_filesystem_trend(analytics, prom_url, wait_for):
    """``nomade status`` prints each filesystem's growth per day, trend and (when it fills) time to full."""
    import re
    import subprocess

    exe = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "nomade"

    def root_line() -> str | None:
        out = subprocess.run(
            [str(exe), "status", "--prometheus", prom_url, "--no-color", "--width", "200"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        line = next((ln for ln in out.splitlines() if re.match(r"\s+/\s", ln)), None)
        return line if line and "/d" in line else None

    line = wait_for(root_line, timeout=90, interval=5)
    assert line, "no trend on the / line of nomade status"
    # e.g. "/  ext4 [███░░] 23.7%  24.1 GiB / 252.0 GiB  +1.2 GiB/d (linear growth)"
    assert re.search(r"[+-][\d.]+ (B|KiB|MiB|GiB|TiB)/d", line), line
    assert re.search(
        r"\((stable|linear growth|linear decline|accelerating growth|decelerating growth|"
        r"accelerating decline|decelerating decline)\)",
        line,
    ), line
