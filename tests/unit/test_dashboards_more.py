"""The GPUs, NFS, jobs-and-risk, licenses and health dashboards (dashboards/{gpus,nfs,jobs_risk,licenses,health}.py).

Model checks (variables, units, thresholds from the configuration, metric names) run on the JSON models; the risk
panels' PromQL is executed by a real Prometheus (tests/backfill.py) loaded with known risk scores, so the bucket
edges, the running-only filter and the joins are checked on values, not on text.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from backfill import PROMETHEUS, PROMTOOL, prometheus_server, require_binaries

from nomade.alerting.config import load_monitoring_config
from nomade.dashboards import DASHBOARDS, build_all, common, gpus, health, jobs_risk, licenses, nfs

MINE = {"gpus": gpus, "nfs": nfs, "jobs-risk": jobs_risk, "licenses": licenses, "health": health}
VARIABLES = {
    "gpus": ["datasource", "cluster", "partition", "node"],
    "jobs-risk": ["datasource", "cluster", "partition"],
    "nfs": ["datasource", "cluster", "node"],
    "health": ["datasource", "cluster", "node"],
    "licenses": ["datasource", "cluster"],
}


@pytest.fixture(scope="module")
def cfg():
    return load_monitoring_config(None)


@pytest.fixture(scope="module")
def models(cfg):
    return {key: mod.build(cfg) for key, mod in MINE.items()}


def _panel(model, title):
    found = [p for p in common.iter_panels(model) if p["title"] == title]
    assert len(found) == 1, [p["title"] for p in common.iter_panels(model)]
    return found[0]


def _config(tmp_path: Path, text: str):
    path = tmp_path / "monitoring.toml"
    path.write_text(text)
    return load_monitoring_config(path)


def test_registered_in_build_all(cfg, models):
    keys = [k for k, _ in DASHBOARDS]
    for key in MINE:
        assert key in keys
    built = build_all(cfg)
    for key, model in models.items():
        assert built[f"nomade-{key}.json"] == model


@pytest.mark.parametrize("key", sorted(MINE))
def test_model_rules(models, key):
    model = models[key]
    assert common.model_problems(model) == []
    assert model["uid"] == f"nomade-{key}"
    assert model["schemaVersion"] == common.SCHEMA_VERSION
    assert [v["name"] for v in model["templating"]["list"]] == VARIABLES[key]
    panels = common.iter_panels(model)
    assert len(panels) >= 10
    for p in panels:
        assert p["type"] in common.CURRENT_PANEL_TYPES
        assert p["fieldConfig"]["defaults"]["unit"], p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    # links: the drop-down of every NØMADE dashboard, keeping time range and variables
    assert model["links"][0]["type"] == "dashboards" and model["links"][0]["includeVars"] is True
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles)), titles


@pytest.mark.parametrize("key", sorted(MINE))
def test_metric_names_are_in_the_catalog(models, key):
    known = common.known_metric_names() | health.PROMETHEUS_SERIES
    assert common.unknown_metric_names(models[key], known) == {}
    names = set().union(*(common.metric_names(e) for e in common.dashboard_exprs(models[key])))
    prefix = {"gpus": "nomade_gpu_", "nfs": "nomade_nfs_", "jobs-risk": "nomade_job_risk_",
              "licenses": "nomade_license_", "health": "nomade_collector_"}[key]  # fmt: skip
    assert any(n.startswith(prefix) for n in names), names


def test_cluster_and_variables_in_every_selector(models, cfg):
    for key, model in models.items():
        for expr in common.dashboard_exprs(model):
            if "{" in expr:
                assert f'{cfg.cluster_label}=~"$cluster"' in expr, (key, expr)
        queries = common.dashboard_exprs(model) + common.dashboard_variable_queries(model)
        for var in ("partition", "node"):  # a variable offered is a variable used (gpus: partition picks the nodes)
            used = any(f'{var}=~"${var}"' in e for e in queries)
            assert used == (var in VARIABLES[key]), (key, var)


def test_rate_windows_are_rate_interval(models):
    n = 0
    for model in models.values():
        for expr in common.dashboard_exprs(model):
            assert common.rate_window_problems(expr) == []
            n += expr.count("$__rate_interval")
    assert n >= 20


def test_thresholds_follow_the_configuration(tmp_path, models):
    custom = _config(
        tmp_path,
        "[monitoring.thresholds]\ngpu_temperature_celsius = 90\nnfs_retransmission_ratio = 0.02\n"
        "license_usage_ratio = 0.8\nhigh_risk_jobs = 4\nanalytics_stale_after = '20m'\n",
    )

    def steps(panel):
        return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]

    assert steps(_panel(models["gpus"], "GPU temperature"))[-1] == 83.0
    assert steps(_panel(gpus.build(custom), "GPU temperature"))[-1] == 90.0
    assert steps(_panel(models["nfs"], "Retransmission ratio"))[-1] == 0.05
    assert steps(_panel(nfs.build(custom), "Retransmission ratio"))[-1] == 0.02
    assert steps(_panel(models["licenses"], "Features in use"))[-1] == 0.9
    assert steps(_panel(licenses.build(custom), "Features in use"))[-1] == 0.8
    assert steps(_panel(models["jobs-risk"], "High-risk jobs"))[-1] == 10.0
    assert steps(_panel(jobs_risk.build(custom), "High-risk jobs"))[-1] == 4.0
    assert steps(_panel(health.build(custom), "Age of the analytics results"))[-1] == 1200.0


def test_custom_job_and_cluster_labels(tmp_path):
    custom = _config(tmp_path, '[monitoring]\ncluster_label = "site"\nexporter_job = "nx"\nanalytics_job = "na"\n')
    model = health.build(custom)
    exprs = common.dashboard_exprs(model)
    assert 'sum(up{site=~"$cluster",job="nx"})' in exprs
    assert any('job=~"nx|na"' in e for e in exprs)
    risk = jobs_risk.build(custom)
    top = _panel(risk, "Top risky running jobs")["targets"][0]["expr"]
    assert "on (site, job_id)" in top


def test_risk_panels_explain_the_top_running_jobs(models):
    m = models["jobs-risk"]
    top = _panel(m, "Top risky running jobs")
    assert top["type"] == "table" and top["targets"][0]["instant"] is True
    assert 'state="RUNNING"' in top["targets"][0]["expr"]
    assert "nomade_job_risk_driver" in _panel(m, "Why: top features")["targets"][0]["expr"]
    assert "nomade_job_risk_neighbour_share" in _panel(m, "Why: outcome of similar finished jobs")["targets"][0]["expr"]
    assert "nomade_slurm_job_finished_total" in _panel(m, "Finished jobs by failure class")["targets"][0]["expr"]
    assert _panel(m, "CPU efficiency")["type"] == "heatmap"
    assert len(_panel(m, "Risk distribution")["targets"]) == 10


# ---- the PromQL run by a real Prometheus ------------------------------------------------------------------------

NOW = int(time.time()) // 60 * 60
SCORES = {  # job_id -> (state, partition, score)
    "101": ("RUNNING", "compute", 0.95),
    "102": ("RUNNING", "gpu", 0.40),
    "103": ("PENDING", "compute", 0.99),
    "104": ("RUNNING", "compute", 0.05),
    "105": ("RUNNING", "compute", 0.10),
    "106": ("PENDING", "short", 1.0),
}


def _history():
    pts = [(NOW - 120.0 + 15 * i, 0.0) for i in range(9)]  # ends at NOW

    def const(v):
        return [(t, v) for t, _ in pts]

    h = []
    for job, (state, part, score) in SCORES.items():
        lab = {"__name__": "nomade_job_risk_score", "job_id": job, "user": "alice", "account": "physics",
               "partition": part, "state": state, "job": "nomade-analytics", "instance": "a:9867"}  # fmt: skip
        h.append((lab, const(score)))
        info = {"__name__": "nomade_slurm_queue_job_info", "job_id": job, "user": "alice", "account": "physics",
                "partition": part, "state": state, "job_name": f"name{job}", "nodelist": "c01" if state == "RUNNING"
                else "", "job": "nomade", "instance": "e:9866"}  # fmt: skip
        h.append((info, const(1.0)))
    for job in ("101", "103"):  # drivers of a running and of a pending high-risk job
        for rank, feat, v in (("1", "user_fail_rate", 0.3), ("2", "req_mem", 0.1)):
            lab = {"__name__": "nomade_job_risk_driver", "job_id": job, "rank": rank, "feature": feat,
                   "job": "nomade-analytics", "instance": "a:9867"}  # fmt: skip
            h.append((lab, const(v)))
    # finished-job counter: 4 successes and 2 timeouts in compute over the 2 minutes
    succ = [(t, float(i // 2)) for i, (t, _) in enumerate(pts)]
    h.append(({"__name__": "nomade_slurm_job_finished_total", "partition": "compute", "state": "COMPLETED",
               "failure_class": "success", "job": "nomade", "instance": "e:9866"}, succ))  # fmt: skip
    tmo = [(t, float(i // 4)) for i, (t, _) in enumerate(pts)]
    h.append(({"__name__": "nomade_slurm_job_finished_total", "partition": "compute", "state": "TIMEOUT",
               "failure_class": "timeout", "job": "nomade", "instance": "e:9866"}, tmo))  # fmt: skip
    return h


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    require_binaries(PROMETHEUS, PROMTOOL)
    with prometheus_server(_history(), tmp_path_factory.mktemp("prom")) as proc:
        yield proc.url


def _q(url, expr):
    r = requests.get(f"{url}/api/v1/query", params={"query": expr, "time": NOW}, timeout=10)
    body = r.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def _render(expr):
    return common.render_expr(expr, rate_interval="1m", range_="2m", interval="15s")


def test_every_query_of_every_dashboard_parses(prom, cfg):
    n = 0
    for name, model in build_all(cfg).items():
        for expr in common.dashboard_exprs(model):
            r = requests.get(f"{prom}/api/v1/query", params={"query": _render(expr), "time": NOW}, timeout=10)
            assert r.json()["status"] == "success", (name, expr, r.text)
            n += 1
    assert n >= 80


def test_risk_distribution_buckets(prom, models):
    targets = _panel(models["jobs-risk"], "Risk distribution")["targets"]
    counts = {t["legendFormat"]: float(_q(prom, _render(t["expr"]))[0]["value"][1]) for t in targets}
    # 0.05 -> first decile; 0.10 -> second (lower edge inclusive); 0.40 -> fifth; 0.95, 0.99, 1.0 -> last
    assert counts == {
        "0.0–0.1": 1.0, "0.1–0.2": 1.0, "0.2–0.3": 0.0, "0.3–0.4": 0.0, "0.4–0.5": 1.0,
        "0.5–0.6": 0.0, "0.6–0.7": 0.0, "0.7–0.8": 0.0, "0.8–0.9": 0.0, "0.9–1.0": 3.0,
    }  # fmt: skip


def test_top_risky_running_jobs_join(prom, models):
    expr = _panel(models["jobs-risk"], "Top risky running jobs")["targets"][0]["expr"]
    rows = _q(prom, _render(expr))
    got = {
        r["metric"]["job_id"]: (float(r["value"][1]), r["metric"]["job_name"], r["metric"]["nodelist"]) for r in rows
    }
    assert got == {
        "101": (0.95, "name101", "c01"),
        "102": (0.40, "name102", "c01"),
        "104": (0.05, "name104", "c01"),
        "105": (0.10, "name105", "c01"),
    }
    # the partition variable narrows it
    narrowed = common.render_expr(expr, variables={"partition": "gpu"})
    assert [r["metric"]["job_id"] for r in _q(prom, narrowed)] == ["102"]


def test_drivers_only_for_running_jobs(prom, models):
    expr = _panel(models["jobs-risk"], "Why: top features")["targets"][0]["expr"]
    rows = _q(prom, _render(expr))
    assert sorted((r["metric"]["job_id"], r["metric"]["rank"], float(r["value"][1])) for r in rows) == [
        ("101", "1", 0.3),
        ("101", "2", 0.1),
    ]


def test_failure_panels_values(prom, models):
    m = models["jobs-risk"]
    by_class = _q(prom, _render(_panel(m, "Failures by class over the time range")["targets"][0]["expr"]))
    got = {r["metric"]["failure_class"]: round(float(r["value"][1]), 6) for r in by_class}
    # increase over 2 m of counters going 0..4 and 0..2 (extrapolated to the window by Prometheus: x 120/120)
    assert set(got) == {"success", "timeout"}
    assert got["success"] == pytest.approx(4.0, rel=0.2) and got["timeout"] == pytest.approx(2.0, rel=0.2)
    share = _q(prom, _render(_panel(m, "Failed share of finished jobs")["targets"][0]["expr"]))
    assert len(share) == 1 and 0.0 < float(share[0]["value"][1]) < 1.0
