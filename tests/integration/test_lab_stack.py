"""The lab stack itself: Prometheus scrapes, the SLURM cluster has its shape, the workload ended as recorded.

These check the lab that ``deploy/lab/lab.sh`` builds (not the exporter's metrics), so that the exporter's
integration tests can trust it. Expected values come from ``deploy/lab/slurm.conf.in`` and
``deploy/lab/workload.sh`` (through ``$LAB/workload.json``).
"""

from __future__ import annotations

import socket
from collections import Counter, defaultdict

import pytest
import requests

pytestmark = pytest.mark.integration

# The workload's classes, as deploy/lab/workload.sh submits them (finished jobs only; one more stays pending).
EXPECTED_TOTALS = {
    "success": 5,
    "failed": 1,
    "timeout": 1,
    "cancelled": 1,
    "out_of_memory": 1,
    "segfault": 1,
    "node_fail": 2,
}
SEP = "\x1f"  # sacct delimiter: one job name of the workload holds a pipe


def test_prometheus_scrapes_itself(prom_query, wait_for):
    result = wait_for(lambda: prom_query('up{job="prometheus"} == 1'), timeout=30)
    assert [r["metric"]["instance"] for r in result] == ["127.0.0.1:9090"]


def test_nomade_target_is_configured_with_node_label(prom_url, wait_for):
    def nomade_targets():
        body = requests.get(f"{prom_url}/api/v1/targets", timeout=10).json()
        return [t for t in body["data"]["activeTargets"] if t["labels"]["job"] == "nomade"]

    targets = wait_for(nomade_targets, timeout=15)
    assert len(targets) == 1
    assert targets[0]["scrapeUrl"] == "http://127.0.0.1:9866/metrics"
    assert targets[0]["labels"]["node"] == socket.gethostname().split(".")[0]
    config = requests.get(f"{prom_url}/api/v1/status/config", timeout=10).json()["data"]["yaml"]
    nomade_job = config.split("job_name: nomade", 1)[1].split("job_name:", 1)[0]
    assert "honor_labels: true" in nomade_job
    assert "scrape_interval: 5s" in nomade_job


def test_exporter_is_scraped_up(prom_query, wait_for):
    result = wait_for(lambda: prom_query('up{job="nomade"} == 1'), timeout=30)
    assert len(result) == 1, "the exporter at 127.0.0.1:9866 is not up (see /var/lib/nomade-lab/log/exporter.log)"


def test_nodes_and_partitions(slurm):
    parts: dict[str, set[str]] = defaultdict(set)
    for line in slurm(["sinfo", "-h", "-N", "-o", "%N|%P"]).splitlines():
        node, partition = line.split("|")
        parts[partition].add(node)
    assert parts == {
        "compute*": {"c01", "c02", "c03", "c04"},  # '*' marks the default partition
        "short": {"c01", "c02"},
        "gpu": {"gpu01", "ghost01"},
    }
    limits = dict(line.split("|") for line in slurm(["sinfo", "-h", "-o", "%R|%l"]).splitlines())
    assert limits == {"compute": "1-00:00:00", "short": "5:00", "gpu": "1-00:00:00"}


def test_gpu_node_has_two_gpus_and_is_up(slurm):
    line = slurm(["sinfo", "-h", "-N", "-n", "gpu01", "-o", "%t|%G"]).strip()
    assert line == "idle|gpu:2"


def test_ghost01_is_down_not_responding(slurm, wait_for):
    def state_reason():
        return slurm(["sinfo", "-h", "-N", "-n", "ghost01", "-o", "%t|%E"]).strip()

    # '*' = not responding: slurmctld adds it at its next ping of the node (lab.sh marks ghost01 down).
    wait_for(lambda: state_reason() == "down*|Not responding", timeout=60)
    assert state_reason() == "down*|Not responding"


def test_c03_drained_with_exact_reason(slurm, lab_workload):
    drained = lab_workload["drained"]
    assert drained == {"node": "c03", "reason": 'disk "sda" failing, replace|ticket 42'}
    state, reason = slurm(["sinfo", "-h", "-N", "-n", "c03", "-o", f"%t{SEP}%E"]).rstrip("\n").split(SEP)
    assert (state, reason) == ("drain", drained["reason"])


def test_node_fail_node_is_back_in_service(slurm, lab_workload):
    node = lab_workload["node_fail_node"]
    assert slurm(["sinfo", "-h", "-N", "-n", node, "-o", "%t"]).strip() == "idle"


