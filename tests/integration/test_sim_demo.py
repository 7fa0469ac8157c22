"""The simulated-cluster demo stack (deploy/sim/sim.sh) end to end, on its own ports and state directory.

``sim.sh start`` with 6 hours of history: the backfilled series exist at the start of the history and equal the
simulation (same seed, same start: the engine run again here gives the same queue), live series continue the same
series, the analytics service publishes a /scratch trend and risk scores for the queued jobs, ``nomade status``
shows the jobs at risk, and ``sim.sh stop`` leaves no process. It needs Prometheus, promtool and Alertmanager, not
the lab cluster: it uses ports 29190/29193/29196/29197 and a temporary state directory, never the lab's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SIM_SH = REPO / "deploy" / "sim" / "sim.sh"
PORTS = {"PROM": 29190, "AM": 29193, "EXPORTER": 29196, "ANALYTICS": 29197}
PROM = f"http://127.0.0.1:{PORTS['PROM']}"
SEED = 7
DAYS = 0.25
START_TIMEOUT = 420


def _missing_binaries() -> list[str]:
    found = {
        "prometheus": shutil.which("prometheus") or Path("/usr/bin/prometheus").exists(),
        "promtool": shutil.which("promtool"),
        "alertmanager": shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"),
    }
    return [k for k, v in found.items() if not v]


def query(expr: str, at: float | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"query": expr}
    if at is not None:
        params["time"] = at
    r = requests.get(f"{PROM}/api/v1/query", params=params, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def wait_for(predicate, timeout: float, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _our_processes(state_dir: Path) -> list[int]:
    """Pids whose command line names the state directory (what sim.sh started)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(state_dir) in cmd and int(d.name) != os.getpid():
            pids.append(int(d.name))
    return pids


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    missing = _missing_binaries()
    if missing:
        msg = f"the simulated demo needs {', '.join(missing)} (apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("NOMADE_LAB") == "1":
            pytest.fail(f"NOMADE_LAB=1 but {msg}", pytrace=False)
        pytest.skip(msg)
    state_dir = tmp_path_factory.mktemp("nomade-sim")
    env = dict(
        os.environ,
        NOMADE_SIM_DIR=str(state_dir),
        SEED=str(SEED),
        DAYS=str(DAYS),
        **{f"NOMADE_SIM_{k}_PORT": str(v) for k, v in PORTS.items()},
    )
    t0 = time.monotonic()
    start = subprocess.run(
        ["bash", str(SIM_SH), "start"], env=env, capture_output=True, text=True, timeout=START_TIMEOUT
    )
    started_in = time.monotonic() - t0
    try:
        assert start.returncode == 0, f"sim.sh start failed:\n{start.stdout}\n{start.stderr}"
        meta = json.loads((state_dir / "sim" / "sim.json").read_text())
        yield {"dir": state_dir, "env": env, "meta": meta, "start_out": start.stdout, "started_in": started_in}
    finally:
        stop = subprocess.run(["bash", str(SIM_SH), "stop"], env=env, capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, stop.stderr
        # stop leaves nothing of this stack running
        assert _our_processes(state_dir) == []


def test_start_prints_the_urls(stack):
    out = stack["start_out"]
    for name, port in PORTS.items():
        assert f"127.0.0.1:{port}" in out, name
    for name in ("alertmanager", "prometheus", "exporter", "analytics"):
        assert f"{name}" in out and "running (pid" in out
    assert requests.get(f"http://127.0.0.1:{PORTS['AM']}/-/ready", timeout=5).ok


def test_backfilled_history_equals_the_simulation(stack):
    from nomade.sim.engine import Simulation
    from nomade.sim.model import default_cluster, default_workload

    meta = stack["meta"]
    assert meta["seed"] == SEED and meta["end"] - meta["start"] == DAYS * 86400
    # the history ends at least Prometheus' 5-minute lookback before the first live sample
    first_live = query(f'min_over_time(timestamp(up{{job="nomade"}})[{int(DAYS * 86400)}s:15s])')
    assert first_live and float(first_live[0]["value"][1]) - meta["end"] >= 300
    t = meta["start"] + 10 * meta["step"]  # inside the first backfilled block, 6 h before the stack started
    got = {
        r["metric"]["state"]: float(r["value"][1]) for r in query('nomade_slurm_queue_cluster_jobs{job="nomade"}', t)
    }
    sim = Simulation(default_cluster(), default_workload(), SEED, meta["start"])
    sim.advance(t)
    want = Counter(j.state.lower() for j in sim.state.active.values())
    assert {k: v for k, v in got.items() if v} == dict(want)
    scratch = query('nomade_filesystem_size_bytes{mountpoint="/scratch"} - nomade_filesystem_free_bytes', t)
    assert len(scratch) == 1
    used = sim.state.filesystems["/scratch"].used_bytes
    assert abs(float(scratch[0]["value"][1]) - used) <= 2 * 4096  # statvfs fragments of 4 KiB
    # the per-core CPU series are dropped in the history as in the live scrape; the aggregates stay
    assert query("count(nomade_cpu_seconds_total)", t) == []
    assert query("count(nomade_cpu_busy_average_ratio)", t)[0]["value"][1] == str(len(default_cluster().instrumented))


def test_live_series_continue_the_backfilled_ones(stack):
    meta = stack["meta"]
    expr = 'timestamp(nomade_filesystem_size_bytes{mountpoint="/scratch"})'
    live = wait_for(lambda: [r for r in query(expr) if float(r["value"][1]) > meta["end"]], 60)
    assert live, "no live sample after the backfill"
    # one series: same job/instance labels in the history and the live scrape
    span = query(f'count_over_time(nomade_filesystem_size_bytes{{mountpoint="/scratch"}}[{int(DAYS * 86400) + 3600}s])')
    assert len(span) == 1
    assert float(span[0]["value"][1]) >= DAYS * 86400 / meta["step"] + 1
    assert query('count(nomade_cpu_seconds_total{job="nomade"})') == []  # metric_relabel_configs drop
    # the live exporter starts from the history's accounting state: finished-job counters continue, no reset
    window = f"{int(DAYS * 86400) + 3600}s"
    finished = query(f"resets(nomade_slurm_job_finished_total[{window}])")
    assert finished and {r["value"][1] for r in finished} == {"0"}


def test_recording_rules_have_the_historys_values(stack):
    # `nomade sim rules` evaluated the recording rules over the history; a rule reading another rule (inlined)
    # included. The recorded value equals the rule's expression evaluated on the backfilled samples.
    meta = stack["meta"]
    t = meta["start"] + 0.5 * DAYS * 86400
    for record, expr in (
        ("cluster:nomade_slurm_node_cpus_allocated:ratio", None),
        ("cluster:nomade_cpu_busy_average_ratio:avg", "avg by (cluster) (avg by (cluster, node) "
         "(avg_over_time(nomade_cpu_busy_average_ratio[5m])))"),
    ):  # fmt: skip
        stamp = query(f"timestamp({record})", t)
        assert len(stamp) == 1, record
        ts = float(stamp[0]["value"][1])  # the recorded sample's own time
        assert t - 120 < ts <= t  # a backfilled point of the last minute, not an older one within the lookback
        got = query(record, ts)
        assert 0 < float(got[0]["value"][1]) <= 1
        if expr is not None:
            want = query(expr, ts)
            assert abs(float(got[0]["value"][1]) - float(want[0]["value"][1])) < 1e-9
    # one evaluation a minute over the history (promtool's --eval-interval 60s), then the live ones
    span = query(f"count_over_time(cluster:nomade_slurm_node_cpus_allocated:ratio[{int(DAYS * 86400)}s])")
    assert float(span[0]["value"][1]) >= DAYS * 86400 / 60 * 0.9
    # alerting rules are not given to promtool (it would write them as series named after the alert)
    assert query("count({__name__=~'Nomade.*'})", t) == []


def test_analytics_trend_and_risk_scores(stack):
    trend = wait_for(lambda: query('nomade_trend_slope_per_second{mountpoint="/scratch",watch="scratch_used"}'), 120)
    assert len(trend) == 1 and float(trend[0]["value"][1]) > 0  # /scratch fills

    def ids(expr: str, at: float) -> set[str]:
        return {r["metric"]["job_id"] for r in query(expr, at)}

    def scored_and_stable():
        # scores come from the last analytics cycle (every 30 s) and reach Prometheus at its next scrape (15 s): the
        # queue that cycle saw lies within the minute before the score's sample, and array tasks (a broken array
        # loses most of its tasks within 2 minutes) come and go meanwhile. Jobs queued both 60 s before and at the
        # sample were queued when the cycle ran: each must have a score. The first minute of live data is waited
        # for: sim.sh ends the history 5 minutes before the live scrape starts (a backfilled series ends without a
        # staleness marker, so none still counts as queued).
        risk = query("nomade_job_risk_score")
        if not risk:
            return None
        t_s = max(float(r["value"][0]) for r in risk)  # the evaluation time of the instant query: now
        queue = "nomade_slurm_queue_job_requested_cpus"
        stable = ids(queue, t_s - 60) & ids(queue, t_s)
        return (risk, t_s, stable) if stable else None

    got = wait_for(scored_and_stable, 180)
    assert got, "no risk scores with a minute of live queue data behind them"
    risk, t_s, stable = got
    scored = {r["metric"]["job_id"] for r in risk}
    queued = ids("last_over_time(nomade_slurm_queue_job_requested_cpus[2m])", t_s)
    assert scored <= queued
    # A job submitted before the first harvested job ended has no history to be scored against (risk.baseline_scores:
    # NaN, not a made-up prior), so jobs still running from the simulation's warm-up may lack a score. Every job
    # submitted an hour or more into the backfilled history must have one.
    submit = {
        r["metric"]["job_id"]: float(r["value"][1])
        for r in query("nomade_slurm_queue_job_submit_timestamp_seconds", t_s)
    }
    eligible = {j for j in stable if submit.get(j, 0.0) >= stack["meta"]["start"] + 3600}
    assert eligible
    assert len(scored & eligible) >= 0.95 * len(eligible), sorted(eligible - scored)[:20]
    assert all(0.0 <= float(r["value"][1]) <= 1.0 for r in risk)


def test_status_shows_jobs_at_risk(stack):
    out = subprocess.run(
        [sys.executable, "-m", "nomade.cli.main", "status", "--prometheus", PROM, "--no-color", "--width", "120"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "Jobs at risk:" in lines
    section = lines[lines.index("Jobs at risk:") :]
    assert any(line.strip().startswith("scored:") for line in section)
    assert "Queue:" in lines and "Filesystems:" in lines
    assert any("/scratch" in line for line in lines)
