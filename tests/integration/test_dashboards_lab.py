"""Every panel query of every generated dashboard, executed by the lab's Prometheus, must return data.

Runs after the ML workload (marker ``after_ml_workload``: the risk models then exist, so the model panels have
data) and submits one long job as alice for its duration, so that the "running job" panels have a running job to
show. Grafana's variables are replaced as "All" does (``.*``; ``$__rate_interval`` = 1m, ``$__interval`` = 15s,
``$__range`` = 1h); each query goes through ``/api/v1/query``, which parses it (a syntax error is a failure, never an
exemption) and evaluates it at the current time.

A query that returns no series fails the test unless its panel is in :data:`EXEMPT`, with the reason: hardware or
software the lab does not have (GPUs, NFS mounts, FlexLM/RLM license servers, remote SLURM licenses), or series that
exist only after an event the lab's workload does not cause. The generated rules file is also loaded into
``promtool check rules``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import LAB_DIR, lab_missing, slurm_env

from nomade.alerting.config import load_monitoring_config
from nomade.alerting.rules import RECORDING_RULE_NAMES, recording_rules
from nomade.cli.build import RULES_FILE, render_all, write_all
from nomade.dashboards import DASHBOARDS, build_all, common

pytestmark = [pytest.mark.integration, pytest.mark.submits_jobs, pytest.mark.after_ml_workload]

RATE_INTERVAL = "1m"
RANGE = "1h"
INTERVAL = "15s"
RUNNING_JOB_TIMEOUT = 120  # s for the test job to start and be scored as RUNNING (analytics interval: 15 s)
MODEL_TIMEOUT = 420  # s for the first accepted model after the ML workload (as in test_risk_lab.py)

_NO_GPU = "the lab has no GPU (no NVML, no nvidia-smi: nomade_gpu_source_available 0)"
_NO_NFS = "the lab mounts no NFS filesystem (nomade_nfs_source_available 0)"
_NO_LMGR = "the lab runs no FlexLM/RLM license server (no lmstat/rlmstat)"

EXEMPT: dict[tuple[str, ...], str] = {  # (dashboard key, panel title[, refId]) -> why it may return no data
    # --- GPUs: every panel but the one that says the source is missing
    **{
        ("gpus", title): _NO_GPU
        for title in (
            "GPUs",
            "Mean GPU utilisation",
            "Hottest GPU",
            "GPUs held by jobs",
            "GPUs needing a reset",
            "GPU utilisation",
            "Memory-controller utilisation",
            "Framebuffer used",
            "Power draw and enforced limit",
            "GPU temperature",
            "GPU temperature trend",
            "Clock throttle reasons",
            "Time throttled",
            "Volatile ECC errors",
            "PCIe replays",
            "GPU inventory",
            "Jobs on GPUs",
        )
    },
    # --- NFS: every panel but the one counting nodes with NFS mounts
    **{
        ("nfs", title): _NO_NFS
        for title in (
            "NFS mounts",
            "Operations",
            "Retransmissions",
            "Mean round-trip time",
            "Major timeouts",
            "Operations per mount",
            "Operations by type",
            "Read and write throughput",
            "Application I/O",
            "Round-trip time per request",
            "Execution time per request",
            "Retransmission ratio",
            "Timeouts and errors",
            "Round-trip time trend",
            "Mounts",
        )
    },
    # --- license servers (the SLURM license panels must have data: the lab defines Licenses=fluent:4)
    **{
        ("licenses", title): _NO_LMGR
        for title in (
            "License servers and vendor daemons",
            "Features in use",
            "Feature usage",
            "Queued checkouts",
            "Expiring features",
            "License holders",
            "Time until a feature runs out",
        )
    },
    ("licenses", "Remote licenses consumed outside SLURM"): "the lab defines only a local license "
    "(Licenses=fluent:4), no remote one (sacctmgr add resource)",
    # --- quotas
    ("storage", "Largest quota users"): "the lab's filesystems have no quotas (the quota collector is not enabled)",
    # --- series that exist only after an event
    ("overview", "Soonest filesystem full"): 'nomade_trend_time_to_threshold_seconds{watch="filesystem_used"} exists '
    "only when a filesystem's fitted curve reaches its size; the lab's filesystems are not filling",
    ("storage", "Time to full"): "as above (time to full only for a filesystem that is filling)",
    ("storage", "Projection per filesystem", "E"): "time-to-full column, as above",
    ("storage", "Projection per filesystem", "F"): "early end of the time-to-full band, as above",
    ("queue", "Wait of eligible pending jobs"): "exists only while a pending job is eligible; the workload's only "
    "pending job waits on a dependency that never holds",
    ("node-resources", "I/O latency (r_await, w_await)"): "r_await and w_await are absent over sample intervals "
    "without reads or writes; the lab's disks are mostly idle (reads come from the page cache)",
    ("jobs-risk", "Why: top features"): "published only for jobs at or above the model's alert threshold; whether "
    "the probe job reaches it depends on the model trained on the ML workload",
    ("jobs-risk", "Why: outcome of similar finished jobs"): "published only for jobs at or above the model's alert "
    "threshold (as above)",
    ("health", "Feature drift (PSI)"): "no PSI below 200 jobs in the drift window; the lab has about 75 finished jobs",
    ("health", "Collection failures and parse errors"): "labelled counters appear at the first failed collection or "
    "skipped line; a healthy lab may have none",
    ("health", "Cycle errors"): "appears at the analytics service's first watch error; a healthy lab may have none",
}


def exempt(key: str, title: str, ref: str) -> bool:
    """Whether the query ``ref`` of panel ``title`` of dashboard ``key`` is in :data:`EXEMPT`."""
    return (key, title) in EXEMPT or (key, title, ref) in EXEMPT


def _targets(models: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """``(dashboard key, panel title, refId, expr)`` of every panel target, in display order."""
    out = []
    for key, _ in DASHBOARDS:
        model = models[f"nomade-{key}.json"]
        for panel in common.iter_panels(model):
            for t in panel.get("targets", []):
                if t.get("expr"):
                    out.append((key, panel["title"], t["refId"], t["expr"]))
    return out


def _render(expr: str, inline: dict[str, str] | None = None) -> str:
    text = common.render_expr(expr, rate_interval=RATE_INTERVAL, range_=RANGE, interval=INTERVAL)
    assert "$" not in text, f"unsubstituted variable in {text!r}"
    return inline_recording_rules(text, inline) if inline else text


_ALL_MATCHER = re.compile(r'\s*[A-Za-z_][A-Za-z0-9_]*\s*=~\s*"\.\*"\s*')


def inline_recording_rules(expr: str, rules: dict[str, str]) -> str:
    """Replace each use of a recording rule in ``expr`` by its expression, in parentheses (recursively).

    Only for selectors whose matchers are all ``label=~".*"`` (what "All" gives): dropping them changes nothing.
    Used when the lab's Prometheus has not loaded the generated rules, so that the rest of each query still runs on
    the lab's data; :func:`test_lab_prometheus_loads_the_generated_rules` fails in that case.

    Raises:
        AssertionError: a recording rule is used with another matcher or with a range window.

    """
    if not rules:
        return expr
    names = "|".join(re.escape(n) for n in sorted(rules, key=len, reverse=True))
    pattern = re.compile(rf"(?<![A-Za-z0-9_:])({names})(?![A-Za-z0-9_:])(\{{[^}}]*\}})?(\s*\[)?")

    def sub(m: re.Match[str]) -> str:
        matchers = (m.group(2) or "{}")[1:-1]
        assert all(_ALL_MATCHER.fullmatch(x) for x in matchers.split(",") if x.strip()), m.group(0)
        assert not m.group(3), f"recording rule with a range window: {m.group(0)}"
        return "(" + inline_recording_rules(rules[m.group(1)], rules) + ")"

    return pattern.sub(sub, expr)


def _query(prom_url: str, expr: str) -> dict[str, Any]:
    resp = requests.get(f"{prom_url}/api/v1/query", params={"query": expr}, timeout=30)
    return resp.json()


def loaded_recording_rules(prom_url: str) -> set[str]:
    """Names of the recording rules the Prometheus at ``prom_url`` evaluates (``/api/v1/rules``)."""
    body = requests.get(f"{prom_url}/api/v1/rules", params={"type": "record"}, timeout=30).json()
    return {r["name"] for g in body["data"]["groups"] for r in g["rules"] if r.get("type") == "recording"}


def missing_recording_rules(prom_url: str) -> dict[str, str]:
    """Our recording rules (name -> expression) that the Prometheus at ``prom_url`` does not evaluate."""
    loaded = loaded_recording_rules(prom_url)
    cfg = load_monitoring_config(None)
    return {r["record"]: r["expr"] for g in recording_rules(cfg) for r in g["rules"] if r["record"] not in loaded}


def run_all(prom_url: str, models: dict[str, dict[str, Any]]) -> dict[str, list[tuple[str, str, str, str]]]:
    """Execute every panel query; returns ``{"data": [...], "empty": [...], "error": [...]}`` of
    ``(key, title, refId, detail)`` (detail: the rendered query, or the error). Recording rules the server does not
    evaluate are inlined (:func:`inline_recording_rules`).
    """  # noqa: D205
    out: dict[str, list[tuple[str, str, str, str]]] = {"data": [], "empty": [], "error": []}
    inline = missing_recording_rules(prom_url)
    for key, title, ref, expr in _targets(models):
        text = _render(expr, inline)
        body = _query(prom_url, text)
        if body.get("status") != "success":
            out["error"].append((key, title, ref, f"{text}: {body.get('errorType')}: {body.get('error')}"))
        elif body["data"]["result"]:
            out["data"].append((key, title, ref, text))
        else:
            out["empty"].append((key, title, ref, text))
    return out


@pytest.fixture(scope="module")
def models() -> dict[str, dict[str, Any]]:
    return build_all(load_monitoring_config(None))


@pytest.fixture(scope="module")
def running_job(ml_workload, slurm, prom_url) -> Iterator[str]:
    """A job of alice running (and scored by the risk engine) for the module's duration; cancelled at the end."""
    if os.geteuid() != 0:
        lab_missing("submitting as alice needs root (runuser)")
    deadline = time.monotonic() + MODEL_TIMEOUT  # the model panels need an accepted model (test_risk_lab asserts it)
    while not _query(prom_url, "nomade_model_info")["data"]["result"] and time.monotonic() < deadline:
        time.sleep(5)
    argv = ["runuser", "-u", "alice", "--", "sbatch", "--parsable", "-J", "dashboards_probe", "-p", "compute",
            "-t", "10", "--mem=100M", "-o", f"{LAB_DIR}/jobs/nomade-%j.out", "--wrap", "sleep 500"]  # fmt: skip
    job = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30, env=slurm_env())
    job_id = job.stdout.strip().split(";")[0]
    try:
        expr = f'nomade_job_risk_score{{job_id="{job_id}",state="RUNNING"}}'
        deadline = time.monotonic() + RUNNING_JOB_TIMEOUT
        while not _query(prom_url, expr)["data"]["result"]:
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} not scored as RUNNING within {RUNNING_JOB_TIMEOUT} s ({expr})")
            time.sleep(3)
        yield job_id
    finally:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=30, env=slurm_env(), check=False)


