"""The lab's own Prometheus runs the rules `nomade build` generated and sends what fires to the lab's Alertmanager.

deploy/lab/lab.sh builds the monitoring artefacts from the default configuration into ``$LAB/build`` and points
Prometheus (rule_files, alerting) at them and at an Alertmanager on 127.0.0.1:9093. ghost01 is configured in
slurm.conf but no slurmd ever answers for it, so SLURM sets it DOWN (not responding) shortly after the start:
a real NomadeNodeDown, which fires once the node has been down for the rule's ``for:`` (5 minutes). These tests
run last (they share the ``after_ml_workload`` ordering), when the lab has been up for several minutes already.
"""

from __future__ import annotations

import pytest
import requests

from nomade.alerting.config import load_monitoring_config
from nomade.alerting.rules import RECORDING_RULE_NAMES, alert_rules

pytestmark = [pytest.mark.integration, pytest.mark.after_ml_workload]

AM_URL = "http://127.0.0.1:9093"


def test_generated_rules_are_loaded_and_healthy(prom_url):
    groups = requests.get(f"{prom_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    cfg = load_monitoring_config(None)
    expected_alerts = {r["alert"] for g in alert_rules(cfg) for r in g["rules"]}
    assert expected_alerts <= set(loaded)
    assert set(RECORDING_RULE_NAMES) <= set(loaded)
    broken = {name: r.get("lastError") for name, r in loaded.items() if r.get("health") == "err"}
    assert broken == {}


def test_recording_rules_produce_series(prom_query, wait_for):
    # Rules over series every lab run has (queue, nodes, finished jobs, node CPU figures) must have produced data.
    for name in (
        "cluster_state:nomade_slurm_node_state:sum",
        "cluster_partition_state:nomade_slurm_queue_jobs:sum",
        "cluster:nomade_cpu_busy_average_ratio:avg",
        "cluster_failure_class:nomade_slurm_job_finished:rate15m",
    ):
        assert wait_for(lambda n=name: prom_query(n), timeout=60), name
    down = {
        s["metric"].get("state"): float(s["value"][1]) for s in prom_query("cluster_state:nomade_slurm_node_state:sum")
    }
    assert down.get("down", 0) >= 1  # ghost01


def test_node_down_fires_and_reaches_the_alertmanager(prom_query, wait_for):
    def firing():
        return prom_query('ALERTS{alertname="NomadeNodeDown",node="ghost01",alertstate="firing"}')

    alerts = wait_for(firing, timeout=420, interval=5)
    assert alerts, "NomadeNodeDown{node=ghost01} did not fire within 7 minutes"
    assert alerts[0]["metric"]["severity"] == "warning"

    def in_alertmanager():
        got = requests.get(f"{AM_URL}/api/v2/alerts", params={"filter": 'alertname="NomadeNodeDown"'}, timeout=10)
        got.raise_for_status()
        return [a for a in got.json() if a["labels"].get("node") == "ghost01"]

    received = wait_for(in_alertmanager, timeout=60, interval=2)
    assert received, "the lab's Alertmanager never received NomadeNodeDown{node=ghost01}"
    alert = received[0]
    assert alert["status"]["state"] == "active"
    assert "ghost01" in alert["annotations"]["summary"]
    assert alert["annotations"]["runbook_url"].endswith("/NomadeNodeDown.md")