def test_workload_totals_per_class(lab_workload):
    assert lab_workload["totals"] == EXPECTED_TOTALS
    assert lab_workload["finished_jobs"] == sum(EXPECTED_TOTALS.values())
    assert Counter(j["failure_class"] for j in lab_workload["jobs"] if j["failure_class"]) == EXPECTED_TOTALS
    assert lab_workload["mismatches"] == []


def test_sacct_outcomes_match_workload(slurm, lab_workload):
    jobs = {j["job_id"]: j for j in lab_workload["jobs"]}
    fields = ["JobID", "JobName", "User", "Account", "Partition", "State", "ExitCode", "NodeList"]
    out = slurm(["sacct", "-a", "-X", "-n", "-P", f"--delimiter={SEP}", "-j", ",".join(jobs), "-o", ",".join(fields)])
    rows = {r["JobID"]: r for r in (dict(zip(fields, line.split(SEP), strict=True)) for line in out.splitlines())}
    assert set(rows) == set(jobs)
    for job_id, job in jobs.items():
        row = rows[job_id]
        what = f"job {job_id} ({job['name']})"
        got = (row["JobName"], row["User"], row["Account"], row["Partition"])
        assert got == (job["sacct_name"], job["user"], job["account"], job["partition"]), what
        # "CANCELLED by <uid>" becomes "CANCELLED" when slurmctld restarted since (see workload_report.py).
        assert row["State"] in (job["expected_sacct_state"], job["expected_state"]), what
        if job["exit_code_stable"]:
            assert row["ExitCode"] == job["expected_exit_code"], what
        else:  # 0:0 right after the workload, 0:15 once slurmctld restarted (see workload_report.py)
            assert row["ExitCode"] in ("0:0", "0:15"), what
        if job["nodes"]:
            assert row["NodeList"] == job["nodes"], what
    # Nothing else ran: the finished jobs in accounting are exactly the workload's.
    every = slurm(["sacct", "-a", "-X", "-n", "-P", "-S", "2000-01-01", "-E", "now", "-o", "JobID,State"])
    finished = [line for line in every.splitlines() if line.split("|")[1] not in ("PENDING", "RUNNING")]
    assert len(finished) == lab_workload["finished_jobs"]


def test_stable_exit_codes_are_pinned(lab_workload):
    pinned = {j["name"]: j["expected_exit_code"] for j in lab_workload["jobs"] if j["exit_code_stable"]}
    assert pinned == {
        "ok_alice": "0:0",
        "ok_bob": "0:0",
        "exit3": "3:0",
        "oom": "0:125",
        "segfault": "0:11",
        "multi_ok": "0:0",
        "gpu": "0:0",
        "odd \"double\" 'single' back\\slash|pipe": "0:0",
        "waits_forever": "0:0",
    }
    unstable = {j["name"] for j in lab_workload["jobs"] if not j["exit_code_stable"]}
    assert unstable == {"nodefail_single", "nodefail_multi", "timeout", "cancel_me"}


def test_accounting_keeps_quotes_as_backticks(slurm, lab_workload):
    """SLURM's accounting stores a job name's double quotes as backticks; the queue shows them as submitted."""
    (odd,) = [j for j in lab_workload["jobs"] if "|" in j["name"]]
    assert odd["name"] == "odd \"double\" 'single' back\\slash|pipe"
    assert odd["sacct_name"] == "odd `double` 'single' back\\slash|pipe"
    out = slurm(["sacct", "-n", "-X", "-P", f"--delimiter={SEP}", "-j", odd["job_id"], "-o", "JobName"])
    assert out.strip() == odd["sacct_name"]


def test_pending_job_waits_on_a_dependency_that_can_never_be_met(slurm, lab_workload):
    pending = lab_workload["pending"]
    line = slurm(["squeue", "-h", "-j", pending["job_id"], "-o", "%T|%r|%E|%u"]).strip()
    failed_id = pending["dependency"].split(":")[1]
    assert line == f"PENDING|DependencyNeverSatisfied|afterok:{failed_id}(failed)|alice"


def test_users_and_accounts(slurm):
    out = slurm(["sacctmgr", "-n", "-P", "show", "assoc", "where", "cluster=lab", "format=user,account"])
    pairs = {tuple(line.split("|")) for line in out.splitlines() if line.split("|")[0]}
    assert {("alice", "physics"), ("bob", "chemistry")} <= pairs