@pytest.fixture(scope="module")
def results(prom_url, models, running_job) -> dict[str, list[tuple[str, str, str, str]]]:
    # the probe job's first scoring may also be the first risk scoring of the lab: give the recording rules two
    # evaluations to pick up the new series before reading them
    body = requests.get(f"{prom_url}/api/v1/rules", timeout=30).json()
    intervals = [float(g.get("interval", 0)) for g in body["data"]["groups"]]
    time.sleep(min(120.0, 2 * max(intervals, default=0.0)))
    return run_all(prom_url, models)


def test_lab_prometheus_loads_the_generated_rules(prom_url):
    missing = set(RECORDING_RULE_NAMES) - loaded_recording_rules(prom_url)
    assert not missing, (
        f"the lab's Prometheus does not evaluate {len(missing)} of our recording rules (rule_files of "
        f"$LAB/etc/prometheus.yml should list the `nomade build` rules file): {sorted(missing)}"
    )


def test_inline_recording_rules():
    rules = {"a:x:sum": "sum by (cluster) (x)", "a:y:ratio": "a:x:sum / 2"}
    assert inline_recording_rules('a:y:ratio{cluster=~".*"} > 0', rules) == "((sum by (cluster) (x)) / 2) > 0"
    with pytest.raises(AssertionError):
        inline_recording_rules('a:x:sum{cluster="c1"}', rules)


def test_exemptions_name_real_panels(models):
    targets = {(key, title, ref) for key, title, ref, _ in _targets(models)}
    known = targets | {(key, title) for key, title, _ in targets}
    assert set(EXEMPT) <= known, sorted(set(EXEMPT) - known)


def test_every_query_parses_and_runs(results):
    assert results["error"] == []
    assert len(results["data"]) + len(results["empty"]) >= 150


def test_every_query_returns_data(results):
    missing = [(k, t, r, q) for k, t, r, q in results["empty"] if not exempt(k, t, r)]
    report = "\n".join(f"  {k} / {t} [{r}]: {q}" for k, t, r, q in missing)
    assert not missing, f"{len(missing)} panel queries returned no data:\n{report}"
    exempt_with_data = sorted((k, t, r) for k, t, r, _ in results["data"] if exempt(k, t, r))
    print(f"{len(results['data'])} queries returned data, {len(results['empty'])} (exempt) did not")
    if exempt_with_data:
        print("exempt panels that returned data anyway:", exempt_with_data)


def test_non_exempt_panels_of_every_dashboard_have_data(results):
    with_data = {k for k, _, _, _ in results["data"]}
    assert with_data == {k for k, _ in DASHBOARDS}, with_data


def test_risk_panels_show_the_running_job(prom_url, models, running_job):
    top = [expr for key, title, _, expr in _targets(models) if key == "jobs-risk" and title == "Top risky running jobs"]
    rows = _query(prom_url, _render(top[0]))["data"]["result"]
    assert running_job in {r["metric"]["job_id"] for r in rows}, rows
    row = next(r for r in rows if r["metric"]["job_id"] == running_job)
    assert row["metric"]["job_name"] == "dashboards_probe"
    assert 0.0 <= float(row["value"][1]) <= 1.0


def test_variable_queries_have_values(prom_url, models):
    for name, model in models.items():
        for q in common.dashboard_variable_queries(model):
            m = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_]+)\)", q)
            assert m, q
            sel, label = _render(m.group(1)), m.group(2)
            body = _query(prom_url, f"count by ({label}) ({sel})")
            assert body["status"] == "success" and body["data"]["result"], (name, q)


def test_generated_rules_pass_promtool(tmp_path):
    if shutil.which("promtool") is None:
        lab_missing("promtool not installed")
    write_all(tmp_path, render_all(load_monitoring_config(None)))
    rules = Path(tmp_path) / RULES_FILE
    res = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "warning" not in (res.stdout + res.stderr).lower()
    assert re.search(r"SUCCESS: (\d+) rules found", res.stdout)
